"""Pre-processing and the exact inverse coordinate map, for several sizes and aspect ratios."""
from __future__ import annotations

import numpy as np
import pytest

from loftr_ros.matching.preprocess import MIN_IMAGE_SIDE, prepare, to_gray

SIZES = [(640, 480), (1280, 720), (320, 240), (1000, 1000), (37, 91), (2048, 1536), (32, 32)]


@pytest.mark.parametrize("policy", ["resize", "letterbox"])
@pytest.mark.parametrize("size", SIZES)
def test_round_trip_of_a_marked_pixel(size: tuple, policy: str) -> None:
    """A bright dot drawn at a known original pixel is found where the inverse map says."""
    width, height = size
    rng = np.random.default_rng(width * 7 + height)
    image = np.zeros((height, width), dtype=np.uint8)
    original = np.array([[rng.uniform(0, width - 1), rng.uniform(0, height - 1)]])
    tensor, transform = prepare(image, (640, 480), policy)
    assert tensor.shape == (1, 1, 480, 640) and tensor.dtype == np.float32
    back = transform.to_original(transform.to_input(original))
    np.testing.assert_allclose(back, original, rtol=1e-5, atol=1e-4)
    input_point = transform.to_input(original)[0]
    assert transform.inside_content(input_point[None])[0]
    if policy == "resize":
        np.testing.assert_allclose(input_point, original[0] * [640 / width, 480 / height],
                                   rtol=1e-5)


@pytest.mark.parametrize("size", [(1280, 960), (800, 450), (320, 480)])
def test_inverse_map_matches_image_content(size: tuple) -> None:
    """The centroid of a blob moves through prepare() as the inverse map predicts (to ~1 px of the
    original image, well inside one coarse cell)."""
    width, height = size
    image = np.zeros((height, width), dtype=np.uint8)
    cx, cy = int(width * 0.31), int(height * 0.67)
    image[cy - 6:cy + 7, cx - 6:cx + 7] = 255
    for policy in ("resize", "letterbox"):
        tensor, transform = prepare(image, (640, 480), policy)
        plane = tensor[0, 0]
        ys, xs = np.nonzero(plane > 0.5)
        weights = plane[ys, xs]
        centroid = np.array([[np.average(xs, weights=weights), np.average(ys, weights=weights)]])
        mapped = transform.to_original(centroid)[0]
        scale = max(transform.scale)
        assert np.abs(mapped - [cx, cy]).max() <= 0.5 * scale + 1.0, (policy, mapped)


@pytest.mark.parametrize("size", [(31, 480), (640, 31), (1, 1), (0, 0)])
def test_empty_and_tiny_frames_are_refused_clearly(size: tuple) -> None:
    width, height = size
    words = "empty" if 0 in size else f"{width}x{height} is too small.*{MIN_IMAGE_SIDE}"
    with pytest.raises(ValueError, match=words):
        prepare(np.zeros((height, width), np.uint8), (640, 480))


def test_letterbox_marks_padding_invalid() -> None:
    _, transform = prepare(np.zeros((100, 400), np.uint8), (640, 480), "letterbox")
    assert transform.valid_size == (640, 160)
    assert not transform.inside_content(np.array([[10.0, 300.0]]))[0]


def test_to_gray_accepts_gray_bgr_bgra_and_rejects_others() -> None:
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 2] = 255
    assert to_gray(bgr).shape == (4, 5) and to_gray(bgr)[0, 0] == 76  # 0.299 * 255
    assert to_gray(np.zeros((4, 5, 4), np.uint8)).shape == (4, 5)
    with pytest.raises(ValueError):
        to_gray(np.zeros((4, 5, 2), np.uint8))
    with pytest.raises(ValueError):
        to_gray(np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError):
        prepare(np.zeros((4, 5), np.uint8), (640, 480), "crop")


def test_size_argument_of_the_command_lines() -> None:
    import argparse

    from loftr_ros.cli import size_argument

    assert size_argument("640x480") == (640, 480) and size_argument("320X240") == (320, 240)
    assert size_argument(f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}") == (MIN_IMAGE_SIDE,) * 2
    for text, words in [("640", "look like"), ("640x", "look like"), ("axb", "look like"),
                        ("-640x480", "look like"), ("31x480", "at least 32x32")]:
        with pytest.raises(argparse.ArgumentTypeError, match=words):
            size_argument(text)
