"""Helpers for tests that talk to real ROS 2 processes over Fast DDS on loopback.

- :func:`configure_ros_environment` puts this process (and every child it starts) on a private
  ``ROS_DOMAIN_ID`` with the repository's Fast DDS profile (loopback only, 16 MiB shared memory)
  and ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``. Call it before ``rclpy.init``.
- :class:`RosProcess` starts ``python -m loftr_ros.ros.node`` (or any module) with ``--ros-args``,
  keeps its output in a log file, stops it with SIGINT and reports the exit code.
- :class:`RosClient` is an rclpy node in its own context, spun by a background thread, with
  helpers to collect messages and call services.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASTDDS_PROFILE = os.path.join(REPO, "config", "fastdds_localhost.xml")
SHARED_DIR = os.environ.get("LOFTR_SHARED_DIR", os.path.join(os.path.dirname(REPO), "shared"))
SEED_ONNX = os.path.join(SHARED_DIR, "seed_weights", "LoFTR_teacher.onnx")
SEED_PT = os.path.join(SHARED_DIR, "seed_weights", "LoFTR_teacher.pt")


def require_rclpy():
    """Import rclpy and the messages the tests need, or skip the module with the reason."""
    try:
        import rclpy  # noqa: F401
        from diagnostic_msgs.msg import DiagnosticArray  # noqa: F401
        from sensor_msgs.msg import Image  # noqa: F401
        from std_srvs.srv import Trigger  # noqa: F401
    except Exception as exc:  # ImportError, or the wheels' shared libraries not loading
        pytest.skip(f"ROS 2 Python packages not usable: {type(exc).__name__}: {exc}",
                    allow_module_level=True)


_DOMAIN_ID: Optional[int] = None


def configure_ros_environment() -> Dict[str, str]:
    """Make this process and its children use an isolated loopback ROS 2 graph (idempotent).

    Keeps a ``ROS_DOMAIN_ID`` already set (scripts/env.sh picks one per run); else picks one in
    10-99 like scripts/env.sh (clear of the default 0; IDs above 101 can clash with Linux's
    ephemeral ports).
    """
    global _DOMAIN_ID
    if _DOMAIN_ID is None:
        _DOMAIN_ID = int(os.environ.get("ROS_DOMAIN_ID") or random.randint(10, 99))
    os.environ["ROS_DOMAIN_ID"] = str(_DOMAIN_ID)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = FASTDDS_PROFILE
    os.environ["PYTHONUNBUFFERED"] = "1"
    os.environ.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")
    return dict(os.environ)


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.02,
             process: Optional["RosProcess"] = None) -> Any:
    """Poll ``predicate`` until truthy (returned) or ``timeout``; None on timeout.

    With ``process``, fail at once (with its output) when that process has died.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if process is not None and not process.alive():
            pytest.fail(f"{process.name} exited with {process.returncode}:\n{process.output()}")
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


class RosProcess:
    """A child process running a loftr_ros module with ``--ros-args``.

    Args:
        module: e.g. ``"loftr_ros.ros.node"``.
        ros_args: everything after ``--ros-args`` (``-p name:=value``, ``-r from:=to``...).
        args: plain arguments before ``--ros-args``.
        env: extra environment variables.
    """

    def __init__(self, module: str, ros_args: Optional[List[str]] = None,
                 args: Optional[List[str]] = None, env: Optional[Dict[str, str]] = None,
                 name: Optional[str] = None) -> None:
        configure_ros_environment()
        self.name = name or module
        command = [sys.executable, "-m", module] + list(args or [])
        if ros_args:
            command += ["--ros-args"] + list(ros_args)
        self.command = command
        self.log = tempfile.NamedTemporaryFile(prefix="loftr_ros_", suffix=".log", delete=False)
        environment = dict(os.environ)
        environment.update(env or {})
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT,
                                        env=environment, cwd=REPO)

    @property
    def returncode(self) -> Optional[int]:
        return self.process.poll()

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        """Everything the process wrote so far (stdout and stderr)."""
        self.log.flush()
        with open(self.log.name, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def wait_for_output(self, text: str, timeout: float) -> bool:
        """True once ``text`` appears in the output (False on timeout or exit)."""
        return bool(wait_for(lambda: text in self.output() or not self.alive(), timeout)
                    and text in self.output())

    def stop(self, timeout: float = 15.0) -> int:
        """SIGINT, wait, SIGKILL if it hangs; return the exit code."""
        if self.alive():
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def cleanup(self) -> None:
        self.stop()
        self.log.close()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass


class RosClient:
    """An rclpy node in a private context, spun in a background thread."""

    def __init__(self, name: str = "loftr_test_client") -> None:
        import rclpy
        from rclpy.executors import MultiThreadedExecutor

        configure_ros_environment()
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # shutdown races end the thread quietly
            pass

    def collect(self, msg_type: Any, topic: str, qos: Any = 10) -> "Collector":
        """Subscribe and keep every message (with its arrival time) in a list."""
        collector = Collector()
        collector.subscription = self.node.create_subscription(msg_type, topic, collector.add,
                                                               qos)
        return collector

    def call(self, srv_type: Any, name: str, request: Any = None, timeout: float = 10.0) -> Any:
        """Call a service (waits for it); return the response or fail the test."""
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                pytest.fail(f"service {name} not available after {timeout} s")
            future = client.call_async(request if request is not None else srv_type.Request())
            done = wait_for(future.done, timeout)
            if not done:
                pytest.fail(f"service {name} did not answer within {timeout} s")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        import rclpy

        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5.0)


