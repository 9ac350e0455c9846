"""sensor_msgs/Image <-> numpy, without cv_bridge, plus cv_bridge where it really works.

The own converter reads any message-like object with ``height``, ``width``, ``encoding``,
``is_bigendian``, ``step`` and ``data`` (so it is testable without rclpy). It honours row padding
(``step`` > width x bytes per pixel) and the byte order of 16/32-bit encodings, and raises an
:class:`ImageConversionError` subclass with a one-line reason for anything it cannot read.

cv_bridge is used only when it imports *and* passes a one-time round-trip self-check per encoding,
rows padded included. Measured with PyPI's ``cv-bridge`` 1.13 (the ROS 1 package): under numpy 2
every encoding fails; under numpy 1 it ignores ``step`` padding (wrong pixels) and refuses 16UC1.
apt's cv_bridge has known numpy-2 problems too. Either way the results are the same arrays.

Encodings (facts of sensor_msgs/image_encodings): ``yuv422`` is UYVY byte order
(U0 Y0 V0 Y1), ``yuv422_yuy2`` is YUYV (Y0 U0 Y1 V0); ``uyvy`` / ``yuyv`` are the newer names.
"""
from __future__ import annotations

import array
import logging
import sys
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np

LOGGER = logging.getLogger("loftr_ros.ros.image_conversion")

#: Frames with more pixels than this are refused (a 1 GB frame would stall the node).
MAX_PIXELS = 64 * 1024 * 1024


class ImageConversionError(ValueError):
    """A sensor_msgs/Image that cannot be converted; the message says why in one line."""


class UnsupportedEncodingError(ImageConversionError):
    """The encoding is not one of :data:`SUPPORTED_ENCODINGS`."""


class EmptyImageError(ImageConversionError):
    """Width or height is zero."""


class TinyImageError(ImageConversionError):
    """A side shorter than ``loftr_ros.matching.preprocess.MIN_IMAGE_SIDE`` (too small to match)."""


class MalformedImageError(ImageConversionError):
    """``step`` too small, ``data`` shorter than ``step * height``, odd YUV width, too large."""


@dataclass(frozen=True)
class EncodingInfo:
    """Memory layout of one encoding.

    Attributes:
        dtype: numpy element type (native byte order; the message's order is applied on read).
        channels: elements per pixel in the decoded array (2 for packed YUV 4:2:2).
        order: channel order (``"bgr"``, ``"rgb"``, ``"bgra"``, ``"rgba"``, ``"gray"``,
            ``"uyvy"``, ``"yuyv"``).
    """

    dtype: np.dtype
    channels: int
    order: str

    @property
    def bytes_per_pixel(self) -> int:
        return self.channels * self.dtype.itemsize


ENCODINGS: Dict[str, EncodingInfo] = {
    "mono8": EncodingInfo(np.dtype(np.uint8), 1, "gray"),
    "8UC1": EncodingInfo(np.dtype(np.uint8), 1, "gray"),
    "mono16": EncodingInfo(np.dtype(np.uint16), 1, "gray"),
    "16UC1": EncodingInfo(np.dtype(np.uint16), 1, "gray"),
    "32FC1": EncodingInfo(np.dtype(np.float32), 1, "gray"),
    "bgr8": EncodingInfo(np.dtype(np.uint8), 3, "bgr"),
    "8UC3": EncodingInfo(np.dtype(np.uint8), 3, "bgr"),
    "rgb8": EncodingInfo(np.dtype(np.uint8), 3, "rgb"),
    "bgra8": EncodingInfo(np.dtype(np.uint8), 4, "bgra"),
    "8UC4": EncodingInfo(np.dtype(np.uint8), 4, "bgra"),
    "rgba8": EncodingInfo(np.dtype(np.uint8), 4, "rgba"),
    "yuv422": EncodingInfo(np.dtype(np.uint8), 2, "uyvy"),
    "uyvy": EncodingInfo(np.dtype(np.uint8), 2, "uyvy"),
    "yuv422_yuy2": EncodingInfo(np.dtype(np.uint8), 2, "yuyv"),
    "yuyv": EncodingInfo(np.dtype(np.uint8), 2, "yuyv"),
}
SUPPORTED_ENCODINGS: Tuple[str, ...] = tuple(ENCODINGS)
#: The encodings the issue names (the others are aliases); tests run through each.
MAIN_ENCODINGS: Tuple[str, ...] = ("mono8", "mono16", "bgr8", "rgb8", "bgra8", "rgba8", "16UC1",
                                   "32FC1", "yuv422", "yuv422_yuy2")

