"""The node's geometry outputs without a node: per-frame estimate, camera_info, messages."""
import cv2
import numpy as np
import pytest

from loftr_ros.matching.geometry import rotation_error_deg
from loftr_ros.ros.geometry_outputs import (
    camera_model_from_info,
    estimate_frame_geometry,
    quaternion_from_rotation,
    rotation_from_quaternion,
    spread_across_line,
)


class Info:
    def __init__(self, k, d=(), model="plumb_bob", width=640, height=480):
        self.k, self.d, self.distortion_model = list(k), list(d), model
        self.width, self.height = width, height


K = [500.0, 0, 320, 0, 500.0, 240, 0, 0, 1]


def planar_matches(count=200, outliers=40, seed=0):
    rng = np.random.default_rng(seed)
    homography = np.array([[1.02, 0.03, 12.0], [-0.02, 0.98, -7.0], [1e-5, 2e-5, 1.0]])
    ref = rng.uniform(20, 600, (count, 2))
    cur = cv2.perspectiveTransform(ref.reshape(-1, 1, 2), homography).reshape(-1, 2)
    cur += rng.normal(0, 0.3, cur.shape)
    cur[:outliers] = rng.uniform(0, 640, (outliers, 2))
    return ref, cur, homography


def test_none_flags_every_match():
    ref, cur, _ = planar_matches()
    result = estimate_frame_geometry("none", ref, cur, 3.0, 15)
    assert result.inliers.all() and result.homography is None and not result.failure


def test_homography_flags_the_outliers():
    ref, cur, truth = planar_matches()
    result = estimate_frame_geometry("homography", ref, cur, 3.0, 15)
    assert not result.failure and result.seconds > 0
    corners = np.array([[0, 0], [640, 0], [640, 480], [0, 480]], np.float64).reshape(-1, 1, 2)
    error = (cv2.perspectiveTransform(corners, result.homography)
             - cv2.perspectiveTransform(corners, truth))
    assert np.linalg.norm(error, axis=2).max() < 1.0, "corners within a pixel"
    assert result.inliers[40:].mean() > 0.95 and result.inliers[:40].mean() < 0.2


def test_too_few_inliers_is_a_failure_with_no_flags():
    ref, cur, _ = planar_matches(count=30, outliers=0)
    result = estimate_frame_geometry("homography", ref, cur, 3.0, 31)
    assert "30 inliers" in result.failure and result.homography is None
    assert not result.inliers.any()


def test_homography_of_matches_along_a_line_is_a_failure():
    # 100 matches within 0.5 px of one line (a thin edge, a horizon): MAGSAC++ returned a
    # homography with every match an inlier that put the frame's far corner 77 px off
    rng = np.random.default_rng(0)
    ref = np.column_stack([rng.uniform(0, 640, 100), np.full(100, 100.0)])
    ref += rng.normal(0, 0.5, ref.shape)
    cur = ref + [5.0, 3.0] + rng.normal(0, 0.5, ref.shape)
    result = estimate_frame_geometry("homography", ref, cur, 3.0, 15)
    assert "along a line" in result.failure and result.homography is None
    assert not result.inliers.any()


def test_spread_across_line():
    rng = np.random.default_rng(1)
    angle = np.radians(30.0)
    along = rng.uniform(-200, 200, 500)
    across = rng.normal(0, 2.0, 500)
    points = np.column_stack([along * np.cos(angle) - across * np.sin(angle),
                              along * np.sin(angle) + across * np.cos(angle)]) + [300, 200]
    assert abs(spread_across_line(points) - 2.0) < 0.2
    assert spread_across_line(points[:2]) == 0.0


def test_camera_info_checks():
    assert camera_model_from_info(Info(K))[0] is not None
    model, reason = camera_model_from_info(Info([0.0] * 9))
    assert model is None and "all-zero" in reason
    model, reason = camera_model_from_info(Info([500.0, 0, 320, 0, -5, 240, 0, 0, 1]))
    assert model is None and "pinhole" in reason
    model, reason = camera_model_from_info(Info(K, d=[0.1, 0, 0, 0], model="equidistant"))
    assert model is None and "equidistant" in reason


@pytest.mark.parametrize("d, model", [([0.1, 0.01, 0.0], "plumb_bob"),
                                      ([0.1, 0.01, 0, 0, 0.001, 0.1], "rational_polynomial")])
def test_camera_info_with_a_distortion_length_opencv_refuses_gives_no_camera(d, model):
    # cv2.undistortPoints raised on these lengths inside the node's estimate, so the frame's
    # ~/matches were lost too; now the camera_info is refused with the reason and no pose
    camera, reason = camera_model_from_info(Info(K, d=d, model=model))
    assert camera is None and f"D has {len(d)} coefficients" in reason
    ref, cur, _ = planar_matches()
    result = estimate_frame_geometry("essential", ref, cur, 1.0, 15, camera, camera, (640, 480))
    assert "camera_info" in result.failure and not result.inliers.any()


def test_camera_info_with_zero_distortion_of_any_length_is_used():
    assert camera_model_from_info(Info(K, d=[0.0, 0.0, 0.0]))[0] is not None


def test_essential_without_camera_or_with_another_size_fails():
    ref, cur, _ = planar_matches()
    assert "camera_info" in estimate_frame_geometry("essential", ref, cur, 1.0, 15).failure
    camera, _ = camera_model_from_info(Info(K, width=320, height=240))
    result = estimate_frame_geometry("essential", ref, cur, 1.0, 15, camera, camera, (640, 480))
    assert "320x240" in result.failure and not result.inliers.any()


def test_essential_recovers_a_known_motion():
    rng = np.random.default_rng(2)
    points = np.column_stack([rng.uniform(-2, 2, 300), rng.uniform(-1.5, 1.5, 300),
                              rng.uniform(3, 8, 300)])
    angle = np.radians(6.0)
    rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0],
                         [-np.sin(angle), 0, np.cos(angle)]])  # X_cur = R X_ref + t
    translation = np.array([-0.5, 0.05, 0.1])
    k = np.array(K).reshape(3, 3)

    def project(x):
        p = (k @ x.T).T
        return p[:, :2] / p[:, 2:]

    ref = project(points)
    cur = project((rotation @ points.T).T + translation)
    camera, _ = camera_model_from_info(Info(K))
    result = estimate_frame_geometry("essential", ref, cur, 1.0, 15, camera, camera, (640, 480))
    assert not result.failure
    assert rotation_error_deg(result.rotation, rotation.T) < 0.5
    centre = -rotation.T @ translation
    assert np.degrees(np.arccos(result.position @ centre / np.linalg.norm(centre))) < 2.0
    assert abs(np.linalg.norm(result.position) - 1.0) < 1e-9


@pytest.mark.parametrize("seed", range(5))
def test_quaternion_round_trip(seed):
    rotation, _ = cv2.Rodrigues(np.random.default_rng(seed).normal(0, 1.5, 3))
    x, y, z, w = quaternion_from_rotation(rotation)
    assert w >= 0 and abs(np.linalg.norm([x, y, z, w]) - 1) < 1e-12
    np.testing.assert_allclose(rotation_from_quaternion(x, y, z, w), rotation, atol=1e-9)
