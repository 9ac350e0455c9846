"""The node's ``~/debug_image``: reference | current side by side, matches, a text overlay.

Uses :func:`loftr_ros.visualization.draw_matches` when that module provides it, so the CLI and the
node draw matches the same way; the small drawing code here is the fallback.
"""
from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np

#: Lines drawn at most (the most confident); more only clutters the picture and costs time.
MAX_LINES = 400


def to_bgr(image: np.ndarray) -> np.ndarray:
    """uint8 gray ``[H, W]`` or BGR ``[H, W, 3]`` -> BGR ``[H, W, 3]``."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return image


def _score_colours(scores: np.ndarray) -> np.ndarray:
    """BGR colour per match: red (lowest) -> green (highest score of this frame)."""
    if len(scores) == 0:
        return np.zeros((0, 3), np.uint8)
    top = float(scores.max()) or 1.0
    level = np.clip(scores / top, 0, 1)
    colours = np.stack([np.zeros_like(level), level, 1 - level], axis=1) * 255
    return colours.astype(np.uint8)


def draw_pair(reference: np.ndarray, current: np.ndarray, keypoints_ref: np.ndarray,
              keypoints_cur: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Side-by-side BGR picture with match lines coloured by score.

    The reference is scaled to the current frame's height; coordinates are pixels of the
    original frames.
    """
    current = to_bgr(current)
    reference = to_bgr(reference)
    height = current.shape[0]
    scale = height / reference.shape[0]
    if reference.shape[0] != height:
        reference = cv2.resize(reference, (max(1, round(reference.shape[1] * scale)), height),
                               interpolation=cv2.INTER_AREA)
    canvas = np.ascontiguousarray(np.hstack([reference, current]))
    order = np.argsort(-scores)[:MAX_LINES] if len(scores) else np.zeros(0, int)
    offset = reference.shape[1]
    colours = _score_colours(scores)
    for index in order[::-1]:  # most confident drawn last (on top)
        start = (int(round(keypoints_ref[index, 0] * scale)),
                 int(round(keypoints_ref[index, 1] * scale)))
        end = (int(round(keypoints_cur[index, 0])) + offset, int(round(keypoints_cur[index, 1])))
        colour = tuple(int(c) for c in colours[index])
        cv2.line(canvas, start, end, colour, 1, cv2.LINE_AA)
        cv2.circle(canvas, start, 2, colour, -1, cv2.LINE_AA)
        cv2.circle(canvas, end, 2, colour, -1, cv2.LINE_AA)
    return canvas


def _shared_draw_matches():
    try:
        from loftr_ros.visualization import draw_matches
    except ImportError:
        return None
    return draw_matches


def put_text_lines(canvas: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """Write ``lines`` top-left on a dark box (in place; returns ``canvas``)."""
    scale = max(0.4, canvas.shape[0] / 900)
    thickness = 1 if scale < 0.8 else 2
    line_height = int(22 * scale) + 4
    width = max((cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][0]
                 for t in lines), default=0)
    box = canvas[: line_height * len(lines) + 6, : width + 12]
    box[:] = (box * 0.35).astype(np.uint8)
    for row, text in enumerate(lines):
        cv2.putText(canvas, text, (6, line_height * (row + 1)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), thickness, cv2.LINE_AA)
    return canvas


def render_debug_image(reference: np.ndarray, current: np.ndarray, keypoints_ref: np.ndarray,
                       keypoints_cur: np.ndarray, scores: np.ndarray,
                       lines: Optional[Sequence[str]] = None) -> np.ndarray:
    """The full debug picture: BGR uint8, width = scaled reference width + current width,
    height = current height."""
    draw_matches = _shared_draw_matches()
    canvas = None
    if draw_matches is not None and reference.shape[0] == current.shape[0]:
        try:
            canvas = np.ascontiguousarray(to_bgr(draw_matches(
                reference, current, keypoints_ref, keypoints_cur, scores)))
        except TypeError:  # another signature: keep the node working with the fallback
            canvas = None
        if canvas is not None and canvas.shape[0] != current.shape[0]:
            canvas = None
    if canvas is None:
        canvas = draw_pair(reference, current, keypoints_ref, keypoints_cur, scores)
    if lines:
        put_text_lines(canvas, lines)
    return canvas


__all__ = ["MAX_LINES", "draw_pair", "put_text_lines", "render_debug_image", "to_bgr"]