_HOST_BIG_ENDIAN = sys.byteorder == "big"


def encoding_info(encoding: str) -> EncodingInfo:
    """Layout of ``encoding``; UnsupportedEncodingError names the encoding otherwise."""
    try:
        return ENCODINGS[encoding]
    except KeyError:
        raise UnsupportedEncodingError(
            f"unsupported image encoding {encoding!r} (supported: "
            f"{', '.join(MAIN_ENCODINGS)})") from None


def _check_geometry(msg: Any, info: EncodingInfo) -> Tuple[int, int, int, int]:
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise EmptyImageError(f"empty image ({width}x{height}, encoding {msg.encoding!r})")
    if height * width > MAX_PIXELS:
        raise MalformedImageError(
            f"image {width}x{height} has more than {MAX_PIXELS} pixels; refused")
    row_bytes = width * info.bytes_per_pixel
    if step < row_bytes:
        raise MalformedImageError(
            f"step {step} is smaller than width x bytes per pixel = {width} x "
            f"{info.bytes_per_pixel} = {row_bytes} ({msg.encoding})")
    if info.order in ("uyvy", "yuyv") and width % 2:
        raise MalformedImageError(f"{msg.encoding} needs an even width, got {width}")
    size = len(msg.data)
    if size < step * height:
        raise MalformedImageError(
            f"data has {size} bytes, step x height = {step} x {height} = {step * height} needed "
            f"(truncated {width}x{height} {msg.encoding} image)")
    return height, width, step, row_bytes


def image_msg_to_array(msg: Any) -> np.ndarray:
    """Decode an Image message with the own numpy converter.

    Returns:
        ``[H, W]`` for one-channel encodings, ``[H, W, C]`` otherwise, in the encoding's channel
        order and element type, native byte order (packed YUV 4:2:2: ``[H, W, 2]`` uint8 as
        stored). The array owns its memory (no view into the message).

    Raises:
        ImageConversionError (a subclass) with a one-line reason.
    """
    info = encoding_info(msg.encoding)
    height, width, step, row_bytes = _check_geometry(msg, info)
    raw = np.frombuffer(msg.data, dtype=np.uint8, count=step * height).reshape(height, step)
    rows = np.array(raw[:, :row_bytes], copy=True)  # never a view into the message buffer
    pixels = rows.view(info.dtype)
    if info.dtype.itemsize > 1 and bool(msg.is_bigendian) != _HOST_BIG_ENDIAN:
        pixels = pixels.byteswap()
    if info.channels == 1:
        return pixels.reshape(height, width)
    return pixels.reshape(height, width, info.channels)


def normalise_to_uint8(values: np.ndarray) -> np.ndarray:
    """Stretch a one-channel uint16/float image to uint8 over its finite min..max.

    Non-finite values (NaN depth) become 0; a constant image becomes all zeros.
    """
    data = values.astype(np.float32, copy=False)
    finite = np.isfinite(data)
    if not finite.any():
        return np.zeros(values.shape, np.uint8)
    low = float(data[finite].min())
    high = float(data[finite].max())
    if high <= low:
        return np.zeros(values.shape, np.uint8)
    scaled = (np.where(finite, data, low) - low) * (255.0 / (high - low))
    return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)


