"""Matcher.encode / EncodedImage: matching against an encoded image gives the plain call's
matches on every side, the encoding is immutable, and another matcher refuses it."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from loftr_ros import EncodedImage, Matcher, Matches
from loftr_ros.runtime import default_weights


def _same(a: Matches, b: Matches) -> None:
    assert np.array_equal(a.keypoints0, b.keypoints0)
    assert np.array_equal(a.keypoints1, b.keypoints1)
    assert np.array_equal(a.scores, b.scores)
    assert a.refinement == b.refinement and a.image0_size == b.image0_size


@pytest.fixture(scope="module")
def default_matcher() -> Matcher:
    return Matcher.create(backend="onnxruntime", threads=2)


@pytest.mark.parametrize("backend", ["onnxruntime", "torch", "seed-onnx"])
def test_encoded_sides_give_the_plain_matches(backend: str, photo_pair: tuple,
                                              seed_files: tuple) -> None:
    if backend == "seed-onnx":   # a single graph: encoding stores the prepared input
        matcher = Matcher.create(backend="onnxruntime", weights=seed_files[1], preset="seed")
    else:
        matcher = Matcher.create(backend=backend, threads=2)
    image0, image1 = photo_pair[0], photo_pair[1][:400, 20:]   # different sizes on purpose
    plain = matcher.match(image0, image1)
    assert len(plain) > 50
    reference, current = matcher.encode(image0), matcher.encode(image1)
    assert reference.original_size == (640, 480) and current.original_size == (620, 400)
    # the photometric templates on the coarse grid come with the encoding (used as image 0)
    assert reference.photometric.templates is not None
    for left, right in ((reference, image1), (image0, current), (reference, current)):
        _same(matcher.match(left, right), plain)
    _same(matcher.match(reference, image1), plain)   # reusable


def test_encoded_image_is_immutable(default_matcher: Matcher, photo_pair: tuple) -> None:
    encoded = default_matcher.encode(photo_pair[0])
    assert isinstance(encoded, EncodedImage)
    with pytest.raises(dataclasses.FrozenInstanceError):
        encoded.input = np.zeros(1)  # type: ignore[misc]
    arrays = [encoded.input, encoded.photometric.full, encoded.photometric.half,
              *encoded.features.values()]
    for array in arrays:
        with pytest.raises(ValueError, match="read-only"):
            array[..., 0] = 0
    with pytest.raises(TypeError):
        encoded.features["coarse_feat"] = np.zeros(1)  # type: ignore[index]


def test_another_matcher_refuses_the_encoding(default_matcher: Matcher, photo_pair: tuple,
                                              seed_files: tuple) -> None:
    encoded = default_matcher.encode(photo_pair[0])
    small = Matcher.create(backend="onnxruntime", weights=default_weights("onnx", (320, 240)))
    with pytest.raises(ValueError, match="encoded at 640x480, this matcher takes 320x240"):
        small.match(encoded, photo_pair[1])
    seed = Matcher.create(backend="onnxruntime", weights=seed_files[1], preset="seed")
    with pytest.raises(ValueError, match="encoded by another model"):
        seed.match(photo_pair[1], encoded)
    letterbox = Matcher(default_matcher.runtime, policy="letterbox")
    with pytest.raises(ValueError, match="policy resize"):
        letterbox.match(encoded, photo_pair[1])


def test_importing_the_package_is_light() -> None:
    """``import loftr_ros`` imports neither torch nor rclpy; the public names resolve lazily."""
    import subprocess
    import sys

    code = ("import sys, loftr_ros; heavy = [m for m in ('torch', 'rclpy', 'cv2') "
            "if m in sys.modules]; assert not heavy, heavy; "
            "from loftr_ros import Matcher, Matches, EncodedImage; "
            "assert 'torch' not in sys.modules and 'rclpy' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
