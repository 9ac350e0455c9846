"""Piecewise-planar 3D scenes textured with photos, seen by two cameras or a flying camera.

A scene is a room or a corridor (floor, walls, ceiling, split into panels), boxes and floating
planes at several depths; every surface is a rectangle with a photo crop (or plain paint) as its
texture. A view is rendered by a pinhole camera: each rectangle is clipped at the near plane,
drawn with one ``cv2.warpPerspective`` into its bounding box, and composited by a z-buffer of its
analytic inverse depth (affine in the pixel coordinates). Ground truth comes from the depth maps,
the camera poses and the plane each pixel shows (``pairs.depth_correspondence``), so occluded
pixels are invalid. Appearance changes per view: per-surface shading and lighting, motion blur,
blur, gamma, contrast and noise.

numpy/OpenCV only; deterministic for a given ``numpy.random.Generator`` state.

World frame: metres, z up, floor at z = 0. Camera frame: OpenCV (x right, y down, z forward).
Poses are world-to-camera: ``X_cam = R X_world + t``.

``python -m loftr_ros.synthetic.scenes3d --preview docs/scenes3d.jpg`` draws rendered pairs with
their true matches; ``--bench 50`` times :func:`render_pair` at 640x480 on one core.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from loftr_ros.synthetic.homography import PhotometricParams
from loftr_ros.synthetic.pairs import (
    CorrespondencePair,
    depth_correspondence,
    relative_pose,
    rotation_angle_deg,
)

NEAR = 0.05                      # metres: near clipping plane
_UP = np.array([0.0, 0.0, 1.0])


@dataclass(frozen=True)
class SceneParams:
    """Ranges of the random scene, cameras and appearance (lengths in metres, angles in degrees).

    Attributes:
        corridor_probability: share of corridors (long, narrow) among the rooms.
        room_width, room_length, room_height: room extent ranges.
        corridor_width, corridor_length: corridor extent ranges (height as rooms).
        panel_size: largest edge of one textured panel of a room face.
        boxes: inclusive range of the number of boxes; box_size: their edge lengths.
        floating_box_probability: share of boxes that float instead of standing on the floor.
        planes: inclusive range of the number of floating planes; plane_size: their edges.
        hfov_deg: horizontal field of view (same camera for both views of a pair).
        camera_height: camera height above the floor.
        pitch_deg: pitch of the first camera (negative looks down).
        max_rotation_deg: largest relative rotation between the two cameras of a pair.
        baseline: camera translation as a fraction of the depth of the point both cameras look at.
        max_roll_deg: roll of the second camera.
        look_jitter: the second camera looks at a point this far (fraction of the image) from
            the image-0 pixel both views are centred on.
        low_texture_probability: share of surfaces painted plain instead of textured.
        shading_gradient: largest relative change of shading across one surface.
        light_change: standard deviation of the per-surface log-gain change between views.
        motion_blur_probability, max_motion_blur_px: linear motion blur of a view.
        appearance: global per-view photometric change (gamma, contrast, blur, noise).
    """

    corridor_probability: float = 0.3
    room_width: Tuple[float, float] = (3.0, 8.0)
    room_length: Tuple[float, float] = (4.0, 12.0)
    room_height: Tuple[float, float] = (2.3, 3.5)
    corridor_width: Tuple[float, float] = (1.6, 3.0)
    corridor_length: Tuple[float, float] = (10.0, 25.0)
    panel_size: Tuple[float, float] = (1.5, 4.0)
    boxes: Tuple[int, int] = (1, 5)
    box_size: Tuple[float, float] = (0.25, 1.4)
    floating_box_probability: float = 0.3
    planes: Tuple[int, int] = (0, 3)
    plane_size: Tuple[float, float] = (0.4, 1.8)
    hfov_deg: Tuple[float, float] = (55.0, 85.0)
    camera_height: Tuple[float, float] = (0.5, 2.0)
    pitch_deg: Tuple[float, float] = (-30.0, 20.0)
    max_rotation_deg: float = 45.0
    baseline: Tuple[float, float] = (0.05, 0.6)
    max_roll_deg: float = 15.0
    look_jitter: float = 0.15
    low_texture_probability: float = 0.15
    shading_gradient: float = 0.5
    light_change: float = 0.15
    motion_blur_probability: float = 0.3
    max_motion_blur_px: int = 9
    appearance: PhotometricParams = PhotometricParams()


@dataclass
class Surface:
    """One textured rectangle ``origin + s * edge_u + t * edge_v``, s, t in [0, 1].

    ``texture`` indexes the scene's textures (-1: plain paint of grey ``paint``); ``crop`` is
    ``(x, y, w, h)`` in texture pixels, mapped onto the rectangle (s -> x, t -> y). ``plane`` is
    shared by the panels of one room face. One-sided surfaces are seen from the side
    ``cross(edge_u, edge_v)`` points to.
    """

    origin: np.ndarray
    edge_u: np.ndarray
    edge_v: np.ndarray
    plane: int
    two_sided: bool = False
    texture: int = -1
    crop: Tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    paint: float = 128.0
    gain: float = 1.0
    gradient: np.ndarray = field(default_factory=lambda: np.zeros(3))

    @property
    def normal(self) -> np.ndarray:
        (ux, uy, uz), (vx, vy, vz) = self.edge_u, self.edge_v
        normal = np.array([uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx])
        return normal / np.linalg.norm(normal)

    @property
    def corners(self) -> np.ndarray:
        o, u, v = self.origin, self.edge_u, self.edge_v
        return np.stack([o, o + u, o + u + v, o + v])

    @property
    def centre(self) -> np.ndarray:
        return self.origin + 0.5 * (self.edge_u + self.edge_v)


@dataclass
class Scene:
    """Surfaces, their textures (grayscale uint8) and what cameras must avoid.

    Attributes:
        size: room extent (x, y, z) in metres; the room spans [0, size].
        obstacles: (centre, radius) spheres cameras keep out of.
    """

    size: np.ndarray
    surfaces: List[Surface]
    textures: List[np.ndarray]
    obstacles: List[Tuple[np.ndarray, float]] = field(default_factory=list)
    _pyramids: Dict[int, List[np.ndarray]] = field(default_factory=dict, repr=False)
    _arrays: List[np.ndarray] = field(default_factory=list, repr=False)

    def geometry(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Corners [S,4,3], unit normals [S,3] and two-sidedness [S] of all surfaces (world)."""
        if len(self._arrays) != 3 or len(self._arrays[0]) != len(self.surfaces):
            self._arrays = [np.array([s.corners for s in self.surfaces]).reshape(-1, 4, 3),
                            np.array([s.normal for s in self.surfaces]).reshape(-1, 3),
                            np.array([s.two_sided for s in self.surfaces], bool)]
        return self._arrays[0], self._arrays[1], self._arrays[2]

    def texture_level(self, index: int, level: int) -> np.ndarray:
        """Texture ``index`` halved ``level`` times (``cv2.pyrDown``), computed once."""
        levels = self._pyramids.setdefault(index, [self.textures[index]])
        while len(levels) <= level:
            levels.append(cv2.pyrDown(levels[-1]))
        return levels[level]

    def free(self, point: np.ndarray, margin: float) -> bool:
        """Whether ``point`` is inside the room by ``margin`` and outside every obstacle."""
        if np.any(point < margin) or np.any(point > self.size - margin):
            return False
        return all(np.linalg.norm(point - centre) > radius for centre, radius in self.obstacles)


