"""The geometry that matches imply: robust homography and relative pose, with inlier flags.

numpy/OpenCV only. Both estimators take matched pixel positions ``[N,2]`` of a reference image
(0) and a current image (1) and return the model with a boolean inlier flag per match.

- :func:`estimate_homography`: the 3x3 ``H`` with ``[u1, v1, 1]^T ~ H [u0, v0, 1]^T``.
- :func:`estimate_relative_pose`: the essential matrix from pixels and both cameras' intrinsics,
  decomposed into ``R, t`` with ``X1 = R X0 + t`` (a 3D point in camera 0's frame -> camera 1's
  frame). ``t`` has unit length: two views fix the direction of the motion, not its scale.
  :func:`camera_pose_in_reference` turns that into the pose of camera 1 in camera 0's frame.

OpenCV's RNG is re-seeded on every call, so a result depends only on its inputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import cv2
import numpy as np

#: Robust estimators by name (OpenCV method flags).
ESTIMATORS: Dict[str, int] = {"ransac": cv2.RANSAC, "magsac": cv2.USAC_MAGSAC}
ESTIMATOR_LABELS: Dict[str, str] = {"ransac": "RANSAC", "magsac": "MAGSAC++"}
CONFIDENCE = 0.999
MAX_ITERS = 10000
#: Fewest matches each model can be estimated from.
MIN_MATCHES_HOMOGRAPHY = 4
MIN_MATCHES_ESSENTIAL = 5


@dataclass(frozen=True)
class HomographyEstimate:
    """A robust homography and the matches it accepts.

    Attributes:
        homography: float64 ``[3,3]`` (image-0 pixels -> image-1 pixels, ``H[2,2] = 1``), or None
            where there were too few matches or no model was found.
        inliers: bool ``[N]``, one per match (all False without a model).
    """

    homography: Optional[np.ndarray]
    inliers: np.ndarray


@dataclass(frozen=True)
class PoseEstimate:
    """A relative pose from the essential matrix and the matches it accepts.

    Attributes:
        essential: float64 ``[3,3]`` in normalised camera coordinates, or None (no model).
        rotation: float64 ``[3,3]`` ``R`` with ``X1 = R X0 + t``, or None.
        translation: float64 ``[3]`` unit-length ``t``, or None.
        inliers: bool ``[N]``: matches consistent with the essential matrix and in front of both
            cameras (all False without a model).
    """

    essential: Optional[np.ndarray]
    rotation: Optional[np.ndarray]
    translation: Optional[np.ndarray]
    inliers: np.ndarray


def _points(keypoints: np.ndarray) -> np.ndarray:
    return np.asarray(keypoints, dtype=np.float64).reshape(-1, 2)


def _method(estimator: str) -> int:
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose from {sorted(ESTIMATORS)}")
    return ESTIMATORS[estimator]


def estimate_homography(keypoints0: np.ndarray, keypoints1: np.ndarray,
                        threshold_px: float = 3.0, estimator: str = "magsac"
                        ) -> HomographyEstimate:
    """Robust homography from matched pixels ``[N,2]`` (image 0 -> image 1).

    Args:
        threshold_px: reprojection error (image-1 pixels) under which a match is an inlier.
        estimator: a key of :data:`ESTIMATORS`.
    """
    keypoints0, keypoints1 = _points(keypoints0), _points(keypoints1)
    method = _method(estimator)
    none = HomographyEstimate(None, np.zeros(len(keypoints0), dtype=bool))
    if len(keypoints0) < MIN_MATCHES_HOMOGRAPHY:
        return none
    cv2.setRNGSeed(0)
    homography, mask = cv2.findHomography(keypoints0, keypoints1, method, threshold_px,
                                          maxIters=MAX_ITERS, confidence=CONFIDENCE)
    if homography is None or homography.shape != (3, 3) or not np.all(np.isfinite(homography)):
        return none
    inliers = mask.reshape(-1).astype(bool) if mask is not None else none.inliers
    return HomographyEstimate(homography / homography[2, 2], inliers)


def normalize_points(keypoints: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """Pixels ``[N,2]`` -> normalised camera coordinates ``[N,2]`` with the 3x3 ``intrinsics``."""
    points = _points(keypoints)
    K = np.asarray(intrinsics, dtype=np.float64)
    return (points - K[[0, 1], [2, 2]]) / K[[0, 1], [0, 1]]


def valid_intrinsics(intrinsics: Optional[np.ndarray]) -> bool:
    """True for a finite 3x3 pinhole matrix with positive focal lengths and ``K[2,2] = 1``."""
    if intrinsics is None:
        return False
    K = np.asarray(intrinsics, dtype=np.float64)
    return (K.shape == (3, 3) and bool(np.all(np.isfinite(K))) and K[0, 0] > 0 and K[1, 1] > 0
            and abs(K[2, 2] - 1.0) < 1e-9 and abs(K[2, 0]) < 1e-12 and abs(K[2, 1]) < 1e-12)


def estimate_relative_pose(keypoints0: np.ndarray, keypoints1: np.ndarray,
                           intrinsics0: np.ndarray, intrinsics1: np.ndarray,
                           threshold_px: float = 1.0, estimator: str = "magsac"
                           ) -> PoseEstimate:
    """Relative pose of camera 1 to camera 0 from matched pixels ``[N,2]`` and both cameras'
    3x3 intrinsics.

    The pixels are normalised with each camera's own intrinsics, so the two may differ; the
    threshold is converted with the mean of the four focal lengths.

    Raises:
        ValueError: an intrinsics matrix that is not a pinhole matrix (see
            :func:`valid_intrinsics`), or an unknown estimator.
    """
    keypoints0, keypoints1 = _points(keypoints0), _points(keypoints1)
    method = _method(estimator)
    for name, K in (("intrinsics0", intrinsics0), ("intrinsics1", intrinsics1)):
        if not valid_intrinsics(K):
            raise ValueError(f"{name} is not a valid 3x3 pinhole camera matrix: {K!r}")
    none = PoseEstimate(None, None, None, np.zeros(len(keypoints0), dtype=bool))
    if len(keypoints0) < MIN_MATCHES_ESSENTIAL:
        return none
    normalized0 = normalize_points(keypoints0, intrinsics0)
    normalized1 = normalize_points(keypoints1, intrinsics1)
    focal = float(np.mean([intrinsics0[0][0], intrinsics0[1][1],
                           intrinsics1[0][0], intrinsics1[1][1]]))
    cv2.setRNGSeed(0)
    essential, mask = cv2.findEssentialMat(normalized0, normalized1, np.eye(3), method=method,
                                           prob=CONFIDENCE, threshold=threshold_px / focal,
                                           maxIters=MAX_ITERS)
    if essential is None or mask is None or not np.all(np.isfinite(essential)):
        return none
    # With degenerate input OpenCV may return several 3x3 solutions stacked: take the first.
    essential = essential[:3]
    inliers = mask.reshape(-1).astype(bool)
    if int(inliers.sum()) < MIN_MATCHES_ESSENTIAL:
        return none
    mask_in = inliers.astype(np.uint8).reshape(-1, 1)
    _, rotation, translation, mask_pose = cv2.recoverPose(essential, normalized0, normalized1,
                                                          np.eye(3), mask=mask_in)
    translation = translation.reshape(3)
    norm = float(np.linalg.norm(translation))
    if not np.isfinite(norm) or norm == 0.0:
        return none
    in_front = mask_pose.reshape(-1).astype(bool) & inliers
    return PoseEstimate(essential, rotation, translation / norm, in_front)


def camera_pose_in_reference(rotation: np.ndarray, translation: np.ndarray
                             ) -> Tuple[np.ndarray, np.ndarray]:
    """From ``X1 = R X0 + t`` to camera 1's pose in camera 0's frame: ``(R^T, -R^T t)``, the
    rotation of camera 1's axes and the position of its centre, both in camera 0's frame."""
    rotation = np.asarray(rotation, dtype=np.float64)
    translation = np.asarray(translation, dtype=np.float64).reshape(3)
    return rotation.T, -rotation.T @ translation


def rotation_error_deg(rotation_est: np.ndarray, rotation_gt: np.ndarray) -> float:
    """Angle (degrees) of the rotation that takes ``rotation_gt`` to ``rotation_est``."""
    cos = (np.trace(np.asarray(rotation_est).T @ np.asarray(rotation_gt)) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def translation_angle_deg(translation_est: np.ndarray, translation_gt: np.ndarray) -> float:
    """Angle (degrees) between two translation directions, sign included (0 = same direction)."""
    a = np.asarray(translation_est, dtype=np.float64).reshape(3)
    b = np.asarray(translation_gt, dtype=np.float64).reshape(3)
    denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
    if denominator == 0.0 or not np.isfinite(denominator):
        return 180.0
    return float(np.degrees(np.arccos(np.clip(float(a @ b) / denominator, -1.0, 1.0))))
