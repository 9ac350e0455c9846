"""Post-processing on hand-made confidence matrices (numpy only)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from loftr_ros.matching.postprocess import (
    MatchingOptions,
    border_mask,
    cell_to_pixel,
    match_confidence,
    mutual_nearest,
    refine_by_expectation,
)
from loftr_ros.model.presets import get_preset

# A 6x5-cell grid at stride 16 -> 96x80 input, 30 cells.
CONFIG = dataclasses.replace(get_preset("seed"), input_width=96, input_height=80)
GRID_W, GRID_H, CELLS = 6, 5, 30


def _conf(entries: dict, base: float = 0.0) -> np.ndarray:
    conf = np.full((CELLS, CELLS), base, dtype=np.float32)
    for (i, j), value in entries.items():
        conf[i, j] = value
    return conf


def _cell(col: int, row: int) -> int:
    return row * GRID_W + col


def test_mutual_nearest_keeps_only_mutual_maxima() -> None:
    a, b, c = _cell(2, 2), _cell(3, 2), _cell(2, 3)
    conf = _conf({(a, b): 0.9, (c, b): 0.95, (c, a): 0.3})
    valid = np.ones(CELLS, dtype=bool)
    pairs = mutual_nearest(conf, 0.1, valid, valid)
    # row a's best is b, but column b's best is c -> only (c, b) is mutual
    assert pairs.tolist() == [[c, b]]


def _mutual_by_argmax(conf: np.ndarray, threshold: float) -> list:
    """The definition, spelled out: row i's first maximum is column j and column j's first
    maximum is row i."""
    best_j, best_i = conf.argmax(axis=1), conf.argmax(axis=0)
    return [[i, int(j)] for i, j in enumerate(best_j)
            if best_i[j] == i and conf[i, j] > threshold]


def test_mutual_nearest_agrees_with_the_argmax_definition() -> None:
    """Random matrices without ties, with matches in about a third of the rows."""
    rng = np.random.default_rng(0)
    valid = np.ones(40, dtype=bool)
    for _ in range(20):
        conf = rng.random((40, 40)).astype(np.float32)
        assert mutual_nearest(conf, 0.1, valid, valid).tolist() == _mutual_by_argmax(conf, 0.1)


def test_mutual_nearest_ties() -> None:
    """A row's first maximum counts; rows tied for a column's maximum: the lowest keeps it."""
    a, b, c, d = _cell(1, 1), _cell(2, 1), _cell(3, 1), _cell(4, 1)
    conf = _conf({(a, b): 0.8, (a, c): 0.8,   # row a: first maximum at column b
                  (b, b): 0.8,                # row b ties row a for column b
                  (c, d): 0.6, (d, d): 0.6})  # rows c and d tie for column d
    valid = np.ones(CELLS, dtype=bool)
    assert mutual_nearest(conf, 0.1, valid, valid).tolist() == [[a, b], [c, d]]


def test_threshold_is_exclusive() -> None:
    a, b = _cell(2, 2), _cell(3, 2)
    conf = _conf({(a, b): 0.5})
    options = MatchingOptions(threshold=0.5, border_margin=0, refinement="none")
    assert len(match_confidence(conf, CONFIG, options).scores) == 0
    options = MatchingOptions(threshold=0.49, border_margin=0, refinement="none")
    result = match_confidence(conf, CONFIG, options)
    assert result.indices0.tolist() == [a] and result.indices1.tolist() == [b]
    assert result.scores.dtype == np.float32 and result.scores[0] == pytest.approx(0.5)


def test_border_margin_applies_to_both_images() -> None:
    mask = border_mask(GRID_W, GRID_H, 1)
    assert mask.reshape(GRID_H, GRID_W)[1:-1, 1:-1].all()
    assert mask.sum() == (GRID_W - 2) * (GRID_H - 2)
    inner, edge = _cell(2, 2), _cell(0, 2)
    conf = _conf({(inner, edge): 0.9, (edge, inner): 0.8})
    options = MatchingOptions(threshold=0.1, border_margin=1, refinement="none")
    assert len(match_confidence(conf, CONFIG, options).scores) == 0
    options = MatchingOptions(threshold=0.1, border_margin=0, refinement="none")
    assert len(match_confidence(conf, CONFIG, options).scores) == 2


def test_top_k_keeps_the_most_confident() -> None:
    entries = {(_cell(c, 2), _cell(c, 2)): 0.1 * (c + 1) for c in range(1, 5)}
    conf = _conf(entries)
    options = MatchingOptions(threshold=0.05, border_margin=0, max_matches=2, refinement="none")
    result = match_confidence(conf, CONFIG, options)
    np.testing.assert_allclose(np.sort(result.scores), [0.4, 0.5], rtol=1e-6)


def test_empty_result_has_right_shapes() -> None:
    options = MatchingOptions(threshold=0.2, border_margin=0)
    result = match_confidence(_conf({}), CONFIG, options)
    assert result.keypoints0.shape == (0, 2) and result.keypoints1.shape == (0, 2)
    assert result.scores.shape == (0,)


def test_cell_to_pixel_uses_index_times_stride() -> None:
    pixels = cell_to_pixel(np.array([0, 1, GRID_W, _cell(5, 4)]), GRID_W, 16)
    assert pixels.tolist() == [[0, 0], [16, 0], [0, 16], [80, 64]]


def test_expectation_refinement_moves_towards_heavier_neighbour() -> None:
    a, b = _cell(2, 2), _cell(3, 2)
    conf = _conf({(a, b): 0.6, (a, _cell(4, 2)): 0.2})
    refined = refine_by_expectation(conf, np.array([a]), np.array([b]), GRID_W, GRID_H, 16)
    # weights 0.6 at x=48 and 0.2 at x=64 -> x = 52
    assert refined.tolist() == [[52.0, 32.0]]


def test_wrong_matrix_shape_is_rejected() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        match_confidence(np.zeros((10, 10), np.float32), CONFIG, MatchingOptions())


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="min_peak_mass"):
        MatchingOptions(min_peak_mass=1.5)
    with pytest.raises(ValueError, match="keep_sharpest"):
        MatchingOptions(keep_sharpest=-1)
    with pytest.raises(ValueError):
        MatchingOptions(threshold=1.5)
    with pytest.raises(ValueError):
        MatchingOptions(refinement="magic")
    with pytest.raises(ValueError):
        MatchingOptions(max_matches=-1)


def test_fine_refinement_requires_fine_features() -> None:
    options = MatchingOptions(threshold=0.1, border_margin=0, refinement="fine")
    with pytest.raises(ValueError, match="fine"):
        match_confidence(_conf({(0, 0): 0.9}), CONFIG, options)


def test_fine_refinement_finds_the_peak_and_drops_ambiguous_matches() -> None:
    """Hand-made fine maps: match A has one distinctive image-1 feature 1 fine cell right of the
    coarse position (sharp), match B sits on a flat area (every window feature alike)."""
    fine = dataclasses.replace(get_preset("lite").fine, min_peak_mass=0.5)
    config = dataclasses.replace(get_preset("lite"), input_width=96, input_height=80, fine=fine)
    channels, height, width = 32, 20, 24
    fine0 = np.zeros((channels, height, width), np.float32)
    fine1 = np.zeros((channels, height, width), np.float32)
    a, b = _cell(2, 2), _cell(3, 3)
    fine0[0, 8, 8] = np.sqrt(channels)            # cell (2,2) centre -> fine (8,8)
    fine1[0, 8, 9] = np.sqrt(channels)            # distinctive match one fine cell to the right
    fine0[1, 12, 12] = np.sqrt(channels)          # cell (3,3): its feature is everywhere in 1
    fine1[1] = np.sqrt(channels) * 0.5
    conf = _conf({(a, a): 0.9, (b, b): 0.8})
    options = MatchingOptions(threshold=0.1, border_margin=0, refinement="fine", keep_sharpest=0)
    unfiltered = dataclasses.replace(config, fine=dataclasses.replace(fine, min_peak_mass=0.0))
    both = match_confidence(conf, unfiltered, options, fine0, fine1)
    assert both.indices0.tolist() == [a, b]
    np.testing.assert_allclose(both.keypoints1[0], [36.0, 32.0], atol=0.1)  # 4 px right of (32,32)
    kept = match_confidence(conf, config, options, fine0, fine1)
    assert kept.indices0.tolist() == [a] and kept.scores.tolist() == [pytest.approx(0.9)]
    # the option overrides the model's limit: 0 keeps both, 0.5 again only the sharp one
    overridden = dataclasses.replace(options, min_peak_mass=0.0)
    assert match_confidence(conf, config, overridden, fine0, fine1).indices0.tolist() == [a, b]
    stricter = dataclasses.replace(options, min_peak_mass=0.5)
    assert match_confidence(conf, unfiltered, stricter, fine0, fine1).indices0.tolist() == [a]
    # keep_sharpest: the filter never leaves fewer matches than that while more exist, and the
    # ones it keeps are the sharpest (A, then B); the default keeps both of these two
    for keep, expected in [(1, [a]), (2, [a, b]), (3, [a, b])]:
        floor = dataclasses.replace(options, keep_sharpest=keep)
        assert match_confidence(conf, config, floor, fine0, fine1).indices0.tolist() == expected
    # keep_sharpest None (the default) = the model's calibrated fine.keep_sharpest
    assert MatchingOptions.keep_sharpest is None
    default = dataclasses.replace(options, keep_sharpest=None)
    assert match_confidence(conf, config, default, fine0, fine1).indices0.tolist() == [a, b]
    floor_one = dataclasses.replace(config, fine=dataclasses.replace(fine, keep_sharpest=1))
    assert match_confidence(conf, floor_one, default, fine0, fine1).indices0.tolist() == [a]
    no_floor = dataclasses.replace(config, fine=dataclasses.replace(fine, keep_sharpest=0))
    assert match_confidence(conf, no_floor, default, fine0, fine1).indices0.tolist() == [a]
    overridden = dataclasses.replace(options, keep_sharpest=2)
    assert match_confidence(conf, no_floor, overridden, fine0, fine1).indices0.tolist() == [a, b]


def test_fine_refinement_with_no_matches() -> None:
    config = dataclasses.replace(get_preset("lite"), input_width=96, input_height=80)
    fine = np.zeros((32, 20, 24), np.float32)
    options = MatchingOptions(threshold=0.5, border_margin=0, refinement="fine")
    result = match_confidence(_conf({}), config, options, fine, fine)
    assert result.keypoints1.shape == (0, 2) and result.scores.shape == (0,)
