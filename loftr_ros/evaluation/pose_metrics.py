"""Relative-pose metrics of the SuperGlue / LoFTR protocol, for image pairs with known cameras.

For each pair with intrinsics ``K0``, ``K1`` and the true motion ``X1 = R X0 + t`` (a point in
camera 0's frame -> camera 1's frame):

- the essential matrix is estimated from the matches and the intrinsics with each robust estimator
  of :data:`loftr_ros.matching.geometry.ESTIMATORS` (OpenCV RANSAC and MAGSAC++, threshold
  :data:`POSE_THRESHOLD_PX`) and decomposed into ``R_est, t_est``
  (:func:`loftr_ros.matching.geometry.estimate_relative_pose`);
- the **pose error** is the larger of the rotation error (angle of ``R_est^T R``) and the
  translation-direction error, in degrees. Two views fix ``t`` only up to scale, and the sign
  can flip with an essential matrix that is nearly degenerate, so the translation error is
  ``min(a, 180 - a)`` of the angle ``a`` between ``t_est`` and ``t``, as in SuperGlue and LoFTR.
  Fewer than 5 matches or no model count as an infinite error;
- **AUC@t** of the pose error at 5, 10 and 20 degrees (:func:`loftr_ros.evaluation.metrics.auc`,
  percent);
- **epipolar precision** of a pair: the share of its matches whose symmetric epipolar distance
  (:func:`symmetric_epipolar_distance`) to the ground-truth essential matrix is under
  :data:`EPIPOLAR_THRESHOLD` (5e-4, normalised coordinates, LoFTR's ScanNet threshold); a pair
  without matches scores 0;
- the match count.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from loftr_ros.evaluation.metrics import summarize_errors
from loftr_ros.matching import geometry

POSE_AUC_THRESHOLDS_DEG = (5.0, 10.0, 20.0)
EPIPOLAR_THRESHOLD = 5e-4
#: Inlier threshold of the essential-matrix estimators, in pixels (converted with the focal length).
POSE_THRESHOLD_PX = 1.0
DEFAULT_ESTIMATOR = "ransac"


def skew(vector: np.ndarray) -> np.ndarray:
    """The 3x3 matrix ``[v]_x`` with ``[v]_x a = v x a``."""
    x, y, z = np.asarray(vector, dtype=np.float64).reshape(3)
    return np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])


def essential_from_pose(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """Essential matrix ``[t]_x R`` of the motion ``X1 = R X0 + t``: ``x1^T E x0 = 0`` for
    normalised coordinates ``x = (X/Z, Y/Z, 1)`` of one point in both cameras."""
    return skew(translation) @ np.asarray(rotation, dtype=np.float64)


def symmetric_epipolar_distance(keypoints0: np.ndarray, keypoints1: np.ndarray,
                                intrinsics0: np.ndarray, intrinsics1: np.ndarray,
                                essential: np.ndarray) -> np.ndarray:
    """Symmetric epipolar distance ``[N]`` of matched pixels ``[N,2]``, in normalised coordinates.

    ``d = (x1^T E x0)^2 * (1 / |(E x0)_{1,2}|^2 + 1 / |(E^T x1)_{1,2}|^2)``: the sum of the squared
    distances of each point from the other's epipolar line (the quantity LoFTR and SuperGlue
    threshold at 5e-4). It does not depend on the scale of ``E``.
    """
    points0 = geometry.normalize_points(keypoints0, intrinsics0)
    points1 = geometry.normalize_points(keypoints1, intrinsics1)
    homogeneous0 = np.concatenate([points0, np.ones((len(points0), 1))], axis=1)
    homogeneous1 = np.concatenate([points1, np.ones((len(points1), 1))], axis=1)
    lines1 = homogeneous0 @ np.asarray(essential, dtype=np.float64).T  # E x0, lines in image 1
    lines0 = homogeneous1 @ np.asarray(essential, dtype=np.float64)    # E^T x1, lines in image 0
    residual = np.sum(homogeneous1 * lines1, axis=1) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        distance = residual * (1.0 / np.sum(lines1[:, :2] ** 2, axis=1)
                               + 1.0 / np.sum(lines0[:, :2] ** 2, axis=1))
    return np.where(np.isfinite(distance), distance, np.inf)


def epipolar_precision(keypoints0: np.ndarray, keypoints1: np.ndarray,
                       intrinsics0: np.ndarray, intrinsics1: np.ndarray, rotation: np.ndarray,
                       translation: np.ndarray, threshold: float = EPIPOLAR_THRESHOLD) -> float:
    """Share of matches with a symmetric epipolar distance under ``threshold``; 0.0 for none."""
    if len(np.asarray(keypoints0).reshape(-1, 2)) == 0:
        return 0.0
    distances = symmetric_epipolar_distance(keypoints0, keypoints1, intrinsics0, intrinsics1,
                                            essential_from_pose(rotation, translation))
    return float(np.mean(distances < threshold))


def pose_errors_deg(rotation_est: Optional[np.ndarray], translation_est: Optional[np.ndarray],
                    rotation_gt: np.ndarray, translation_gt: np.ndarray) -> Tuple[float, float]:
    """(rotation error, translation-direction error) in degrees; ``(inf, inf)`` without an
    estimate. The translation error ignores the sign of ``t`` (``min(a, 180 - a)``)."""
    if rotation_est is None or translation_est is None:
        return float("inf"), float("inf")
    rotation_error = geometry.rotation_error_deg(rotation_est, rotation_gt)
    angle = geometry.translation_angle_deg(translation_est, translation_gt)
    return rotation_error, min(angle, 180.0 - angle)


def pose_error_deg(keypoints0: np.ndarray, keypoints1: np.ndarray, intrinsics0: np.ndarray,
                   intrinsics1: np.ndarray, rotation_gt: np.ndarray, translation_gt: np.ndarray,
                   estimator: str = DEFAULT_ESTIMATOR,
                   threshold_px: float = POSE_THRESHOLD_PX) -> Tuple[float, float, float]:
    """(pose error, rotation error, translation error) in degrees of the pose estimated from the
    matches with ``estimator``; the pose error is the larger of the two, ``inf`` on failure."""
    estimate = geometry.estimate_relative_pose(keypoints0, keypoints1, intrinsics0, intrinsics1,
                                               threshold_px, estimator)
    rotation_error, translation_error = pose_errors_deg(estimate.rotation, estimate.translation,
                                                        rotation_gt, translation_gt)
    return max(rotation_error, translation_error), rotation_error, translation_error


@dataclass
class PosePairResult:
    """What one method did on one pair with known cameras."""

    pose_error: float
    rotation_error: float
    translation_error: float
    num_matches: int
    epipolar_precision: float
    latency_ms: float = float("nan")
    #: pose errors under further estimators, by name (the primary one is ``pose_error``)
    other_pose_errors: Dict[str, float] = field(default_factory=dict)
    #: the network's share of ``latency_ms`` (learned matchers only; NaN for the baselines)
    inference_ms: float = float("nan")


def evaluate_pose_pair(keypoints0: np.ndarray, keypoints1: np.ndarray, intrinsics0: np.ndarray,
                       intrinsics1: np.ndarray, rotation_gt: np.ndarray,
                       translation_gt: np.ndarray, latency_ms: float = float("nan"),
                       estimators: Sequence[str] = (DEFAULT_ESTIMATOR,),
                       inference_ms: float = float("nan")) -> PosePairResult:
    """Pose error (under each estimator, the first one primary), match count and epipolar
    precision of one pair's matches (pixels ``[N,2]`` of images 0 and 1)."""
    if not estimators:
        raise ValueError("at least one estimator is needed")
    errors = {name: pose_error_deg(keypoints0, keypoints1, intrinsics0, intrinsics1, rotation_gt,
                                   translation_gt, name) for name in estimators}
    primary = errors.pop(estimators[0])
    return PosePairResult(
        pose_error=primary[0], rotation_error=primary[1], translation_error=primary[2],
        num_matches=int(len(np.asarray(keypoints0).reshape(-1, 2))),
        epipolar_precision=epipolar_precision(keypoints0, keypoints1, intrinsics0, intrinsics1,
                                              rotation_gt, translation_gt),
        latency_ms=latency_ms, other_pose_errors={name: e[0] for name, e in errors.items()},
        inference_ms=inference_ms)


def summarize_poses(results: Sequence[PosePairResult],
                    thresholds: Sequence[float] = POSE_AUC_THRESHOLDS_DEG) -> Dict[str, float]:
    """Aggregate over pairs: ``pose auc@5`` ... (percent), ``mean_matches``,
    ``epipolar_precision`` (mean over pairs, percent), ``median_latency_ms``,
    ``median_inference_ms`` (NaN when no pair has one), ``failures`` (pairs with infinite error),
    ``pairs``; for every further estimator E also ``E pose auc@5`` ... and ``E failures``."""
    return summarize_errors(results, [r.pose_error for r in results],
                            [r.other_pose_errors for r in results],
                            [r.epipolar_precision for r in results], thresholds,
                            auc_key="pose auc", precision_key="epipolar_precision")