@dataclass
class Camera:
    """Pinhole camera: intrinsics ``K`` (3x3) and world-to-camera pose ``X_c = R X + t``."""

    intrinsics: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray

    @property
    def position(self) -> np.ndarray:
        return -self.rotation.T @ self.translation


@dataclass
class View:
    """A rendered view: image (uint8), depth (float32, inf = nothing), plane label (int32, -1)."""

    image: np.ndarray
    depth: np.ndarray
    plane: np.ndarray


# --------------------------------------------------------------------------------------------
# Scene construction


def _uniform(rng: np.random.Generator, bounds: Tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else
                            cv2.COLOR_BGRA2GRAY)
    return image


def _dress(rng: np.random.Generator, surface: Surface, textures: Sequence[np.ndarray],
           params: SceneParams, texture: Optional[int] = None) -> Surface:
    """Give a surface its texture crop (or plain paint) and its shading."""
    width, height = np.linalg.norm(surface.edge_u), np.linalg.norm(surface.edge_v)
    if rng.random() < params.low_texture_probability:
        surface.texture = -1
        surface.paint = _uniform(rng, (70.0, 220.0))
    else:
        index = int(rng.integers(len(textures))) if texture is None else texture
        tex_h, tex_w = textures[index].shape[:2]
        aspect = width / height
        crop_w = min(tex_w, tex_h * aspect) * _uniform(rng, (0.35, 1.0))
        crop_h = crop_w / aspect
        surface.texture = index
        surface.crop = (_uniform(rng, (0.0, tex_w - crop_w)), _uniform(rng, (0.0, tex_h - crop_h)),
                        crop_w, crop_h)
    surface.gain = _uniform(rng, (0.6, 1.25))
    direction = rng.normal(size=3)
    extent = max(width, height)
    surface.gradient = (direction / np.linalg.norm(direction) * params.shading_gradient
                        * rng.uniform(0.0, 1.0) / extent)
    return surface


