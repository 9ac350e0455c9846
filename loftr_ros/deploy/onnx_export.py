"""torch -> ONNX export with static shapes and TensorRT-friendly ops, verified against torch.

The graph takes ``image0``, ``image1`` float32 [1,1,H,W] and outputs ``conf_matrix`` [1,L,S] (and
``fine_feat0`` / ``fine_feat1`` [1,Cf,H/f,W/f] for models with a fine stage). The model config is
stored as JSON in the ONNX metadata (key ``loftr_ros.config``), so runtimes that never import torch
can rebuild the post-processing from the .onnx file alone.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from loftr_ros.model.checkpoint import load_model
from loftr_ros.model.network import CoarseLoFTR
from loftr_ros.runtime.base import (
    CONF_MATRIX,
    CONFIG_METADATA_KEY,
    FINE_FEAT0,
    FINE_FEAT1,
    INPUT0,
    INPUT1,
)

DEFAULT_OPSET = 17
SUPPORTED_OPSETS = (13, 14, 15, 16, 17, 18)


class _ExportWrapper(torch.nn.Module):
    """Fixes the output order for the exporter (names are attached by ``output_names``)."""

    def __init__(self, model: CoarseLoFTR) -> None:
        super().__init__()
        self.model = model

    def forward(self, image0: torch.Tensor, image1: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        outputs = self.model(image0, image1)
        if "fine_feat0" in outputs:
            return outputs["conf_matrix"], outputs["fine_feat0"], outputs["fine_feat1"]
        return (outputs["conf_matrix"],)


@dataclass
class ExportReport:
    """Result of an export: where, how, and how close onnxruntime came to torch."""

    onnx_path: str
    opset: int
    input_size: Tuple[int, int]
    output_names: List[str]
    max_abs_diff: Dict[str, float]


def output_names_for(model: CoarseLoFTR) -> List[str]:
    """ONNX output names of ``model`` in graph order."""
    return [CONF_MATRIX, FINE_FEAT0, FINE_FEAT1] if model.config.fine is not None else [CONF_MATRIX]


def export_onnx(model_or_weights: Union[CoarseLoFTR, str], onnx_path: str,
                opset: int = DEFAULT_OPSET, input_size: Optional[Tuple[int, int]] = None,
                preset: Optional[str] = None, verify_images: Optional[Tuple[np.ndarray, np.ndarray]]
                = None, tolerance: float = 1e-4) -> ExportReport:
    """Export a model (or a weights file) to a static-shape ONNX file and verify it.

    Args:
        model_or_weights: a CoarseLoFTR or a checkpoint path (any format ``load_model`` reads).
        onnx_path: output file.
        opset: ONNX opset (13 for older TensorRT, default 17).
        input_size: (width, height); default the model config's.
        preset: preset for checkpoints without an embedded config.
        verify_images: two float32 [1,1,H,W] arrays in [0,1] to compare onnxruntime with torch
            on (real images recommended); default a deterministic random pair.
        tolerance: maximum allowed abs difference of ``conf_matrix``; ValueError above it.
    """
    if opset not in SUPPORTED_OPSETS:
        raise ValueError(f"opset {opset} not supported; choose one of {SUPPORTED_OPSETS}")
    if isinstance(model_or_weights, str):
        model, _ = load_model(model_or_weights, preset=preset, input_size=input_size)
    else:
        model = model_or_weights
        if input_size is not None:
            model.config.check_input_size(*input_size)
    model = model.eval()
    width, height = input_size or model.config.input_size
    model.config.check_input_size(width, height)
    if verify_images is None:
        rng = np.random.default_rng(0)
        verify_images = (rng.random((1, 1, height, width), dtype=np.float32),
                         rng.random((1, 1, height, width), dtype=np.float32))
    image0 = torch.from_numpy(np.ascontiguousarray(verify_images[0], dtype=np.float32))
    image1 = torch.from_numpy(np.ascontiguousarray(verify_images[1], dtype=np.float32))
    if tuple(image0.shape) != (1, 1, height, width):
        raise ValueError(f"verification images must be (1, 1, {height}, {width})")
    names = output_names_for(model)
    with torch.no_grad():
        expected = model(image0, image1)  # also caches the positional encoding as a constant
        os.makedirs(os.path.dirname(os.path.abspath(onnx_path)), exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # An eval-mode wrapper: the exporter restores the wrapper's mode afterwards, and a
            # training-mode wrapper would leave the model (BatchNorm) in training mode.
            torch.onnx.export(_ExportWrapper(model).eval(), (image0, image1), onnx_path,
                              opset_version=opset, input_names=[INPUT0, INPUT1],
                              output_names=names, do_constant_folding=True, dynamo=False)
    _attach_metadata(onnx_path, model, (width, height))
    diffs = _verify(onnx_path, image0.numpy(), image1.numpy(),
                    {name: expected[name].numpy() for name in names})
    if diffs[CONF_MATRIX] > tolerance:
        raise ValueError(f"{onnx_path}: onnxruntime differs from torch by {diffs[CONF_MATRIX]:.3g} "
                         f"on conf_matrix (tolerance {tolerance})")
    return ExportReport(onnx_path=onnx_path, opset=opset, input_size=(width, height),
                        output_names=names, max_abs_diff=diffs)


def _attach_metadata(onnx_path: str, model: CoarseLoFTR, input_size: Tuple[int, int]) -> None:
    import onnx

    graph = onnx.load(onnx_path)
    config = model.config.with_input_size(*input_size)
    entry = graph.metadata_props.add()
    entry.key = CONFIG_METADATA_KEY
    entry.value = json.dumps(config.to_dict())
    graph.producer_name = "loftr_ros"
    onnx.save(graph, onnx_path)


def _verify(onnx_path: str, image0: np.ndarray, image1: np.ndarray,
            expected: Dict[str, np.ndarray]) -> Dict[str, float]:
    import onnxruntime

    session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    names = list(expected)
    results = session.run(names, {INPUT0: image0, INPUT1: image1})
    return {name: float(np.abs(result - expected[name]).max()) for name, result in
            zip(names, results)}
