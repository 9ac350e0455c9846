"""The side-by-side match picture: layout, where the matches are drawn, and its size bound."""
from __future__ import annotations

import numpy as np

from loftr_ros.matching.drawing import draw_matches, shrink


def coloured(canvas: np.ndarray, x: int, y: int) -> bool:
    """Whether anything was drawn within 1 px of (x, y) on a black canvas."""
    return bool(canvas[max(0, y - 1):y + 2, max(0, x - 1):x + 2].any())


def test_layout_and_match_positions() -> None:
    left = np.zeros((48, 64), np.uint8)
    right = np.zeros((40, 80), np.uint8)
    keypoints0 = np.array([[10.0, 20.0]], np.float32)
    keypoints1 = np.array([[30.0, 5.0]], np.float32)
    canvas = draw_matches(left, right, keypoints0, keypoints1, np.ones(1, np.float32))
    assert canvas.shape == (48, 64 + 80, 3) and canvas.dtype == np.uint8
    assert coloured(canvas, 10, 20) and coloured(canvas, 64 + 30, 5)
    assert not coloured(canvas, 60, 45)  # away from the line


def test_max_side_shrinks_large_frames_and_their_keypoints() -> None:
    large = np.zeros((3000, 4000), np.uint8)
    small = np.zeros((480, 640), np.uint8)
    keypoints0 = np.array([[2000.0, 1500.0]], np.float32)
    keypoints1 = np.array([[320.0, 100.0]], np.float32)
    canvas = draw_matches(large, small, keypoints0, keypoints1, np.ones(1, np.float32),
                          max_side=1280)
    assert canvas.shape == (960, 1280 + 640, 3)
    assert coloured(canvas, 640, 480)            # 2000, 1500 scaled by 0.32
    assert coloured(canvas, 1280 + 320, 100)     # the small frame is untouched
    unbounded = draw_matches(large, small, keypoints0, keypoints1, np.ones(1, np.float32))
    assert unbounded.shape == (3000, 4000 + 640, 3)


def test_shrink_keeps_at_least_one_pixel_per_side() -> None:
    strip = np.zeros((32, 200000), np.uint8)
    shrunk, scale = shrink(strip, 1280)
    assert shrunk.shape == (1, 1280) and scale == 1280 / 200000
    same, unit = shrink(strip[:, :100], 1280)
    assert same.shape == (32, 100) and unit == 1.0


def test_reference_outline_lands_where_the_homography_puts_it():
    from loftr_ros.matching.drawing import draw_reference_outline

    frame = np.zeros((240, 320), np.uint8)
    shift = np.array([[0.5, 0, 40], [0, 0.5, 30], [0, 0, 1]], np.float64)
    drawn = draw_reference_outline(frame, (320, 240), shift, color=(0, 0, 255))
    assert drawn.shape == (240, 320, 3) and frame.max() == 0, "the input is left alone"
    red = (drawn[:, :, 2] > 128) & (drawn[:, :, 0] < 64)
    ys, xs = np.nonzero(red)
    assert abs(xs.min() - 40) <= 2 and abs(xs.max() - 200) <= 2
    assert abs(ys.min() - 30) <= 2 and abs(ys.max() - 150) <= 2
    assert not red[90, 120], "an outline, not a filled box"
    behind = np.array([[1, 0, 0], [0, 1, 0], [0, 0, -1]], np.float64)
    assert draw_reference_outline(frame, (320, 240), behind).max() == 0
