"""The node's geometry outputs: robust estimate per frame, camera_info, and their messages.

:func:`estimate_frame_geometry` runs :mod:`loftr_ros.matching.geometry` (MAGSAC++) on one frame's
matches for the node's ``estimate`` mode and says what to publish; the ``*_msg`` functions build
``~/homography`` (std_msgs/Float64MultiArray) and ``~/relative_pose`` (geometry_msgs/PoseStamped).
Message classes are imported inside the functions, so the estimate is testable without rclpy.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np

from loftr_ros.matching.geometry import (
    camera_pose_in_reference,
    estimate_homography,
    estimate_relative_pose,
    valid_intrinsics,
)
from loftr_ros.ros.interface import ESTIMATE_ESSENTIAL, ESTIMATE_HOMOGRAPHY, ESTIMATE_NONE


@dataclass(frozen=True)
class CameraModel:
    """A camera's intrinsics from sensor_msgs/CameraInfo.

    Attributes:
        intrinsics: float64 ``[3,3]`` K.
        distortion: float64 ``[D]`` coefficients in OpenCV's order (empty: none).
        size: ``(width, height)`` the calibration is for; ``(0, 0)`` when not given.
    """

    intrinsics: np.ndarray
    distortion: np.ndarray
    size: Tuple[int, int]

    def undistort(self, pixels: np.ndarray) -> np.ndarray:
        """Pixels ``[N,2]`` with the lens distortion removed (same K); unchanged without one."""
        if not len(self.distortion) or not np.any(self.distortion) or not len(pixels):
            return pixels
        import cv2

        points = np.asarray(pixels, np.float64).reshape(-1, 1, 2)
        return cv2.undistortPoints(points, self.intrinsics, self.distortion,
                                   P=self.intrinsics).reshape(-1, 2)


#: distortion models whose coefficients OpenCV takes as they are
_OPENCV_DISTORTION_MODELS = ("plumb_bob", "rational_polynomial", "")
#: numbers of distortion coefficients cv2.undistortPoints accepts (it raises on any other)
_OPENCV_DISTORTION_LENGTHS = (4, 5, 8, 12, 14)


def camera_model_from_info(msg: Any) -> Tuple[Optional[CameraModel], str]:
    """``(model, "")`` from a CameraInfo-like object (``k``, ``d``, ``distortion_model``,
    ``width``, ``height``), or ``(None, reason)`` for one that cannot be used (all-zero or
    non-finite K, an unknown distortion model, a D whose length OpenCV does not take)."""
    intrinsics = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if not np.any(intrinsics):
        return None, "camera_info has an all-zero K (an uncalibrated camera)"
    if not valid_intrinsics(intrinsics):
        return None, f"camera_info K is not a pinhole matrix: {intrinsics.reshape(-1).tolist()}"
    model = str(getattr(msg, "distortion_model", "") or "")
    distortion = np.asarray(getattr(msg, "d", ()), dtype=np.float64).reshape(-1)
    if np.any(distortion) and model not in _OPENCV_DISTORTION_MODELS:
        return None, f"camera_info distortion model {model!r} is not supported (plumb_bob, " \
            "rational_polynomial); publish rectified images with a zero D"
    if not np.all(np.isfinite(distortion)):
        return None, "camera_info D has non-finite values"
    if np.any(distortion) and len(distortion) not in _OPENCV_DISTORTION_LENGTHS:
        return None, f"camera_info D has {len(distortion)} coefficients; {model or 'its model'} " \
            "needs 5 (plumb_bob) or 8 (rational_polynomial)"
    return CameraModel(intrinsics, distortion, (int(msg.width), int(msg.height))), ""


@dataclass(frozen=True)
class FrameGeometry:
    """The estimate for one frame.

    Attributes:
        inliers: bool ``[N]`` for the matches' ``inlier`` field (all True with ``none``; all
            False when the estimate failed).
        homography: float64 ``[3,3]`` reference -> current pixels, when published.
        rotation: float64 ``[3,3]`` current camera's axes in the reference camera's frame.
        position: float64 ``[3]`` unit-length position of the current camera's centre in the
            reference camera's frame.
        failure: why nothing is published ("" = success, or ``estimate: none``).
        seconds: time the estimate took.
    """

    inliers: np.ndarray
    homography: Optional[np.ndarray] = None
    rotation: Optional[np.ndarray] = None
    position: Optional[np.ndarray] = None
    failure: str = ""
    seconds: float = 0.0

    @property
    def inlier_ratio(self) -> float:
        """Inliers / matches (0 without matches)."""
        return float(self.inliers.mean()) if len(self.inliers) else 0.0


def spread_across_line(points: np.ndarray) -> float:
    """RMS distance (pixels) of points ``[N,2]`` from their least-squares line (0 for fewer
    than 3). Matches within the estimate's threshold of one line fit any homography that agrees
    on that line, however it maps the rest of the frame."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    if len(points) < 3:
        return 0.0
    singular = np.linalg.svd(points - points.mean(axis=0), compute_uv=False)
    return float(singular[-1] / np.sqrt(len(points)))


