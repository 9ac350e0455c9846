"""Any camera frame -> model input, and the exact inverse map of coordinates (numpy/OpenCV).

Policy (``resize``, the default): the frame is converted to grayscale and resized to exactly the
model input size, each axis independently. A model-input pixel (x, y) then maps back to the original
frame as ``(x * sx, y * sy)`` with ``sx = W_orig / W_in``, ``sy = H_orig / H_in`` — the
corner-aligned convention, where pixel k's footprint starts at k (OpenCV's ``resize`` samples
pixel centres, whose half-pixel shift is below a coarse cell and inside the matcher's error; the
map is the one LoFTR itself uses: docs/model.md, "Dual softmax and coarse matches").
Non-matching aspect ratios are stretched, not cropped, so every original pixel stays visible to
the matcher.

Policy ``letterbox``: the frame is scaled uniformly to fit, and padded (zeros) at the right/bottom;
the inverse is ``(x * s, y * s)`` and points in the padding are dropped by the caller.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import cv2
import numpy as np

POLICIES = ("resize", "letterbox")

#: frames with a side shorter than this are refused as too small to match: scaled up to the
#: model input, a thumbnail has no detail at the scale of the coarse cells
MIN_IMAGE_SIDE = 32


@dataclass(frozen=True)
class InputTransform:
    """How one original frame was mapped to the model input.

    Attributes:
        original_size: (width, height) of the original frame.
        input_size: (width, height) of the model input.
        scale: (sx, sy), original pixels per input pixel along x and y.
        valid_size: (width, height) of the input area that holds image content (letterbox).
    """

    original_size: Tuple[int, int]
    input_size: Tuple[int, int]
    scale: Tuple[float, float]
    valid_size: Tuple[int, int]

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """Model-input pixel coordinates [N,2] -> original-frame pixel coordinates (float32)."""
        points = np.asarray(points, dtype=np.float32).reshape(-1, 2)
        return points * np.asarray(self.scale, dtype=np.float32)

    def to_input(self, points: np.ndarray) -> np.ndarray:
        """Original-frame pixel coordinates [N,2] -> model-input pixel coordinates (float32)."""
        points = np.asarray(points, dtype=np.float32).reshape(-1, 2)
        return points / np.asarray(self.scale, dtype=np.float32)

    def inside_content(self, points: np.ndarray) -> np.ndarray:
        """bool [N]: model-input points that fall on image content (not letterbox padding)."""
        points = np.asarray(points, dtype=np.float32).reshape(-1, 2)
        return (points[:, 0] < self.valid_size[0]) & (points[:, 1] < self.valid_size[1])


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 gray [H,W], or BGR [H,W,3] / BGRA [H,W,4] -> uint8 gray [H,W] (OpenCV weights)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise ValueError(f"unsupported image shape {image.shape}: expected HxW, HxWx3 or HxWx4")


def prepare(image: np.ndarray, input_size: Tuple[int, int], policy: str = "resize"
            ) -> Tuple[np.ndarray, InputTransform]:
    """Frame (uint8 gray/BGR, each side at least ``MIN_IMAGE_SIDE``) -> (float32 [1,1,H,W] in
    [0,1], transform). ValueError for a smaller or empty frame.

    RGB frames must be passed as BGR or gray (the ROS converter does this); the grayscale weights
    differ but matching is insensitive to the channel order.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown pre-processing policy {policy!r}; use one of {POLICIES}")
    gray = to_gray(image)
    height, width = gray.shape
    if width < 1 or height < 1:
        raise ValueError(f"empty image ({width}x{height})")
    if width < MIN_IMAGE_SIDE or height < MIN_IMAGE_SIDE:
        raise ValueError(f"image {width}x{height} is too small to match: each side needs at "
                         f"least {MIN_IMAGE_SIDE} pixels")
    input_w, input_h = input_size
    if policy == "resize":
        scale = (width / input_w, height / input_h)
        valid = (input_w, input_h)
        interpolation = cv2.INTER_AREA if width > input_w and height > input_h else cv2.INTER_LINEAR
        resized = cv2.resize(gray, (input_w, input_h), interpolation=interpolation)
    else:
        factor = max(width / input_w, height / input_h)
        valid = (min(input_w, int(round(width / factor))),
                 min(input_h, int(round(height / factor))))
        scale = (factor, factor)
        interpolation = cv2.INTER_AREA if factor > 1 else cv2.INTER_LINEAR
        resized = np.zeros((input_h, input_w), dtype=np.uint8)
        resized[:valid[1], :valid[0]] = cv2.resize(gray, valid, interpolation=interpolation)
    tensor = (resized.astype(np.float32) / 255.0)[None, None]
    return tensor, InputTransform(original_size=(width, height), input_size=(input_w, input_h),
                                  scale=scale, valid_size=valid)
