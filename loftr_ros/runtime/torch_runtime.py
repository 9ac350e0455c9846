"""The PyTorch engine (CPU or CUDA). The only runtime that imports torch."""
from __future__ import annotations

import os
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from loftr_ros.model.checkpoint import CheckpointError, load_model
from loftr_ros.model.network import CoarseLoFTR
from loftr_ros.runtime.base import (
    COARSE_FEAT,
    CONF_MATRIX,
    FINE_FEAT0,
    FINE_FEAT1,
    Encoding,
    InferenceRuntime,
    ModelLoadError,
    match_outputs,
)


class TorchRuntime(InferenceRuntime):
    """Runs a :class:`CoarseLoFTR` under torch.no_grad (optionally ``torch.compile``-d); its
    two stages are the network's ``encode`` and ``match_encoded``."""

    name = "torch"
    two_stage = True

    def __init__(self, model: CoarseLoFTR, device: str = "auto", compile_model: bool = False,
                 threads: Optional[int] = None) -> None:
        super().__init__(model.config)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if threads:
            torch.set_num_threads(int(threads))
        self.device = torch.device(device)
        self.path: Optional[str] = None  # the weights file, where loaded from one
        self.model = model.eval().to(self.device)
        self._forward = torch.compile(self.model) if compile_model else self.model

    @classmethod
    def from_weights(cls, weights: str, preset: Optional[str] = None,
                     input_size: Optional[Tuple[int, int]] = None, **options: object
                     ) -> "TorchRuntime":
        """Load any supported checkpoint (clear ModelLoadError otherwise)."""
        try:
            model, _ = load_model(weights, preset=preset, input_size=input_size)
        except (CheckpointError, KeyError, ValueError) as exc:
            raise ModelLoadError(str(exc)) from None
        runtime = cls(model, **options)  # type: ignore[arg-type]
        runtime.path = os.path.abspath(weights)
        return runtime

    @property
    def description(self) -> str:
        return f"torch ({self.device.type})"

    def encode(self, image: np.ndarray) -> Encoding:
        self.check_image(image)
        with torch.no_grad():
            encoded = self.model.encode(torch.from_numpy(image).to(self.device))
        return {name: value[0].float().cpu().numpy() for name, value in encoded.items()}

    def match(self, encoding0: Encoding, encoding1: Encoding) -> Dict[str, np.ndarray]:
        with torch.no_grad():
            # copies: encodings held by an EncodedImage are read-only
            outputs = self.model.match_encoded(
                torch.from_numpy(np.array(encoding0[COARSE_FEAT][None])).to(self.device),
                torch.from_numpy(np.array(encoding1[COARSE_FEAT][None])).to(self.device))
        return match_outputs(outputs["conf_matrix"][0].float().cpu().numpy(), encoding0,
                             encoding1)

    def run(self, image0: np.ndarray, image1: np.ndarray) -> Dict[str, np.ndarray]:
        self.check_inputs(image0, image1)
        with torch.no_grad():
            outputs = self._forward(torch.from_numpy(image0).to(self.device),
                                    torch.from_numpy(image1).to(self.device))
        result = {CONF_MATRIX: outputs["conf_matrix"][0].float().cpu().numpy()}
        if "fine_feat0" in outputs:
            result[FINE_FEAT0] = outputs["fine_feat0"][0].float().cpu().numpy()
            result[FINE_FEAT1] = outputs["fine_feat1"][0].float().cpu().numpy()
        return result
