"""loftr_ros: coarse LoFTR image matching for ROS 2, from PyTorch to TensorRT on a Jetson.

The public Python API (design.md)::

    from loftr_ros import Matcher, Matches, EncodedImage

is imported on first use, so ``import loftr_ros`` stays light (no torch, no rclpy, no OpenCV).
"""
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "Matcher": "loftr_ros.matching.matcher",
    "Matches": "loftr_ros.matching.matcher",
    "EncodedImage": "loftr_ros.matching.encoded",
}

__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'loftr_ros' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(list(globals()) + list(_PUBLIC))
