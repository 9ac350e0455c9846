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


def test_spread_selection_covers_the_image_and_respects_the_count() -> None:
    from loftr_ros.matching.drawing import spread_selection

    rng = np.random.default_rng(0)
    # 300 high-score matches crowd the top-left quarter, 100 low-score ones cover the rest
    crowd = rng.uniform(0, 160, (300, 2))
    rest = rng.uniform(0, 640, (100, 2)) * np.array([1.0, 0.75])
    rest = rest[(rest[:, 0] > 160) | (rest[:, 1] > 160)]
    points = np.concatenate([crowd, rest]).astype(np.float32)
    scores = np.concatenate([np.full(len(crowd), 0.9), np.full(len(rest), 0.2)])
    scores = (scores + rng.uniform(0, 0.05, len(scores))).astype(np.float32)
    chosen = spread_selection(points, scores, 60, (640, 480))
    assert len(chosen) == 60 == len(set(chosen.tolist()))
    outside = np.mean((points[chosen, 0] > 160) | (points[chosen, 1] > 160))
    assert outside > 0.5, "the top scores alone would all lie in the crowded corner"
    assert len(spread_selection(points, scores, 0, (640, 480))) == 0
    few = spread_selection(points[:5], scores[:5], 60, (640, 480))
    assert sorted(few.tolist()) == [0, 1, 2, 3, 4]


def test_every_match_gets_dots_but_only_max_lines_get_lines() -> None:
    left = np.zeros((200, 300), np.uint8)
    right = np.zeros((200, 300), np.uint8)
    keypoints0 = np.array([[20.0, 20.0], [200.0, 150.0]], np.float32)
    keypoints1 = np.array([[40.0, 180.0], [250.0, 30.0]], np.float32)
    scores = np.array([0.5, 0.9], np.float32)
    dots_only = draw_matches(left, right, keypoints0, keypoints1, scores, max_lines=0)
    for (x0, y0), (x1, y1) in zip(keypoints0, keypoints1):
        assert coloured(dots_only, int(x0), int(y0)) and coloured(dots_only, 300 + int(x1),
                                                                  int(y1))
    middles = (keypoints0 + keypoints1 + np.array([300.0, 0.0], np.float32)) / 2
    assert not any(coloured(dots_only, int(x), int(y)) for x, y in middles)
    one_line = draw_matches(left, right, keypoints0, keypoints1, scores, max_lines=1)
    assert coloured(one_line, int(middles[1, 0]), int(middles[1, 1])), "the better match's line"
    assert not coloured(one_line, int(middles[0, 0]), int(middles[0, 1]))


def test_outliers_are_coloured_apart_and_the_legend_says_so() -> None:
    from loftr_ros.matching.drawing import OUTLIER_COLOR

    frame = np.zeros((240, 320), np.uint8)
    keypoints = np.array([[50.0, 40.0], [250.0, 60.0]], np.float32)
    scores = np.array([0.3, 0.8], np.float32)
    canvas = draw_matches(frame, frame, keypoints, keypoints, scores,
                          inliers=np.array([1, 0], np.uint8))
    assert tuple(canvas[60, 250]) == OUTLIER_COLOR
    assert tuple(canvas[40, 50]) != OUTLIER_COLOR and canvas[40, 50].any()
    legend = canvas[150:, :260]
    assert (np.abs(legend.astype(int) - OUTLIER_COLOR).sum(axis=2) == 0).sum() > 100
    without = draw_matches(frame, frame, keypoints, keypoints, scores)
    assert (np.abs(without[150:, :260].astype(int) - OUTLIER_COLOR).sum(axis=2) == 0).sum() == 0
