"""matcher_node with ``estimate: essential``: ~/relative_pose from camera_info, over real DDS.

Frames come from a rendered 3D room (``synthetic.scenes3d.render_sequence``: boxes and walls at
many depths, occlusion) with known camera poses. One node process for the module; tests run in
file order: first without camera_info, then with an all-zero one, then a valid one.
"""
import time

import numpy as np
import pytest
from ros_helpers import (  # noqa: I001
    RosClient,
    node_process,
    publish_until_received,
    require_rclpy,
    wait_for,
    wait_for_diagnostic_status,
)

require_rclpy()

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from loftr_ros.matching.geometry import rotation_error_deg, translation_angle_deg  # noqa: E402
from loftr_ros.ros import interface as api  # noqa: E402
from loftr_ros.ros.geometry_outputs import rotation_from_quaternion  # noqa: E402
from loftr_ros.ros.image_conversion import array_to_image_msg  # noqa: E402
from loftr_ros.ros.matches_msg import matches_from_msg  # noqa: E402

pytestmark = pytest.mark.ros

NAMESPACE = "/geom_e"
CAMERA = f"{NAMESPACE}/camera/image"
CAMERA_INFO = f"{NAMESPACE}/camera/camera_info"
NODE = f"{NAMESPACE}/{api.NODE_NAME}"
FRAME_SIZE = (640, 480)
STAMP_BASE = 3000
#: frames compared with frame 0: 0.3 to 0.7 m of travel, 6 to 15 degrees of rotation
CURRENT_FRAMES = (3, 5, 7)
#: bounds on the pose of the current camera in the reference camera's frame. Measured with the
#: bundled model (frames 3, 5, 7 against 0): rotation 0.02, 0.01, 0.02 degrees; translation
#: direction 0.04, 0.06, 0.09 degrees.
MAX_ROTATION_ERROR_DEG = 1.0
MAX_TRANSLATION_ANGLE_DEG = 5.0


@pytest.fixture(scope="module")
def sequence():
    from loftr_ros.synthetic.scenes3d import render_sequence, sample_textures

    return render_sequence(np.random.default_rng(3), sample_textures(), FRAME_SIZE[0],
                           FRAME_SIZE[1], frames=max(CURRENT_FRAMES) + 1, loop_frames=180)


@pytest.fixture(scope="module")
def node():
    yield from node_process([
        "-r", f"__ns:={NAMESPACE}", "-r", f"image:={CAMERA}", "-r", f"camera_info:={CAMERA_INFO}",
        "-p", "backend:=onnxruntime", "-p", "estimate:=essential",
        "-p", "estimate_threshold_px:=1.0", "-p", "diagnostics_period:=0.5"])


