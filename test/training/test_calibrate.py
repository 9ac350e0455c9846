"""Calibration of the match filters (threshold, fine.min_peak_mass, fine.keep_sharpest): the
candidate grid, the selection rule, shared post-processing per pair, and the weights it writes."""
from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch
from conftest import PHOTO_PATH

from loftr_ros.evaluation.datasets import SyntheticPairs
from loftr_ros.matching.photometric import photometric_image
from loftr_ros.matching.postprocess import match_confidence
from loftr_ros.model.checkpoint import load_model, save_model
from loftr_ros.model.network import build_model
from loftr_ros.model.presets import get_preset
from loftr_ros.training.calibrate import (
    CANDIDATES,
    FLOORS,
    Candidate,
    calibrate,
    calibrated_config,
    candidate_grid,
    candidate_scores,
    main,
    select,
)


@pytest.fixture
def photo_folder(tmp_path):
    """A training folder with one real photo."""
    folder = tmp_path / "train"
    folder.mkdir()
    shutil.copy(PHOTO_PATH, folder / "coffee.png")
    return folder


@pytest.fixture
def small_model():
    """An untrained lite model at 160x128 with a low threshold (an untrained network's
    confidences are low), so that candidates select different matches."""
    torch.manual_seed(0)
    config = dataclasses.replace(get_preset("lite").with_input_size(160, 128),
                                 match_threshold=0.0002)
    return build_model(config).eval()


def test_candidate_grid_order_and_values() -> None:
    config = get_preset("lite")   # match_threshold 0.05
    grid = candidate_grid(config)
    thresholds = sorted({c.threshold for c in grid})
    assert thresholds == [0.05, 0.1, 0.2, 0.3]
    assert [c.threshold for c in grid] == sorted(c.threshold for c in grid)
    # min_peak_mass 0 ignores the floor: listed once, with the first floor
    per_threshold = 1 + (len(CANDIDATES) - 1) * len(FLOORS)
    assert len(grid) == len(thresholds) * per_threshold == len(set(grid))
    assert grid[:3] == [Candidate(0.05, 0.0, 64), Candidate(0.05, 0.2, 64),
                        Candidate(0.05, 0.2, 32)]
    # a model threshold equal to a listed one appears once
    same = dataclasses.replace(config, match_threshold=0.2)
    assert len(candidate_grid(same)) == 3 * per_threshold


def _row(auc5: float, score: float) -> dict:
    return {"auc@5": auc5, "3d score": score}


def test_selection_rule() -> None:
    # the best 3D score among candidates within 1.0 planar AUC@5 point of the best
    rows = [_row(70.0, 100.0), _row(69.2, 130.0), _row(68.9, 200.0), _row(69.0, 120.0)]
    assert select(rows) == 1
    assert select(rows, tolerance=2.0) == 2
    assert select(rows, tolerance=0.0) == 0
    # exactly at the tolerance still counts; ties go to the earlier candidate
    assert select([_row(70.0, 100.0), _row(69.0, 150.0), _row(69.5, 150.0)]) == 1
    with pytest.raises(ValueError):
        select([])


def test_shared_post_processing_equals_one_call_per_candidate(photo_folder, small_model) -> None:
    """Candidates that select the same matches share their refinement and score; each result is
    what match_confidence gives for that candidate alone."""
    config = small_model.config
    pair = next(iter(SyntheticPairs(photo_folder, pairs_per_image=1, seed=5,
                                    size=config.input_size)))
    # on this pair: 25 matches at threshold 0.0002 (scores 0.0016-0.084), 3 with a peak mass of
    # at least 0.5, 21 at threshold 0.003
    candidates = [Candidate(0.0002, 0.0, 64), Candidate(0.0002, 0.5, 8),
                  Candidate(0.0002, 0.5, 4), Candidate(0.0002, 0.5, 0),
                  Candidate(0.0002, 0.5, 64), Candidate(0.003, 0.0, 64)]
    results = candidate_scores(small_model, pair.image0, pair.image1, candidates, "photometric",
                               lambda matches: matches)
    inputs = [np.asarray(image, np.float32) / 255.0 for image in (pair.image0, pair.image1)]
    with torch.no_grad():
        outputs = small_model(*(torch.from_numpy(image)[None, None] for image in inputs))
    conf = outputs["conf_matrix"][0].numpy()
    fine = outputs["fine_feat0"][0].numpy(), outputs["fine_feat1"][0].numpy()
    counts = []
    for candidate, shared in zip(candidates, results):
        alone = match_confidence(conf, config, candidate.options(config, "photometric"), *fine,
                                 images=tuple(photometric_image(image) for image in inputs))
        assert shared.indices0.tolist() == alone.indices0.tolist()
        np.testing.assert_array_equal(shared.keypoints1, alone.keypoints1)
        counts.append(len(alone.scores))
    # the candidates select different sets here (else the test would show nothing); the floor
    # of 64 keeps all of them under the limit 0.5, the same set as no limit: shared
    assert counts[0] > counts[1] > counts[2] > counts[3] > 0 and 0 < counts[5] < counts[0]
    assert counts[4] == counts[0] and results[4] is results[0]


