"""Side-by-side match pictures (OpenCV): ``loftr-match --out`` and the node's debug image."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import cv2
import numpy as np


def to_bgr(image: np.ndarray) -> np.ndarray:
    """uint8 gray / BGR / BGRA -> uint8 BGR."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def score_colors(scores: np.ndarray) -> np.ndarray:
    """uint8 [N,3] BGR colours from red (low score) through yellow to green (high), scaled to
    the scores' own range so that the ranking stays visible whatever the threshold."""
    if len(scores) == 0:
        return np.zeros((0, 3), dtype=np.uint8)
    low, high = float(scores.min()), float(scores.max())
    normalised = (scores - low) / (high - low) if high > low else np.ones_like(scores)
    red = np.clip(2.0 * (1.0 - normalised), 0, 1) * 255
    green = np.clip(2.0 * normalised, 0, 1) * 255
    return np.stack([np.zeros_like(red), green, red], axis=1).astype(np.uint8)


def shrink(image: np.ndarray, max_side: Optional[int]) -> Tuple[np.ndarray, float]:
    """``image`` shrunk (area interpolation) so that its longer side is at most ``max_side``
    pixels (None: unchanged), and the scale applied; each side keeps at least one pixel."""
    height, width = image.shape[:2]
    if max_side is None or max(height, width) <= max_side:
        return image, 1.0
    scale = max_side / max(height, width)
    size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def draw_matches(image0: np.ndarray, image1: np.ndarray, keypoints0: np.ndarray,
                 keypoints1: np.ndarray, scores: np.ndarray, text_lines: Sequence[str] = (),
                 max_lines: Optional[int] = 400, thickness: int = 1,
                 max_side: Optional[int] = None) -> np.ndarray:
    """Reference (left) | current (right), one line per match coloured by score, text top-left.

    Images of different heights are padded at the bottom. At most ``max_lines`` matches (the best
    ones) are drawn so the picture stays readable. With ``max_side``, an image whose longer side
    is larger is first shrunk to it (and its keypoints with it), which bounds the picture's size
    whatever the frames'.
    """
    # shrink before to_bgr, which would copy a large gray frame into three channels
    shrunk0, scale0 = shrink(image0, max_side)
    shrunk1, scale1 = shrink(image1, max_side)
    left, right = to_bgr(shrunk0), to_bgr(shrunk1)
    keypoints0 = np.asarray(keypoints0, dtype=np.float32) * np.float32(scale0)
    keypoints1 = np.asarray(keypoints1, dtype=np.float32) * np.float32(scale1)
    height = max(left.shape[0], right.shape[0])
    canvas = np.zeros((height, left.shape[1] + right.shape[1], 3), dtype=np.uint8)
    canvas[:left.shape[0], :left.shape[1]] = left
    canvas[:right.shape[0], left.shape[1]:] = right
    order = np.argsort(-scores, kind="stable")
    if max_lines is not None:
        order = order[:max_lines]
    colors = score_colors(scores)
    offset = np.array([left.shape[1], 0], dtype=np.float32)
    for index in order[::-1]:  # best drawn last, on top
        start = tuple(int(round(v)) for v in keypoints0[index])
        end = tuple(int(round(v)) for v in keypoints1[index] + offset)
        color = tuple(int(c) for c in colors[index])
        cv2.line(canvas, start, end, color, thickness, cv2.LINE_AA)
        cv2.circle(canvas, start, 2, color, -1, cv2.LINE_AA)
        cv2.circle(canvas, end, 2, color, -1, cv2.LINE_AA)
    y = 22
    for line in text_lines:
        cv2.putText(canvas, line, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(canvas, line, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1,
                    cv2.LINE_AA)
        y += 24
    return canvas


def draw_reference_outline(image: np.ndarray, reference_size: Tuple[int, int],
                           homography: np.ndarray, color: Tuple[int, int, int] = (255, 0, 255)
                           ) -> np.ndarray:
    """A BGR copy of the current frame ``image`` with the reference frame's outline drawn where
    ``homography`` (reference pixels -> current pixels, 3x3) puts it.

    ``reference_size`` is ``(width, height)``. Lines are a little thicker on larger frames so
    that they stay visible once the debug picture is shrunk. Corners behind the camera
    (non-positive homogeneous scale) leave the copy undrawn.
    """
    width, height = reference_size
    corners = np.array([[0, 0, 1], [width, 0, 1], [width, height, 1], [0, height, 1]],
                       dtype=np.float64)
    projected = corners @ np.asarray(homography, dtype=np.float64).T
    canvas = to_bgr(image).copy()
    if np.any(projected[:, 2] <= 1e-9) or not np.all(np.isfinite(projected)):
        return canvas
    points = projected[:, :2] / projected[:, 2:]
    limit = 8 * max(canvas.shape[:2])  # far-off corners would overflow OpenCV's int drawing
    points = np.clip(points, -limit, limit)
    thickness = max(2, int(round(max(canvas.shape[:2]) / 320)))
    cv2.polylines(canvas, [np.round(points).astype(np.int32).reshape(-1, 1, 2)], True, color,
                  thickness, cv2.LINE_AA)
    return canvas