def _facing(origin: np.ndarray, edge_u: np.ndarray, edge_v: np.ndarray, toward: np.ndarray
            ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rectangle with its front side toward ``toward`` (mirrored along u if needed)."""
    if np.dot(np.cross(edge_u, edge_v), toward - origin) < 0:
        return origin + edge_u, -edge_u, edge_v
    return origin, edge_u, edge_v


def _room_faces(size: np.ndarray) -> List[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Floor, ceiling and four walls (origin, u, v), v pointing down on walls, all facing in."""
    sx, sy, sz = size
    centre = size / 2
    faces = [
        (np.array([0.0, 0.0, 0.0]), np.array([sx, 0.0, 0.0]), np.array([0.0, sy, 0.0])),
        (np.array([0.0, 0.0, sz]), np.array([sx, 0.0, 0.0]), np.array([0.0, sy, 0.0])),
        (np.array([0.0, 0.0, sz]), np.array([sx, 0.0, 0.0]), np.array([0.0, 0.0, -sz])),
        (np.array([0.0, sy, sz]), np.array([sx, 0.0, 0.0]), np.array([0.0, 0.0, -sz])),
        (np.array([0.0, 0.0, sz]), np.array([0.0, sy, 0.0]), np.array([0.0, 0.0, -sz])),
        (np.array([sx, 0.0, sz]), np.array([0.0, sy, 0.0]), np.array([0.0, 0.0, -sz])),
    ]
    return [_facing(o, u, v, centre) for o, u, v in faces]


def _box_faces(centre: np.ndarray, half: np.ndarray, yaw: float
               ) -> List[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Six outward-facing faces (origin, u, v) of a box turned by ``yaw`` about z."""
    cos, sin = math.cos(yaw), math.sin(yaw)
    axes = np.array([[cos, sin, 0.0], [-sin, cos, 0.0], [0.0, 0.0, 1.0]]) * half[:, None]
    faces = []
    for normal_axis in range(3):
        for sign in (-1.0, 1.0):
            others = [a for a in range(3) if a != normal_axis]
            edge_u, edge_v = 2 * axes[others[0]], 2 * axes[others[1]]
            face_centre = centre + sign * axes[normal_axis]
            origin = face_centre - 0.5 * (edge_u + edge_v)
            outside = face_centre + sign * axes[normal_axis]
            faces.append(_facing(origin, edge_u, edge_v, outside))
    return faces


def _panels(origin: np.ndarray, edge_u: np.ndarray, edge_v: np.ndarray, panel: float
            ) -> List[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    count_u = max(1, int(math.ceil(np.linalg.norm(edge_u) / panel)))
    count_v = max(1, int(math.ceil(np.linalg.norm(edge_v) / panel)))
    step_u, step_v = edge_u / count_u, edge_v / count_v
    return [(origin + i * step_u + j * step_v, step_u, step_v)
            for i in range(count_u) for j in range(count_v)]


def empty_room(rng: np.random.Generator, textures: Sequence[np.ndarray],
               params: SceneParams = SceneParams()) -> Scene:
    """A room or corridor with textured panels and no objects (textures: gray or BGR uint8)."""
    if not textures:
        raise ValueError("no textures")
    chosen = rng.choice(len(textures), size=min(len(textures), int(rng.integers(2, 6))),
                        replace=False)
    gray = [_gray(textures[int(i)]) for i in chosen]
    if rng.random() < params.corridor_probability:
        size = np.array([_uniform(rng, params.corridor_width),
                         _uniform(rng, params.corridor_length), _uniform(rng, params.room_height)])
    else:
        size = np.array([_uniform(rng, params.room_width), _uniform(rng, params.room_length),
                         _uniform(rng, params.room_height)])
    scene = Scene(size=size, surfaces=[], textures=gray)
    for plane, (origin, edge_u, edge_v) in enumerate(_room_faces(size)):
        for panel in _panels(origin, edge_u, edge_v, _uniform(rng, params.panel_size)):
            scene.surfaces.append(_dress(rng, Surface(*panel, plane=plane), gray, params))
    return scene


def add_box(rng: np.random.Generator, scene: Scene, centre: np.ndarray, half: np.ndarray,
            yaw: float, params: SceneParams) -> None:
    """Add a box (six one-sided faces, one texture) and keep cameras out of it."""
    texture = int(rng.integers(len(scene.textures)))
    for origin, edge_u, edge_v in _box_faces(centre, half, yaw):
        plane = len({s.plane for s in scene.surfaces}) + 100
        surface = Surface(origin, edge_u, edge_v, plane=plane)
        scene.surfaces.append(_dress(rng, surface, scene.textures, params, texture))
    scene.obstacles.append((centre, float(np.linalg.norm(half)) + 0.25))


def add_plane(rng: np.random.Generator, scene: Scene, centre: np.ndarray, normal: np.ndarray,
              size: Tuple[float, float], params: SceneParams) -> None:
    """Add a two-sided floating rectangle of ``size`` (w, h) metres facing ``normal``."""
    normal = normal / np.linalg.norm(normal)
    helper = _UP if abs(normal[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    across = np.cross(helper, normal)
    across /= np.linalg.norm(across)
    down = np.cross(normal, across)
    angle = rng.uniform(-0.5, 0.5)
    edge_u = (math.cos(angle) * across + math.sin(angle) * down) * size[0]
    edge_v = (-math.sin(angle) * across + math.cos(angle) * down) * size[1]
    origin = centre - 0.5 * (edge_u + edge_v)
    plane = len({s.plane for s in scene.surfaces}) + 100
    scene.surfaces.append(_dress(rng, Surface(origin, edge_u, edge_v, plane=plane, two_sided=True),
                                 scene.textures, params))
    scene.obstacles.append((centre, 0.5 * math.hypot(*size) + 0.15))


def intrinsics_for(width: int, height: int, hfov_deg: float) -> np.ndarray:
    """Pinhole camera matrix with square pixels and the principal point at the image centre."""
    focal = 0.5 * width / math.tan(math.radians(hfov_deg) / 2)
    return np.array([[focal, 0.0, (width - 1) / 2], [0.0, focal, (height - 1) / 2],
                     [0.0, 0.0, 1.0]])


def look_at(intrinsics: np.ndarray, position: np.ndarray, target: np.ndarray, roll_deg: float = 0.0
            ) -> Camera:
    """Camera at ``position`` looking at ``target`` with world z up, rolled by ``roll_deg``."""
    forward = target - position
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, _UP)
    if np.linalg.norm(right) < 1e-6:
        right = np.array([1.0, 0.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])
    roll = math.radians(roll_deg)
    spin = np.array([[math.cos(roll), -math.sin(roll), 0.0], [math.sin(roll), math.cos(roll), 0.0],
                     [0.0, 0.0, 1.0]])
    rotation = spin @ rotation
    return Camera(intrinsics, rotation, -rotation @ position)


def _direction(yaw: float, pitch: float) -> np.ndarray:
    return np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw),
                     math.sin(pitch)])


def _distance_to_walls(size: np.ndarray, position: np.ndarray, direction: np.ndarray) -> float:
    with np.errstate(divide="ignore"):
        limits = np.where(direction > 0, (size - position) / direction,
                          np.where(direction < 0, -position / direction, np.inf))
    return float(np.min(limits))


def furnish(rng: np.random.Generator, scene: Scene, camera: Camera, hfov_deg: float,
            params: SceneParams) -> None:
    """Add boxes and floating planes at several depths inside ``camera``'s view."""
    position = camera.position
    forward, right, down = camera.rotation[2], camera.rotation[0], camera.rotation[1]
    reach = _distance_to_walls(scene.size, position, forward)
    spread = math.tan(math.radians(hfov_deg) / 2)
    count = int(rng.integers(params.boxes[0], params.boxes[1] + 1))
    for _ in range(count):
        half = np.array([_uniform(rng, params.box_size) for _ in range(3)]) / 2
        depth = _uniform(rng, (1.2, max(1.4, 0.85 * reach)))
        centre = position + depth * (forward + rng.uniform(-0.7, 0.7) * spread * right)
        if rng.random() >= params.floating_box_probability:
            centre[2] = half[2]
        margin = float(np.max(half)) * 1.5
        centre = np.clip(centre, margin, scene.size - margin)
        centre[2] = max(centre[2], half[2])
        if np.linalg.norm(centre - position) < np.linalg.norm(half) + 0.4:
            continue
        add_box(rng, scene, centre, half, rng.uniform(0, math.pi), params)
    count = int(rng.integers(params.planes[0], params.planes[1] + 1))
    for _ in range(count):
        size = (_uniform(rng, params.plane_size), _uniform(rng, params.plane_size))
        depth = _uniform(rng, (1.2, max(1.4, 0.85 * reach)))
        centre = position + depth * (forward + rng.uniform(-0.7, 0.7) * spread * right
                                     + rng.uniform(-0.5, 0.5) * spread * down)
        centre = np.clip(centre, 0.2, scene.size - 0.2)
        if np.linalg.norm(centre - position) < 0.5 * math.hypot(*size) + 0.4:
            continue
        tilt = rng.normal(size=3) * 0.5
        add_plane(rng, scene, centre, -forward + tilt, size, params)


# --------------------------------------------------------------------------------------------
# Rendering


def _clip_near(points: np.ndarray) -> np.ndarray:
    """Clip a convex polygon [N,3] (camera coordinates) to z >= NEAR."""
    out = []
    count = len(points)
    for index in range(count):
        a, b = points[index], points[(index + 1) % count]
        a_in, b_in = a[2] >= NEAR, b[2] >= NEAR
        if a_in:
            out.append(a)
        if a_in != b_in:
            ratio = (NEAR - a[2]) / (b[2] - a[2])
            out.append(a + ratio * (b - a))
    return np.array(out)


def _area(polygon: np.ndarray) -> float:
    x, y = polygon[:, 0], polygon[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


@dataclass
class _Placed:
    surface: int
    box: Tuple[int, int, int, int]
    corners: np.ndarray         # [4,3] camera coordinates
    clipped: np.ndarray         # [N,3] the part in front of the near plane
    projected: np.ndarray       # [N,2] its pixels


def _rasterise(scene: Scene, camera: Camera, width: int, height: int
               ) -> Tuple[np.ndarray, np.ndarray, List[_Placed]]:
    """Z-buffer pass: inverse depth (float32, 0 = nothing) and surface index (int32, -1)."""
    inverse_depth = np.zeros((height, width), np.float32)
    label = np.full((height, width), -1, np.int32)
    placed: List[_Placed] = []
    k, k_inv = camera.intrinsics, np.linalg.inv(camera.intrinsics)
    corners_all, normals_world, two_sided = scene.geometry()
    corners_all = corners_all @ camera.rotation.T + camera.translation      # [S,4,3]
    normals = normals_world @ camera.rotation.T
    offsets = np.einsum("sk,sk->s", normals, corners_all[:, 0])   # plane: normal . X = offset
    depth_z = corners_all[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        pixels = (corners_all @ k.T)[..., :2] / depth_z[..., None]
    all_front = np.all(depth_z >= NEAR, axis=1)
    off_screen = all_front & (np.all(pixels[..., 0] < -1, axis=1)
                              | np.all(pixels[..., 1] < -1, axis=1)
                              | np.all(pixels[..., 0] > width, axis=1)
                              | np.all(pixels[..., 1] > height, axis=1))
    keep = ((np.abs(offsets) > 1e-6) & (two_sided | (offsets < 0)) & np.any(depth_z >= NEAR, axis=1)
            & ~off_screen)
    for index in np.flatnonzero(keep):
        corners = corners_all[index]
        if all_front[index]:
            clipped, projected = corners, pixels[index]
        else:
            clipped = _clip_near(corners)
            projected = clipped @ k.T
            projected = projected[:, :2] / projected[:, 2:3]
        x0 = max(int(math.floor(projected[:, 0].min())), 0)
        y0 = max(int(math.floor(projected[:, 1].min())), 0)
        x1 = min(int(math.ceil(projected[:, 0].max())) + 1, width)
        y1 = min(int(math.ceil(projected[:, 1].max())) + 1, height)
        if x0 >= x1 or y0 >= y1:
            continue
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mask, [np.rint((projected - (x0, y0)) * 16).astype(np.int32)], 255,
                     lineType=cv2.LINE_8, shift=4)
        coeff = (k_inv.T @ normals[index]) / offsets[index]          # 1/z = coeff . (u, v, 1)
        inv = (np.arange(x0, x1, dtype=np.float32) * np.float32(coeff[0])
               + (np.arange(y0, y1, dtype=np.float32)[:, None] * np.float32(coeff[1])
                  + np.float32(coeff[2])))
        region_inv, region_label = inverse_depth[y0:y1, x0:x1], label[y0:y1, x0:x1]
        # OpenCV's masked copies write into the ROI views in place, ~10x faster than np.copyto.
        closer = cv2.bitwise_and(cv2.compare(inv, region_inv, cv2.CMP_GT), mask)
        cv2.copyTo(inv, closer, region_inv)
        cv2.copyTo(np.full(inv.shape, index, np.int32), closer, region_label)
        placed.append(_Placed(int(index), (x0, y0, x1, y1), corners, clipped, projected))
    return inverse_depth, label, placed


def _texture_transform(surface: Surface, item: _Placed, k: np.ndarray) -> Tuple[np.ndarray, int]:
    """Homography texture pixels -> image pixels, and the pyramid level that keeps about one
    texel per pixel on average over the visible part."""
    crop_x, crop_y, crop_w, crop_h = surface.crop
    corners = item.corners
    edge_u, edge_v = corners[1] - corners[0], corners[3] - corners[0]
    relative = item.clipped - corners[0]
    s = relative @ edge_u / float(edge_u @ edge_u)
    t = relative @ edge_v / float(edge_v @ edge_v)
    texel_area = _area(np.stack([s * crop_w, t * crop_h], axis=1))
    pixel_area = max(_area(item.projected), 1.0)
    ratio = math.sqrt(texel_area / pixel_area)
    level = int(min(max(math.floor(math.log2(ratio)), 0), 5)) if ratio > 1 else 0
    scale = float(2 ** level)
    # Camera point of texture pixel (a, b) at this level: corner0 + s*U + t*V, s = (a*2^L-x)/w.
    basis = np.stack([edge_u * scale / crop_w, edge_v * scale / crop_h,
                      corners[0] - edge_u * crop_x / crop_w - edge_v * crop_y / crop_h], axis=1)
    return k @ basis, level


def render_view(scene: Scene, camera: Camera, width: int, height: int,
                shading: Optional[np.ndarray] = None) -> View:
    """Render ``scene`` through ``camera``: albedo x shading, before any camera effects.

    Args:
        shading: float [S,4] per surface ``(gain, gradient_x, gradient_y, gradient_z)``; the
            shading at world point X of surface s is ``gain * (1 + gradient . (X - centre))``.
            Defaults to the surfaces' own.
    """
    inverse_depth, label, placed = _rasterise(scene, camera, width, height)
    albedo = np.zeros((height, width), np.uint8)
    present = np.bincount(label.ravel() + 1, minlength=len(scene.surfaces) + 1)[1:] > 0
    for item in placed:
        if not present[item.surface]:
            continue
        surface = scene.surfaces[item.surface]
        x0, y0, x1, y1 = item.box
        region = albedo[y0:y1, x0:x1]
        where = cv2.compare(label[y0:y1, x0:x1], item.surface, cv2.CMP_EQ)
        if surface.texture < 0:
            cv2.copyTo(np.full(region.shape, round(surface.paint), np.uint8), where, region)
            continue
        texture_to_image, level = _texture_transform(surface, item, camera.intrinsics)
        shift = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]])
        source = scene.texture_level(surface.texture, level)
        warped = cv2.warpPerspective(source, shift @ texture_to_image, (x1 - x0, y1 - y0),
                                     flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        cv2.copyTo(warped, where, region)
    with np.errstate(divide="ignore"):
        depth = np.float32(1.0) / inverse_depth           # 0 -> inf where nothing is seen
    if shading is None:
        shading = surface_shading(scene)
    shade = _shade(scene, camera, shading, label, depth)
    image = cv2.multiply(albedo, shade, dtype=cv2.CV_8U)
    planes = np.array([s.plane for s in scene.surfaces] + [-1], np.int16)
    return View(image=image, depth=depth, plane=planes[label])


def surface_shading(scene: Scene) -> np.ndarray:
    """float [S,4]: each surface's own ``(gain, gradient)``."""
    return np.array([[s.gain, *s.gradient] for s in scene.surfaces], np.float64)


def changed_shading(rng: np.random.Generator, shading: np.ndarray, params: SceneParams
                    ) -> np.ndarray:
    """Per-surface lighting change for another view: gains and gradients jittered."""
    changed = shading.copy()
    changed[:, 0] *= np.exp(rng.normal(0.0, params.light_change, size=len(shading)))
    changed[:, 0] *= math.exp(rng.normal(0.0, params.light_change))
    changed[:, 1:] += rng.normal(0.0, params.light_change, size=(len(shading), 3)) * np.abs(
        shading[:, 1:]).max(axis=1, keepdims=True)
    return changed


def _shade(scene: Scene, camera: Camera, shading: np.ndarray, label: np.ndarray,
           depth: np.ndarray) -> np.ndarray:
    """float32 [H,W] shading factor: affine in world position within each surface."""
    centres = np.array([s.centre for s in scene.surfaces])
    # gain * (1 + g . (X_world - c)), X_world = R^T (X_cam - t): affine in X_cam = z * ray.
    gradient_cam = shading[:, 1:] @ camera.rotation.T
    constant = 1.0 - np.einsum("sk,sk->s", shading[:, 1:],
                               centres + (camera.rotation.T @ camera.translation)[None])
    table = np.concatenate([shading[:, :1] * gradient_cam, shading[:, :1] * constant[:, None]],
                           axis=1)
    table = np.concatenate([table, np.zeros((1, 4))]).astype(np.float32)   # row -1: nothing
    k_inv = np.linalg.inv(camera.intrinsics).astype(np.float32)
    height, width = label.shape
    z = np.where(label >= 0, depth, np.float32(0))
    # Camera coordinates: X = z (u - cx) / f, Y = z (v - cy) / f (K has no skew).
    x_cam = z * (np.arange(width, dtype=np.float32) * k_inv[0, 0] + k_inv[0, 2])[None, :]
    y_cam = z * (np.arange(height, dtype=np.float32) * k_inv[1, 1] + k_inv[1, 2])[:, None]
    shade = np.take(table[:, 0], label) * x_cam
    shade += np.take(table[:, 1], label) * y_cam
    shade += np.take(table[:, 2], label) * z
    shade += np.take(table[:, 3], label)
    return np.clip(shade, 0.15, 2.0, out=shade)


def motion_blur(rng: np.random.Generator, image: np.ndarray, max_length: int) -> np.ndarray:
    """Blur along a random straight line of 3..max_length pixels."""
    length = int(rng.integers(3, max(max_length, 3) + 1))
    angle = rng.uniform(0, math.pi)
    kernel = np.zeros((length, length), np.float32)
    centre = (length - 1) / 2
    dx, dy = math.cos(angle) * centre, math.sin(angle) * centre
    cv2.line(kernel, (int(round(centre - dx)), int(round(centre - dy))),
             (int(round(centre + dx)), int(round(centre + dy))), 1.0, 1)
    kernel /= kernel.sum()
    return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT_101)


