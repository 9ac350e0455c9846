"""Command-line entry points (``loftr-*``) and the argument types they share."""
from __future__ import annotations

import argparse
from typing import Tuple


def size_argument(text: str) -> Tuple[int, int]:
    """argparse type for a ``WxH`` size such as ``640x480``; each side at least
    ``loftr_ros.matching.preprocess.MIN_IMAGE_SIDE`` (the smallest frame the matcher takes)."""
    from loftr_ros.matching.preprocess import MIN_IMAGE_SIDE

    parts = text.lower().split("x")
    if len(parts) != 2 or not all(part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"size must look like 640x480, not {text!r}")
    width, height = int(parts[0]), int(parts[1])
    if width < MIN_IMAGE_SIDE or height < MIN_IMAGE_SIDE:
        raise argparse.ArgumentTypeError(
            f"size must be at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}, not {text!r}")
    return width, height


def float_pair_argument(text: str) -> Tuple[float, float]:
    """argparse type for ``LOW,HIGH``: two floats."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH, got {text!r}") from None
    return low, high
