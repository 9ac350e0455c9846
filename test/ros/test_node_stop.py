"""Stopping cleanly whatever the signals: the matcher node and image_player as processes.

GNU ``timeout`` and a user pressing Ctrl-C twice send a second SIGINT while the first one's
clean-up runs; launch sends SIGINT while a timer callback may be publishing. Each stop must exit
0 without a traceback or an abort.
"""
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from ros_helpers import (  # noqa: I001
    REPO,
    RosClient,
    RosProcess,
    configure_ros_environment,
    model_ros_args,
    require_rclpy,
    wait_for,
)

require_rclpy()

from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

pytestmark = pytest.mark.ros

BAD_WORDS = ("Traceback", "terminate called", "KeyboardInterrupt", "RCLError",
             "context is invalid")


def signal_repeatedly(process, count, spacing_s):
    """SIGINT ``count`` times, ``spacing_s`` apart (stops early once the process is gone)."""
    for _ in range(count):
        if not process.alive():
            break
        process.process.send_signal(signal.SIGINT)
        time.sleep(spacing_s)


def finish(process, timeout=20.0):
    try:
        process.process.wait(timeout=timeout)
    except Exception:
        process.process.kill()
        process.process.wait()
    code, output = process.process.returncode, process.output()
    process.cleanup()
    return code, output


def test_node_survives_repeated_sigint_during_its_clean_up():
    """Bursts of SIGINT, some landing while the node shuts its worker, model and DDS down."""
    results = []
    for attempt, spacing in enumerate((0.002, 0.01, 0.03)):
        node = RosProcess("loftr_ros.ros.node", name="matcher_node", ros_args=[
            "-r", f"__ns:=/stop_test_{attempt}", "-p", "backend:=onnxruntime"]
            + model_ros_args())
        assert node.wait_for_output("ready:", 90.0), node.output()
        signal_repeatedly(node, 40, spacing)
        results.append(finish(node))
    for code, output in results:
        assert code == 0, output
        assert not [word for word in BAD_WORDS if word in output], output


def test_image_player_stops_cleanly_while_publishing(tmp_path):
    """SIGINT while the timer publishes frames back to back (a fast rate, large frames), and
    at a camera's rate (the spin loop then sees the context gone rather than an exception)."""
    rng = np.random.default_rng(0)
    for index in range(3):
        cv2.imwrite(str(tmp_path / f"f{index}.png"),
                    rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
    client = RosClient("player_stop_client")
    frames = client.collect(Image, "/player_stop/image",
                            QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
    results = []
    try:
        for attempt in range(6):
            frames.clear()
            player = RosProcess("loftr_ros.ros.image_player", name="image_player", ros_args=[
                "-r", "__ns:=/player_stop", "-p", f"path:={tmp_path}",
                "-p", f"rate:={500.0 if attempt % 2 else 10.0}",
                "-p", "loop:=true"])
            assert wait_for(lambda: len(frames) > 5, 30.0, process=player), player.output()
            signal_repeatedly(player, 1 + attempt % 3, 0.005)
            results.append(finish(player))
    finally:
        client.close()
    for code, output in results:
        assert code == 0, output
        assert not [word for word in BAD_WORDS if word in output], output


#: image_player with Ctrl-C's effect (the context shut down) placed on its third spin: after the
#: loop's rclpy.ok() and before the executor's wait makes its timeout timer
PLAYER_STOPPED_BEFORE_A_SPIN = """
import sys
import rclpy
import rclpy.executors
from loftr_ros.ros import image_player
spin_once, calls = rclpy.executors.SingleThreadedExecutor.spin_once, []
def stopped_spin_once(self, timeout_sec=None):
    calls.append(timeout_sec)
    if len(calls) == 3:
        rclpy.shutdown()
    spin_once(self, timeout_sec)
rclpy.executors.SingleThreadedExecutor.spin_once = stopped_spin_once
code = image_player.main(["image_player", "--ros-args", "-r", "__ns:=/player_race",
                          "-p", "path:=" + sys.argv[1], "-p", "rate:=10.0", "-p", "loop:=true"])
print("spins", len(calls))
sys.exit(code)
"""


def test_image_player_stops_when_the_context_goes_down_right_before_a_spin(tmp_path):
    """The window test_image_player_stops_cleanly_while_publishing hits by chance, every time:
    exit 0 and no traceback (rclpy raised RCLError 'failed to create timer' there)."""
    cv2.imwrite(str(tmp_path / "f0.png"), np.zeros((120, 160, 3), np.uint8))
    configure_ros_environment()
    result = subprocess.run([sys.executable, "-c", PLAYER_STOPPED_BEFORE_A_SPIN, str(tmp_path)],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "spins 3" in output, output
    assert not [word for word in BAD_WORDS if word in output], output


#: the demo with Ctrl-C's effect on its client (the client's context shut down) placed on the
#: client's third spin, while it waits for the node's service
DEMO_STOPPED_BEFORE_A_SPIN = """
import sys
import rclpy
import rclpy.executors
from loftr_ros.ros import demo
spin_once, calls = rclpy.executors.SingleThreadedExecutor.spin_once, []
def stopped_spin_once(self, timeout_sec=None):
    calls.append(timeout_sec)
    if len(calls) == 3:
        rclpy.shutdown(context=self._context)
    spin_once(self, timeout_sec)
rclpy.executors.SingleThreadedExecutor.spin_once = stopped_spin_once
code = demo.main(["--out", sys.argv[1], "--frames", "2", "--size", "320x240", "--quiet"])
print("spins", len(calls))
sys.exit(code)
"""


def test_demo_stops_when_its_client_context_goes_down_right_before_a_spin(tmp_path):
    """A Ctrl-C that shuts the demo client's context down between two spins: the demo says it
    was interrupted, stops the node it started, and exits without a traceback."""
    configure_ros_environment()
    result = subprocess.run([sys.executable, "-c", DEMO_STOPPED_BEFORE_A_SPIN,
                             str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    output = result.stdout + result.stderr
    assert "demo: interrupted" in output and "spins 3" in output, output
    assert result.returncode == 1, output   # no matches arrived before the stop
    assert not [word for word in BAD_WORDS if word in output], output
