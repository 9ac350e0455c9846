"""Calibration of fine.min_peak_mass: runs on real photos and writes the choice into the weights."""
from __future__ import annotations

import shutil

import pytest
import torch
from conftest import PHOTO_PATH

from loftr_ros.model.checkpoint import load_model, save_model
from loftr_ros.model.network import build_model
from loftr_ros.model.presets import get_preset
from loftr_ros.training.calibrate import CANDIDATES, calibrate_min_peak_mass, main


@pytest.fixture
def photo_folder(tmp_path):
    """A training folder with one real photo."""
    folder = tmp_path / "train"
    folder.mkdir()
    shutil.copy(PHOTO_PATH, folder / "coffee.png")
    return folder


@pytest.fixture
def small_model():
    """An untrained lite model at 160x128 (calibration only needs its outputs' shapes)."""
    torch.manual_seed(0)
    return build_model(get_preset("lite").with_input_size(160, 128)).eval()


def test_calibration_picks_a_candidate_and_saves_it(tmp_path, photo_folder, small_model) -> None:
    best, rows = calibrate_min_peak_mass(small_model, str(photo_folder), pairs_per_image=2)
    assert best in CANDIDATES and [row["min_peak_mass"] for row in rows] == list(CANDIDATES)
    assert rows[0]["matches"] >= max(row["matches"] for row in rows)  # 0 keeps everything
    weights = str(tmp_path / "in.pt")
    save_model(small_model, weights)
    out = str(tmp_path / "out.pt")
    assert main([weights, "--data", str(photo_folder), "--out", out,
                 "--pairs-per-image", "2"]) == 0
    calibrated, report = load_model(out)
    assert calibrated.config.fine.min_peak_mass == report.metadata["calibration"]["min_peak_mass"]


def test_calibration_for_the_fine_refinement_and_a_wrong_name(photo_folder, small_model) -> None:
    best, rows = calibrate_min_peak_mass(small_model, str(photo_folder), pairs_per_image=1,
                                         refinement="fine")
    assert best in CANDIDATES and len(rows) == len(CANDIDATES)
    with pytest.raises(ValueError, match="refinement"):
        calibrate_min_peak_mass(small_model, str(photo_folder), refinement="expectation")
