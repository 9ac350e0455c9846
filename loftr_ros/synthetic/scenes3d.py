"""Piecewise-planar 3D scenes textured with photos, seen by two cameras or a flying camera.

A scene is a room or a corridor (floor, walls, ceiling, split into panels), boxes and floating
planes at several depths; every surface is a rectangle with a photo crop (or plain paint) as its
texture (``rooms``). Views are rendered by a pinhole camera with a z-buffer (``pinhole``); this
module places the objects and the cameras: a random 6-DoF motion with parallax for pairs, a
smooth loop through the room for sequences. Ground truth comes from the depth maps,
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
from dataclasses import dataclass, replace
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from loftr_ros.synthetic.homography import PhotometricParams
from loftr_ros.synthetic.pairs import (
    CorrespondencePair,
    depth_correspondence,
    relative_pose,
    rotation_angle_deg,
)
from loftr_ros.synthetic.pinhole import (
    Camera,
    View,
    camera_effects,
    changed_shading,
    intrinsics_for,
    look_at,
    render_view,
    surface_shading,
)
from loftr_ros.synthetic.rooms import (
    Scene,
    SceneParams,
    add_box,
    add_plane,
    empty_room,
    uniform,
    with_camera_motion,
)


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
        half = np.array([uniform(rng, params.box_size) for _ in range(3)]) / 2
        depth = uniform(rng, (1.2, max(1.4, 0.85 * reach)))
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
        size = (uniform(rng, params.plane_size), uniform(rng, params.plane_size))
        depth = uniform(rng, (1.2, max(1.4, 0.85 * reach)))
        centre = position + depth * (forward + rng.uniform(-0.7, 0.7) * spread * right
                                     + rng.uniform(-0.5, 0.5) * spread * down)
        centre = np.clip(centre, 0.2, scene.size - 0.2)
        if np.linalg.norm(centre - position) < 0.5 * math.hypot(*size) + 0.4:
            continue
        tilt = rng.normal(size=3) * 0.5
        add_plane(rng, scene, centre, -forward + tilt, size, params)


def _first_camera(rng: np.random.Generator, scene: Scene, intrinsics: np.ndarray,
                  params: SceneParams) -> Camera:
    for _ in range(50):
        position = np.array([uniform(rng, (0.3, scene.size[0] - 0.3)),
                             uniform(rng, (0.3, scene.size[1] - 0.3)),
                             min(uniform(rng, params.camera_height), scene.size[2] - 0.3)])
        yaw = rng.uniform(-math.pi, math.pi)
        pitch = math.radians(uniform(rng, params.pitch_deg))
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
        position = first.position + direction * z * uniform(rng, params.baseline) * shrink
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
    hfov = uniform(rng, params.hfov_deg)
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
    height = min(uniform(rng, params.camera_height), size[2] - 0.4)
    sway = math.radians(uniform(rng, (15.0, 35.0)))

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
    hfov = uniform(rng, params.hfov_deg)
    intrinsics = intrinsics_for(width, height, hfov)
    cameras = _path_cameras(rng, scene, intrinsics, frames, loop_frames or frames, params)
    positions = np.array([c.position for c in cameras])
    count = int(rng.integers(params.boxes[0], params.boxes[1] + 1)) + 2
    for _ in range(8 * count):
        if count == 0:
            break
        half = np.array([uniform(rng, params.box_size) for _ in range(3)]) / 2
        centre = np.array([uniform(rng, (half[0] + 0.1, scene.size[0] - half[0] - 0.1)),
                           uniform(rng, (half[1] + 0.1, scene.size[1] - half[1] - 0.1)),
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


__all__ = ["Camera", "Scene", "SceneParams", "SceneSequence", "add_box", "add_plane",
           "empty_room", "furnish", "intrinsics_for", "look_at", "pair_from_sequence",
           "render_pair", "render_scene_pair", "render_sequence", "render_view",
           "sample_textures", "with_camera_motion"]


if __name__ == "__main__":
    sys.exit(main())
