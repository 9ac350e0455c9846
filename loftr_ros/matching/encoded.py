"""``EncodedImage``: everything about one image that does not depend on the image it is matched
with, computed once by :meth:`loftr_ros.matching.matcher.Matcher.encode` (numpy only)."""
from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Mapping, Tuple

import numpy as np

from loftr_ros.matching.photometric import PhotometricImage
from loftr_ros.matching.preprocess import InputTransform


def read_only(array: np.ndarray) -> np.ndarray:
    """``array`` made read-only (a read-only view where the caller may still own the data)."""
    view = array.view()
    view.setflags(write=False)
    return view


@dataclass(frozen=True, eq=False)
class EncodedImage:
    """One image, encoded for matching by one matcher (immutable; its arrays are read-only).

    Attributes:
        model_identity: the runtime that encoded it (model, file, input size); another matcher
            refuses it.
        policy: the pre-processing policy (``resize`` / ``letterbox``).
        input: float32 [1,1,H,W] in [0,1], the prepared model input.
        transform: model-input pixels -> the original image's pixels.
        features: the encoder's outputs (``coarse_feat`` [L,C], ``fine_feat`` [Cf,H/f,W/f]; for
            a single-graph model ``image``, the input itself), read-only.
        photometric: the photometric refinement's data of this image (float image and its
            half-resolution level).
    """

    model_identity: str
    policy: str
    input: np.ndarray
    transform: InputTransform
    features: Mapping[str, np.ndarray]
    photometric: PhotometricImage

    def __post_init__(self) -> None:
        object.__setattr__(self, "input", read_only(self.input))
        object.__setattr__(self, "features", types.MappingProxyType(
            {name: read_only(value) for name, value in self.features.items()}))

    @property
    def input_size(self) -> Tuple[int, int]:
        """Model input (width, height) in pixels."""
        return self.transform.input_size

    @property
    def original_size(self) -> Tuple[int, int]:
        """(width, height) of the image that was encoded."""
        return self.transform.original_size


__all__ = ["EncodedImage", "read_only"]
