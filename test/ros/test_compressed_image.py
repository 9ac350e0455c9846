"""CompressedImage (JPEG, PNG) decoding: good frames, and every kind of bad one refused."""
import cv2
import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs (ROS 2 wheels) not installed")

from loftr_ros.ros.compressed_image import (  # noqa: E402
    compressed_msg_to_matching_image,
    declared_size,
    encode_compressed_msg,
)
from loftr_ros.ros.image_conversion import (  # noqa: E402
    EmptyImageError,
    MalformedImageError,
    TinyImageError,
    UnsupportedEncodingError,
)


def picture(channels=3):
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), (11, 11), 0)
    return image if channels == 3 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


@pytest.mark.parametrize("kind", ["jpeg", "png"])
@pytest.mark.parametrize("channels", [1, 3])
def test_decodes_jpeg_and_png(kind, channels):
    image = picture(channels)
    msg = encode_compressed_msg(image, kind, quality=95)
    assert kind in msg.format
    decoded = compressed_msg_to_matching_image(msg)
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    error = np.abs(decoded.astype(int) - image.astype(int)).mean()
    assert error == 0 if kind == "png" else error < 4


def test_sixteen_bit_png_is_stretched():
    depth = (np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 7)
    ok, data = cv2.imencode(".png", depth)
    msg = encode_compressed_msg(picture(1), "png")
    msg.data = data.tobytes()
    decoded = compressed_msg_to_matching_image(msg)
    assert decoded.dtype == np.uint8 and decoded.min() == 0 and decoded.max() == 255


@pytest.mark.parametrize("damage, error, words", [
    ("empty", EmptyImageError, "no data"),
    ("unknown", UnsupportedEncodingError, "unknown format"),
    ("truncated", MalformedImageError, "truncated JPEG"),
    ("corrupt", MalformedImageError, "corrupt JPEG"),
    ("truncated png", MalformedImageError, "truncated PNG"),
    ("tiny", TinyImageError, "too small"),
])
def test_bad_data_is_refused_with_a_reason(damage, error, words):
    msg = encode_compressed_msg(picture(), "png" if "png" in damage else "jpeg")
    data = bytes(msg.data)
    if damage == "empty":
        data = b""
    elif damage == "unknown":
        data = b"GIF89a" + data[6:]
    elif damage.startswith("truncated"):
        data = data[:len(data) // 2]
    elif damage == "corrupt":  # a whole file's frame: markers intact, the header destroyed
        data = data[:3] + bytes(200) + data[203:]
    elif damage == "tiny":
        data = encode_compressed_msg(picture()[:20, :20], "jpeg").data
    msg.data = bytes(data)
    with pytest.raises(error, match=words):
        compressed_msg_to_matching_image(msg)


def _with_declared_size(data, kind, width, height):
    """``data`` with its JPEG start-of-frame or PNG IHDR rewritten to ``width`` x ``height``
    (the PNG's chunk CRC is recomputed, so only the size is wrong)."""
    import struct
    import zlib

    data = bytearray(data)
    if kind == "png":
        data[16:24] = struct.pack(">II", width, height)
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
        return bytes(data)
    offset = 2
    while data[offset + 1] not in (0xC0, 0xC2):
        offset += 2 + struct.unpack(">H", bytes(data[offset + 2:offset + 4]))[0]
    data[offset + 5:offset + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.mark.parametrize("kind, side", [("jpeg", 20000), ("png", 20000), ("png", 60000),
                                        ("jpeg", 60000)])
def test_decompression_bomb_header_is_refused_before_decoding(kind, side):
    # A few hundred bytes declaring side x side pixels: 20000^2 under OpenCV's own limit made
    # imdecode fill 1.2 GB before the size check; 60000^2 over it made imdecode raise cv2.error.
    import resource

    msg = encode_compressed_msg(picture(), kind)
    data = _with_declared_size(bytes(msg.data), kind, side, side)
    scan = data.index(b"\xff\xda") if kind == "jpeg" else data.index(b"IDAT") - 4
    msg.data = data[:scan + 200] + (b"\xff\xd9" if kind == "jpeg" else data[-12:])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(MalformedImageError, match=f"declares {side}x{side} pixels"):
        compressed_msg_to_matching_image(msg)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB


@pytest.mark.parametrize("kind, flags", [
    ("jpeg", []), ("jpeg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), ("png", [])])
def test_declared_size_is_the_decoded_size(kind, flags):
    image = picture()[:97, :131]
    data = cv2.imencode(".jpg" if kind == "jpeg" else ".png", image, flags)[1].tobytes()
    assert declared_size(data, kind) == (131, 97)
    assert declared_size(data[:40], kind) in (None, (131, 97))
