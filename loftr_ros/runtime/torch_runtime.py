"""The PyTorch engine (CPU or CUDA). The only runtime that imports torch."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np
import torch

from loftr_ros.model.checkpoint import CheckpointError, load_model
from loftr_ros.model.network import CoarseLoFTR
from loftr_ros.runtime.base import (
    CONF_MATRIX,
    FINE_FEAT0,
    FINE_FEAT1,
    InferenceRuntime,
    ModelLoadError,
)


class TorchRuntime(InferenceRuntime):
    """Runs a :class:`CoarseLoFTR` under torch.no_grad (optionally ``torch.compile``-d)."""

    name = "torch"

    def __init__(self, model: CoarseLoFTR, device: str = "auto", compile_model: bool = False,
                 threads: Optional[int] = None) -> None:
        super().__init__(model.config)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if threads:
            torch.set_num_threads(int(threads))
        self.device = torch.device(device)
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
        return cls(model, **options)  # type: ignore[arg-type]

    @property
    def description(self) -> str:
        return f"torch ({self.device.type})"

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