def array_to_matching_image(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """Turn a decoded array into what the matcher takes: uint8 ``[H, W]`` or BGR ``[H, W, 3]``.

    16-bit and float images are stretched to 8 bit (:func:`normalise_to_uint8`); YUV 4:2:2 and
    RGB(A) become BGR.
    """
    import cv2  # imported here so that the module loads without OpenCV for message-only users

    info = encoding_info(encoding)
    if info.order == "gray":
        if pixels.dtype == np.uint8:
            return pixels
        return normalise_to_uint8(pixels)
    if info.order == "bgr":
        return pixels
    if info.order == "rgb":
        return np.ascontiguousarray(pixels[:, :, ::-1])
    if info.order == "bgra":
        return np.ascontiguousarray(pixels[:, :, :3])
    if info.order == "rgba":
        return np.ascontiguousarray(pixels[:, :, 2::-1])
    if info.order == "uyvy":
        return cv2.cvtColor(pixels, cv2.COLOR_YUV2BGR_UYVY)
    if info.order == "yuyv":
        return cv2.cvtColor(pixels, cv2.COLOR_YUV2BGR_YUY2)
    raise UnsupportedEncodingError(f"no matching conversion for {encoding!r}")  # pragma: no cover


def array_to_image_msg(pixels: np.ndarray, encoding: str = "bgr8", header: Any = None,
                       msg: Any = None) -> Any:
    """Build a sensor_msgs/Image from an array (own converter; little endian, no padding).

    Args:
        pixels: ``[H, W]`` or ``[H, W, C]`` laid out as ``encoding`` says (e.g. BGR for bgr8;
            ``[H, W, 2]`` uint8 for the YUV 4:2:2 encodings).
        encoding: one of :data:`SUPPORTED_ENCODINGS`.
        header: std_msgs/Header to copy into the message (optional).
        msg: an existing message object to fill (default: a new sensor_msgs/Image).
    """
    info = encoding_info(encoding)
    pixels = np.asarray(pixels)
    expected_ndim = 2 if info.channels == 1 else 3
    if pixels.ndim != expected_ndim or (info.channels > 1 and pixels.shape[2] != info.channels):
        raise ImageConversionError(
            f"array of shape {pixels.shape} does not fit encoding {encoding!r} "
            f"({info.channels} channel(s))")
    if pixels.dtype != info.dtype:
        raise ImageConversionError(
            f"array dtype {pixels.dtype} does not fit encoding {encoding!r} ({info.dtype})")
    if msg is None:
        from sensor_msgs.msg import Image

        msg = Image()
    if header is not None:
        msg.header = header
    height, width = pixels.shape[:2]
    msg.height = int(height)
    msg.width = int(width)
    msg.encoding = encoding
    msg.is_bigendian = _HOST_BIG_ENDIAN if info.dtype.itemsize > 1 else False
    msg.step = int(width * info.bytes_per_pixel)
    msg.data = array.array("B", np.ascontiguousarray(pixels).tobytes())
    return msg


# ---------------------------------------------------------------------------------------------
# cv_bridge, only where it round-trips correctly


class ImageConverter:
    """Decodes Image messages for the node: cv_bridge where verified, the own converter else.

    ``use_cv_bridge``: ``None`` = try it (self-check), ``False`` = never, ``True`` = required
    (RuntimeError when it is missing or fails the self-check; for tests).
    """

    def __init__(self, use_cv_bridge: Optional[bool] = None) -> None:
        self.bridge = None
        self.bridge_encodings: Tuple[str, ...] = ()
        self.bridge_problem = "not tried"
        if use_cv_bridge is False:
            self.bridge_problem = "disabled"
            return
        self.bridge, self.bridge_encodings, self.bridge_problem = _verified_cv_bridge()
        if use_cv_bridge and not self.bridge_encodings:
            raise RuntimeError(f"cv_bridge requested but unusable: {self.bridge_problem}")

    @property
    def description(self) -> str:
        """One line for logs: which converter handles which encodings."""
        if self.bridge_encodings:
            return f"cv_bridge for {', '.join(self.bridge_encodings)}; numpy converter otherwise"
        return f"numpy converter (cv_bridge: {self.bridge_problem})"

    def to_array(self, msg: Any) -> np.ndarray:
        """Like :func:`image_msg_to_array`, through cv_bridge when verified for the encoding."""
        if msg.encoding in self.bridge_encodings:
            info = encoding_info(msg.encoding)
            _check_geometry(msg, info)
            pixels = self.bridge.imgmsg_to_cv2(msg, desired_encoding="passthrough")
            return np.array(pixels, dtype=info.dtype, copy=True)
        return image_msg_to_array(msg)

    def to_matching_image(self, msg: Any) -> np.ndarray:
        """uint8 gray ``[H, W]`` or BGR ``[H, W, 3]`` for the matcher and the debug image.
        TinyImageError for a frame the matcher refuses (a side below ``MIN_IMAGE_SIDE``)."""
        pixels = self.to_array(msg)  # a malformed message is reported as such first
        check_matchable_size(pixels.shape[1], pixels.shape[0])
        return array_to_matching_image(pixels, msg.encoding)


def check_matchable_size(width: int, height: int) -> None:
    """TinyImageError for a frame of ``width`` x ``height`` pixels that the matcher refuses (a
    side below ``loftr_ros.matching.preprocess.MIN_IMAGE_SIDE``)."""
    from loftr_ros.matching.preprocess import MIN_IMAGE_SIDE

    if width < MIN_IMAGE_SIDE or height < MIN_IMAGE_SIDE:
        raise TinyImageError(f"image {width}x{height} is too small to match: each side "
                             f"needs at least {MIN_IMAGE_SIDE} pixels")


def _self_check_samples() -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    samples: Dict[str, np.ndarray] = {}
    for name in MAIN_ENCODINGS:
        info = ENCODINGS[name]
        if info.order in ("uyvy", "yuyv"):
            continue  # cv_bridge's YUV support differs between versions: own converter only
        shape = (5, 6) if info.channels == 1 else (5, 6, info.channels)
        if info.dtype == np.float32:
            samples[name] = rng.normal(size=shape).astype(np.float32)
        else:
            samples[name] = rng.integers(0, np.iinfo(info.dtype).max, size=shape,
                                         dtype=info.dtype)
    return samples


_BRIDGE_CACHE: Optional[Tuple[Any, Tuple[str, ...], str]] = None


def _verified_cv_bridge() -> Tuple[Any, Tuple[str, ...], str]:
    """Import cv_bridge and round-trip one small image per encoding (once per process).

    Returns ``(bridge or None, encodings that passed, problem description)``.
    """
    global _BRIDGE_CACHE
    if _BRIDGE_CACHE is not None:
        return _BRIDGE_CACHE
    try:
        from cv_bridge import CvBridge  # type: ignore[import-not-found]

        bridge = CvBridge()
    except Exception as exc:  # ImportError, or a broken install raising anything
        _BRIDGE_CACHE = (None, (), f"not importable ({type(exc).__name__}: {exc})")
        return _BRIDGE_CACHE
    passed = []
    problems = []
    for encoding, sample in _self_check_samples().items():
        try:
            msg = bridge.cv2_to_imgmsg(sample, encoding=encoding)
            back = np.asarray(bridge.imgmsg_to_cv2(msg, desired_encoding="passthrough"))
            ours = image_msg_to_array(msg)
            padded = _padded_copy(array_to_image_msg_like(sample, encoding))
            theirs_padded = np.asarray(
                bridge.imgmsg_to_cv2(padded, desired_encoding="passthrough"))
            if (back.shape == sample.shape and back.dtype == sample.dtype
                    and np.array_equal(back, sample) and np.array_equal(ours, sample)
                    and np.array_equal(theirs_padded, sample)):
                passed.append(encoding)
            else:
                problems.append(f"{encoding}: wrong pixels")
        except Exception as exc:
            problems.append(f"{encoding}: {type(exc).__name__}")
    problem = "; ".join(problems) if problems else "ok"
    if problems:
        LOGGER.info("cv_bridge self-check failed for %s; the numpy converter handles those",
                    problem)
    _BRIDGE_CACHE = (bridge if passed else None, tuple(passed), problem)
    return _BRIDGE_CACHE


@dataclass
class RawImage:
    """A plain stand-in for sensor_msgs/Image (tests, and the cv_bridge self-check)."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: bytes


def array_to_image_msg_like(pixels: np.ndarray, encoding: str, big_endian: bool = False,
                            padding: int = 0) -> RawImage:
    """Encode ``pixels`` into a :class:`RawImage` with an optional byte order and row padding.

    Used to make test corpora: ``padding`` extra bytes (0xAB) end every row.
    """
    info = encoding_info(encoding)
    pixels = np.asarray(pixels, dtype=info.dtype)
    height, width = pixels.shape[:2]
    order = ">" if big_endian else "<"
    stored = pixels.astype(info.dtype.newbyteorder(order)) if info.dtype.itemsize > 1 \
        else pixels
    rows = np.ascontiguousarray(stored).view(np.uint8).reshape(height, -1)
    if padding:
        rows = np.concatenate([rows, np.full((height, padding), 0xAB, np.uint8)], axis=1)
    return RawImage(height=height, width=width, encoding=encoding, is_bigendian=int(big_endian),
                    step=int(rows.shape[1]), data=rows.tobytes())


def _padded_copy(raw: RawImage) -> Any:
    """The same image as a real sensor_msgs/Image with 4 padding bytes per row."""
    from sensor_msgs.msg import Image

    rows = np.frombuffer(raw.data, np.uint8).reshape(raw.height, raw.step)
    rows = np.concatenate([rows, np.zeros((raw.height, 4), np.uint8)], axis=1)
    msg = Image()
    msg.height, msg.width, msg.encoding = raw.height, raw.width, raw.encoding
    msg.is_bigendian, msg.step = raw.is_bigendian, raw.step + 4
    msg.data = array.array("B", rows.tobytes())
    return msg


__all__ = [
    "ENCODINGS", "MAIN_ENCODINGS", "MAX_PIXELS", "SUPPORTED_ENCODINGS", "EmptyImageError",
    "ImageConversionError", "ImageConverter", "MalformedImageError", "RawImage",
    "UnsupportedEncodingError", "array_to_image_msg", "array_to_image_msg_like",
    "array_to_matching_image", "check_matchable_size", "encoding_info", "image_msg_to_array",
    "normalise_to_uint8",
]
