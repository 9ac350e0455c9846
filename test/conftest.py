"""Shared fixtures: the real photo bundled with the package, the shared seed weights."""
from __future__ import annotations

import os
from typing import Tuple

import cv2
import numpy as np
import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTO_PATH = os.path.join(REPO_ROOT, "loftr_ros", "data", "coffee.png")
SHARED_DIR = os.environ.get("LOFTR_SHARED_DIR", os.path.join(REPO_ROOT, "..", "shared"))
SEED_PT = os.path.join(SHARED_DIR, "seed_weights", "LoFTR_teacher.pt")
SEED_ONNX = os.path.join(SHARED_DIR, "seed_weights", "LoFTR_teacher.onnx")


@pytest.fixture(scope="session")
def photo_gray() -> np.ndarray:
    """The bundled CC0 photo (600x400), grayscale uint8."""
    image = cv2.imread(PHOTO_PATH, cv2.IMREAD_GRAYSCALE)
    assert image is not None, PHOTO_PATH
    return image


@pytest.fixture(scope="session")
def photo_pair(photo_gray: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A real-photo pair at 640x480 under a known homography: (img0, img1, H_0to1)."""
    from loftr_ros.synthetic.homography import make_pair

    return make_pair(np.random.default_rng(11), photo_gray, 640, 480)


@pytest.fixture(scope="session")
def seed_files() -> Tuple[str, str]:
    """(seed .pt, seed .onnx) from ../shared/seed_weights; skipped with the reason if absent."""
    if not (os.path.isfile(SEED_PT) and os.path.isfile(SEED_ONNX)):
        pytest.skip(f"seed weights not found under {SHARED_DIR}/seed_weights "
                    "(set LOFTR_SHARED_DIR to the shared folder)")
    return SEED_PT, SEED_ONNX
