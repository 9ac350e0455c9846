"""Classical baselines for ``loftr-eval``: OpenCV SIFT and ORB with ratio test and mutual check.

Both take the same grayscale uint8 images as the learned matchers and return an object with the
attributes the evaluation reads from :class:`loftr_ros.matching.matcher.Matches`: ``keypoints0``,
``keypoints1`` (float32 ``[N,2]`` pixels), ``scores`` (float32 ``[N]``, ``1 - ratio`` in [0,1])
and ``timings`` (ms). Matching keeps a pair (i, j) only if j is i's nearest neighbour, i is j's
nearest neighbour (mutual / cross-check) and i's nearest/second-nearest distance ratio is below
:data:`RATIO` (Lowe's test).

Settings: SIFT with OpenCV's defaults (all detected keypoints); ORB with
:data:`ORB_FEATURES` keypoints (OpenCV's default of 500 is too few for homographies at 640x480).
Use ``cv2.setNumThreads`` to pin their thread count for fair timing.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict

import cv2
import numpy as np

RATIO = 0.8
ORB_FEATURES = 2000


@dataclass
class FeatureMatches:
    """Matches of a classical baseline, in the original images' pixel coordinates."""

    keypoints0: np.ndarray
    keypoints1: np.ndarray
    scores: np.ndarray
    timings: Dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.keypoints0)


def _as_gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return image


def mutual_ratio_matches(descriptors0: np.ndarray, descriptors1: np.ndarray, norm: int,
                         ratio: float = RATIO) -> np.ndarray:
    """Indices ``[M,2]`` (i0, i1) and ratios ``[M]`` of mutual nearest neighbours passing the ratio
    test (the ratio is taken in image 0's direction). Brute force, exact."""
    empty = np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
    if descriptors0 is None or descriptors1 is None or len(descriptors0) < 1 or len(
            descriptors1) < 2:
        return empty
    matcher = cv2.BFMatcher(norm)
    forward = matcher.knnMatch(descriptors0, descriptors1, k=2)
    backward = matcher.match(descriptors1, descriptors0)
    best_back = np.full(len(descriptors1), -1, np.int64)
    for match in backward:
        best_back[match.queryIdx] = match.trainIdx
    pairs, ratios = [], []
    for candidates in forward:
        if len(candidates) < 2:
            continue
        best, second = candidates
        value = best.distance / second.distance if second.distance > 0 else 1.0
        if value < ratio and best_back[best.trainIdx] == best.queryIdx:
            pairs.append((best.queryIdx, best.trainIdx))
            ratios.append(value)
    if not pairs:
        return empty
    return np.asarray(pairs, np.int64), np.asarray(ratios, np.float32)


class FeatureBaseline:
    """Detector + descriptor + mutual ratio-test matching, behind ``match(image0, image1)``."""

    def __init__(self, name: str, detector, norm: int, ratio: float = RATIO) -> None:
        self.name = name
        self.detector = detector
        self.norm = norm
        self.ratio = ratio

    def match(self, image0: np.ndarray, image1: np.ndarray) -> FeatureMatches:
        """Match two uint8 gray or BGR images of any size."""
        start = time.perf_counter()
        keypoints0, descriptors0 = self.detector.detectAndCompute(_as_gray(image0), None)
        keypoints1, descriptors1 = self.detector.detectAndCompute(_as_gray(image1), None)
        detected = time.perf_counter()
        pairs, ratios = mutual_ratio_matches(descriptors0, descriptors1, self.norm, self.ratio)
        done = time.perf_counter()
        points0 = np.array([keypoints0[i].pt for i in pairs[:, 0]], np.float32).reshape(-1, 2)
        points1 = np.array([keypoints1[j].pt for j in pairs[:, 1]], np.float32).reshape(-1, 2)
        return FeatureMatches(points0, points1, (1.0 - ratios).astype(np.float32),
                              {"detect_ms": 1e3 * (detected - start),
                               "match_ms": 1e3 * (done - detected),
                               "total_ms": 1e3 * (done - start)})


def sift() -> FeatureBaseline:
    """OpenCV SIFT (default settings), L2 distances."""
    return FeatureBaseline("sift", cv2.SIFT_create(), cv2.NORM_L2)


def orb(features: int = ORB_FEATURES) -> FeatureBaseline:
    """OpenCV ORB with ``features`` keypoints, Hamming distances."""
    return FeatureBaseline("orb", cv2.ORB_create(nfeatures=features), cv2.NORM_HAMMING)


BASELINES = {"sift": sift, "orb": orb}
