"""The one interface every inference engine (torch, onnxruntime, TensorRT) implements.

An engine takes two float32 images ``[1, 1, H, W]`` in [0, 1] and returns named float32 arrays:

- ``conf_matrix`` ``[L, S]``: dual-softmax confidence, L/S = coarse cells of image 0/1 (row-major).
- ``fine_feat0`` / ``fine_feat1`` ``[C, H/f, W/f]``: fine feature maps, only for models with a
  learned fine stage (``ModelConfig.fine``).

Outputs are addressed by NAME, never by position.

Two stages (design.md): :meth:`InferenceRuntime.encode` turns one image into everything about it
that does not depend on the other image (``coarse_feat`` [L,C] and ``fine_feat`` [C,H/f,W/f] for
a two-stage model; for a single-graph model, the prepared ``image`` itself), and
:meth:`InferenceRuntime.match` turns two such encodings into the outputs above. ``run`` is
``match(encode(image0), encode(image1))``.
"""
from __future__ import annotations

import abc
import logging
from typing import Dict, Tuple

import numpy as np

from loftr_ros.model.presets import ModelConfig

CONF_MATRIX = "conf_matrix"
FINE_FEAT0 = "fine_feat0"
FINE_FEAT1 = "fine_feat1"
INPUT0 = "image0"
INPUT1 = "image1"
#: ONNX metadata key holding the model config (JSON) of graphs exported by loftr_ros
CONFIG_METADATA_KEY = "loftr_ros.config"

# Two-stage graphs: the encoder takes IMAGE and outputs COARSE_FEAT (+ FINE_FEAT); the matcher
# takes COARSE_FEAT0 and COARSE_FEAT1 and outputs CONF_MATRIX.
IMAGE = "image"
COARSE_FEAT = "coarse_feat"
FINE_FEAT = "fine_feat"
COARSE_FEAT0 = "coarse_feat0"
COARSE_FEAT1 = "coarse_feat1"
#: ONNX metadata: which stage a graph is (``encoder`` / ``matcher``) and its partner's file name
#: (same folder)
STAGE_METADATA_KEY = "loftr_ros.stage"
PARTNER_METADATA_KEY = "loftr_ros.partner"
ENCODER_STAGE = "encoder"
MATCHER_STAGE = "matcher"

#: an encoding: named float32 arrays, batch axis removed
Encoding = Dict[str, np.ndarray]

LOGGER = logging.getLogger("loftr_ros.runtime")


def match_outputs(conf_matrix: np.ndarray, encoding0: Encoding,
                  encoding1: Encoding) -> Dict[str, np.ndarray]:
    """A two-stage match's outputs: the matcher stage's ``conf_matrix`` [L,S] and, for models
    with a fine stage, each encoding's ``fine_feat`` [C,H/f,W/f] as ``fine_feat0`` /
    ``fine_feat1`` (the fine maps depend on one image only, so the encoder makes them)."""
    outputs = {CONF_MATRIX: conf_matrix}
    if FINE_FEAT in encoding0:
        outputs[FINE_FEAT0] = encoding0[FINE_FEAT]
        outputs[FINE_FEAT1] = encoding1[FINE_FEAT]
    return outputs


class LoftrRuntimeError(Exception):
    """Base class of the clear, user-facing errors raised by runtimes."""


class BackendUnavailableError(LoftrRuntimeError):
    """The engine's libraries or hardware are not present (e.g. TensorRT without a GPU)."""


class ModelLoadError(LoftrRuntimeError):
    """A weights/ONNX/engine file is missing, corrupt, or does not fit this runtime."""


class InputSizeError(LoftrRuntimeError):
    """An input tensor does not have the size the engine was built for."""


class InferenceRuntime(abc.ABC):
    """Runs the network on one image pair. Implementations are not required to be thread-safe;
    :class:`loftr_ros.matching.matcher.Matcher` serialises calls."""

    #: short backend name ("torch", "onnxruntime", "tensorrt")
    name: str = "abstract"

    #: True where encode() runs a network stage; False for single-graph models, whose
    #: encoding is the prepared image and whose match() runs the whole network
    two_stage: bool = False

    def __init__(self, config: ModelConfig) -> None:
        self.config = config

    @property
    def input_size(self) -> Tuple[int, int]:
        """Model input ``(width, height)`` in pixels."""
        return self.config.input_size

    @property
    def has_fine(self) -> bool:
        """Whether this model outputs fine feature maps."""
        return self.config.fine is not None

    @property
    def description(self) -> str:
        """One line for logs and diagnostics (backend, device, precision...)."""
        return self.name

    def check_inputs(self, image0: np.ndarray, image1: np.ndarray) -> None:
        """Raise InputSizeError unless both inputs are float32 ``[1,1,H,W]`` of the model size."""
        width, height = self.input_size
        for index, image in enumerate((image0, image1)):
            if image.shape != (1, 1, height, width):
                raise InputSizeError(
                    f"input {index} has shape {tuple(image.shape)}, the {self.name} engine expects "
                    f"(1, 1, {height}, {width})")

    @property
    def model_identity(self) -> str:
        """Names the model, its form (file, precision) and input size: encodings made by one
        runtime are only valid for runtimes with the same identity."""
        width, height = self.input_size
        source = getattr(self, "path", None) or f"object-{id(self):x}"
        return f"{self.name}:{self.config.name}:{width}x{height}:{source}"

    def check_image(self, image: np.ndarray) -> None:
        """InputSizeError unless ``image`` is float32-compatible ``[1,1,H,W]`` of the model size."""
        width, height = self.input_size
        if tuple(image.shape) != (1, 1, height, width):
            raise InputSizeError(f"input has shape {tuple(image.shape)}, the {self.name} engine "
                                 f"expects (1, 1, {height}, {width})")

    def encode(self, image: np.ndarray) -> Encoding:
        """Encoder stage for one float32 ``[1,1,H,W]`` image in [0,1] (module doc). Default, for
        single-graph models: the image itself, under ``IMAGE``."""
        self.check_image(image)
        return {IMAGE: image}

    def match(self, encoding0: Encoding, encoding1: Encoding) -> Dict[str, np.ndarray]:
        """Matcher stage: two :meth:`encode` results -> outputs as the module doc says. Default,
        for single-graph models: the whole network on the two stored images."""
        return self.run(encoding0[IMAGE], encoding1[IMAGE])

    @abc.abstractmethod
    def run(self, image0: np.ndarray, image1: np.ndarray) -> Dict[str, np.ndarray]:
        """Run the network. Inputs float32 ``[1,1,H,W]`` in [0,1]; outputs as the module doc says
        (batch axis removed)."""

    def close(self) -> None:
        """Release resources (GPU memory, contexts). Safe to call twice."""
