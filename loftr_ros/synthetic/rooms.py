"""Piecewise-planar rooms for the 3D scene generator: textured rectangles (numpy/OpenCV).

A scene is a room or a corridor (floor, walls, ceiling, split into panels), boxes and floating
planes; every surface is a rectangle with a photo crop (or plain paint) as its texture and its own
shading. World frame: metres, z up, floor at z = 0. ``scenes3d`` places the cameras and
``pinhole`` renders the views.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from loftr_ros.synthetic.homography import PhotometricParams

UP = np.array([0.0, 0.0, 1.0])


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


def with_camera_motion(params: SceneParams, baseline: Optional[Tuple[float, float]] = None,
                       max_rotation_deg: Optional[float] = None) -> SceneParams:
    """``params`` with another baseline range and/or rotation limit (None keeps its own).
    ValueError unless 0 < low <= high and 0 < max_rotation_deg <= 180."""
    changes: Dict[str, object] = {}
    if baseline is not None:
        low, high = (float(value) for value in baseline)
        if not 0.0 < low <= high:
            raise ValueError(f"baseline must be 0 < low <= high, got {low}, {high}")
        changes["baseline"] = (low, high)
    if max_rotation_deg is not None:
        if not 0.0 < max_rotation_deg <= 180.0:
            raise ValueError(f"max_rotation_deg must be in (0, 180], got {max_rotation_deg}")
        changes["max_rotation_deg"] = float(max_rotation_deg)
    return replace(params, **changes)


def uniform(rng: np.random.Generator, bounds: Tuple[float, float]) -> float:
    """A float drawn uniformly from ``bounds`` = (low, high)."""
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
        surface.paint = uniform(rng, (70.0, 220.0))
    else:
        index = int(rng.integers(len(textures))) if texture is None else texture
        tex_h, tex_w = textures[index].shape[:2]
        aspect = width / height
        crop_w = min(tex_w, tex_h * aspect) * uniform(rng, (0.35, 1.0))
        crop_h = crop_w / aspect
        surface.texture = index
        surface.crop = (uniform(rng, (0.0, tex_w - crop_w)), uniform(rng, (0.0, tex_h - crop_h)),
                        crop_w, crop_h)
    surface.gain = uniform(rng, (0.6, 1.25))
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
        size = np.array([uniform(rng, params.corridor_width),
                         uniform(rng, params.corridor_length), uniform(rng, params.room_height)])
    else:
        size = np.array([uniform(rng, params.room_width), uniform(rng, params.room_length),
                         uniform(rng, params.room_height)])
    scene = Scene(size=size, surfaces=[], textures=gray)
    for plane, (origin, edge_u, edge_v) in enumerate(_room_faces(size)):
        for panel in _panels(origin, edge_u, edge_v, uniform(rng, params.panel_size)):
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
    helper = UP if abs(normal[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
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
