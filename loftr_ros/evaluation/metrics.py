"""Homography-estimation metrics of the HPatches protocol used by SuperGlue and LoFTR.

For each image pair with a ground-truth homography ``H_gt`` (image 0 -> image 1 pixels):

- a homography is estimated from the matches with OpenCV RANSAC (:func:`estimated_homography`:
  :func:`loftr_ros.matching.geometry.estimate_homography` at the reprojection threshold
  :data:`RANSAC_THRESHOLD_PX` = 3 px, the precision threshold too), and optionally also with
  OpenCV's MAGSAC++ (``estimator="magsac"``, same threshold): plain RANSAC keeps the inliers of
  its best minimal sample, so with many slightly noisy matches (dense matchers) its estimate is
  worse than one that re-weights all matches; reporting both shows how much of a method's score
  is the estimator's;
- the **corner error** is the mean distance, in image-1 pixels, between the four corners of
  image 0 mapped by the estimate and by ``H_gt`` (:func:`corner_error`); fewer than 4 matches or a
  failed estimate count as an infinite error;
- **AUC@t** is the area under the cumulative corner-error curve (fraction of pairs with error <= e,
  for e in [0, t]) divided by t, in percent (:func:`auc`): 100 means every pair had error 0,
  infinite errors only lower the curve;
- **precision@3px** of a pair is the fraction of its matches whose image-1 point lies within 3 px
  of its image-0 point mapped by ``H_gt`` (:func:`precision`); a pair without matches scores 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np

from loftr_ros.matching import geometry
from loftr_ros.synthetic.homography import warp_points

AUC_THRESHOLDS_PX = (3.0, 5.0, 10.0)
PRECISION_THRESHOLD_PX = 3.0
RANSAC_THRESHOLD_PX = 3.0
#: Robust estimators by name (OpenCV method flags), shared with the pose metrics.
ESTIMATORS: Dict[str, int] = geometry.ESTIMATORS
ESTIMATOR_LABELS: Dict[str, str] = geometry.ESTIMATOR_LABELS
DEFAULT_ESTIMATOR = "ransac"


def image_corners(width: int, height: int) -> np.ndarray:
    """The four corner pixels ``[4,2]`` (x, y) of a width x height image."""
    return np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]],
                    dtype=np.float64)


def corner_error(H_est: Optional[np.ndarray], H_gt: np.ndarray, width: int, height: int) -> float:
    """Mean distance (px) between image 0's corners mapped by ``H_est`` and by ``H_gt``.

    ``width``/``height`` are image 0's size. ``H_est`` None (no estimate) gives ``inf``; so does an
    estimate that maps a corner to infinity.
    """
    if H_est is None:
        return float("inf")
    corners = image_corners(width, height)
    distances = np.linalg.norm(warp_points(H_est, corners) - warp_points(H_gt, corners), axis=1)
    error = float(np.mean(distances))
    return error if np.isfinite(error) else float("inf")


def estimated_homography(keypoints0: np.ndarray, keypoints1: np.ndarray,
                         estimator: str = DEFAULT_ESTIMATOR) -> Optional[np.ndarray]:
    """The robust homography of :func:`loftr_ros.matching.geometry.estimate_homography` at the
    protocol's :data:`RANSAC_THRESHOLD_PX`, or None (fewer than 4 matches, no model)."""
    return geometry.estimate_homography(keypoints0, keypoints1, RANSAC_THRESHOLD_PX,
                                        estimator).homography


def reprojection_errors(keypoints0: np.ndarray, keypoints1: np.ndarray,
                        H_gt: np.ndarray) -> np.ndarray:
    """Distance (px) of each image-1 point from its image-0 point mapped by ``H_gt``, ``[N]``."""
    keypoints0 = np.asarray(keypoints0, dtype=np.float64).reshape(-1, 2)
    keypoints1 = np.asarray(keypoints1, dtype=np.float64).reshape(-1, 2)
    errors = np.linalg.norm(warp_points(H_gt, keypoints0) - keypoints1, axis=1)
    return np.where(np.isfinite(errors), errors, np.inf)


def precision(keypoints0: np.ndarray, keypoints1: np.ndarray, H_gt: np.ndarray,
              threshold_px: float = PRECISION_THRESHOLD_PX) -> float:
    """Fraction of matches within ``threshold_px`` of the truth; 0.0 for no matches."""
    errors = reprojection_errors(keypoints0, keypoints1, H_gt)
    return float(np.mean(errors < threshold_px)) if len(errors) else 0.0


