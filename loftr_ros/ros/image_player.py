"""ROS 2 node ``image_player``: publish a folder of images or a video file as a camera would.

For demos and for trying the matcher without a camera::

    ros2 run loftr_ros image_player --ros-args -p path:=/data/frames -p rate:=15.0 \\
        -r image:=/camera/image_raw
    python -m loftr_ros.ros.image_player /data/clip.mp4 --rate 30 --loop   # same, argparse style

Stamps are the publishing time (``now``); ``frame_id`` comes from a parameter. Frames are read from
disk as they are published, so a long video needs no memory.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Iterator, List, Optional

import cv2
import numpy as np

from loftr_ros.image_files import IMAGE_EXTENSIONS, image_files
from loftr_ros.ros.interface import PLAYER_NODE_NAME

PLAYER_ENCODINGS = ("bgr8", "mono8")
PLAYER_QOS = ("sensor_data", "reliable")


class FrameSourceError(RuntimeError):
    """The path is missing, empty or unreadable."""


class FrameSource:
    """Frames of a folder (sorted by file name) or a video file, optionally looped."""

    def __init__(self, path: str, loop: bool = False) -> None:
        self.path = path
        self.loop = loop
        if os.path.isdir(path):
            self.files: Optional[List[str]] = image_files(path)
            if not self.files:
                raise FrameSourceError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {path}")
        elif os.path.isfile(path):
            self.files = None
            capture = cv2.VideoCapture(path)
            ok = capture.isOpened() and capture.read()[0]
            capture.release()
            if not ok:
                raise FrameSourceError(f"cannot read video frames from {path}")
        else:
            raise FrameSourceError(f"no such file or folder: {path}")

    def __len__(self) -> int:
        """Number of frames of a folder (videos: the container's count, may be approximate)."""
        if self.files is not None:
            return len(self.files)
        capture = cv2.VideoCapture(self.path)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        capture.release()
        return count

    def frames(self) -> Iterator[np.ndarray]:
        """BGR uint8 frames; endless when looping."""
        while True:
            yield from (self._folder() if self.files is not None else self._video())
            if not self.loop:
                return

    def _folder(self) -> Iterator[np.ndarray]:
        for name in self.files or []:
            image = cv2.imread(name, cv2.IMREAD_COLOR)
            if image is None:
                raise FrameSourceError(f"cannot decode image {name}")
            yield image

    def _video(self) -> Iterator[np.ndarray]:
        capture = cv2.VideoCapture(self.path)
        try:
            while True:
                ok, image = capture.read()
                if not ok:
                    return
                yield image
        finally:
            capture.release()


def convert_frame(image: np.ndarray, encoding: str, width: int = 0,
                  height: int = 0) -> np.ndarray:
    """Resize (when width/height > 0) and convert a BGR frame to ``encoding``'s layout."""
    if width > 0 and height > 0 and (image.shape[1], image.shape[0]) != (width, height):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    if encoding == "mono8":
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return image


def _parse_cli(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="image_player", description="Publish a folder of images or a video on `image`. "
        "Every option is also a ROS parameter of the same name (--ros-args -p name:=value).")
    parser.add_argument("path", nargs="?", default="", help="folder of images or a video file")
    parser.add_argument("--rate", type=float, default=10.0, help="frames per second (10)")
    parser.add_argument("--loop", action="store_true", help="start again at the end")
    parser.add_argument("--encoding", choices=PLAYER_ENCODINGS, default="bgr8")
    parser.add_argument("--frame-id", default="camera", help="header.frame_id (camera)")
    parser.add_argument("--width", type=int, default=0, help="resize to this width (0: as is)")
    parser.add_argument("--height", type=int, default=0, help="resize to this height")
    parser.add_argument("--count", type=int, default=0,
                        help="stop after this many frames (0: at the end, never when looping)")
    parser.add_argument("--qos", choices=PLAYER_QOS, default="sensor_data",
                        help="publisher QoS (sensor_data = best effort, depth 1)")
    parser.add_argument("--wait-for-subscribers", type=int, default=0,
                        help="start publishing once `image` has this many subscribers")
    return parser.parse_args(argv)


def main(args: Optional[List[str]] = None) -> int:
    """Entry point of ``image_player``: 0 at the end of the frames or on Ctrl-C, 2 on errors."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.utilities import remove_ros_args
    from sensor_msgs.msg import Image

    from loftr_ros.ros.image_conversion import array_to_image_msg
    from loftr_ros.ros.signals import ignore_stop_signals

    argv = sys.argv if args is None else args
    cli = _parse_cli(remove_ros_args(args=argv)[1:])
    rclpy.init(args=argv)
    # made at once, not by the first spin_once: a Ctrl-C there leaves a half-built executor
    # whose __del__ prints a traceback
    executor = SingleThreadedExecutor()
    node = Node(PLAYER_NODE_NAME)
    try:
        path = node.declare_parameter("path", cli.path).value
        rate = node.declare_parameter("rate", cli.rate).value
        loop = node.declare_parameter("loop", cli.loop).value
        encoding = node.declare_parameter("encoding", cli.encoding).value
        frame_id = node.declare_parameter("frame_id", cli.frame_id).value
        width = node.declare_parameter("width", cli.width).value
        height = node.declare_parameter("height", cli.height).value
        count = node.declare_parameter("count", cli.count).value
        qos = node.declare_parameter("qos", cli.qos).value
        wait_for = node.declare_parameter("wait_for_subscribers", cli.wait_for_subscribers).value
        if encoding not in PLAYER_ENCODINGS:
            raise FrameSourceError(f"encoding must be one of {PLAYER_ENCODINGS}, not {encoding!r}")
        if qos not in PLAYER_QOS:
            raise FrameSourceError(f"qos must be one of {PLAYER_QOS}, not {qos!r}")
        if not rate > 0:
            raise FrameSourceError(f"rate must be > 0, not {rate}")
        if not path:
            raise FrameSourceError("no path given (parameter `path` or first argument)")
        source = FrameSource(path, loop=loop)
    except Exception as exc:  # one clear line, no traceback wall
        print(f"[{PLAYER_NODE_NAME}] cannot start: {exc}", file=sys.stderr, flush=True)
        node.destroy_node()
        rclpy.try_shutdown()
        return 2

    reliability = (ReliabilityPolicy.BEST_EFFORT if qos == "sensor_data"
                   else ReliabilityPolicy.RELIABLE)
    publisher = node.create_publisher(Image, "image", QoSProfile(depth=1, reliability=reliability))
    frames = source.frames()
    state = {"sent": 0, "done": False}

    def tick() -> None:
        if state["done"] or not node.context.ok() \
                or publisher.get_subscription_count() < wait_for:
            return
        if count and state["sent"] >= count:
            state["done"] = True
            return
        try:
            image = next(frames)
        except StopIteration:
            state["done"] = True
            return
        msg = array_to_image_msg(convert_frame(image, encoding, width, height), encoding)
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.header.frame_id = frame_id
        try:
            publisher.publish(msg)
        except Exception:
            if node.context.ok():
                raise
            # Ctrl-C shut the context down while this callback ran: the frame is simply not sent
            state["done"] = True
            return
        state["sent"] += 1

    node.create_timer(1.0 / rate, tick)
    executor.add_node(node)
    node.get_logger().info(f"publishing {path} on {publisher.topic_name} at {rate} Hz"
                           f"{' (looping)' if loop else ''}")
    code = 0
    try:
        while rclpy.ok() and not state["done"]:
            executor.spin_once(timeout_sec=0.1)
        if rclpy.ok():  # after Ctrl-C the context is gone and /rosout with it
            node.get_logger().info(f"done: {state['sent']} frames published")
    except (KeyboardInterrupt, ExternalShutdownException):
        ignore_stop_signals()
    except FrameSourceError as exc:
        print(f"[{PLAYER_NODE_NAME}] {exc}", file=sys.stderr, flush=True)
        code = 2
    except Exception:
        if rclpy.ok():
            raise
        # Ctrl-C shut the context down between the loop's rclpy.ok() and spin_once, whose
        # timeout timer then cannot be made (RCLError: the given context is not valid): a stop
        ignore_stop_signals()
    finally:
        ignore_stop_signals()
        node.destroy_node()
        rclpy.try_shutdown()
        ignore_stop_signals()  # rclpy's shutdown puts back the handlers it found at start
    return code


if __name__ == "__main__":
    sys.exit(main())