class Collector:
    """Messages received on one subscription, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: List[Any] = []
        self.times: List[float] = []
        self.subscription = None

    def add(self, msg: Any) -> None:
        with self._lock:
            self.items.append(msg)
            self.times.append(time.monotonic())

    def __len__(self) -> int:
        with self._lock:
            return len(self.items)

    def snapshot(self) -> List[Any]:
        with self._lock:
            return list(self.items)

    def last(self) -> Any:
        with self._lock:
            return self.items[-1] if self.items else None

    def timed_snapshot(self) -> List[Tuple[float, Any]]:
        """``(arrival time (monotonic), message)`` of every message so far, oldest first."""
        with self._lock:
            return list(zip(self.times, self.items))

    def clear(self) -> None:
        with self._lock:
            self.items.clear()
            self.times.clear()


def diagnostic_values(array_msg: Any) -> Dict[str, str]:
    """The key/value pairs of the loftr_ros status in a DiagnosticArray (empty if absent)."""
    from loftr_ros.ros.interface import DIAGNOSTIC_NAME

    for status in array_msg.status:
        if status.name == DIAGNOSTIC_NAME:
            return {kv.key: kv.value for kv in status.values}
    return {}


def latest_diagnostic_status(collector: Collector, newer_than: float) -> Any:
    """The loftr_ros DiagnosticStatus of the newest DiagnosticArray in ``collector`` that arrived
    after ``newer_than`` (monotonic time), or None."""
    from loftr_ros.ros.interface import DIAGNOSTIC_NAME

    for arrived, msg in reversed(collector.timed_snapshot()):
        for status in msg.status:
            if arrived > newer_than and status.name == DIAGNOSTIC_NAME:
                return status
    return None


def wait_for_diagnostic_status(collector: Collector, process: "RosProcess",
                               newer_than: Optional[float] = None, timeout: float = 10.0) -> Any:
    """Wait for a loftr_ros DiagnosticStatus that arrives after ``newer_than`` (monotonic time;
    default now) and return it; fail the test when none comes within ``timeout`` seconds."""
    newer_than = time.monotonic() if newer_than is None else newer_than
    status = wait_for(lambda: latest_diagnostic_status(collector, newer_than), timeout,
                      process=process)
    if status is None:
        pytest.fail(f"no /diagnostics from {process.name} within {timeout} s")
    return status


def publish_until_received(publisher: Any, collector: Collector, msg: Any,
                           process: "RosProcess", timeout: float = 20.0) -> Any:
    """Publish ``msg`` until ``collector`` holds a message with the same header stamp, and return
    that message; fail the test (with the process's output) after ``timeout`` seconds.

    Publishing again every second suits best-effort topics, where the first copy may be lost.
    """
    stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)

    def arrived() -> Any:
        for item in collector.snapshot():
            if (item.header.stamp.sec, item.header.stamp.nanosec) == stamp:
                return item
        return None

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        publisher.publish(msg)
        found = wait_for(arrived, 1.0, process=process)
        if found:
            return found
    pytest.fail(f"no answer for the message stamped {stamp}:\n{process.output()[-3000:]}")


def node_process(ros_args: Sequence[str]) -> Iterator[RosProcess]:
    """Body of a node fixture: start ``loftr_ros.ros.node`` with ``ros_args`` (and
    :func:`model_ros_args`), yield it, then stop it with SIGINT and fail unless it exited with 0
    and logged no traceback. Use as ``yield from node_process([...])``."""
    process = RosProcess("loftr_ros.ros.node", name="matcher_node",
                         ros_args=list(ros_args) + model_ros_args())
    yield process
    code = process.stop()
    output = process.output()
    process.cleanup()
    if code != 0:
        pytest.fail(f"matcher_node exited with {code} on SIGINT:\n{output}")
    if "Traceback" in output:
        pytest.fail(f"matcher_node logged a traceback:\n{output}")


def model_ros_args() -> List[str]:
    """``-p`` arguments selecting the model for node tests: none, as the node's default is the
    bundled model (its ONNX ships in loftr_ros/weights); fails the test when that file is missing.
    """
    from loftr_ros.runtime import default_weights

    path = default_weights("onnx")
    if not os.path.isfile(path):
        pytest.fail(f"the bundled model {path} is missing from the package")
    return []