def camera_effects(rng: np.random.Generator, image: np.ndarray, params: SceneParams) -> np.ndarray:
    """Motion blur (sometimes), then gamma, contrast, brightness, blur and noise, with the ranges
    of ``params.appearance`` (the planar pairs' :func:`homography.photometric`, in float32)."""
    if rng.random() < params.motion_blur_probability:
        image = motion_blur(rng, image, params.max_motion_blur_px)
    look = params.appearance
    levels = np.arange(256, dtype=np.float64) / 255.0
    levels = levels ** rng.uniform(*look.gamma)
    levels = (levels - 0.5) * rng.uniform(*look.contrast) + 0.5
    levels = levels + rng.uniform(-look.brightness, look.brightness)
    out = cv2.LUT(image, np.clip(np.rint(levels * 255.0), 0, 255).astype(np.uint8))
    if rng.random() < look.blur_probability:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, look.max_blur_sigma))
    noise = np.empty(out.shape, np.float32)
    # OpenCV's generator is several times faster than numpy's; seeding it from rng keeps the
    # result a function of rng alone.
    cv2.setRNGSeed(int(rng.integers(2 ** 31)))
    cv2.randn(noise, 0.0, float(rng.uniform(0.0, look.max_noise_std)))
    return cv2.add(out, noise, dtype=cv2.CV_8U)


