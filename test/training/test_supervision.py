"""Ground truth from correspondence fields: equal to the homography truth on planar pairs,
occlusion-aware on 3D pairs; the mixed training pairs and their validation errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from loftr_ros.synthetic.homography import homography_pair, warp_points
from loftr_ros.synthetic.scenes3d import render_pair, sample_textures
from loftr_ros.training.supervision import coarse_truth, field_truth, grid_centres
from loftr_ros.training.trainer import TrainingPairs, truth_errors


@pytest.mark.parametrize("size,stride", [((320, 240), 16), ((160, 128), 16), ((640, 480), 8)])
def test_field_truth_equals_homography_truth(photo_gray: np.ndarray, size, stride) -> None:
    """Planar pairs keep their ground truth when it comes from the field (a homography that
    folds a cell centre past its horizon is the one place they would differ: the field marks
    such points as missing)."""
    width, height = size
    for seed in range(12):
        pair = homography_pair(np.random.default_rng(seed), photo_gray, width, height)
        expected = coarse_truth(pair.homography, width, height, stride)
        truth = field_truth(pair, stride)
        assert np.array_equal(truth.match_j, expected.match_j)
        assert np.array_equal(truth.target_xy, expected.target_xy, equal_nan=True)
        assert np.array_equal(truth.unseen0, expected.unseen0)
        assert np.array_equal(truth.unseen1, expected.unseen1)
        assert truth.num_positives > 0


def test_unseen_cells_of_a_homography_pair_land_outside_the_other_image(photo_gray) -> None:
    """A cell is unseen exactly where the homography takes its centre out of the other image and
    it has no match (just outside, it may still round to a border cell and match it)."""
    width, height, stride = 320, 240, 16
    centres = grid_centres(width // stride, height // stride, stride)
    seen_any = unseen_any = 0
    for seed in range(12):
        pair = homography_pair(np.random.default_rng(seed), photo_gray, width, height)
        truth = coarse_truth(pair.homography, width, height, stride)
        forward = _lands_inside(warp_points(pair.homography, centres), width, height)
        backward = _lands_inside(warp_points(np.linalg.inv(pair.homography), centres), width,
                                 height)
        matched1 = np.isin(np.arange(len(centres)), truth.match_j)
        assert np.array_equal(truth.unseen0, ~forward & (truth.match_j == -1))
        assert np.array_equal(truth.unseen1, ~backward & ~matched1)
        seen_any += int(forward.sum())
        unseen_any += int(truth.unseen0.sum())
    assert seen_any > 0 and unseen_any > 0


def test_field_truth_on_3d_pairs_is_visible_and_mutual() -> None:
    textures = sample_textures()
    rng = np.random.default_rng(5)
    stride, width, height = 16, 320, 240
    grid_w = width // stride
    centres = grid_centres(grid_w, height // stride, stride).astype(int)
    positives = occluded_seen = 0
    for _ in range(6):
        pair = render_pair(rng, textures, width, height)
        truth = field_truth(pair, stride)
        matched = np.flatnonzero(truth.match_j >= 0)
        positives += len(matched)
        j = truth.match_j[matched]
        assert len(set(j.tolist())) == len(j)                       # one-to-one
        cols, rows = centres[matched, 0], centres[matched, 1]
        target = truth.target_xy[matched]
        # nothing hidden (a point just outside image 1 still rounds to a border cell)
        assert np.all(pair.valid0[rows, cols] | ~_lands_inside(target, width, height))
        assert np.array_equal(target, pair.field0to1[rows, cols])  # sub-pixel target
        assert np.all(np.rint(target / stride) == np.stack([j % grid_w, j // grid_w], 1))
        hidden = ~pair.valid0[centres[:, 1], centres[:, 0]]
        occluded = hidden & _lands_inside(pair.field0to1[centres[:, 1], centres[:, 0]], width,
                                          height)
        assert np.all(truth.match_j[occluded] == -1)
        # unseen: no match, and hidden, outside the other image or no surface
        matched1 = np.isin(np.arange(len(centres)), truth.match_j)
        assert np.array_equal(truth.unseen0, hidden & (truth.match_j == -1))
        assert np.array_equal(truth.unseen1,
                              ~pair.valid1[centres[:, 1], centres[:, 0]] & ~matched1)
        assert np.all(truth.unseen0[occluded])
        occluded_seen += int(occluded.sum())
    assert positives > 6 * 20
    assert occluded_seen > 0          # some cells are hidden inside the other view, not only cut


def _lands_inside(points: np.ndarray, width: int, height: int) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return ((points[:, 0] >= -0.5) & (points[:, 0] < width - 0.5) & (points[:, 1] >= -0.5)
                & (points[:, 1] < height - 0.5))


def test_training_pairs_mix_and_determinism(photo_gray: np.ndarray) -> None:
    images = [photo_gray, photo_gray[:, ::-1].copy()]
    planar = TrainingPairs(images, 160, 128, 16, length=6, seed=3)
    assert not any(bool(planar[i]["is_3d"]) for i in range(6))
    mixed = TrainingPairs(images, 160, 128, 16, length=40, seed=3, scene_mix=0.5,
                          with_fields=True)
    kinds = [bool(mixed[i]["is_3d"]) for i in range(40)]
    assert 8 < sum(kinds) < 32
    item = mixed[kinds.index(True)]
    again = mixed[kinds.index(True)]
    for key, value in item.items():
        assert torch.equal(torch.nan_to_num(value.float()), torch.nan_to_num(again[key].float()))
    assert item["field0to1"].shape == (128, 160, 2) and item["valid0"].dtype == torch.bool
    assert int((item["match_j"] >= 0).sum()) > 0
    with pytest.raises(ValueError, match="scene_mix"):
        TrainingPairs(images, 160, 128, 16, length=1, seed=0, scene_mix=1.5)


def test_truth_errors_count_hidden_points_as_wrong() -> None:
    field = np.zeros((4, 5, 2), np.float32)
    field[..., 0], field[..., 1] = 2.0, 1.0
    valid = np.ones((4, 5), bool)
    valid[0, 0] = False                                   # hidden in image 1
    errors = truth_errors(field, valid, np.array([[0.0, 0.0], [3.2, 2.9]]),
                          np.array([[2.0, 1.0], [2.0, 4.0]]))
    assert errors[0] == np.inf and errors[1] == pytest.approx(3.0)
