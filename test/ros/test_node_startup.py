"""matcher_node start-up: bad parameter values (one clear line, exit 2), a model that cannot be
loaded (the node keeps running and says why), and image_player as a process."""
import os
import time

import cv2
import numpy as np
import pytest
from ros_helpers import RosClient, RosProcess, model_ros_args, require_rclpy, wait_for  # noqa: I001

require_rclpy()

from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

pytestmark = pytest.mark.ros


def stop_node(client, node):
    """Close the test client, stop the node with SIGINT; (exit code, output)."""
    client.close()
    code = node.stop()
    output = node.output()
    node.cleanup()
    return code, output


def run_until_exit(process, timeout=60.0):
    assert wait_for(lambda: not process.alive(), timeout), \
        f"{process.name} still running:\n{process.output()}"
    output = process.output()
    code = process.returncode
    process.cleanup()
    return code, output


@pytest.mark.parametrize("ros_args, words", [
    (["-p", "backend:=cuda"], "backend must be one of"),
    (["-p", "image_qos:=fast"], "image_qos must be one of"),
    (["-p", "preset:=huge"], "preset must be one of"),
    (["-p", "threshold:=2.0"], "threshold"),
    (["-p", "input_width:=320"], "input_height"),
], ids=["bad-backend", "bad-qos", "bad-preset", "threshold-range", "half-input-size"])
def test_bad_parameter_value_stops_the_start_with_one_clear_line(ros_args, words):
    args = ["-p", "backend:=onnxruntime"] + model_ros_args() + ros_args
    code, output = run_until_exit(RosProcess("loftr_ros.ros.node", ros_args=args))
    assert code == 2, output
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if "cannot start" in line]
    assert len(errors) == 1 and words in errors[0], output


@pytest.mark.parametrize("problem", ["missing", "corrupt"])
def test_node_without_a_loadable_model_keeps_running_and_says_why(problem, tmp_path):
    """Missing or corrupt weights: one clear error line, the node stays up, /diagnostics reports
    ERROR with the reason, set_reference fails with it, frames are ignored, Ctrl-C exits 0."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from ros_helpers import diagnostic_values
    from std_srvs.srv import Trigger

    from loftr_ros.ros import interface as api
    from loftr_ros.ros.image_conversion import array_to_image_msg

    weights = tmp_path / "model.onnx"
    if problem == "corrupt":
        weights.write_bytes(b"not an onnx graph" * 100)
    namespace = f"/no_model_{problem}"
    client = RosClient(f"no_model_{problem}_client")
    diagnostics = client.collect(DiagnosticArray, "/diagnostics")
    camera = client.node.create_publisher(Image, f"{namespace}/image", QoSProfile(
        depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
    node = RosProcess("loftr_ros.ros.node", name="matcher_node", ros_args=[
        "-r", f"__ns:={namespace}", "-p", "backend:=onnxruntime", "-p", f"weights:={weights}",
        "-p", "diagnostics_period:=0.3"])
    try:
        def error_status():
            for msg in diagnostics.snapshot():
                for status in msg.status:
                    if status.name == api.DIAGNOSTIC_NAME and status.level == \
                            DiagnosticStatus.ERROR:
                        return status
            return None

        status = wait_for(error_status, 60.0, process=node)
        assert status is not None, node.output()
        assert "no model loaded" in status.message and str(weights) in status.message
        assert diagnostic_values(diagnostics.snapshot()[-1])[api.DIAG_BACKEND] == "none"
        frame = array_to_image_msg(np.full((480, 640), 128, np.uint8), "mono8")

        def frames_received():  # best effort: publish until the node has counted some
            camera.publish(frame)
            values = diagnostic_values(diagnostics.snapshot()[-1])
            return values if int(values.get(api.DIAG_RECEIVED, "0")) > 0 else None

        values = wait_for(frames_received, 30.0, interval=0.2, process=node)
        assert values is not None, node.output()
        assert values[api.DIAG_PROCESSED] == "0", "frames are ignored without a model"
        response = client.call(Trigger, f"{namespace}/{api.NODE_NAME}/set_reference",
                                timeout=10.0)
        assert not response.success and str(weights) in response.message, response.message
        assert node.alive(), node.output()
    finally:
        code, output = stop_node(client, node)
    assert code == 0, output
    assert "Traceback" not in output and "cannot start" not in output, output
    errors = [line for line in output.splitlines() if "no model loaded" in line]
    assert errors and str(weights) in errors[0], output


def test_image_player_publishes_a_folder(tmp_path):
    for index in range(3):
        cv2.imwrite(str(tmp_path / f"f{index}.png"), np.full((40, 60, 3), index * 50, np.uint8))
    client = RosClient("player_test_client")
    frames = client.collect(Image, "/player_test/image",
                            QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    player = RosProcess("loftr_ros.ros.image_player", name="image_player", ros_args=[
        "-r", "__ns:=/player_test", "-p", f"path:={tmp_path}", "-p", "rate:=20.0",
        "-p", "encoding:=mono8", "-p", "frame_id:=cam", "-p", "qos:=reliable",
        "-p", "wait_for_subscribers:=1"])
    try:
        code, output = run_until_exit(player, timeout=30)
        assert code == 0, output
        assert wait_for(lambda: len(frames) == 3, 5.0), f"{len(frames)} frames:\n{output}"
        received = frames.snapshot()
        assert [m.data[0] for m in received] == [0, 50, 100]
        assert all(m.encoding == "mono8" and (m.width, m.height) == (60, 40)
                   and m.header.frame_id == "cam" for m in received)
        stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in received]
        assert abs(stamps[-1] - time.time()) < 30 and stamps == sorted(stamps)
    finally:
        client.close()


def test_image_player_bad_path_is_one_clear_line(tmp_path):
    code, output = run_until_exit(RosProcess(
        "loftr_ros.ros.image_player", args=[os.path.join(str(tmp_path), "missing")]))
    assert code == 2 and "no such file or folder" in output and "Traceback" not in output


def test_torch_backend_reports_torch_loaded():
    """The other side of the no-torch check: the flag is real, torch shows up when used."""
    pytest.importorskip("torch", reason="PyTorch not installed (runtime-only set-up)")
    from diagnostic_msgs.msg import DiagnosticArray
    from ros_helpers import SEED_PT, diagnostic_values

    from loftr_ros.ros import interface as api
    from loftr_ros.runtime import default_weights

    weights = [] if os.path.isfile(default_weights("pt")) else \
        ["-p", f"weights:={SEED_PT}", "-p", "preset:=seed"]
    if weights and not os.path.isfile(SEED_PT):
        pytest.skip("no bundled checkpoint and no seed checkpoint")
    client = RosClient("torch_test_client")
    diagnostics = client.collect(DiagnosticArray, "/diagnostics")
    node = RosProcess("loftr_ros.ros.node", name="matcher_node", ros_args=[
        "-r", "__ns:=/torch_test", "-p", "backend:=torch", "-p", "diagnostics_period:=0.3"]
        + weights)
    try:
        def torch_status():
            for msg in diagnostics.snapshot():
                values = diagnostic_values(msg)
                if values.get(api.DIAG_BACKEND) == "torch":
                    return values
            return None

        values = wait_for(torch_status, 90.0, process=node)
        assert values, node.output()
        assert values[api.DIAG_TORCH_LOADED] == "true"
    finally:
        code, output = stop_node(client, node)
    assert code == 0, output