# --------------------------------------------------------------------------------------------
# Pairs and sequences


def _first_camera(rng: np.random.Generator, scene: Scene, intrinsics: np.ndarray,
                  params: SceneParams) -> Camera:
    for _ in range(50):
        position = np.array([_uniform(rng, (0.3, scene.size[0] - 0.3)),
                             _uniform(rng, (0.3, scene.size[1] - 0.3)),
                             min(_uniform(rng, params.camera_height), scene.size[2] - 0.3)])
        yaw = rng.uniform(-math.pi, math.pi)
        pitch = math.radians(_uniform(rng, params.pitch_deg))
        direction = _direction(yaw, pitch)
        if _distance_to_walls(scene.size, position, direction) > 1.5:
            break
    return look_at(intrinsics, position, position + direction)


def _second_camera(rng: np.random.Generator, scene: Scene, first: Camera, depth0: np.ndarray,
                   params: SceneParams) -> Camera:
    """A camera that looks near where the first looks, from a baseline that is a fraction of the
    depth there, rolled, with the relative rotation within ``max_rotation_deg``."""
    height, width = depth0.shape
    k = first.intrinsics
    for attempt in range(30):
        u = width / 2 + rng.uniform(-0.25, 0.25) * width
        v = height / 2 + rng.uniform(-0.25, 0.25) * height
        z = float(depth0[int(v), int(u)])
        if not np.isfinite(z):
            continue
        direction = rng.normal(size=3) * np.array([1.0, 1.0, 0.4])
        direction /= np.linalg.norm(direction)
        shrink = 0.7 ** max(0, attempt - 15)
        position = first.position + direction * z * _uniform(rng, params.baseline) * shrink
        if not scene.free(position, 0.15):
            continue
        jitter = rng.uniform(-params.look_jitter, params.look_jitter, size=2) * np.array(
            [width, height])
        look_cam = z * (np.linalg.inv(k) @ np.array([u + jitter[0], v + jitter[1], 1.0]))
        look = first.rotation.T @ (look_cam - first.translation)
        camera = look_at(k, position, look, rng.uniform(-params.max_roll_deg, params.max_roll_deg))
        rotation, _ = relative_pose(first.rotation, first.translation, camera.rotation,
                                    camera.translation)
        if rotation_angle_deg(rotation) <= params.max_rotation_deg:
            return camera
    # Nothing suitable: a small sideways step (keeps the pair valid, rarely needed).
    return look_at(k, first.position + first.rotation[0] * 0.05,
                   first.position + first.rotation[2])


