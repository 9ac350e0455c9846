"""Image pairs with known cameras and relative pose, for the pose metrics of ``loftr-eval``.

A pair is a :class:`PosePair`: two grayscale uint8 views, both cameras' 3x3 intrinsics and the
motion ``X1 = R X0 + t`` (camera-0 coordinates -> camera-1 coordinates). Sources:

- :class:`ScenePairs`: rendered 3D scenes (:func:`loftr_ros.synthetic.scenes3d.render_pair`)
  textured with the photos of one folder: the held-out photos (``data/heldout``) for
  ``loftr-eval``, the training photos with a seed of its own for the calibration
  (:mod:`loftr_ros.training.calibrate`). Pair ``k`` is drawn from a generator seeded with
  ``(seed, k)`` and the sorted photo list, so a run is repeatable.
- :class:`loftr_ros.evaluation.castle.CastlePairs`: ViSP's rendered ``Castle-simu`` sequence.
- :class:`MotorcyclePairs`: scikit-image's rectified Middlebury 2014 ``Motorcycle`` stereo pair,
  both ways.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import cv2
import numpy as np

from loftr_ros.evaluation.datasets import DatasetError, held_out_images, read_gray
from loftr_ros.synthetic import scenes3d

SCENE_SIZE = (640, 480)

#: Calibration of scikit-image's down-sampled (factor 4) Motorcycle pair, from the docstring of
#: ``skimage.data.stereo_motorcycle``: focal length, left principal point, the right camera's
#: principal-point offset in x (``doffs``) and the baseline.
MOTORCYCLE_FOCAL_PX = 994.978
MOTORCYCLE_PRINCIPAL_POINT_PX = (311.193, 254.877)
MOTORCYCLE_DOFFS_PX = 31.086
MOTORCYCLE_BASELINE_M = 0.193001


@dataclass
class PosePair:
    """Two grayscale uint8 views with known cameras.

    Attributes:
        name: identifies the pair in reports.
        image0, image1: uint8 ``[H,W]``.
        intrinsics0, intrinsics1: float64 ``[3,3]`` pinhole matrices (pixels).
        rotation, translation: float64 ``[3,3]``, ``[3]``: ``X1 = R X0 + t``.
    """

    name: str
    image0: np.ndarray
    image1: np.ndarray
    intrinsics0: np.ndarray
    intrinsics1: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray


def _gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return image


class ScenePairs:
    """``count`` rendered 3D-scene pairs textured with the photos of ``folder`` (sorted by name).

    ``baseline`` and ``max_rotation_deg`` replace the generator's camera-motion ranges
    (:func:`loftr_ros.synthetic.scenes3d.with_camera_motion`; ValueError for bad ones).

    Raises DatasetError when the folder is missing or has no image.
    """

    def __init__(self, folder: Path, count: int = 50, seed: int = 0,
                 size: Tuple[int, int] = SCENE_SIZE,
                 baseline: Optional[Tuple[float, float]] = None,
                 max_rotation_deg: Optional[float] = None) -> None:
        self.params = scenes3d.with_camera_motion(scenes3d.SceneParams(), baseline,
                                                  max_rotation_deg)
        self.folder = Path(folder)
        self.paths = held_out_images(self.folder)
        if count < 1:
            raise ValueError("count must be >= 1")
        self.count = count
        self.seed = seed
        self.size = size
        self._textures: Optional[List[np.ndarray]] = None

    def __len__(self) -> int:
        return self.count

    def textures(self) -> List[np.ndarray]:
        """The photos as grayscale uint8 images (read once)."""
        if self._textures is None:
            self._textures = [read_gray(path) for path in self.paths]
        return self._textures

    def __iter__(self) -> Iterator[PosePair]:
        width, height = self.size
        for index in range(self.count):
            rng = np.random.default_rng([self.seed, index])
            pair = scenes3d.render_pair(rng, self.textures(), width, height, self.params)
            yield PosePair(f"scene/{index}", pair.image0, pair.image1,
                           np.asarray(pair.intrinsics0, np.float64),
                           np.asarray(pair.intrinsics1, np.float64),
                           np.asarray(pair.rotation, np.float64),
                           np.asarray(pair.translation, np.float64).reshape(3))


def motorcycle_intrinsics() -> Tuple[np.ndarray, np.ndarray]:
    """3x3 intrinsics of the left and right views of scikit-image's Motorcycle pair
    (741x500 px); the right principal point lies :data:`MOTORCYCLE_DOFFS_PX` further right."""
    cx, cy = MOTORCYCLE_PRINCIPAL_POINT_PX
    f = MOTORCYCLE_FOCAL_PX
    left = np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])
    right = left.copy()
    right[0, 2] += MOTORCYCLE_DOFFS_PX
    return left, right


def load_motorcycle() -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-image's Motorcycle views (uint8 gray ``[500,741]``) and disparity (float32
    ``[500,741]``, NaN where unknown): the left pixel ``(u, v)`` shows what the right view shows
    at ``(u - d, v)``. DatasetError without scikit-image."""
    try:
        from skimage import data
    except ImportError as error:
        raise DatasetError("scikit-image is not installed (pip install scikit-image)") from error
    left, right, disparity = data.stereo_motorcycle()
    disparity = np.asarray(disparity, np.float32)
    disparity = np.where(np.isfinite(disparity), disparity, np.nan).astype(np.float32)
    return _gray(left), _gray(right), disparity


def motorcycle_depth(disparity: np.ndarray) -> np.ndarray:
    """Z-depth (metres) of the left view from its disparity: ``f B / (d + doffs)``."""
    return (MOTORCYCLE_FOCAL_PX * MOTORCYCLE_BASELINE_M
            / (disparity.astype(np.float64) + MOTORCYCLE_DOFFS_PX))


def motorcycle_pairs() -> List[PosePair]:
    """The rectified Motorcycle pair in both directions. No rotation; the right camera sits one
    baseline along the left camera's +x, so ``X_right = X_left - (B, 0, 0)``."""
    left, right, _ = load_motorcycle()
    intrinsics_left, intrinsics_right = motorcycle_intrinsics()
    baseline = np.array([MOTORCYCLE_BASELINE_M, 0.0, 0.0])
    return [PosePair("motorcycle/left-right", left, right, intrinsics_left, intrinsics_right,
                     np.eye(3), -baseline),
            PosePair("motorcycle/right-left", right, left, intrinsics_right, intrinsics_left,
                     np.eye(3), baseline)]


class MotorcyclePairs:
    """The Motorcycle pair, left to right and right to left (a matcher need not be symmetric)."""

    def __len__(self) -> int:
        return 2

    def __iter__(self) -> Iterator[PosePair]:
        yield from motorcycle_pairs()
