"""config/jetson.yaml on a machine without TensorRT, as a new user meets it.

Without the fallback the node says how to get going (``backend:=onnxruntime`` or
``allow_backend_fallback:=true``); with it, the fallback notice is a ROS log line of the node
(so it reaches /rosout and launch's log), and the node serves on onnxruntime.
"""
import os
import re

import pytest
from ros_helpers import REPO, RosProcess, require_rclpy  # noqa: I001

require_rclpy()

pytestmark = pytest.mark.ros

JETSON = os.path.join(REPO, "config", "jetson.yaml")


def tensorrt_usable():
    try:
        import pycuda.driver as cuda
        import tensorrt  # noqa: F401

        cuda.init()
        return cuda.Device.count() > 0
    except Exception:
        return False


pytestmark = [pytest.mark.ros, pytest.mark.skipif(
    tensorrt_usable(), reason="TensorRT works here: the profile loads as meant")]


def run_until(process, text, timeout=90.0):
    found = process.wait_for_output(text, timeout)
    code = process.stop()
    output = process.output()
    process.cleanup()
    return found, code, output


def test_jetson_profile_without_tensorrt_says_how_to_get_going():
    process = RosProcess("loftr_ros.ros.node", name="matcher_node", ros_args=[
        "--params-file", JETSON, "-r", "__ns:=/jetson_no_trt"])
    found, code, output = run_until(process, "no model loaded")
    assert found and code == 0, output
    (line,) = [line for line in output.splitlines() if "no model loaded" in line]
    assert "backend:=onnxruntime" in line and "allow_backend_fallback:=true" in line, line
    assert "Traceback" not in output


def test_jetson_profile_with_fallback_logs_it_as_a_ros_line():
    process = RosProcess("loftr_ros.ros.node", name="matcher_node", ros_args=[
        "--params-file", JETSON, "-r", "__ns:=/jetson_fallback",
        "-p", "allow_backend_fallback:=true"])
    found, code, output = run_until(process, "ready:")
    assert found and code == 0, output
    notices = [line for line in output.splitlines() if "falling back to onnxruntime" in line]
    assert notices, output
    ros_line = re.compile(r"^\[WARN\] \[\d+\.\d+\] \[jetson_fallback\.loftr_matcher\]: ")
    assert all(ros_line.match(line) for line in notices), notices
    assert "ready: backend onnxruntime" in output
    assert "\x1b[" not in output, "no colour codes in redirected output"