def estimate_frame_geometry(mode: str, keypoints_ref: np.ndarray, keypoints_cur: np.ndarray,
                            threshold_px: float, min_inliers: int,
                            camera_ref: Optional[CameraModel] = None,
                            camera_cur: Optional[CameraModel] = None,
                            frame_size: Optional[Tuple[int, int]] = None) -> FrameGeometry:
    """Robust geometry of one frame's matches for the node's ``estimate`` ``mode``.

    Args:
        keypoints_ref, keypoints_cur: ``[N,2]`` matched pixels (reference, current frame).
        threshold_px: MAGSAC++ threshold, pixels.
        min_inliers: fewer inliers is a failure.
        camera_ref, camera_cur: ``essential`` only: the reference's camera (when it was set) and
            the current one; None = no usable camera_info.
        frame_size: ``(width, height)`` of the current frame, checked against camera_cur's.
    """
    count = len(keypoints_ref)
    if mode == ESTIMATE_NONE:
        return FrameGeometry(np.ones(count, bool))
    started = time.perf_counter()
    none = np.zeros(count, bool)
    if mode == ESTIMATE_HOMOGRAPHY:
        estimate = estimate_homography(keypoints_ref, keypoints_cur, threshold_px)
        inliers = int(estimate.inliers.sum())
        seconds = time.perf_counter() - started
        if estimate.homography is None or inliers < min_inliers:
            return FrameGeometry(none, failure=f"homography: {inliers} inliers of {count} "
                                 f"matches (min_inliers {min_inliers})", seconds=seconds)
        spread = min(spread_across_line(keypoints_ref[estimate.inliers]),
                     spread_across_line(keypoints_cur[estimate.inliers]))
        if spread < threshold_px:
            return FrameGeometry(none, failure=(
                f"homography: the {inliers} inliers lie along a line ({spread:.1f} px across "
                f"it, under estimate_threshold_px {threshold_px:g}), which leaves the "
                "homography undetermined off it"), seconds=seconds)
        return FrameGeometry(estimate.inliers, homography=estimate.homography, seconds=seconds)
    if mode != ESTIMATE_ESSENTIAL:
        raise ValueError(f"unknown estimate mode {mode!r}")
    if camera_ref is None or camera_cur is None:
        return FrameGeometry(none, failure="no usable camera_info (needed for the pose)")
    if frame_size and all(camera_cur.size) and tuple(camera_cur.size) != tuple(frame_size):
        return FrameGeometry(none, failure=(
            f"camera_info is for {camera_cur.size[0]}x{camera_cur.size[1]} but the frames are "
            f"{frame_size[0]}x{frame_size[1]}"))
    points_ref = camera_ref.undistort(np.asarray(keypoints_ref, np.float64))
    points_cur = camera_cur.undistort(np.asarray(keypoints_cur, np.float64))
    pose = estimate_relative_pose(points_ref, points_cur, camera_ref.intrinsics,
                                  camera_cur.intrinsics, threshold_px)
    inliers = int(pose.inliers.sum())
    seconds = time.perf_counter() - started
    if pose.rotation is None or inliers < min_inliers:
        return FrameGeometry(none, failure=f"relative pose: {inliers} inliers of {count} "
                             f"matches (min_inliers {min_inliers})", seconds=seconds)
    rotation, position = camera_pose_in_reference(pose.rotation, pose.translation)
    return FrameGeometry(pose.inliers, rotation=rotation, position=position, seconds=seconds)


def quaternion_from_rotation(rotation: np.ndarray) -> Tuple[float, float, float, float]:
    """``(x, y, z, w)`` unit quaternion of a 3x3 rotation matrix, ``w >= 0``."""
    m = np.asarray(rotation, dtype=np.float64)
    trace = float(np.trace(m))
    # Pick the largest of w, x, y, z to divide by: the others are then well conditioned.
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    quaternion = np.array(q) / np.linalg.norm(q)
    if quaternion[3] < 0:
        quaternion = -quaternion
    return tuple(float(v) for v in quaternion)  # type: ignore[return-value]


def rotation_from_quaternion(x: float, y: float, z: float, w: float) -> np.ndarray:
    """3x3 rotation matrix of a unit quaternion ``(x, y, z, w)``."""
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def homography_msg(homography: np.ndarray) -> Any:
    """std_msgs/Float64MultiArray: 9 values row-major, layout dims ``rows`` 3 and ``cols`` 3."""
    from std_msgs.msg import Float64MultiArray, MultiArrayDimension

    msg = Float64MultiArray()
    msg.layout.dim = [MultiArrayDimension(label="rows", size=3, stride=9),
                      MultiArrayDimension(label="cols", size=3, stride=3)]
    msg.layout.data_offset = 0
    msg.data = [float(v) for v in np.asarray(homography, np.float64).reshape(9)]
    return msg


def homography_from_msg(msg: Any) -> np.ndarray:
    """The 3x3 homography of a ``~/homography`` message."""
    return np.asarray(msg.data, dtype=np.float64).reshape(3, 3)


def pose_msg(rotation: np.ndarray, position: np.ndarray, header: Any, frame_id: str) -> Any:
    """geometry_msgs/PoseStamped with ``header``'s stamp and ``frame_id``."""
    from geometry_msgs.msg import PoseStamped

    msg = PoseStamped()
    msg.header.stamp = header.stamp
    msg.header.frame_id = frame_id
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (
        float(v) for v in np.asarray(position).reshape(3))
    (msg.pose.orientation.x, msg.pose.orientation.y, msg.pose.orientation.z,
     msg.pose.orientation.w) = quaternion_from_rotation(rotation)
    return msg


__all__ = ["CameraModel", "FrameGeometry", "camera_model_from_info", "estimate_frame_geometry",
           "homography_from_msg", "homography_msg", "pose_msg", "quaternion_from_rotation",
           "rotation_from_quaternion", "spread_across_line"]