def auc(errors: Sequence[float], thresholds: Sequence[float] = AUC_THRESHOLDS_PX
        ) -> Dict[float, float]:
    """Area under the cumulative error curve up to each threshold, normalised, in percent.

    The curve is the fraction of pairs whose error is <= e; it rises by 1/n at each sorted error
    and is integrated exactly (piecewise linear between the sorted errors, as in the SuperGlue /
    LoFTR evaluation). ``inf`` errors (failures) never enter. Empty input gives 0.
    """
    errors = np.sort(np.asarray(errors, dtype=np.float64))
    count = len(errors)
    results = {}
    for threshold in thresholds:
        if count == 0:
            results[float(threshold)] = 0.0
            continue
        inside = errors[errors < threshold]
        xs = np.concatenate([[0.0], inside, [threshold]])
        recall = np.arange(len(inside) + 1, dtype=np.float64) / count
        ys = np.concatenate([[0.0], recall[1:], [recall[-1]]])
        area = np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2.0)
        results[float(threshold)] = float(100.0 * area / threshold)
    return results


@dataclass
class PairResult:
    """What one method did on one pair."""

    corner_error: float
    num_matches: int
    precision: float
    latency_ms: float
    #: corner errors under further estimators, by name (the primary one is ``corner_error``)
    other_corner_errors: Dict[str, float] = field(default_factory=dict)
    #: the network's share of ``latency_ms`` (learned matchers only; NaN for the baselines)
    inference_ms: float = float("nan")


def evaluate_pair(keypoints0: np.ndarray, keypoints1: np.ndarray, H_gt: np.ndarray,
                  width: int, height: int, latency_ms: float = float("nan"),
                  estimators: Sequence[str] = (DEFAULT_ESTIMATOR,),
                  inference_ms: float = float("nan")) -> PairResult:
    """Corner error (under each estimator, the first one primary), match count and
    precision@3px of one pair's matches."""
    if not estimators:
        raise ValueError("at least one estimator is needed")
    errors = {name: corner_error(estimated_homography(keypoints0, keypoints1, name),
                                 H_gt, width, height) for name in estimators}
    primary = errors.pop(estimators[0])
    return PairResult(corner_error=primary,
                      num_matches=int(len(np.asarray(keypoints0).reshape(-1, 2))),
                      precision=precision(keypoints0, keypoints1, H_gt), latency_ms=latency_ms,
                      other_corner_errors=errors, inference_ms=inference_ms)


def summarize(results: Sequence[PairResult],
              thresholds: Sequence[float] = AUC_THRESHOLDS_PX) -> Dict[str, float]:
    """Aggregate over pairs: ``auc@3`` ... (percent), ``mean_matches``, ``precision@3px`` (mean
    over pairs, percent), ``median_latency_ms``, ``median_inference_ms`` (NaN when no pair
    has one), ``failures`` (pairs with infinite error),
    ``pairs``; for every further estimator E also ``E auc@3`` ... and ``E failures``."""
    return summarize_errors(results, [r.corner_error for r in results],
                            [r.other_corner_errors for r in results],
                            [r.precision for r in results], thresholds, auc_key="auc",
                            precision_key="precision@3px")


def summarize_errors(results: Sequence[Any], errors: Sequence[float],
                     other_errors: Sequence[Mapping[str, float]], precisions: Sequence[float],
                     thresholds: Sequence[float], auc_key: str,
                     precision_key: str) -> Dict[str, float]:
    """Aggregate per-pair errors (any unit; inf = failed pair) and precisions (fractions).

    ``results`` are the pairs' results (with ``num_matches``, ``latency_ms`` and
    ``inference_ms``); ``errors``, ``other_errors`` (further estimators' errors by name; a name
    missing for a pair counts as failed) and ``precisions`` hold one entry per pair. Keys:
    ``{auc_key}@t`` (percent) per threshold t, for every further estimator E ``E {auc_key}@t``
    and ``E failures``, then ``mean_matches``, ``precision_key`` (mean, percent),
    ``median_latency_ms``, ``median_inference_ms`` (NaN when no pair has one), ``failures`` and
    ``pairs``.
    """
    summary = {f"{auc_key}@{t:g}": v for t, v in auc(errors, thresholds).items()}
    for name in sorted({name for errors_by_name in other_errors for name in errors_by_name}):
        other = [errors_by_name.get(name, float("inf")) for errors_by_name in other_errors]
        summary.update({f"{name} {auc_key}@{t:g}": v for t, v in auc(other, thresholds).items()})
        summary[f"{name} failures"] = int(sum(not np.isfinite(e) for e in other))
    latencies = [r.latency_ms for r in results if np.isfinite(r.latency_ms)]
    inferences = [r.inference_ms for r in results if np.isfinite(r.inference_ms)]
    summary.update({
        "mean_matches": float(np.mean([r.num_matches for r in results])) if results else 0.0,
        precision_key: 100.0 * float(np.mean(precisions)) if results else 0.0,
        "median_latency_ms": float(np.median(latencies)) if latencies else float("nan"),
        "median_inference_ms": float(np.median(inferences)) if inferences else float("nan"),
        "failures": int(sum(not np.isfinite(e) for e in errors)),
        "pairs": len(results),
    })
    return summary