def _pair(camera0: Camera, camera1: Camera, view0: View, view1: View,
          image0: np.ndarray, image1: np.ndarray) -> CorrespondencePair:
    rotation, translation = relative_pose(camera0.rotation, camera0.translation, camera1.rotation,
                                          camera1.translation)
    field0, valid0, field1, valid1 = depth_correspondence(
        view0.depth, view1.depth, camera0.intrinsics, camera1.intrinsics, rotation, translation,
        view0.plane, view1.plane)
    return CorrespondencePair(image0=image0, image1=image1, field0to1=field0, valid0=valid0,
                              field1to0=field1, valid1=valid1, intrinsics0=camera0.intrinsics,
                              intrinsics1=camera1.intrinsics, rotation=rotation,
                              translation=translation, depth0=view0.depth, depth1=view1.depth)


def render_scene_pair(scene: Scene, camera0: Camera, camera1: Camera, width: int, height: int
                      ) -> CorrespondencePair:
    """Two views of a given scene with the surfaces' own shading and no camera effects."""
    view0 = render_view(scene, camera0, width, height)
    view1 = render_view(scene, camera1, width, height)
    return _pair(camera0, camera1, view0, view1, view0.image, view1.image)


def render_pair(rng: np.random.Generator, textures: Sequence[np.ndarray], width: int, height: int,
                params: SceneParams = SceneParams()) -> CorrespondencePair:
    """A random 3D scene seen by two cameras, with its dense ground truth.

    Args:
        rng: the only source of randomness (same state -> same pair).
        textures: photos (gray or BGR uint8) used as surface textures.
        width, height: image size in pixels.

    Returns:
        A :class:`CorrespondencePair` with intrinsics, relative pose, depths and fields.
    """
    scene = empty_room(rng, textures, params)
    hfov = _uniform(rng, params.hfov_deg)
    intrinsics = intrinsics_for(width, height, hfov)
    camera0 = _first_camera(rng, scene, intrinsics, params)
    furnish(rng, scene, camera0, hfov, params)
    shading0 = surface_shading(scene)
    view0 = render_view(scene, camera0, width, height, shading0)
    camera1 = _second_camera(rng, scene, camera0, view0.depth, params)
    view1 = render_view(scene, camera1, width, height, changed_shading(rng, shading0, params))
    image0 = camera_effects(rng, view0.image, params)
    image1 = camera_effects(rng, view1.image, params)
    return _pair(camera0, camera1, view0, view1, image0, image1)


