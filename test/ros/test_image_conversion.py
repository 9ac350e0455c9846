"""sensor_msgs/Image <-> numpy: every encoding, padding, byte order, and every way to be wrong.

The own converter is always tested. The same round trips run through cv_bridge where it imports
and passes its self-check (skipped with the reason otherwise).
"""
import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from loftr_ros.ros import image_conversion as ic  # noqa: E402
from loftr_ros.ros.image_conversion import (  # noqa: E402
    ENCODINGS,
    MAIN_ENCODINGS,
    EmptyImageError,
    ImageConverter,
    MalformedImageError,
    RawImage,
    UnsupportedEncodingError,
    array_to_image_msg_like,
    array_to_matching_image,
    image_msg_to_array,
)


def sample(encoding, height=7, width=10, seed=0):
    """A random array laid out as ``encoding`` stores it."""
    info = ENCODINGS[encoding]
    rng = np.random.default_rng(seed)
    shape = (height, width) if info.channels == 1 else (height, width, info.channels)
    if info.dtype == np.float32:
        return rng.uniform(-5, 50, size=shape).astype(np.float32)
    return rng.integers(0, np.iinfo(info.dtype).max, size=shape, endpoint=True, dtype=info.dtype)


def converters():
    params = [pytest.param(ImageConverter(use_cv_bridge=False), id="numpy")]
    probe = ImageConverter()
    marks = [] if probe.bridge_encodings else [
        pytest.mark.skip(reason=f"cv_bridge unusable here: {probe.bridge_problem}")]
    params.append(pytest.param(probe, id="cv_bridge", marks=marks))
    return params


@pytest.mark.parametrize("converter", converters())
@pytest.mark.parametrize("encoding", MAIN_ENCODINGS)
@pytest.mark.parametrize("padding", [0, 3])
@pytest.mark.parametrize("big_endian", [False, True])
def test_round_trip(converter, encoding, padding, big_endian):
    pixels = sample(encoding)
    msg = array_to_image_msg_like(pixels, encoding, big_endian=big_endian, padding=padding)
    decoded = converter.to_array(msg)
    assert decoded.dtype == ENCODINGS[encoding].dtype
    np.testing.assert_array_equal(decoded, pixels)


def test_decoded_array_does_not_alias_message():
    pixels = sample("mono8")
    msg = array_to_image_msg_like(pixels, "mono8")
    msg.data = bytearray(msg.data)
    decoded = image_msg_to_array(msg)
    msg.data[0] ^= 0xFF
    assert decoded[0, 0] == pixels[0, 0]


@pytest.mark.parametrize("encoding", MAIN_ENCODINGS)
def test_matching_image_is_uint8_gray_or_bgr(encoding):
    pixels = sample(encoding, height=32, width=40)
    image = ImageConverter(use_cv_bridge=False).to_matching_image(
        array_to_image_msg_like(pixels, encoding, padding=2))
    assert image.dtype == np.uint8
    assert image.shape[:2] == (32, 40)
    assert image.ndim == 2 or image.shape[2] == 3


def test_colour_orders():
    bgr = sample("bgr8")
    rgb = bgr[:, :, ::-1]
    bgra = np.dstack([bgr, np.full(bgr.shape[:2], 9, np.uint8)])
    rgba = np.dstack([rgb, np.full(bgr.shape[:2], 9, np.uint8)])
    for pixels, encoding in [(bgr, "bgr8"), (rgb, "rgb8"), (bgra, "bgra8"), (rgba, "rgba8")]:
        np.testing.assert_array_equal(array_to_matching_image(pixels, encoding), bgr)


def test_sixteen_bit_and_float_are_stretched():
    depth = np.array([[0, 1000], [2000, 4000]], np.uint16)
    np.testing.assert_array_equal(array_to_matching_image(depth, "16UC1"),
                                  [[0, 64], [128, 255]])
    floats = np.array([[np.nan, 1.0], [3.0, np.inf]], np.float32)
    np.testing.assert_array_equal(array_to_matching_image(floats, "32FC1"), [[0, 0], [255, 0]])
    assert not array_to_matching_image(np.full((2, 2), 7, np.uint16), "mono16").any()


def test_yuv422_byte_orders():
    """yuv422 is UYVY, yuv422_yuy2 is YUYV (sensor_msgs image_encodings)."""
    luma = np.array([[10, 200, 60, 120]], np.uint8)
    chroma = np.full((1, 4), 128, np.uint8)  # neutral chroma: BGR = Y (after the BT.601 range)
    uyvy = np.stack([chroma, luma], axis=2)  # per pixel (U|V, Y)
    yuyv = np.stack([luma, chroma], axis=2)  # per pixel (Y, U|V)
    from_uyvy = array_to_matching_image(uyvy, "yuv422")
    from_yuyv = array_to_matching_image(yuyv, "yuv422_yuy2")
    np.testing.assert_array_equal(from_uyvy, from_yuyv)
    gray = cv2.cvtColor(from_uyvy, cv2.COLOR_BGR2GRAY)[0]
    assert list(np.argsort(gray)) == list(np.argsort(luma[0]))


