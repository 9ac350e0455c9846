"""matcher_node fed hostile input over real Fast DDS: it answers, logs and keeps running.

One node process for the module with ``image_transport: compressed`` and ``estimate:
essential``; tests run in file order. A compressed frame whose header declares a huge size (a
decompression bomb of a few hundred bytes) must be refused before decoding, from the frame path
and from ``set_reference``; a camera_info whose D has a length OpenCV refuses must cost the pose
only, never the frame's ``~/matches``.
"""
import struct
import time
import zlib

import cv2
import pytest
from ros_helpers import RosClient, node_process, require_rclpy, wait_for  # noqa: I001

require_rclpy()

from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, PointCloud2  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from loftr_ros.ros import interface as api  # noqa: E402
from loftr_ros.ros.compressed_image import encode_compressed_msg  # noqa: E402
from loftr_ros.synthetic.virtual_camera import make_sequence  # noqa: E402

pytestmark = pytest.mark.ros

NAMESPACE = "/bad_input"
CAMERA = f"{NAMESPACE}/cam/image_raw"
CAMERA_INFO = f"{NAMESPACE}/cam/camera_info"
NODE = f"{NAMESPACE}/{api.NODE_NAME}"
FRAME_SIZE = (320, 240)


@pytest.fixture(scope="module")
def node():
    yield from node_process([
        "-r", f"__ns:={NAMESPACE}", "-r", f"image:={CAMERA}", "-r", f"camera_info:={CAMERA_INFO}",
        "-p", "backend:=onnxruntime", "-p", "image_transport:=compressed",
        "-p", "estimate:=essential", "-p", "auto_reference:=false"])


@pytest.fixture(scope="module")
def client(node):
    ros = RosClient("bad_input_client")
    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    ros.matches = ros.collect(PointCloud2, f"{NODE}/matches", reliable)
    ros.poses = ros.collect(PoseStamped, f"{NODE}/relative_pose", reliable)
    ros.camera = ros.node.create_publisher(
        CompressedImage, f"{CAMERA}/compressed",
        QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
    ros.camera_info = ros.node.create_publisher(CameraInfo, CAMERA_INFO, reliable)
    ready = wait_for(lambda: ros.camera.get_subscription_count() > 0
                     and ros.camera_info.get_subscription_count() > 0
                     and ros.poses.subscription.get_publisher_count() > 0, 60.0, process=node)
    assert ready, f"matcher_node did not come up:\n{node.output()}"
    yield ros
    ros.close()


@pytest.fixture(scope="module")
def frames():
    images, _ = make_sequence(3, FRAME_SIZE, step=3.0)
    return images


def png_declaring(width, height):
    """A 69-byte PNG whose IHDR declares ``width`` x ``height`` RGB pixels."""
    def chunk(kind, payload):
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload)))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(bytes(100))) + chunk(b"IEND", b""))


def jpeg_declaring(image, width, height):
    """``image`` as a JPEG cut after its scan header, its frame header declaring another size."""
    data = bytearray(cv2.imencode(".jpg", image)[1].tobytes())
    offset = 2
    while data[offset + 1] != 0xC0:
        offset += 2 + struct.unpack(">H", bytes(data[offset + 2:offset + 4]))[0]
    data[offset + 5:offset + 9] = struct.pack(">HH", height, width)
    scan = bytes(data).index(b"\xff\xda")
    return bytes(data[:scan + 200]) + b"\xff\xd9"


def set_reference_after(client, node, data, stamp):
    """Publish ``data`` (best effort: repeatedly) and call set_reference until the node has it
    as its newest frame (the answer names the stamp or the refusal); return the answer."""
    msg = CompressedImage(format="png")
    msg.data = data
    msg.header.stamp.sec = stamp
    answer = None
    for _ in range(10):
        client.camera.publish(msg)
        time.sleep(0.3)
        answer = client.call(Trigger, f"{NODE}/set_reference")
        if "declares" in answer.message or f"stamp {stamp}." in answer.message:
            return answer
    pytest.fail(f"set_reference never saw the frame stamped {stamp}: {answer.message}\n"
                f"{node.output()[-3000:]}")


@pytest.mark.parametrize("kind, side", [("png", 60000), ("png", 20000), ("jpeg", 20000)])
def test_header_declaring_a_huge_frame_is_refused_and_the_node_keeps_serving(
        node, client, frames, kind, side):
    # PNG 60000^2 made OpenCV raise inside set_reference, which ended the node; JPEG 20000^2
    # made it fill 2.4 GB before the frame was refused
    data = png_declaring(side, side) if kind == "png" else jpeg_declaring(frames[0], side, side)
    answer = set_reference_after(client, node, data, stamp=100 + side // 1000)
    assert not answer.success
    assert f"declares {side}x{side} pixels" in answer.message, answer.message
    assert node.alive(), node.output()
    good = encode_compressed_msg(frames[0], "jpeg")
    answer = set_reference_after(client, node, bytes(good.data), stamp=200 + side // 1000)
    assert answer.success, answer.message


def test_camera_info_with_an_unusable_distortion_costs_the_pose_not_the_matches(
        node, client, frames):
    info = CameraInfo(width=FRAME_SIZE[0], height=FRAME_SIZE[1], distortion_model="plumb_bob")
    info.k = [300.0, 0.0, 160.0, 0.0, 300.0, 120.0, 0.0, 0.0, 1.0]
    info.d = [0.1, 0.01, 0.0]  # 3 coefficients: cv2.undistortPoints refuses the length
    client.camera_info.publish(info)
    assert node.wait_for_output("D has 3 coefficients", 20.0), node.output()[-3000:]
    before = len(client.matches)
    current = encode_compressed_msg(frames[2], "jpeg")
    current.header.stamp.sec = 300
    deadline = time.monotonic() + 20.0
    while len(client.matches) == before and time.monotonic() < deadline:
        client.camera.publish(current)
        wait_for(lambda: len(client.matches) > before, 1.0, process=node)
    assert len(client.matches) > before, f"no ~/matches:\n{node.output()[-3000:]}"
    assert client.matches.last().width > 0
    assert len(client.poses) == 0
    assert "frame failed" not in node.output(), node.output()[-3000:]
