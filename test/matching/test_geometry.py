"""Robust homography and relative pose with inlier flags (loftr_ros.matching.geometry)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from loftr_ros.matching import geometry

K = np.array([[500.0, 0.0, 320.0], [0.0, 480.0, 240.0], [0.0, 0.0, 1.0]])


def _scene(rng: np.random.Generator, count: int = 200):
    """3D points in front of camera 0, a known motion, and their pixels in both cameras."""
    points = np.column_stack([rng.uniform(-2, 2, count), rng.uniform(-1.5, 1.5, count),
                              rng.uniform(3, 8, count)])
    rotation, _ = cv2.Rodrigues(np.array([0.05, -0.2, 0.03]))
    translation = np.array([0.6, 0.1, 0.2])
    points1 = points @ rotation.T + translation

    def project(p):
        uvw = p @ K.T
        return uvw[:, :2] / uvw[:, 2:]
    return project(points), project(points1), rotation, translation / np.linalg.norm(translation)


def test_relative_pose_recovers_motion_and_flags_outliers():
    rng = np.random.default_rng(3)
    pixels0, pixels1, rotation, direction = _scene(rng)
    outliers = rng.choice(len(pixels0), 40, replace=False)
    pixels1 = pixels1.copy()
    pixels1[outliers] = rng.uniform([0, 0], [640, 480], (40, 2))
    for estimator in geometry.ESTIMATORS:
        estimate = geometry.estimate_relative_pose(pixels0, pixels1, K, K, 1.0, estimator)
        assert geometry.rotation_error_deg(estimate.rotation, rotation) < 0.5
        assert geometry.translation_angle_deg(estimate.translation, direction) < 2.0
        assert np.isclose(np.linalg.norm(estimate.translation), 1.0)
        assert not estimate.inliers[outliers].any()
        assert estimate.inliers.sum() >= 0.95 * (len(pixels0) - 40)


def test_camera_pose_in_reference_inverts_the_motion():
    rotation, _ = cv2.Rodrigues(np.array([0.1, 0.2, -0.3]))
    translation = np.array([1.0, -2.0, 0.5])
    orientation, position = geometry.camera_pose_in_reference(rotation, translation)
    # Camera 1's centre, mapped into camera 1's frame, is its origin.
    assert np.allclose(rotation @ position + translation, 0.0)
    assert np.allclose(orientation @ rotation, np.eye(3))


def test_homography_with_inliers():
    rng = np.random.default_rng(0)
    H = np.array([[1.05, 0.02, 12.0], [-0.03, 0.98, -7.0], [1e-4, -5e-5, 1.0]])
    pixels0 = rng.uniform([0, 0], [640, 480], (150, 2))
    pixels1 = cv2.perspectiveTransform(pixels0.reshape(-1, 1, 2), H).reshape(-1, 2)
    pixels1[:30] += rng.uniform(30, 60, (30, 2))
    estimate = geometry.estimate_homography(pixels0, pixels1, 2.0)
    assert np.allclose(estimate.homography, H, atol=1e-3)
    assert not estimate.inliers[:30].any() and estimate.inliers[30:].all()


def test_too_few_matches_give_no_model():
    pixels = np.zeros((3, 2))
    assert geometry.estimate_homography(pixels, pixels).homography is None
    estimate = geometry.estimate_relative_pose(np.zeros((4, 2)), np.zeros((4, 2)), K, K)
    assert estimate.rotation is None and estimate.inliers.shape == (4,)


@pytest.mark.parametrize("bad", [None, np.zeros((3, 3)), np.full((3, 3), np.nan), np.eye(2)])
def test_bad_intrinsics_are_refused(bad):
    assert not geometry.valid_intrinsics(bad)
    with pytest.raises(ValueError, match="intrinsics0"):
        geometry.estimate_relative_pose(np.zeros((8, 2)), np.zeros((8, 2)), bad, K)


def test_unknown_estimator():
    with pytest.raises(ValueError, match="unknown estimator"):
        geometry.estimate_homography(np.zeros((8, 2)), np.zeros((8, 2)), estimator="lmeds")
