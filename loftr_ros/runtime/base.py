"""The one interface every inference engine (torch, onnxruntime, TensorRT) implements.

An engine takes two float32 images ``[1, 1, H, W]`` in [0, 1] and returns named float32 arrays:

- ``conf_matrix`` ``[L, S]``: dual-softmax confidence, L/S = coarse cells of image 0/1 (row-major).
- ``fine_feat0`` / ``fine_feat1`` ``[C, H/f, W/f]``: fine feature maps, only for models with a
  learned fine stage (``ModelConfig.fine``).

Outputs are addressed by NAME, never by position.
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

LOGGER = logging.getLogger("loftr_ros.runtime")


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

    @abc.abstractmethod
    def run(self, image0: np.ndarray, image1: np.ndarray) -> Dict[str, np.ndarray]:
        """Run the network. Inputs float32 ``[1,1,H,W]`` in [0,1]; outputs as the module doc says
        (batch axis removed)."""

    def close(self) -> None:
        """Release resources (GPU memory, contexts). Safe to call twice."""
