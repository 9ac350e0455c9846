"""CompressedImage (JPEG, PNG) decoding: good frames, and every kind of bad one refused."""
import cv2
import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs (ROS 2 wheels) not installed")

from loftr_ros.ros.compressed_image import (  # noqa: E402
    compressed_msg_to_matching_image,
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
