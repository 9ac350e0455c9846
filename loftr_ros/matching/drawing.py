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


#: BGR colour of the matches the estimated geometry rejects: outside the red-to-green score ramp
OUTLIER_COLOR = (255, 144, 0)
#: match lines drawn by default; every match still gets its dots
DEFAULT_MAX_LINES = 150
#: opacity of the match lines over the frames
LINE_OPACITY = 0.7
#: the legend is drawn only on pictures at least this large (width, height), where it fits
LEGEND_MIN_SIZE = (320, 160)


def spread_selection(points: np.ndarray, scores: np.ndarray, count: int,
                     image_size: Tuple[int, int]) -> np.ndarray:
    """Indices of at most ``count`` matches spread over the image, best scores first in each area.

    The image (``(width, height)`` pixels) is cut into about ``count`` cells of similar shape by
    ``points`` [N,2] (x, y). Every cell that holds matches gives its best-scoring one first, then
    every cell its second best, and so on, so a dense textured corner cannot take all the lines;
    within one round the higher scores win. Returns int64 [min(N, count)].
    """
    total = len(scores)
    if count <= 0 or total == 0:
        return np.zeros(0, dtype=np.int64)
    if total <= count:
        return np.argsort(-scores, kind="stable")
    width, height = max(1, image_size[0]), max(1, image_size[1])
    columns = max(1, int(round(np.sqrt(count * width / height))))
    rows = max(1, int(np.ceil(count / columns)))
    col = np.clip((points[:, 0] * columns / width).astype(np.int64), 0, columns - 1)
    row = np.clip((points[:, 1] * rows / height).astype(np.int64), 0, rows - 1)
    cell = row * columns + col
    by_cell = np.lexsort((-scores, cell))                  # cell ascending, best score first
    sorted_cells = cell[by_cell]
    first_of_cell = np.searchsorted(sorted_cells, sorted_cells, side="left")
    rank = np.empty(total, dtype=np.int64)
    rank[by_cell] = np.arange(total) - first_of_cell       # 0 = the best of its cell
    return np.lexsort((-scores, rank))[:count]


