"""sensor_msgs/CompressedImage (JPEG, PNG) -> the matcher's uint8 image, and back for tests.

Decoding is ``cv2.imdecode``. libjpeg decodes a truncated JPEG without an error (the missing rows
come out grey), so a JPEG must end with its EOI marker and a PNG with its IEND chunk: a frame cut
off in transport is refused instead of matched. The format is told by the data's signature; the
message's ``format`` string (``"jpeg"``, ``"bgr8; jpeg compressed bgr8"``, ``"png"``...) is only
used in messages, because publishers fill it in many ways. The size the header declares is checked
before decoding: a few hundred bytes can declare 20000x20000 pixels, which the decoder would
allocate (and fill) before any check on the decoded frame.
"""
from __future__ import annotations

import struct
from typing import Any, Optional, Tuple

import cv2
import numpy as np

from loftr_ros.ros.image_conversion import (
    MAX_PIXELS,
    EmptyImageError,
    MalformedImageError,
    UnsupportedEncodingError,
    check_matchable_size,
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


#: JPEG start-of-frame markers (SOF0-SOF15 without DHT, JPG and DAC), which carry the frame size
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: JPEG markers without a length field: TEM, RST0-7, SOI
_JPEG_BARE_MARKERS = frozenset([0x01, 0xD8]) | frozenset(range(0xD0, 0xD8))


def declared_size(data: bytes, kind: str) -> Optional[Tuple[int, int]]:
    """``(width, height)`` that a JPEG's start-of-frame or a PNG's IHDR declares, read without
    decoding; None when the header cannot be read (the decoder then judges the data)."""
    if kind == "png":
        # signature (8), IHDR length (4) and type (4), then width and height (big endian)
        if len(data) < 24 or data[12:16] != b"IHDR":
            return None
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte before a marker
            offset += 1
            continue
        if marker in _JPEG_BARE_MARKERS:
            offset += 2
            continue
        if marker == 0xDA:  # start of scan before any frame header
            return None
        if marker in _JPEG_SOF_MARKERS:
            if offset + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[offset + 5:offset + 9])
            return width, height
        offset += 2 + struct.unpack(">H", data[offset + 2:offset + 4])[0]
    return None


def compressed_msg_to_matching_image(msg: Any) -> np.ndarray:
    """uint8 gray ``[H, W]`` or BGR ``[H, W, 3]`` from a CompressedImage-like object (``format``,
    ``data``).

    Raises:
        EmptyImageError: no data.
        UnsupportedEncodingError: neither JPEG nor PNG.
        MalformedImageError: truncated or corrupt data, or a frame over ``MAX_PIXELS``.
        TinyImageError: a side below the matcher's minimum.
    """
    data = bytes(msg.data)
    label = f"compressed image (format {getattr(msg, 'format', '')!r})"
    if not data:
        raise EmptyImageError(f"{label} has no data")
    kind = compressed_kind(data)
    if not _complete(data, kind):
        raise MalformedImageError(f"{label}: truncated {kind.upper()} ({len(data)} bytes, no "
                                  "end marker)")
    size = declared_size(data, kind)
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        raise MalformedImageError(f"{label}: its {kind.upper()} header declares {size[0]}x"
                                  f"{size[1]} pixels, over {MAX_PIXELS}; not decoded")
    try:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # OpenCV's own size limit and other refusals raise
        raise MalformedImageError(f"{label}: OpenCV cannot decode this {kind.upper()} "
                                  f"({len(data)} bytes): {str(exc).strip()}") from exc
    if pixels is None or pixels.size == 0:
        raise MalformedImageError(f"{label}: corrupt {kind.upper()} ({len(data)} bytes) that "
                                  "OpenCV cannot decode")
    height, width = pixels.shape[:2]
    if height * width > MAX_PIXELS:
        raise MalformedImageError(f"{label}: {width}x{height} is over {MAX_PIXELS} pixels")
    check_matchable_size(width, height)
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
           "declared_size", "encode_compressed_msg"]
