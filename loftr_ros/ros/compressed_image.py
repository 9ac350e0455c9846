"""sensor_msgs/CompressedImage (JPEG, PNG) -> the matcher's uint8 image, and back for tests.

Decoding is ``cv2.imdecode``. libjpeg decodes a truncated JPEG without an error (the missing rows
come out grey), so a JPEG must end with its EOI marker and a PNG with its IEND chunk: a frame cut
off in transport is refused instead of matched. The format is told by the data's signature; the
message's ``format`` string (``"jpeg"``, ``"bgr8; jpeg compressed bgr8"``, ``"png"``...) is only
used in messages, because publishers fill it in many ways.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from loftr_ros.ros.image_conversion import (
    MAX_PIXELS,
    EmptyImageError,
    MalformedImageError,
    TinyImageError,
    UnsupportedEncodingError,
    normalise_to_uint8,
)

JPEG_SIGNATURE = b"\xff\xd8\xff"
JPEG_END = b"\xff\xd9"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"
COMPRESSED_FORMATS = ("jpeg", "png")


def compressed_kind(data: bytes) -> str:
    """``"jpeg"`` or ``"png"`` from the data's signature; UnsupportedEncodingError otherwise."""
    if data.startswith(JPEG_SIGNATURE):
        return "jpeg"
    if data.startswith(PNG_SIGNATURE):
        return "png"
    raise UnsupportedEncodingError(
        f"compressed image of unknown format (starts with {data[:8].hex()}); JPEG and PNG "
        "are supported")


def _complete(data: bytes, kind: str) -> bool:
    """Whether the stream ends as a whole file does (a few padding bytes allowed)."""
    tail = data[-32:]
    return (JPEG_END in tail) if kind == "jpeg" else (PNG_END in tail)


def compressed_msg_to_matching_image(msg: Any) -> np.ndarray:
    """uint8 gray ``[H, W]`` or BGR ``[H, W, 3]`` from a CompressedImage-like object (``format``,
    ``data``).

    Raises:
        EmptyImageError: no data.
        UnsupportedEncodingError: neither JPEG nor PNG.
        MalformedImageError: truncated or corrupt data, or a frame over ``MAX_PIXELS``.
        TinyImageError: a side below the matcher's minimum.
    """
    from loftr_ros.matching.preprocess import MIN_IMAGE_SIDE

    data = bytes(msg.data)
    label = f"compressed image (format {getattr(msg, 'format', '')!r})"
    if not data:
        raise EmptyImageError(f"{label} has no data")
    kind = compressed_kind(data)
    if not _complete(data, kind):
        raise MalformedImageError(f"{label}: truncated {kind.upper()} ({len(data)} bytes, no "
                                  "end marker)")
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.size == 0:
        raise MalformedImageError(f"{label}: corrupt {kind.upper()} ({len(data)} bytes) that "
                                  "OpenCV cannot decode")
    height, width = pixels.shape[:2]
    if height * width > MAX_PIXELS:
        raise MalformedImageError(f"{label}: {width}x{height} is over {MAX_PIXELS} pixels")
    if width < MIN_IMAGE_SIDE or height < MIN_IMAGE_SIDE:
        raise TinyImageError(f"image {width}x{height} is too small to match: each side "
                             f"needs at least {MIN_IMAGE_SIDE} pixels")
    if pixels.dtype != np.uint8:  # a 16-bit PNG
        pixels = normalise_to_uint8(pixels)
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGRA2BGR)
    elif pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    return np.ascontiguousarray(pixels)


def encode_compressed_msg(image: np.ndarray, kind: str = "jpeg", quality: int = 90,
                          header: Any = None) -> Any:
    """A sensor_msgs/CompressedImage of a uint8 gray or BGR ``image`` (``kind`` jpeg or png),
    with image_transport's ``format`` text."""
    from sensor_msgs.msg import CompressedImage

    if kind not in COMPRESSED_FORMATS:
        raise ValueError(f"kind must be one of {COMPRESSED_FORMATS}, not {kind!r}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if kind == "jpeg" else []
    ok, buffer = cv2.imencode("." + ("jpg" if kind == "jpeg" else "png"), image, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} image as {kind}")
    encoding = "bgr8" if image.ndim == 3 else "mono8"
    msg = CompressedImage(format=f"{encoding}; {kind} compressed {encoding}")
    if header is not None:
        msg.header = header
    msg.data = buffer.tobytes()
    return msg


__all__ = ["COMPRESSED_FORMATS", "compressed_kind", "compressed_msg_to_matching_image",
           "encode_compressed_msg"]