@pytest.fixture(scope="module")
def client(node):
    ros = RosClient("geom_e_client")
    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    ros.matches = ros.collect(PointCloud2, f"{NODE}/matches", reliable)
    ros.poses = ros.collect(PoseStamped, f"{NODE}/relative_pose", reliable)
    ros.diagnostics = ros.collect(DiagnosticArray, "/diagnostics", QoSProfile(depth=50))
    ros.camera = ros.node.create_publisher(
        Image, CAMERA, QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
    ros.camera_info = ros.node.create_publisher(
        CameraInfo, CAMERA_INFO, QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
    ready = wait_for(lambda: ros.camera.get_subscription_count() > 0
                     and ros.camera_info.get_subscription_count() > 0
                     and ros.poses.subscription.get_publisher_count() > 0, 60.0, process=node)
    assert ready, f"matcher_node did not come up with camera_info:\n{node.output()}"
    yield ros
    ros.close()


def frame_msg(sequence, index, stamp_offset=0):
    msg = array_to_image_msg(sequence.frames[index], "mono8")
    msg.header.stamp.sec, msg.header.stamp.nanosec = STAMP_BASE + stamp_offset + index, 0
    msg.header.frame_id = "test_camera_optical"
    return msg


def info_msg(intrinsics):
    msg = CameraInfo(width=FRAME_SIZE[0], height=FRAME_SIZE[1], distortion_model="plumb_bob")
    msg.k = [float(v) for v in np.asarray(intrinsics).reshape(9)]
    msg.d = [0.0] * 5
    return msg


def send_and_wait(client, node, msg, timeout=20.0):
    return publish_until_received(client.camera, client.matches, msg, node, timeout)


def pose_for(client, node, stamp_sec, timeout=5.0):
    def find():
        for pose in client.poses.snapshot():
            if pose.header.stamp.sec == stamp_sec:
                return pose
        return None

    return wait_for(find, timeout, process=node)


def failed_estimates(client, node):
    status = wait_for_diagnostic_status(client.diagnostics, node)
    values = {kv.key: kv.value for kv in status.values}
    return int(values[api.DIAG_ESTIMATE_FAILED])


# ---------------------------------------------------------------------------------------------


def test_no_camera_info_gives_matches_but_no_pose(client, node, sequence):
    send_and_wait(client, node, frame_msg(sequence, 0))
    matches = matches_from_msg(send_and_wait(client, node, frame_msg(sequence, 3)))
    assert len(matches.scores) > 0 and not matches.inliers.any(), "no geometry, no inliers"
    assert pose_for(client, node, STAMP_BASE + 3, timeout=1.0) is None
    assert failed_estimates(client, node) >= 1
    assert node.wait_for_output("no camera_info received yet on " + CAMERA_INFO, 5.0), \
        node.output()[-2000:]


def test_all_zero_camera_info_is_refused_with_a_warning(client, node, sequence):
    client.camera_info.publish(info_msg(np.zeros((3, 3))))
    assert node.wait_for_output("all-zero K", 5.0), node.output()[-2000:]
    send_and_wait(client, node, frame_msg(sequence, 5))
    assert pose_for(client, node, STAMP_BASE + 5, timeout=1.0) is None
    assert node.alive()


def test_relative_pose_follows_the_known_3d_motion(client, node, sequence):
    from loftr_ros.synthetic.scenes3d import pair_from_sequence

    client.camera_info.publish(info_msg(sequence.intrinsics))
    time.sleep(0.3)
    reference = frame_msg(sequence, 0, stamp_offset=100)
    send_and_wait(client, node, reference)
    response = client.call(Trigger, f"{NODE}/set_reference")
    assert response.success and f"{STAMP_BASE + 100}." in response.message, response.message
    rotation_errors, translation_angles = [], []
    for index in CURRENT_FRAMES:
        msg = frame_msg(sequence, index, stamp_offset=100)
        matches = matches_from_msg(send_and_wait(client, node, msg))
        pose = pose_for(client, node, msg.header.stamp.sec)
        assert pose is not None, f"no pose for frame {index}:\n{node.output()[-2000:]}"
        assert pose.header.frame_id == "test_camera_optical", "default: the reference's frame"
        assert pose.header.stamp.nanosec == 0
        truth = pair_from_sequence(sequence, 0, index)  # X_cur = R X_ref + t
        true_rotation = truth.rotation.T                 # current camera's axes in the reference
        true_position = -truth.rotation.T @ truth.translation
        q = pose.pose.orientation
        rotation = rotation_from_quaternion(q.x, q.y, q.z, q.w)
        position = np.array([pose.pose.position.x, pose.pose.position.y, pose.pose.position.z])
        assert abs(np.linalg.norm(position) - 1.0) < 1e-6, "unit length: the scale is unknown"
        rotation_errors.append(rotation_error_deg(rotation, true_rotation))
        translation_angles.append(translation_angle_deg(position, true_position))
        assert 0 < matches.inliers.sum() <= len(matches.scores)
    print("rotation error (deg) " + ", ".join(f"{e:.2f}" for e in rotation_errors)
          + "; translation direction error (deg) "
          + ", ".join(f"{a:.2f}" for a in translation_angles)
          + f" for frames {CURRENT_FRAMES} against 0")
    assert max(rotation_errors) < MAX_ROTATION_ERROR_DEG, rotation_errors
    assert max(translation_angles) < MAX_TRANSLATION_ANGLE_DEG, translation_angles


def test_pose_frame_id_parameter_applies_live(client, node, sequence):
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    request = SetParameters.Request(parameters=[
        Parameter("pose_frame_id", value="reference_camera").to_parameter_msg()])
    assert client.call(SetParameters, f"{NODE}/set_parameters", request).results[0].successful
    msg = frame_msg(sequence, 3, stamp_offset=200)
    send_and_wait(client, node, msg)
    pose = pose_for(client, node, msg.header.stamp.sec)
    assert pose is not None and pose.header.frame_id == "reference_camera"