@dataclass
class SceneSequence:
    """Frames of one scene seen by a camera flying through it.

    Attributes:
        frames: uint8 [H,W] grayscale images.
        intrinsics: 3x3 camera matrix (pixels), the same for every frame.
        rotations, translations: world-to-camera pose of each frame, ``X_c = R X + t`` (metres).
        depths: float32 [H,W] z-depth of each frame (inf where nothing is seen).
        planes: int32 [H,W] index of the plane each pixel shows (-1: none), for visibility.
    """

    frames: List[np.ndarray]
    intrinsics: np.ndarray
    rotations: List[np.ndarray]
    translations: List[np.ndarray]
    depths: List[np.ndarray]
    planes: List[np.ndarray]


def _path_cameras(rng: np.random.Generator, scene: Scene, intrinsics: np.ndarray, frames: int,
                  loop_frames: int, params: SceneParams) -> List[Camera]:
    """A smooth closed loop through the room, looking ahead and swaying left and right."""
    size = scene.size
    centre = size / 2
    radius = np.array([max(size[0] / 2 - 0.6, 0.1), max(size[1] / 2 - 0.6, 0.1)]) * rng.uniform(
        0.5, 0.9)
    phase = rng.uniform(0, 2 * math.pi, size=4)
    height = min(_uniform(rng, params.camera_height), size[2] - 0.4)
    sway = math.radians(_uniform(rng, (15.0, 35.0)))

    def position(tau: float) -> np.ndarray:
        return np.array([centre[0] + radius[0] * math.sin(tau + phase[0]),
                         centre[1] + radius[1] * math.cos(tau + phase[0]),
                         height + 0.15 * math.sin(2 * tau + phase[1])])

    cameras = []
    for index in range(frames):
        tau = 2 * math.pi * index / loop_frames
        here, ahead = position(tau), position(tau + 0.05)
        heading = math.atan2(ahead[1] - here[1], ahead[0] - here[0])
        yaw = heading + sway * math.sin(1.5 * tau + phase[2])
        pitch = math.radians(-8.0 + 10.0 * math.sin(tau + phase[3]))
        roll = 4.0 * math.sin(2.5 * tau)
        cameras.append(look_at(intrinsics, here, here + _direction(yaw, pitch), roll))
    return cameras


def render_sequence(rng: np.random.Generator, textures: Sequence[np.ndarray], width: int,
                    height: int, frames: int, params: SceneParams = SceneParams(),
                    loop_frames: Optional[int] = None) -> SceneSequence:
    """A room with objects and ``frames`` views along one smooth loop through it.

    ``loop_frames`` is the number of frames per full loop (default ``frames``). Lighting is fixed;
    each frame gets its own sensor noise. Any two frames give a ground-truth pair through
    :func:`pair_from_sequence`.
    """
    scene = empty_room(rng, textures, params)
    hfov = _uniform(rng, params.hfov_deg)
    intrinsics = intrinsics_for(width, height, hfov)
    cameras = _path_cameras(rng, scene, intrinsics, frames, loop_frames or frames, params)
    positions = np.array([c.position for c in cameras])
    count = int(rng.integers(params.boxes[0], params.boxes[1] + 1)) + 2
    for _ in range(8 * count):
        if count == 0:
            break
        half = np.array([_uniform(rng, params.box_size) for _ in range(3)]) / 2
        centre = np.array([_uniform(rng, (half[0] + 0.1, scene.size[0] - half[0] - 0.1)),
                           _uniform(rng, (half[1] + 0.1, scene.size[1] - half[1] - 0.1)),
                           half[2]])
        if np.min(np.linalg.norm(positions - centre, axis=1)) < np.linalg.norm(half) + 0.5:
            continue
        add_box(rng, scene, centre, half, rng.uniform(0, math.pi), params)
        count -= 1
    shading = surface_shading(scene)
    quiet = replace(params, motion_blur_probability=0.0,
                    appearance=PhotometricParams(brightness=0.0, contrast=(1.0, 1.0),
                                                 gamma=(1.0, 1.0), blur_probability=0.0,
                                                 max_noise_std=3.0))
    out = SceneSequence([], intrinsics, [], [], [], [])
    for camera in cameras:
        view = render_view(scene, camera, width, height, shading)
        out.frames.append(camera_effects(rng, view.image, quiet))
        out.rotations.append(camera.rotation)
        out.translations.append(camera.translation)
        out.depths.append(view.depth)
        out.planes.append(view.plane)
    return out


def pair_from_sequence(sequence: SceneSequence, index0: int, index1: int) -> CorrespondencePair:
    """Frames ``index0`` and ``index1`` of a sequence with their ground truth."""
    camera0 = Camera(sequence.intrinsics, sequence.rotations[index0], sequence.translations[index0])
    camera1 = Camera(sequence.intrinsics, sequence.rotations[index1], sequence.translations[index1])
    view0 = View(sequence.frames[index0], sequence.depths[index0], sequence.planes[index0])
    view1 = View(sequence.frames[index1], sequence.depths[index1], sequence.planes[index1])
    return _pair(camera0, camera1, view0, view1, view0.image, view1.image)


