"""Frames lost in transport: image_player -> a best-effort subscriber, with and without the
package's Fast DDS profiles (numbers, no asserts).

Each condition starts image_player (640x480 bgr8 by default, ``--rate`` Hz) and a listener as two
processes, each with its own Fast DDS settings, for ``--seconds``; the listener counts the frames
that arrive, their rate and the gaps in their stamps (the player stamps with ``now``).

Conditions (player / listener):
    stock        no profile / no profile (Fast DDS defaults: 512 KB shared-memory segment)
    launch       config/fastdds_large_frames.xml on both (what launch/matcher.launch.py sets)
    localhost    config/fastdds_localhost.xml on both (the tests' profile)
    listener     stock player / large-frames listener (a camera started outside the launch)
    player       large-frames player / stock listener

    python benchmarks/bench_transport.py                     # every condition, 15 s each
    python benchmarks/bench_transport.py --conditions stock launch --seconds 30
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LARGE = os.path.join(REPO, "config", "fastdds_large_frames.xml")
LOCALHOST = os.path.join(REPO, "config", "fastdds_localhost.xml")
CONDITIONS = {"stock": (None, None), "launch": (LARGE, LARGE),
              "localhost": (LOCALHOST, LOCALHOST), "listener": (None, LARGE),
              "player": (LARGE, None)}
TOPIC = "/bench_transport/image"


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conditions", nargs="+", choices=sorted(CONDITIONS),
                        default=list(CONDITIONS))
    parser.add_argument("--seconds", type=float, default=15.0, help="per condition (15)")
    parser.add_argument("--rate", type=float, default=10.0, help="player rate, Hz (10)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--encoding", choices=("bgr8", "mono8"), default="bgr8")
    parser.add_argument("--listen", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--json", help="write the results here")
    return parser.parse_args(argv)


def listen(seconds: float) -> None:
    """Child mode: count frames on TOPIC (best effort) for ``seconds``; print one JSON line."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("bench_transport_listener")
    stamps: List[float] = []
    node.create_subscription(
        Image, TOPIC, lambda m: stamps.append(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9),
        QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    node.destroy_node()
    rclpy.try_shutdown()
    print(json.dumps({"stamps": stamps}), flush=True)


def environment(profile: Optional[str], domain: int) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("FASTDDS_DEFAULT_PROFILES_FILE", "ROS_AUTOMATIC_DISCOVERY_RANGE",
                        "FASTDDS_BUILTIN_TRANSPORTS")}
    env["ROS_DOMAIN_ID"] = str(domain)
    env["RMW_IMPLEMENTATION"] = "rmw_fastrtps_cpp"
    if profile:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = profile
    return env


def run_condition(name: str, args: argparse.Namespace, frames: str, domain: int) -> dict:
    player_profile, listener_profile = CONDITIONS[name]
    listener = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--listen", str(args.seconds + 3.0)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env=environment(listener_profile, domain))
    time.sleep(2.0)  # the listener is up and discovered before frames flow
    player = subprocess.Popen(
        [sys.executable, "-m", "loftr_ros.ros.image_player", "--ros-args",
         "-r", f"image:={TOPIC}", "-p", f"path:={frames}", "-p", f"rate:={args.rate}",
         "-p", "loop:=true", "-p", f"encoding:={args.encoding}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
        env=environment(player_profile, domain))
    output, _ = listener.communicate(timeout=args.seconds + 60)
    player.send_signal(2)
    player.wait(timeout=30)
    stamps = np.array(json.loads(output.strip().splitlines()[-1])["stamps"])
    # the player's first second: discovery; count from the first frame on
    if len(stamps) < 2:
        return {"condition": name, "received": int(len(stamps)), "expected": None,
                "share": 0.0, "rate": 0.0, "max_gap_s": None}
    span = stamps[-1] - stamps[0]
    expected = int(round(span * args.rate)) + 1
    spacing = np.diff(stamps)
    return {"condition": name, "received": int(len(stamps)), "expected": expected,
            "share": round(len(stamps) / expected, 3), "rate": round((len(stamps) - 1) / span, 2),
            "gaps": int(np.count_nonzero(spacing > 2.5 / args.rate)),
            "max_gap_s": round(float(spacing.max()), 3)}


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.listen:
        listen(args.listen)
        return 0
    import cv2

    domain = random.randint(10, 99)
    rng = np.random.default_rng(0)
    results = []
    with tempfile.TemporaryDirectory() as frames:
        for index in range(5):
            picture = rng.integers(0, 255, (args.height, args.width, 3), dtype=np.uint8)
            cv2.imwrite(os.path.join(frames, f"{index:03d}.png"), picture)
        print(f"{args.width}x{args.height} {args.encoding} at {args.rate} Hz, "
              f"{args.seconds:.0f} s per condition, ROS_DOMAIN_ID {domain}")
        print(f"{'condition':<10} {'received':>9} {'expected':>9} {'share':>6} {'Hz':>6} "
              f"{'gaps':>5} {'max gap s':>9}")
        for name in args.conditions:
            result = run_condition(name, args, frames, domain)
            results.append(result)
            print(f"{name:<10} {result['received']:>9} {str(result['expected']):>9} "
                  f"{result['share']:>6.2f} {result['rate']:>6.2f} {result.get('gaps', '-'):>5} "
                  f"{str(result['max_gap_s']):>9}", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
