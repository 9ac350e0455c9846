"""matcher_node overhead and a soak run, over real Fast DDS on loopback (numbers, no asserts).

Overhead (default): frames of 640x480 bgr8 are sent one at a time (the next one after the
previous frame's matches arrived, so nothing queues); per frame, latency = matches received -
frame published (same clock). Node overhead = latency - the engine's mean inference time, which
the node reports on /diagnostics (per-frame inference is not in the message, so p50/p95 of the
overhead are latency percentiles minus that mean).

Soak (``--soak MINUTES``): frames at ``--rate`` Hz (30) for MINUTES; every ``--sample`` seconds
one line with the node's RSS, latency p50 of the last window, processed/dropped counts; at the end
RSS start (at the first window, once the engine has its buffers) / end, latency drift (last
window p50 - first window p50), drops, errors, and whether the node survived.

    python benchmarks/bench_node.py                      # overhead, 60 frames
    python benchmarks/bench_node.py --soak 10            # the 10-minute 30 Hz soak
    python benchmarks/bench_node.py --weights X.onnx --preset seed --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Dict, List, Optional

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "test"))
sys.path.insert(0, REPO)

from ros_helpers import (  # noqa: E402
    SEED_ONNX,
    RosClient,
    RosProcess,
    diagnostic_values,
    wait_for,
)

from loftr_ros.cli import size_argument  # noqa: E402
from loftr_ros.ros import interface as api  # noqa: E402
from loftr_ros.ros.image_conversion import array_to_image_msg  # noqa: E402
from loftr_ros.runtime import default_weights  # noqa: E402
from loftr_ros.synthetic.virtual_camera import make_sequence  # noqa: E402

NAMESPACE = "/bench"
CAMERA = f"{NAMESPACE}/camera"
NODE = f"{NAMESPACE}/{api.NODE_NAME}"


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60, help="overhead: frames to time (60)")
    parser.add_argument("--soak", type=float, default=0.0, metavar="MINUTES",
                        help="run the soak for MINUTES instead of the overhead benchmark")
    parser.add_argument("--rate", type=float, default=30.0, help="soak frame rate (30 Hz)")
    parser.add_argument("--sample", type=float, default=10.0, help="soak report period (10 s)")
    parser.add_argument("--size", type=size_argument, default=(640, 480),
                        help="frame size WxH (640x480)")
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--weights", default=None,
                        help="model file (default: bundled ONNX, else the seed ONNX)")
    parser.add_argument("--preset", default=None)
    parser.add_argument("--threads", type=int, default=0, help="node parameter `threads`")
    parser.add_argument("--refinement", default="auto", help="node parameter `refinement`")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    return parser.parse_args(argv)


def node_args(args: argparse.Namespace) -> List[str]:
    ros_args = ["-r", f"__ns:={NAMESPACE}", "-r", f"image:={CAMERA}",
                "-p", f"backend:={args.backend}", "-p", "diagnostics_period:=1.0",
                "-p", f"threads:={args.threads}", "-p", f"refinement:={args.refinement}"]
    weights, preset = args.weights, args.preset
    if weights is None and not os.path.isfile(default_weights("onnx")) and \
            os.path.isfile(SEED_ONNX):
        weights, preset = SEED_ONNX, preset or "seed"
    if weights:
        ros_args += ["-p", f"weights:={os.path.abspath(weights)}"]
    if preset:
        ros_args += ["-p", f"preset:={preset}"]
    return ros_args


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB (Linux /proc), NaN elsewhere."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class Bench:
    """Node process + a client that publishes frames and times the matches."""

    def __init__(self, args: argparse.Namespace) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image, PointCloud2

        self.frames, _ = make_sequence(30, args.size, step=2.0)
        self.node = RosProcess("loftr_ros.ros.node", name="matcher_node", ros_args=node_args(args))
        self.client = RosClient("bench_client")
        self.sent: Dict[int, float] = {}
        self.latencies: List[tuple] = []  # (arrival, latency s)
        self.client.node.create_subscription(
            PointCloud2, f"{NODE}/matches", self._on_matches,
            QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        self.diagnostics = self.client.collect(DiagnosticArray, "/diagnostics")
        self.publisher = self.client.node.create_publisher(
            Image, CAMERA, QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
        ready = wait_for(lambda: self.publisher.get_subscription_count() > 0, 120.0,
                         process=self.node)
        if not ready:
            raise SystemExit(f"node did not come up:\n{self.node.output()}")
        self.counter = 0

    def _on_matches(self, msg) -> None:
        key = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        sent = self.sent.pop(key, None)
        if sent is not None:
            now = time.monotonic()
            self.latencies.append((now, now - sent))

    def publish(self) -> int:
        self.counter += 1
        msg = array_to_image_msg(self.frames[self.counter % len(self.frames)], "bgr8")
        msg.header.stamp.sec, msg.header.stamp.nanosec = 10_000 + self.counter, 0
        key = msg.header.stamp.sec * 1_000_000_000
        self.sent[key] = time.monotonic()
        self.publisher.publish(msg)
        return key

    def diagnostics_now(self) -> Dict[str, str]:
        for msg in reversed(self.diagnostics.snapshot()):
            values = diagnostic_values(msg)
            if values:
                return values
        return {}

    def close(self) -> int:
        code = self.node.stop()
        self.client.close()
        self.node.cleanup()
        return code


def overhead(bench: Bench, args: argparse.Namespace) -> Dict[str, float]:
    # warm-up: the first frame becomes the reference; a few more warm the engine
    for _ in range(5):
        key = bench.publish()
        wait_for(lambda: key not in bench.sent, 30.0, process=bench.node)
    bench.latencies.clear()
    for _ in range(args.frames):
        key = bench.publish()
        if not wait_for(lambda: key not in bench.sent, 10.0, process=bench.node):
            bench.sent.pop(key, None)  # lost on the way (best effort): not timed
    time.sleep(2.5)  # let /diagnostics cover the last frames
    values = bench.diagnostics_now()
    latency = np.array([lat for _, lat in bench.latencies]) * 1e3
    inference = float(values.get(api.DIAG_INFERENCE, "nan"))
    matcher = float(values.get(api.DIAG_MATCHER, "nan"))
    p50, p95 = (float(np.percentile(latency, q)) for q in (50, 95))
    result = {
        "frames_timed": int(len(latency)), "latency_p50_ms": p50, "latency_p95_ms": p95,
        "inference_mean_ms": inference, "matcher_mean_ms": matcher,
        "overhead_p50_ms": p50 - inference, "overhead_p95_ms": p95 - inference,
        "outside_matcher_p50_ms": p50 - matcher, "outside_matcher_p95_ms": p95 - matcher,
        "backend": values.get(api.DIAG_BACKEND, "?"), "model": values.get(api.DIAG_MODEL, "?"),
    }
    print(f"node overhead at {args.size[0]}x{args.size[1]} (latency - engine inference): p50 "
          f"{result['overhead_p50_ms']:.1f} ms, p95 {result['overhead_p95_ms']:.1f} ms")
    print(f"  latency p50 {p50:.1f} / p95 {p95:.1f} ms; engine inference mean {inference:.1f} ms;"
          f" whole Matcher call mean {matcher:.1f} ms -> outside the Matcher (conversion, DDS, "
          f"message) p50 {result['outside_matcher_p50_ms']:.1f} / p95 "
          f"{result['outside_matcher_p95_ms']:.1f} ms")
    print(f"  {result['frames_timed']} frames, backend {result['backend']}, model "
          f"{result['model']}")
    return result


def soak(bench: Bench, args: argparse.Namespace) -> Dict[str, float]:
    pid = bench.node.process.pid
    period = 1.0 / args.rate
    start = time.monotonic()
    end = start + args.soak * 60
    rss_launch = rss_mb(pid)
    rss_start = float("nan")  # after the first window: the engine has allocated its buffers
    windows: List[float] = []
    next_sample = start + args.sample
    next_frame = start
    sent = 0
    print(f"soak: {args.soak} min at {args.rate} Hz, {args.size[0]}x{args.size[1]}; RSS before "
          f"the first frame {rss_launch:.0f} MiB")
    while time.monotonic() < end and bench.node.alive():
        now = time.monotonic()
        if now >= next_frame:
            bench.publish()
            sent += 1
            next_frame += period
            if len(bench.sent) > 1000:  # dropped frames never get matches
                for key in sorted(bench.sent)[:-100]:
                    bench.sent.pop(key)
        if now >= next_sample:
            recent = [lat for t, lat in bench.latencies if t > now - args.sample]
            p50 = float(np.percentile(recent, 50)) * 1e3 if recent else float("nan")
            windows.append(p50)
            values = bench.diagnostics_now()
            if np.isnan(rss_start):
                rss_start = rss_mb(pid)
            print(f"  t={now - start:6.0f} s  RSS {rss_mb(pid):6.0f} MiB  latency p50 {p50:7.1f} ms"
                  f"  processed {values.get(api.DIAG_PROCESSED, '?'):>6}  dropped "
                  f"{values.get(api.DIAG_DROPPED, '?'):>6}  errors "
                  f"{values.get(api.DIAG_ERRORS, '?')}", flush=True)
            next_sample += args.sample
        time.sleep(max(0.0, min(next_frame, next_sample) - time.monotonic()))
    alive = bench.node.alive()
    time.sleep(1.5)
    values = bench.diagnostics_now()
    valid = [w for w in windows if not np.isnan(w)]
    result = {
        "minutes": args.soak, "rate_hz": args.rate, "frames_sent": sent,
        "rss_before_first_frame_mib": rss_launch, "rss_start_mib": rss_start,
        "rss_end_mib": rss_mb(pid) if alive else float("nan"),
        "latency_first_window_p50_ms": valid[0] if valid else float("nan"),
        "latency_last_window_p50_ms": valid[-1] if valid else float("nan"),
        "processed": int(values.get(api.DIAG_PROCESSED, 0)),
        "dropped": int(values.get(api.DIAG_DROPPED, 0)),
        "errors": int(values.get(api.DIAG_ERRORS, 0)), "node_alive": alive,
    }
    drift = result["latency_last_window_p50_ms"] - result["latency_first_window_p50_ms"]
    print(f"soak result: RSS {result['rss_start_mib']:.0f} (first window) -> "
          f"{result['rss_end_mib']:.0f} MiB (end), "
          f"latency drift {drift:+.1f} ms (p50 first/last window), {sent} sent, "
          f"{result['processed']} processed, {result['dropped']} dropped, "
          f"{result['errors']} errors, node {'alive' if alive else 'CRASHED'}")
    return result


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    try:
        result = soak(bench, args) if args.soak else overhead(bench, args)
    finally:
        code = bench.close()
    result["exit_code"] = code
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