# --------------------------------------------------------------------------------------------
# Preview and timing


def sample_textures() -> List[np.ndarray]:
    """Photos that ship with the package and with scikit-image (if installed), gray uint8."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = [os.path.join(here, "data", "coffee.png")]
    try:
        import skimage
        folder = os.path.join(os.path.dirname(skimage.__file__), "data")
        paths += [os.path.join(folder, name) for name in
                  ("astronaut.png", "chelsea.png", "rocket.jpg", "brick.png", "grass.png",
                   "gravel.png", "camera.png", "motorcycle_left.png")]
    except ImportError:
        pass
    images = [cv2.imread(path, cv2.IMREAD_GRAYSCALE) for path in paths if os.path.exists(path)]
    return [image for image in images if image is not None]


def draw_pair(pair: CorrespondencePair, rng: np.random.Generator, count: int = 40) -> np.ndarray:
    """BGR picture: the two views side by side with ``count`` random true matches drawn."""
    height, width = pair.image0.shape
    canvas = cv2.cvtColor(np.concatenate([pair.image0, pair.image1], axis=1), cv2.COLOR_GRAY2BGR)
    rows, cols = np.nonzero(pair.valid0)
    if len(rows):
        pick = rng.choice(len(rows), size=min(count, len(rows)), replace=False)
        for k, index in enumerate(pick):
            x0, y0 = cols[index], rows[index]
            x1, y1 = pair.field0to1[y0, x0]
            hue = int(180 * k / max(len(pick), 1))
            colour = cv2.cvtColor(np.uint8([[[hue, 255, 255]]]), cv2.COLOR_HSV2BGR)[0, 0]
            colour = tuple(int(c) for c in colour)
            cv2.circle(canvas, (int(x0), int(y0)), 3, colour, -1, cv2.LINE_AA)
            cv2.circle(canvas, (int(round(x1)) + width, int(round(y1))), 3, colour, -1, cv2.LINE_AA)
            cv2.line(canvas, (int(x0), int(y0)), (int(round(x1)) + width, int(round(y1))), colour,
                     1, cv2.LINE_AA)
    invalid = np.concatenate([~pair.valid0, ~pair.valid1], axis=1)
    canvas[invalid] = (canvas[invalid] * 0.55).astype(np.uint8)
    angle = rotation_angle_deg(pair.rotation) if pair.rotation is not None else 0.0
    baseline = float(np.linalg.norm(pair.translation)) if pair.translation is not None else 0.0
    depth = float(np.median(pair.depth0[np.isfinite(pair.depth0)])) if pair.depth0 is not None \
        else 0.0
    text = (f"rotation {angle:.0f} deg, baseline {baseline:.2f} m, median depth {depth:.1f} m, "
            f"visible {pair.valid0.mean():.0%}")
    cv2.putText(canvas, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(canvas, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1,
                cv2.LINE_AA)
    return canvas


def preview(path: str, textures: Sequence[np.ndarray], pairs: int = 4, seed: int = 0,
            width: int = 640, height: int = 480) -> None:
    """Write ``pairs`` rendered pairs with true matches (shaded: not visible in the other view),
    one above the other, as one JPEG."""
    rng = np.random.default_rng(seed)
    rows = [draw_pair(render_pair(rng, textures, width, height), rng) for _ in range(pairs)]
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    if not cv2.imwrite(path, np.concatenate(rows, axis=0), [cv2.IMWRITE_JPEG_QUALITY, 80]):
        raise OSError(f"cannot write {path}")


def benchmark(textures: Sequence[np.ndarray], pairs: int, width: int = 640, height: int = 480,
              seed: int = 0) -> Tuple[List[float], List[float]]:
    """Wall and CPU seconds per :func:`render_pair` call, on one OpenCV thread. On a shared
    machine the CPU time is the cost of one core; the wall time includes waiting for it."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        rng = np.random.default_rng(seed)
        render_pair(rng, textures, width, height)     # warm-up: imports, allocator
        wall, cpu = [], []
        for _ in range(pairs):
            start, start_cpu = time.perf_counter(), time.process_time()
            render_pair(rng, textures, width, height)
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        return wall, cpu
    finally:
        cv2.setNumThreads(threads)


def _load_folder(folder: str, max_side: int = 1280) -> List[np.ndarray]:
    images = []
    for name in sorted(os.listdir(folder)):
        image = cv2.imread(os.path.join(folder, name), cv2.IMREAD_GRAYSCALE)
        if image is None:
            continue
        scale = max_side / max(image.shape)
        if scale < 1:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        images.append(image)
    return images


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preview", metavar="JPG", help="write rendered pairs with true matches")
    parser.add_argument("--bench", type=int, metavar="N", help="time N pairs at 640x480")
    parser.add_argument("--textures", metavar="DIR",
                        help="folder of photos (default: the package's and scikit-image's)")
    parser.add_argument("--pairs", type=int, default=4, help="pairs in the preview")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    textures = _load_folder(args.textures) if args.textures else sample_textures()
    if not textures:
        print("no readable textures", file=sys.stderr)
        return 1
    if args.preview:
        preview(args.preview, textures, args.pairs, args.seed)
        print(f"wrote {args.preview}")
    if args.bench:
        wall, cpu = (np.array(t) * 1000 for t in benchmark(textures, args.bench, seed=args.seed))
        print(f"render_pair {len(textures)} textures, {args.bench} pairs of 640x480, 1 thread: "
              f"CPU median {np.median(cpu):.1f} ms (p90 {np.percentile(cpu, 90):.1f}), "
              f"wall median {np.median(wall):.1f} ms (p90 {np.percentile(wall, 90):.1f})")
    if not (args.preview or args.bench):
        parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