def draw_matches(image0: np.ndarray, image1: np.ndarray, keypoints0: np.ndarray,
                 keypoints1: np.ndarray, scores: np.ndarray, text_lines: Sequence[str] = (),
                 max_lines: Optional[int] = DEFAULT_MAX_LINES, thickness: int = 1,
                 max_side: Optional[int] = None,
                 inliers: Optional[np.ndarray] = None) -> np.ndarray:
    """Reference (left) | current (right): every match as a dot on both sides, and lines joining
    at most ``max_lines`` of them chosen spread over the reference image (:func:`spread_selection`;
    None: all, 0: dots only). Colours follow the score, red (lowest) to green (highest); with
    ``inliers`` (bool/uint8 [N], the geometry's verdict) the rejected matches are drawn in
    ``OUTLIER_COLOR`` instead. Text lines top-left; a legend bottom-left where it fits.

    Images of different heights are padded at the bottom. With ``max_side``, an image whose
    longer side is larger is first shrunk to it (and its keypoints with it), which bounds the
    picture's size whatever the frames'. Returns uint8 BGR [H, W0 + W1, 3].
    """
    # shrink before to_bgr, which would copy a large gray frame into three channels
    shrunk0, scale0 = shrink(image0, max_side)
    shrunk1, scale1 = shrink(image1, max_side)
    left, right = to_bgr(shrunk0), to_bgr(shrunk1)
    keypoints0 = np.asarray(keypoints0, dtype=np.float32).reshape(-1, 2) * np.float32(scale0)
    keypoints1 = np.asarray(keypoints1, dtype=np.float32).reshape(-1, 2) * np.float32(scale1)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    height = max(left.shape[0], right.shape[0])
    canvas = np.zeros((height, left.shape[1] + right.shape[1], 3), dtype=np.uint8)
    canvas[:left.shape[0], :left.shape[1]] = left
    canvas[:right.shape[0], left.shape[1]:] = right

    colors = score_colors(scores)
    outlier = np.zeros(len(scores), dtype=bool)
    if inliers is not None:
        outlier = ~np.asarray(inliers).reshape(-1).astype(bool)
        colors[outlier] = OUTLIER_COLOR
    offset = np.array([left.shape[1], 0], dtype=np.float32)
    ends0 = np.round(keypoints0).astype(np.int64)
    ends1 = np.round(keypoints1 + offset).astype(np.int64)
    # inliers by rising score, then outliers: the best and the rejected are drawn on top
    drawing_order = np.lexsort((scores, outlier))
    count = len(scores) if max_lines is None else max(0, int(max_lines))
    chosen = spread_selection(keypoints0, scores, count, (left.shape[1], left.shape[0]))
    if len(chosen):
        on_a_line = np.zeros(len(scores), dtype=bool)
        on_a_line[chosen] = True
        lines = canvas.copy()
        for index in drawing_order[on_a_line[drawing_order]]:
            cv2.line(lines, (int(ends0[index, 0]), int(ends0[index, 1])),
                     (int(ends1[index, 0]), int(ends1[index, 1])),
                     tuple(int(c) for c in colors[index]), thickness, cv2.LINE_AA)
        # a little of the picture shows through the lines; the dots on top stay opaque
        cv2.addWeighted(lines, LINE_OPACITY, canvas, 1.0 - LINE_OPACITY, 0.0, dst=canvas)
    for index in drawing_order:
        color = tuple(int(c) for c in colors[index])
        cv2.circle(canvas, (int(ends0[index, 0]), int(ends0[index, 1])), 2, color, -1,
                   cv2.LINE_AA)
        cv2.circle(canvas, (int(ends1[index, 0]), int(ends1[index, 1])), 2, color, -1,
                   cv2.LINE_AA)
    _put_lines(canvas, text_lines, (8, 22))
    if canvas.shape[1] >= LEGEND_MIN_SIZE[0] and canvas.shape[0] >= LEGEND_MIN_SIZE[1]:
        _draw_legend(canvas, scores, len(chosen), int(outlier.sum()) if inliers is not None
                     else None)
    return canvas


def _put_lines(canvas: np.ndarray, lines: Sequence[str], origin: Tuple[int, int],
               scale: float = 0.6, step: int = 24) -> None:
    """White text with a black outline, one line under the other from ``origin`` (baseline)."""
    x, y = origin
    for line in lines:
        cv2.putText(canvas, line, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3,
                    cv2.LINE_AA)
        cv2.putText(canvas, line, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
        y += step


def _draw_legend(canvas: np.ndarray, scores: np.ndarray, lines_drawn: int,
                 outliers: Optional[int]) -> None:
    """Bottom-left: the score ramp with its end values, the outlier colour (when the geometry
    judged the matches) and how many of the matches have a line."""
    rows = 3 if outliers is not None else 2
    box_width, box_height = 250, 10 + 20 * rows
    x0, y0 = 6, canvas.shape[0] - box_height - 6
    region = canvas[y0:y0 + box_height, x0:x0 + box_width]
    region[:] = (region.astype(np.uint16) * 2 // 5).astype(np.uint8)  # darken: text stays legible
    bar_x, bar_y, bar_width = x0 + 8, y0 + 8, 110
    ramp = score_colors(np.linspace(0.0, 1.0, bar_width, dtype=np.float32))
    canvas[bar_y:bar_y + 10, bar_x:bar_x + bar_width] = ramp[None, :, :]
    low, high = (float(scores.min()), float(scores.max())) if len(scores) else (0.0, 0.0)
    texts = [((bar_x + bar_width + 6, bar_y + 10), f"score {low:.2f}-{high:.2f}")]
    y = bar_y + 20
    if outliers is not None:
        cv2.rectangle(canvas, (bar_x, y), (bar_x + 24, y + 10), OUTLIER_COLOR, -1)
        texts.append(((bar_x + 32, y + 10), f"outlier ({outliers})"))
        y += 20
    texts.append(((bar_x, y + 10), f"lines {lines_drawn} of {len(scores)} matches, all dotted"))
    for (x, baseline), text in texts:
        _put_lines(canvas, [text], (x, baseline), scale=0.42)


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