def raw(encoding="mono8", height=4, width=4, step=None, data=None, big=0):
    info = ENCODINGS.get(encoding, ENCODINGS["mono8"])
    step = width * info.bytes_per_pixel if step is None else step
    data = bytes(step * height) if data is None else data
    return RawImage(height=height, width=width, encoding=encoding, is_bigendian=big, step=step,
                    data=data)


@pytest.mark.parametrize("msg, error, words", [
    (raw("bayer_rggb8"), UnsupportedEncodingError, "bayer_rggb8"),
    (raw("jpeg"), UnsupportedEncodingError, "jpeg"),
    (raw(height=0, width=0, data=b""), EmptyImageError, "0x0"),
    (raw(height=5, width=0, data=b""), EmptyImageError, "empty"),
    (raw("bgr8", step=5), MalformedImageError, "step 5"),
    (raw("mono16", step=7), MalformedImageError, "step 7"),
    (raw("bgr8", data=bytes(10)), MalformedImageError, "truncated"),
    (raw("yuv422", width=3), MalformedImageError, "even width"),
    (raw(height=100000, width=100000, data=b""), MalformedImageError, "more than"),
])
def test_bad_images_raise_clear_errors(msg, error, words):
    with pytest.raises(error, match=words):
        image_msg_to_array(msg)
    with pytest.raises(ic.ImageConversionError):
        ImageConverter(use_cv_bridge=False).to_matching_image(msg)


@pytest.mark.parametrize("height, width", [(31, 64), (64, 31), (1, 1)])
def test_frames_too_small_to_match_are_refused_for_matching_only(height, width):
    msg = raw("mono8", height=height, width=width)
    assert image_msg_to_array(msg).shape == (height, width)
    with pytest.raises(ic.TinyImageError, match=f"{width}x{height} is too small"):
        ImageConverter(use_cv_bridge=False).to_matching_image(msg)


def test_one_pixel_image():
    msg = raw("bgr8", height=1, width=1, data=bytes([1, 2, 3]))
    np.testing.assert_array_equal(image_msg_to_array(msg), [[[1, 2, 3]]])


def test_cv_bridge_required_but_missing_is_an_error():
    probe = ImageConverter()
    if probe.bridge_encodings:
        pytest.skip("cv_bridge works here")
    with pytest.raises(RuntimeError, match="cv_bridge"):
        ImageConverter(use_cv_bridge=True)
    assert "numpy converter" in probe.description


def test_real_image_message_round_trip():
    pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs (ROS 2 wheels) not installed")
    from std_msgs.msg import Header

    from loftr_ros.ros.image_conversion import array_to_image_msg

    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = 12, 34
    for encoding in MAIN_ENCODINGS:
        pixels = sample(encoding, height=5, width=6)
        msg = array_to_image_msg(pixels, encoding, header=header)
        assert msg.header.frame_id == "cam" and msg.header.stamp.sec == 12
        np.testing.assert_array_equal(image_msg_to_array(msg), pixels)
    with pytest.raises(ic.ImageConversionError, match="does not fit"):
        array_to_image_msg(np.zeros((4, 4), np.uint8), "bgr8")
    with pytest.raises(ic.ImageConversionError, match="dtype"):
        array_to_image_msg(np.zeros((4, 4), np.float64), "mono8")


def test_bridge_routing_with_a_stand_in_bridge(monkeypatch):
    """Plumbing of the cv_bridge path (no working cv_bridge exists on PyPI for ROS 2): verified
    encodings go through the bridge, the others and all geometry checks stay ours."""
    calls = []

    class StandInBridge:
        def imgmsg_to_cv2(self, msg, desired_encoding="passthrough"):
            calls.append(msg.encoding)
            return image_msg_to_array(msg)

    monkeypatch.setattr(ic, "_verified_cv_bridge",
                        lambda: (StandInBridge(), ("bgr8",), "ok"))
    converter = ImageConverter()
    assert "cv_bridge for bgr8" in converter.description
    pixels = sample("bgr8")
    np.testing.assert_array_equal(converter.to_array(array_to_image_msg_like(pixels, "bgr8")),
                                  pixels)
    converter.to_array(array_to_image_msg_like(sample("mono8"), "mono8"))
    assert calls == ["bgr8"]
    with pytest.raises(MalformedImageError, match="truncated"):
        converter.to_array(raw("bgr8", data=bytes(10)))
    assert calls == ["bgr8"], "bad geometry is refused before the bridge sees it"
