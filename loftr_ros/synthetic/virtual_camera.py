"""Frames of a photo seen by a smoothly moving virtual camera, with their exact homographies.

The demo and the node tests use it: frame ``k`` is the photo warped by ``A_k`` (photo pixels ->
frame pixels), so the ground-truth map from the reference frame ``r`` to frame ``k`` is
``H_rk = A_k @ inv(A_r)``. The camera pans along a Lissajous path, rolls a few degrees, zooms a
little and tilts slightly (perspective), staying inside the photo.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

import cv2
import numpy as np

DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
DEFAULT_PHOTO = os.path.join(DATA_DIR, "coffee.png")


def load_photo(path: Optional[str] = None) -> np.ndarray:
    """The bundled CC0 photo (or ``path``) as BGR uint8."""
    path = path or DEFAULT_PHOTO
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read photo {path}")
    return image


@dataclass(frozen=True)
class CameraPath:
    """Motion amplitudes of the virtual camera.

    Attributes:
        view_fraction: part of the photo's shorter side the view spans (zoom level).
        pan: pan amplitude as a fraction of the photo size (x, y).
        roll_deg: roll amplitude in degrees.
        zoom: relative zoom amplitude.
        tilt: perspective amplitude (homography's projective terms, per pixel).
        period: frames per full cycle of the slowest motion.
    """

    view_fraction: float = 0.68
    pan: Tuple[float, float] = (0.08, 0.06)
    roll_deg: float = 6.0
    zoom: float = 0.08
    tilt: float = 1.5e-4
    period: int = 120


def photo_to_frame(photo_size: Tuple[int, int], frame_size: Tuple[int, int], t: float,
                   path: CameraPath = CameraPath()) -> np.ndarray:
    """Homography ``A(t)`` (3x3 float64) from photo pixels to frame pixels at time ``t`` (frames).

    Args:
        photo_size: ``(width, height)`` of the photo.
        frame_size: ``(width, height)`` of the rendered frames.
    """
    photo_w, photo_h = photo_size
    frame_w, frame_h = frame_size
    phase = 2 * math.pi * t / path.period
    centre = np.array([photo_w / 2 + path.pan[0] * photo_w * math.sin(phase),
                       photo_h / 2 + path.pan[1] * photo_h * math.sin(2 * phase + 0.7)])
    roll = math.radians(path.roll_deg) * math.sin(1.5 * phase + 0.3)
    # Size of the viewed region in photo pixels (frame aspect ratio kept).
    view_h = path.view_fraction * min(photo_h, photo_w * frame_h / frame_w)
    view_h *= 1 + path.zoom * math.sin(phase + 1.1)
    scale = frame_h / view_h
    cos, sin = math.cos(roll), math.sin(roll)
    # photo -> centred, rotated, scaled frame coordinates
    to_origin = np.array([[1, 0, -centre[0]], [0, 1, -centre[1]], [0, 0, 1]])
    rotate_scale = np.array([[scale * cos, scale * sin, 0], [-scale * sin, scale * cos, 0],
                             [0, 0, 1]])
    tilt = np.array([[1, 0, 0], [0, 1, 0],
                     [path.tilt * math.sin(phase + 2.0), path.tilt * math.cos(1.3 * phase), 1]])
    to_frame = np.array([[1, 0, frame_w / 2], [0, 1, frame_h / 2], [0, 0, 1]])
    return to_frame @ tilt @ rotate_scale @ to_origin


def render(photo: np.ndarray, homography: np.ndarray, frame_size: Tuple[int, int]) -> np.ndarray:
    """Warp ``photo`` into a frame of ``frame_size`` = (width, height)."""
    return cv2.warpPerspective(photo, homography, frame_size, flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT_101)


def make_sequence(count: int, frame_size: Tuple[int, int] = (640, 480),
                  photo: Optional[np.ndarray] = None, step: float = 1.0,
                  path: CameraPath = CameraPath()) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """Render ``count`` frames; return ``(frames BGR uint8, A_k photo->frame homographies)``.

    ``step`` is the time advance per frame (larger = faster motion).
    """
    photo = load_photo() if photo is None else photo
    photo_size = (photo.shape[1], photo.shape[0])
    homographies = [photo_to_frame(photo_size, frame_size, k * step, path) for k in range(count)]
    frames = [render(photo, a, frame_size) for a in homographies]
    return frames, homographies


def relative_homography(a_ref: np.ndarray, a_cur: np.ndarray) -> np.ndarray:
    """Ground-truth map reference-frame pixels -> current-frame pixels."""
    return a_cur @ np.linalg.inv(a_ref)


def transfer_error(homography: np.ndarray, points_ref: np.ndarray,
                   points_cur: np.ndarray) -> np.ndarray:
    """Pixel distance between ``homography(points_ref)`` and ``points_cur`` (both ``[N, 2]``)."""
    points_ref = np.asarray(points_ref, np.float64).reshape(-1, 2)
    if len(points_ref) == 0:
        return np.zeros(0)
    projected = cv2.perspectiveTransform(points_ref[None], homography)[0]
    return np.linalg.norm(projected - np.asarray(points_cur, np.float64).reshape(-1, 2), axis=1)


def write_sequence(folder: str, count: int, frame_size: Tuple[int, int] = (640, 480),
                   step: float = 1.0, photo_path: Optional[str] = None) -> List[np.ndarray]:
    """Write frames as ``frame_0000.png``... into ``folder``; return their ``A_k``."""
    os.makedirs(folder, exist_ok=True)
    frames, homographies = make_sequence(count, frame_size, load_photo(photo_path), step)
    for index, frame in enumerate(frames):
        cv2.imwrite(os.path.join(folder, f"frame_{index:04d}.png"), frame,
                    [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return homographies


__all__ = ["CameraPath", "DEFAULT_PHOTO", "load_photo", "make_sequence", "photo_to_frame",
           "relative_homography", "render", "transfer_error", "write_sequence"]
