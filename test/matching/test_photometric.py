"""Photometric sub-pixel refinement (numpy + OpenCV only, no model)."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from loftr_ros.matching.photometric import (
    PhotometricSettings,
    TemplateBank,
    _patches,
    local_affines,
    nearest_neighbours,
    photometric_image,
    refine_photometric,
)
from loftr_ros.matching.postprocess import MatchingOptions, cell_to_pixel, match_confidence
from loftr_ros.model.presets import get_preset

SIZE = (320, 240)   # width, height


def _texture(seed: int = 0) -> np.ndarray:
    """A float image in [0, 1] with detail at several scales."""
    rng = np.random.default_rng(seed)
    image = np.zeros(SIZE[::-1], np.float32)
    for sigma in (1.0, 2.5, 6.0):
        noise = rng.standard_normal(SIZE[::-1]).astype(np.float32)
        image += cv2.GaussianBlur(noise, (0, 0), sigma) * sigma
    image -= image.min()
    return image / image.max()


def _affine(angle_deg: float = 12.0, zoom: float = 1.15, shift: tuple = (6.3, -4.7)
            ) -> np.ndarray:
    """2x3 affine map image 0 -> image 1 (rotation and zoom about the centre, then a shift)."""
    matrix = cv2.getRotationMatrix2D((SIZE[0] / 2, SIZE[1] / 2), angle_deg, zoom)
    matrix[:, 2] += shift
    return matrix


def _grid_points(step: int = 20, margin: int = 55) -> np.ndarray:
    xs, ys = np.meshgrid(np.arange(margin, SIZE[0] - margin, step),
                         np.arange(margin, SIZE[1] - margin, step))
    return np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)


def _warp(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return cv2.warpAffine(image, matrix, SIZE, flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REFLECT)


def _truth(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


@pytest.mark.parametrize("layout", ["random", "grid"])
def test_nearest_neighbours_are_the_exact_nearest(layout: str) -> None:
    """The k-d tree finds the same neighbour distances as brute force: on random points, and on
    grid points (the matcher's image-0 keypoints) where many distances tie; ``rows`` picks the
    queries, and a count of at least N gives every point."""
    rng = np.random.default_rng(3)
    if layout == "random":
        points = rng.uniform(0, 640, (300, 2))
    else:
        cells = rng.choice(80 * 60, 300, replace=False)
        points = np.stack([cells % 80, cells // 80], axis=1) * 8.0
    count = 20
    distances = ((points[:, None] - points[None]) ** 2).sum(-1)
    expected = np.sort(distances, axis=1)[:, :count]
    nearest = nearest_neighbours(points, count)
    assert nearest.shape == (300, count) and nearest.dtype == np.int64
    assert all(len(set(row)) == count for row in nearest)
    found = np.sort(np.take_along_axis(distances, nearest, axis=1), axis=1)
    np.testing.assert_allclose(found, expected)
    np.testing.assert_array_equal(nearest_neighbours(points, count, slice(100, 130)),
                                  nearest[100:130])
    assert nearest_neighbours(points, count, slice(0, 0)).shape == (0, count)
    everyone = nearest_neighbours(points[:5], 8)
    assert everyone.shape == (5, 5) and all(sorted(row) == list(range(5)) for row in everyone)


def test_local_affines_recover_the_map_despite_wrong_neighbours() -> None:
    matrix = _affine()
    points0 = _grid_points(margin=20)
    points1 = _truth(points0, matrix)
    rng = np.random.default_rng(1)
    wrong = rng.random(len(points0)) < 0.2
    points1[wrong] += rng.uniform(-40, 40, (wrong.sum(), 2))
    linear, usable = local_affines(points0, points1, neighbours=20, gate=4.0)
    error = np.abs(linear - matrix[:, :2]).max(axis=(1, 2))
    right = ~wrong
    print(f"{usable[right].mean():.0%} usable, {np.mean(error[right] < 0.02):.0%} within 0.02")
    assert usable[right].mean() > 0.95
    assert np.mean(error[right] < 0.02) > 0.95


def test_refinement_brings_noisy_matches_to_sub_pixel() -> None:
    """Matches 0-3 px off (the fine stage's typical error) end up within a fraction of a pixel,
    under rotation, zoom and a brightness/contrast change."""
    matrix = _affine()
    image0 = _texture()
    image1 = np.clip(0.8 * _warp(image0, matrix) + 0.1, 0, 1)
    points0 = _grid_points()
    truth = _truth(points0, matrix)
    rng = np.random.default_rng(2)
    noisy = truth + rng.uniform(-2.5, 2.5, truth.shape)
    refined, moved = refine_photometric(image0, image1, points0, noisy)
    before = np.linalg.norm(noisy - truth, axis=1)
    after = np.linalg.norm(refined - truth, axis=1)
    print(f"median error {np.median(before):.2f} -> {np.median(after):.3f} px, "
          f"{moved.mean():.0%} moved")
    assert refined.dtype == np.float32 and refined.shape == noisy.shape
    assert moved.mean() > 0.9
    assert np.median(after) < 0.15 and np.median(before) > 1.0
    np.testing.assert_array_equal(refined[~moved], noisy[~moved].astype(np.float32))


def test_sharing_the_matches_among_threads_does_not_change_the_result() -> None:
    """1,092 matches: one thread, or 2 and 3 (each takes a block of at least 300 rows, and the
    local affines still see every match). Only OpenCV's interpolation rounding may differ."""
    matrix = _affine(angle_deg=7.0)
    image0 = _texture(5)
    image1 = _warp(image0, matrix)
    points0 = _grid_points(step=5)
    assert len(points0) >= 3 * 300
    noisy = _truth(points0, matrix) + np.random.default_rng(4).uniform(-2, 2, points0.shape)
    alone, moved_alone = refine_photometric(image0, image1, points0, noisy,
                                            PhotometricSettings(workers=1))
    assert moved_alone.mean() > 0.9
    for workers in (2, 3):
        shared, moved = refine_photometric(image0, image1, points0, noisy,
                                           PhotometricSettings(workers=workers))
        np.testing.assert_array_equal(moved, moved_alone)
        np.testing.assert_allclose(shared, alone, atol=0.01)


def test_template_bank_finds_grid_rows_by_arithmetic() -> None:
    """On the matcher's coarse grid the bank's rows come from grid arithmetic: the same rows as
    a lookup of each point, None as soon as one point is off the grid or outside it; a bank on
    points that are no grid finds its rows by lookup."""
    grid = cell_to_pixel(np.arange(20 * 15), 20, 16).astype(np.float64)
    image = _texture(7)
    bank = TemplateBank.of(image, cv2.pyrDown(image), grid, 7)
    rng = np.random.default_rng(8)
    rows = rng.choice(len(grid), 120, replace=False)
    np.testing.assert_array_equal(bank.rows(grid[rows]), rows)
    assert bank.rows(grid[:0]).shape == (0,)
    for stray in ([16.0, 24.0], [16.5, 32.0], [320.0, 0.0], [0.0, 240.0], [-16.0, 0.0]):
        assert bank.rows(np.vstack([grid[rows[:5]], stray])) is None
    order = rng.permutation(len(grid))
    shuffled = TemplateBank.of(image, cv2.pyrDown(image), grid[order], 7)
    np.testing.assert_array_equal(order[shuffled.rows(grid[rows])], rows)
    assert shuffled.rows(np.array([[16.5, 32.0]])) is None


def test_patches_at_whole_pixels_are_the_bilinear_samples() -> None:
    """Patches centred on whole pixels are copied from the image: bitwise the bilinear samples
    (which the other points get), also at the image border, where sampling replicates it."""
    image = _texture(9)
    rng = np.random.default_rng(10)
    steps = np.arange(-8, 9, dtype=np.float32)
    offset_x, offset_y = (grid.ravel() for grid in np.meshgrid(steps, steps))
    for points in (rng.integers(8, 232, (50, 2)).astype(np.float64),
                   np.array([[0.0, 0.0], [319.0, 239.0], [100.0, 7.0]]),
                   rng.uniform(8, 232, (50, 2))):
        centres = points.astype(np.float32)
        sampled = cv2.remap(image, centres[:, :1] + offset_x, centres[:, 1:] + offset_y,
                            cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        np.testing.assert_array_equal(_patches(image, points, 8).reshape(len(points), -1),
                                      sampled)


def test_a_reference_with_templates_gives_the_result_without_them() -> None:
    """A reference made with templates on the grid (what Matcher.encode makes) refines matches
    on the grid, and off it, exactly as the bare image does."""
    matrix = _affine(angle_deg=6.0, zoom=1.05)
    image0 = _texture(11)
    image1 = _warp(image0, matrix)
    grid = cell_to_pixel(np.arange(20 * 15), 20, 16).astype(np.float64)
    reference = photometric_image(image0, template_points=grid)
    rng = np.random.default_rng(12)
    points0 = grid[rng.choice(len(grid), 150, replace=False)]
    for keypoints0 in (points0, points0 + 0.25):
        noisy = _truth(keypoints0, matrix) + rng.uniform(-2, 2, keypoints0.shape)
        bare, moved_bare = refine_photometric(image0, image1, keypoints0, noisy)
        banked, moved = refine_photometric(reference, image1, keypoints0, noisy)
        assert moved.mean() > 0.5
        np.testing.assert_array_equal(moved, moved_bare)
        np.testing.assert_array_equal(banked, bare)


def test_uint8_images_give_the_same_result_as_float() -> None:
    matrix = _affine(angle_deg=-5.0, zoom=0.9)
    image0 = _texture(3)
    image1 = _warp(image0, matrix)
    points0 = _grid_points()
    noisy = _truth(points0, matrix) + 1.2
    as_float, _ = refine_photometric(image0, image1, points0, noisy)
    as_uint8, _ = refine_photometric((image0 * 255).round().astype(np.uint8),
                                     (image1 * 255).round().astype(np.uint8), points0, noisy)
    assert np.median(np.linalg.norm(as_float - as_uint8, axis=1)) < 0.05


def test_flat_images_leave_every_match_where_it_was() -> None:
    image = np.full(SIZE[::-1], 0.5, np.float32)
    points0 = _grid_points()
    points1 = points0 + 1.5
    refined, moved = refine_photometric(image, image, points0, points1)
    assert not moved.any()
    np.testing.assert_array_equal(refined, points1.astype(np.float32))


def test_matches_at_the_border_few_matches_and_no_matches() -> None:
    image0 = _texture()
    image1 = _warp(image0, _affine())
    border = np.array([[2.0, 2.0], [SIZE[0] - 3.0, 100.0], [150.0, SIZE[1] - 1.0]])
    many = np.concatenate([border, _grid_points()])
    refined, moved = refine_photometric(image0, image1, many, _truth(many, _affine()) + 1.0)
    assert not moved[:3].any() and moved[3:].mean() > 0.9
    for count in (0, 2):
        points = _grid_points()[:count]
        refined, moved = refine_photometric(image0, image1, points, points)
        assert refined.shape == (count, 2) and not moved.any()


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="workers"):
        PhotometricSettings(workers=0)
    with pytest.raises(ValueError):
        PhotometricSettings(patch_radius=0)
    with pytest.raises(ValueError):
        PhotometricSettings(neighbours=3)


def test_bad_inputs_give_clear_errors_or_leave_matches_alone() -> None:
    """Colour or mismatched inputs raise ValueError; non-finite keypoints are left as they are
    and do not spoil their neighbours; images smaller than the patch move nothing."""
    matrix = _affine()
    image0 = _texture()
    image1 = _warp(image0, matrix)
    points0 = _grid_points()
    truth = _truth(points0, matrix)
    with pytest.raises(ValueError, match="single-channel"):
        refine_photometric(np.dstack([image0] * 3), image1, points0, truth)
    with pytest.raises(ValueError, match="keypoints"):
        refine_photometric(image0, image1, points0, truth[:-1])
    noisy = truth + 1.5
    noisy[0] = np.nan
    noisy[1] = np.inf
    refined, moved = refine_photometric(image0, image1, points0, noisy)
    assert not moved[:2].any() and np.isnan(refined[0]).all() and np.isinf(refined[1, 0])
    assert moved[2:].mean() > 0.9
    assert np.median(np.linalg.norm(refined[2:][moved[2:]] - truth[2:][moved[2:]], axis=1)) < 0.15
    tiny = image0[:12, :12]
    points = np.array([[3.0, 3.0], [5.0, 5.0], [8.0, 4.0], [6.0, 9.0], [9.0, 9.0]])
    refined, moved = refine_photometric(tiny, tiny, points, points + 0.5)
    assert not moved.any()


def test_mixed_uint8_and_uint16_inputs_are_scaled_each() -> None:
    matrix = _affine(angle_deg=4.0, zoom=1.05)
    image0 = _texture(5)
    image1 = _warp(image0, matrix)
    points0 = _grid_points()
    truth = _truth(points0, matrix)
    refined, moved = refine_photometric((image0 * 255).round().astype(np.uint8),
                                        (image1 * 65535).round().astype(np.uint16),
                                        points0, truth + 1.0)
    assert moved.mean() > 0.9
    assert np.median(np.linalg.norm(refined - truth, axis=1)) < 0.15


def _one_cell_right_conf(stride: int = 16) -> np.ndarray:
    """Confidence matrix of a SIZE input at ``stride``: every cell matches the cell to its right
    (0.9), the last column nothing."""
    grid_w, grid_h = SIZE[0] // stride, SIZE[1] // stride
    conf = np.zeros((grid_w * grid_h, grid_w * grid_h), np.float32)
    for row in range(grid_h):
        for col in range(grid_w - 1):
            conf[row * grid_w + col, row * grid_w + col + 1] = 0.9
    return conf


def test_photometric_option_needs_the_images_and_refines_with_them() -> None:
    """``match_confidence`` with refinement photometric: an error without the input images; with
    them, matches of an image and its shifted copy land on the true shift."""
    config = get_preset("seed")    # stride 16, no fine stage -> expectation, then photometric
    width, height = SIZE
    conf = _one_cell_right_conf()
    options = MatchingOptions(threshold=0.5, border_margin=1, refinement="photometric")
    with pytest.raises(ValueError, match="photometric"):
        match_confidence(conf, config, options, input_size=(width, height))
    image0 = _texture()
    true_shift = np.array([16.0 + 1.4, 0.6])    # one cell plus a sub-pixel remainder
    image1 = _warp(image0, np.array([[1, 0, true_shift[0]], [0, 1, true_shift[1]]]))
    result = match_confidence(conf, config, options, input_size=(width, height),
                              images=(image0, image1))
    assert result.refinement == "expectation+photometric" and len(result.scores) > 50
    errors = np.linalg.norm(result.keypoints1 - result.keypoints0 - true_shift, axis=1)
    assert np.median(errors) < 0.1
    auto = dataclasses.replace(options, refinement="auto")
    with_images = match_confidence(conf, config, auto, input_size=(width, height),
                                   images=(image0, image1))
    np.testing.assert_array_equal(with_images.keypoints1, result.keypoints1)
    without = match_confidence(conf, config, auto, input_size=(width, height))
    assert without.refinement == "expectation"


def test_verify_alignment_drops_the_matches_whose_patches_do_not_align() -> None:
    """An image and its shifted copy, except that the right half of the copy is blank: the
    matches there cannot be aligned. ``verify_alignment`` drops them (and keeps the others away
    from the border, where patches fit), but never leaves fewer than ``keep_sharpest`` while more
    exist."""
    config = get_preset("seed")    # no fine stage: expectation, then photometric
    width, height = SIZE
    conf = _one_cell_right_conf()
    image0 = _texture()
    true_shift = np.array([16.0 + 1.4, 0.6])
    image1 = _warp(image0, np.array([[1, 0, true_shift[0]], [0, 1, true_shift[1]]]))
    image1[:, width // 2:] = 0.5
    options = MatchingOptions(threshold=0.5, border_margin=1, refinement="photometric",
                              keep_sharpest=0)
    size = (width, height)
    every = match_confidence(conf, config, options, input_size=size, images=(image0, image1))
    verified = match_confidence(conf, config, dataclasses.replace(options, verify_alignment=True),
                                input_size=size, images=(image0, image1))
    # patches wholly in the copied half, off the border (the step needs room for its patches)
    copied = ((every.keypoints1[:, 0] < width // 2 - 8) & (every.keypoints0 >= 32).all(1)
              & (every.keypoints0[:, 1] <= height - 32))
    blank = every.keypoints1[:, 0] > width // 2 + 8
    kept = {tuple(point) for point in verified.keypoints0.tolist()}
    kept_copied = [tuple(point) in kept for point in every.keypoints0[copied].tolist()]
    kept_blank = [tuple(point) in kept for point in every.keypoints0[blank].tolist()]
    assert len(kept_copied) > 40 and len(kept_blank) > 40
    assert all(kept_copied) and not any(kept_blank)
    errors = np.linalg.norm(verified.keypoints1 - verified.keypoints0 - true_shift, axis=1)
    assert np.percentile(errors, 90) < 0.5
    # the floor: at least keep_sharpest matches (the most confident first) while more exist
    floor = len(every.scores) - 5
    floored = match_confidence(
        conf, config, dataclasses.replace(options, verify_alignment=True, keep_sharpest=floor),
        input_size=size, images=(image0, image1))
    assert len(verified.scores) < floor <= len(floored.scores) < len(every.scores)
    # without the photometric step there is nothing to verify: the option changes nothing
    fine_only = dataclasses.replace(options, refinement="expectation", verify_alignment=True)
    assert len(match_confidence(conf, config, fine_only, input_size=size).scores) == len(
        every.scores)