def test_calibration_scores_planar_and_3d_pairs_and_saves_the_choice(tmp_path, photo_folder,
                                                                     small_model) -> None:
    candidates = [Candidate(0.0002, 0.0, 64), Candidate(0.0002, 0.4, 8),
                  Candidate(0.0002, 0.4, 0), Candidate(0.3, 0.0, 64)]
    choice, rows = calibrate(small_model, str(photo_folder), pairs_per_image=1, scene_pairs=2,
                             candidates=candidates)
    assert choice in candidates and len(rows) == len(candidates)
    assert [(r["threshold"], r["min_peak_mass"], r["keep_sharpest"]) for r in rows] == [
        (c.threshold, c.min_peak_mass, c.keep_sharpest) for c in candidates]
    for row in rows:
        assert row["3d score"] == pytest.approx(row["3d auc@10"] + row["3d auc@20"]
                                                + row["3d epipolar precision"])
        assert 0.0 <= row["3d epipolar precision"] <= 100.0
    assert rows[0]["matches"] >= rows[1]["matches"] >= rows[2]["matches"]
    assert rows[0]["matches"] > rows[2]["matches"]
    assert rows[0]["3d matches"] >= rows[2]["3d matches"] and rows[0]["3d matches"] > 0
    assert rows[3]["matches"] < rows[0]["matches"]   # a higher threshold keeps a subset
    assert rows[3]["3d matches"] < rows[0]["3d matches"]
    assert choice == candidates[select(rows)]

    weights = str(tmp_path / "in.pt")
    save_model(small_model, weights)
    out = str(tmp_path / "out.pt")
    assert main([weights, "--data", str(photo_folder), "--out", out, "--pairs-per-image", "1",
                 "--scene-pairs", "1"]) == 0
    calibrated, report = load_model(out)
    stored = report.metadata["calibration"]
    assert calibrated.config.fine.min_peak_mass == stored["min_peak_mass"]
    assert calibrated.config.fine.keep_sharpest == stored["keep_sharpest"]
    assert calibrated.config.match_threshold == stored["match_threshold"]
    assert len(stored["rows"]) == len(candidate_grid(small_model.config))


def test_calibration_at_another_input_size(tmp_path, photo_folder, small_model) -> None:
    """--input-size calibrates at that size (the pairs and the network) and writes it."""
    weights, out = str(tmp_path / "in.pt"), str(tmp_path / "out.pt")
    save_model(small_model, weights)   # 160x128
    assert main([weights, "--data", str(photo_folder), "--out", out, "--pairs-per-image", "1",
                 "--scene-pairs", "1", "--input-size", "128x96", "--refinement", "fine"]) == 0
    calibrated, report = load_model(out)
    assert calibrated.config.input_size == (128, 96)
    assert report.metadata["calibration"]["input_size"] == [128, 96]
    assert report.metadata["calibration"]["refinement"] == "fine"
    with pytest.raises(SystemExit):   # not a multiple of the coarse stride: refused
        main([weights, "--data", str(photo_folder), "--out", out, "--input-size", "100x90"])


def test_calibrated_config_writes_all_three_settings() -> None:
    config = calibrated_config(get_preset("lite"), Candidate(0.2, 0.5, 16))
    assert (config.match_threshold, config.fine.min_peak_mass, config.fine.keep_sharpest) == (
        0.2, 0.5, 16)
    with pytest.raises(ValueError, match="fine stage"):
        calibrated_config(get_preset("seed"), Candidate(0.2, 0.5, 16))


def test_calibration_for_the_fine_refinement_and_a_wrong_name(photo_folder, small_model) -> None:
    candidates = [Candidate(0.0002, 0.0, 64), Candidate(0.0002, 0.5, 0)]
    choice, rows = calibrate(small_model, str(photo_folder), pairs_per_image=1, scene_pairs=1,
                             candidates=candidates, refinement="fine", workers=2)
    assert choice in candidates and len(rows) == 2
    # scoring in threads changes nothing
    assert calibrate(small_model, str(photo_folder), pairs_per_image=1, scene_pairs=1,
                     candidates=candidates, refinement="fine", workers=1) == (choice, rows)
    with pytest.raises(ValueError, match="refinement"):
        calibrate(small_model, str(photo_folder), refinement="expectation")
