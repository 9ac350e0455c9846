"""The main job on a machine without a camera: player + matcher node on rendered frames.

Renders the frames of a camera flying through a 3D room (:mod:`loftr_ros.ros.demo_scenes`;
``--scene planar``: the bundled CC0 photo under a moving homography), starts ``image_player`` and
``matcher_node`` as their own processes (as ``ros2 launch`` would), calls ``~/set_reference``
once the node has a frame, and listens to ``~/matches`` and ``~/debug_image``. Prints one line per
matched frame (matches, median error against the true correspondences, latency, FPS), writes the
debug images to ``--out`` and ends with one summary line.

    python -m loftr_ros.ros.demo --out demo_out
    python -m loftr_ros.ros.demo --scene planar --backend torch --frames 120 --rate 15
    python -m loftr_ros.ros.demo --save-frames ~/loftr_frames   # only write the frames
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

from loftr_ros.cli import size_argument
from loftr_ros.ros import interface as api
from loftr_ros.ros.demo_scenes import SCENES, make_scene, write_frames

NAMESPACE = "/loftr_demo"
CAMERA_TOPIC = f"{NAMESPACE}/camera/image"
NODE_PREFIX = f"{NAMESPACE}/{api.NODE_NAME}"
REPO_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loftr_ros.ros.demo",
        description="Run image_player + loftr_matcher on frames of a camera flying through a "
                    "rendered 3D room (or a photo under a moving homography); print per-frame "
                    "results, save debug images.")
    parser.add_argument("--out", default="demo_out",
                        help="folder for the debug images and the node's log (demo_out)")
    parser.add_argument("--frames", type=int, default=60, help="frames to play (60)")
    parser.add_argument("--rate", type=float, default=10.0, help="frames per second (10)")
    parser.add_argument("--size", type=size_argument, default=(640, 480),
                        help="frame size WxH (640x480)")
    parser.add_argument("--scene", choices=SCENES, default="room",
                        help="room: a camera flying through a rendered 3D room; planar: the "
                             "bundled photo under a moving homography (room)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the room (0)")
    parser.add_argument("--step", type=float, default=1.5,
                        help="camera speed: path time per frame (1.5; planar: 120 = one cycle, "
                             "room: 720 = one loop through the room)")
    parser.add_argument("--encoding", choices=("bgr8", "mono8"), default="bgr8",
                        help="encoding the player publishes (bgr8)")
    parser.add_argument("--params-file", default=None,
                        help="node parameter file (default: the package's config/matcher.yaml)")
    parser.add_argument("--backend", choices=api.BACKEND_CHOICES, default=None,
                        help="override the params file's backend")
    parser.add_argument("--weights", default=None, help="weights file (default: bundled model)")
    parser.add_argument("--preset", default=None, help="model preset (default: from weights)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                        help="extra node parameter, repeatable (e.g. threshold:=0.1)")
    parser.add_argument("--no-debug-images", action="store_true",
                        help="do not subscribe to ~/debug_image (nothing is drawn then)")
    parser.add_argument("--startup-timeout", type=float, default=120.0,
                        help="seconds to wait for the node to load its model (120)")
    parser.add_argument("--quiet", action="store_true", help="only the final line")
    parser.add_argument("--save-frames", metavar="DIR", default=None,
                        help="only write the scene's frames (frame_0000.png, ...) to DIR and "
                             "exit, e.g. for `ros2 launch loftr_ros matcher.launch.py "
                             "use_player:=true player_path:=DIR`; needs no ROS")
    args = parser.parse_args(argv)
    if args.frames < 2:
        parser.error("--frames must be at least 2")
    if not args.rate > 0:
        parser.error("--rate must be > 0")
    return args


def default_params_file() -> Optional[str]:
    """config/matcher.yaml from the installed package share, else from the source tree."""
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(os.path.join(get_package_share_directory(api.PACKAGE), "config",
                                       "matcher.yaml"))
    except Exception:  # not installed in an ament prefix: use the source tree
        pass
    candidates.append(os.path.join(REPO_DIR, "config", "matcher.yaml"))
    return next((path for path in candidates if os.path.isfile(path)), None)


def configure_environment() -> None:
    """Loopback-only DDS with large shared-memory segments, and a private domain, unless set."""
    if not os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        for folder in (os.path.join(REPO_DIR, "config"), _share_config_dir()):
            path = os.path.join(folder or "", "fastdds_localhost.xml")
            if folder and os.path.isfile(path):
                os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = path
                break
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(10, 99)))
    os.environ.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")


def _share_config_dir() -> Optional[str]:
    try:
        from ament_index_python.packages import get_package_share_directory

        return os.path.join(get_package_share_directory(api.PACKAGE), "config")
    except Exception:
        return None


def node_command(args: argparse.Namespace) -> List[str]:
    """``python -m loftr_ros.ros.node --ros-args ...`` for the demo."""
    command = [sys.executable, "-m", "loftr_ros.ros.node", "--ros-args",
               "-r", f"__ns:={NAMESPACE}", "-r", f"image:={CAMERA_TOPIC}"]
    params_file = args.params_file or default_params_file()
    if params_file:
        command += ["--params-file", params_file]
    overrides = {"auto_reference": "false"}  # the demo calls ~/set_reference itself
    if args.backend:
        overrides["backend"] = args.backend
    if args.weights:
        overrides["weights"] = os.path.abspath(args.weights)
    if args.preset:
        overrides["preset"] = args.preset
    for item in args.param:
        name, _, value = item.partition(":=")
        overrides[name] = value
    for name, value in overrides.items():
        command += ["-p", f"{name}:={value}"]
    return command


def player_command(folder: str, args: argparse.Namespace, subscribers: int) -> List[str]:
    """``python -m loftr_ros.ros.image_player --ros-args ...`` playing ``folder`` once."""
    return [sys.executable, "-m", "loftr_ros.ros.image_player", "--ros-args",
            "-r", f"__ns:={NAMESPACE}", "-r", f"image:={CAMERA_TOPIC}",
            "-p", f"path:={folder}", "-p", f"rate:={float(args.rate)}", "-p", "loop:=false",
            "-p", f"encoding:={args.encoding}", "-p", "frame_id:=demo_camera",
            "-p", "qos:=reliable", "-p", f"wait_for_subscribers:={subscribers}"]


def _stop(process: Optional[subprocess.Popen], timeout: float = 10.0) -> None:
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tail(path: str, lines: int = 5) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return ""


class DemoClient:
    """The demo's own ROS node: watches frames, matches, debug images; prints the summary."""

    def __init__(self, args: argparse.Namespace, scene) -> None:
        import rclpy
        import rclpy.executors
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image, PointCloud2
        from std_srvs.srv import Trigger

        self.args = args
        self.scene = scene
        self.context = rclpy.Context()
        rclpy.init(context=self.context, args=[])
        self.node = rclpy.create_node("loftr_demo_client", context=self.context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.frame_index: Dict[Tuple[int, int], int] = {}
        self.rows: List[dict] = []
        self.debug_saved = 0
        self._last_arrival: Optional[float] = None
        self._fps = 0.0
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(Image, CAMERA_TOPIC, self._on_frame, reliable)
        self.node.create_subscription(PointCloud2, f"{NODE_PREFIX}/matches", self._on_matches,
                                      reliable)
        if not args.no_debug_images:
            self.node.create_subscription(Image, f"{NODE_PREFIX}/debug_image", self._on_debug,
                                          QoSProfile(depth=5,
                                                     reliability=ReliabilityPolicy.RELIABLE))
        self.reference_client = self.node.create_client(Trigger, f"{NODE_PREFIX}/set_reference")

    def spin_once(self, timeout: float) -> None:
        """One executor turn. A Ctrl-C shuts this client's context down (rclpy's signal
        handler), possibly between two turns or while the executor makes its timeout timer:
        that surfaces as KeyboardInterrupt, whatever rclpy raised."""
        from rclpy.executors import ExternalShutdownException

        if not self.context.ok():
            raise KeyboardInterrupt
        try:
            self.executor.spin_once(timeout_sec=timeout)
        except ExternalShutdownException:
            raise KeyboardInterrupt from None
        except Exception:
            if self.context.ok():
                raise
            raise KeyboardInterrupt from None

    def _on_frame(self, msg) -> None:
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        if stamp not in self.frame_index:
            self.frame_index[stamp] = len(self.frame_index)

    def _on_matches(self, msg) -> None:
        from loftr_ros.ros.matches_msg import matches_from_msg

        arrival = time.time()
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        latency = arrival - (stamp[0] + stamp[1] * 1e-9)
        now = time.monotonic()
        if self._last_arrival is not None and now > self._last_arrival:
            instant = 1.0 / (now - self._last_arrival)
            self._fps = instant if not self._fps else 0.8 * self._fps + 0.2 * instant
        self._last_arrival = now
        matches = matches_from_msg(msg)
        index = self.frame_index.get(stamp)
        ref_index = self.frame_index.get(matches.ref_stamp) if matches.ref_stamp else None
        error = float("nan")
        if index is not None and ref_index is not None and len(matches.scores):
            errors = self.scene.errors(ref_index, index, matches.ref, matches.cur)
            error = float(np.median(errors)) if len(errors) else float("nan")
        row = dict(frame=index, ref=ref_index, matches=len(matches.scores), error=error,
                   latency=latency, fps=self._fps, arrival=now)
        self.rows.append(row)
        if not self.args.quiet:
            frame = "?" if index is None else str(index)
            err = "   n/a" if np.isnan(error) else f"{error:6.1f}"
            print(f"frame {frame:>4}  matches {row['matches']:5d}  err(median) {err} px  "
                  f"latency {latency * 1e3:7.1f} ms  FPS {self._fps:5.1f}", flush=True)

    def _on_debug(self, msg) -> None:
        import cv2

        from loftr_ros.ros.image_conversion import image_msg_to_array

        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        index = self.frame_index.get(stamp, 10000 + self.debug_saved)
        image = image_msg_to_array(msg)
        cv2.imwrite(os.path.join(self.args.out, f"debug_{index:04d}.png"), image)
        self.debug_saved += 1

    def set_reference(self, timeout: float, node: subprocess.Popen) -> Optional[str]:
        """Call ~/set_reference until it succeeds (the node needs a frame first)."""
        from std_srvs.srv import Trigger

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and node.poll() is None:
            future = self.reference_client.call_async(Trigger.Request())
            while not future.done() and time.monotonic() < deadline:
                self.spin_once(0.05)
            if future.done() and future.result().success:
                return future.result().message
            self.spin_once(0.1)
        return None

    def close(self) -> None:
        import rclpy

        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def summarise(rows: List[dict], frames_sent: int, debug_saved: int, out: str) -> str:
    """The final one-line summary."""
    if not rows:
        return f"demo: no matches received for {frames_sent} frames"
    matches = np.mean([r["matches"] for r in rows])
    latency = np.array([r["latency"] for r in rows]) * 1e3
    errors = np.array([r["error"] for r in rows if not np.isnan(r["error"])])
    span = rows[-1]["arrival"] - rows[0]["arrival"]
    fps = (len(rows) - 1) / span if len(rows) > 1 and span > 0 else 0.0
    error_text = f"{np.median(errors):.1f} px" if len(errors) else "n/a"
    return (f"demo: {len(rows)}/{frames_sent} frames matched, mean matches {matches:.0f}, "
            f"FPS {fps:.1f}, latency mean {latency.mean():.1f} ms (p95 "
            f"{np.percentile(latency, 95):.1f} ms), median error {error_text}, "
            f"{debug_saved} debug images in {out}")


def save_frames(args: argparse.Namespace) -> int:
    """Render the scene's frames into ``args.save_frames`` (a folder for image_player)."""
    scene = make_scene(args.scene, args.frames, args.size, args.step, args.seed)
    try:
        write_frames(scene.frames, args.save_frames)
    except OSError as exc:
        print(f"demo: cannot write the frames to {args.save_frames}: {exc}", file=sys.stderr)
        return 2
    written = len([name for name in os.listdir(args.save_frames) if name.startswith("frame_")])
    if written < args.frames:
        print(f"demo: only {written} of {args.frames} frames could be written to "
              f"{args.save_frames}", file=sys.stderr)
        return 2
    print(f"demo: {args.frames} frames {args.size[0]}x{args.size[1]} of the {args.scene} scene "
          f"written to {args.save_frames}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Run the demo; 0 when matches arrived, 1 when none did, 2 when the node could not start.
    With ``--save-frames``, only write the frames: 0 when written, 2 when they cannot be."""
    args = parse_args(argv)
    if args.save_frames:
        return save_frames(args)
    os.makedirs(args.out, exist_ok=True)
    configure_environment()
    try:
        import rclpy  # noqa: F401
    except ImportError as exc:
        print(f"demo: rclpy is not importable ({exc}); run ./scripts/setup.sh and "
              "source scripts/env.sh", file=sys.stderr)
        return 2
    node_log_path = os.path.join(args.out, "matcher_node.log")
    node = player = None
    client = None
    with tempfile.TemporaryDirectory(prefix="loftr_demo_frames_") as folder:
        scene = make_scene(args.scene, args.frames, args.size, args.step, args.seed)
        write_frames(scene.frames, folder)
        print(f"demo: {args.frames} frames {args.size[0]}x{args.size[1]} of the {args.scene} "
              f"scene rendered; starting matcher_node (log: {node_log_path})", flush=True)
        try:
            with open(node_log_path, "w") as node_log:
                node = subprocess.Popen(node_command(args), stdout=node_log,
                                        stderr=subprocess.STDOUT)
            client = DemoClient(args, scene)
            deadline = time.monotonic() + args.startup_timeout
            while not client.reference_client.service_is_ready():
                if node.poll() is not None:
                    print(f"demo: matcher_node exited ({node.returncode}):\n"
                          f"{_tail(node_log_path)}", file=sys.stderr)
                    return 2
                if time.monotonic() > deadline:
                    print(f"demo: matcher_node not ready after {args.startup_timeout} s:\n"
                          f"{_tail(node_log_path)}", file=sys.stderr)
                    return 2
                client.spin_once(0.1)
            # Publishing starts once the node and this client subscribe: no frame is lost.
            with open(os.path.join(args.out, "image_player.log"), "w") as player_log:
                player = subprocess.Popen(player_command(folder, args, subscribers=2),
                                          stdout=player_log, stderr=subprocess.STDOUT)
            message = client.set_reference(args.startup_timeout, node)
            if message is None:
                print(f"demo: set_reference never succeeded:\n{_tail(node_log_path)}",
                      file=sys.stderr)
                return 2
            print(f"demo: ~/set_reference -> {message}", flush=True)
            # Until the player has sent everything and the node has caught up.
            quiet_since = time.monotonic()
            seen = 0
            while True:
                client.spin_once(0.05)
                if len(client.rows) != seen:
                    seen, quiet_since = len(client.rows), time.monotonic()
                if node.poll() is not None:
                    print(f"demo: matcher_node exited ({node.returncode}):\n"
                          f"{_tail(node_log_path)}", file=sys.stderr)
                    break
                if player.poll() is not None and time.monotonic() - quiet_since > 2.0:
                    break
                if time.monotonic() - quiet_since > max(10.0, 5.0 / args.rate):
                    break
        except KeyboardInterrupt:
            print("demo: interrupted", file=sys.stderr)
        finally:
            _stop(player)
            _stop(node)
            rows = client.rows if client else []
            saved = client.debug_saved if client else 0
            if client is not None:
                client.close()
    print(summarise(rows, args.frames, saved, args.out), flush=True)
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
