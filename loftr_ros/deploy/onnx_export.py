"""torch -> ONNX export with static shapes and TensorRT-friendly ops, verified against torch.

The graph takes ``image0``, ``image1`` float32 [1,1,H,W] and outputs ``conf_matrix`` [1,L,S] (and
``fine_feat0`` / ``fine_feat1`` [1,Cf,H/f,W/f] for models with a fine stage). The model config is
stored as JSON in the ONNX metadata (key ``loftr_ros.config``), so runtimes that never import torch
can rebuild the post-processing from the .onnx file alone.

:func:`export_two_stage` writes the two stages instead (``<stem>_encoder.onnx``: ``image``
[1,1,H,W] -> ``coarse_feat`` [1,L,C] (+ ``fine_feat``); ``<stem>_matcher.onnx``: ``coarse_feat0``,
``coarse_feat1`` -> ``conf_matrix``), each naming its partner in its metadata.
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
    COARSE_FEAT,
    COARSE_FEAT0,
    COARSE_FEAT1,
    CONF_MATRIX,
    CONFIG_METADATA_KEY,
    ENCODER_STAGE,
    FINE_FEAT,
    FINE_FEAT0,
    FINE_FEAT1,
    IMAGE,
    INPUT0,
    INPUT1,
    MATCHER_STAGE,
    PARTNER_METADATA_KEY,
    STAGE_METADATA_KEY,
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


class _EncoderWrapper(torch.nn.Module):
    """One image -> (coarse_feat, [fine_feat]) for the exporter."""

    def __init__(self, model: CoarseLoFTR) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        encoded = self.model.encode(image)
        if "fine_feat" in encoded:
            return encoded["coarse_feat"], encoded["fine_feat"]
        return (encoded["coarse_feat"],)


class _MatcherWrapper(torch.nn.Module):
    """Two coarse_feat -> conf_matrix for the exporter."""

    def __init__(self, model: CoarseLoFTR) -> None:
        super().__init__()
        self.model = model

    def forward(self, coarse_feat0: torch.Tensor, coarse_feat1: torch.Tensor) -> torch.Tensor:
        return self.model.match_encoded(coarse_feat0, coarse_feat1)["conf_matrix"]


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
    model, (width, height) = _model_to_export(model_or_weights, opset, input_size, preset)
    image0, image1 = _verification_pair(verify_images, width, height)
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


def two_stage_paths(onnx_path: str) -> Tuple[str, str]:
    """``(<stem>_encoder.onnx, <stem>_matcher.onnx)`` beside ``onnx_path`` (``<stem>.onnx``)."""
    stem = onnx_path[:-len(".onnx")] if onnx_path.endswith(".onnx") else onnx_path
    return f"{stem}_{ENCODER_STAGE}.onnx", f"{stem}_{MATCHER_STAGE}.onnx"


@dataclass
class TwoStageExportReport:
    """Result of :func:`export_two_stage`: the two files and their checks against torch
    (``encoder``: coarse_feat/fine_feat from one image; ``matcher``: conf_matrix from torch's
    encodings; ``chained``: conf_matrix of the ONNX encoder -> ONNX matcher chain against the
    single-pass network)."""

    encoder_path: str
    matcher_path: str
    opset: int
    input_size: Tuple[int, int]
    max_abs_diff: Dict[str, Dict[str, float]]


def export_two_stage(model_or_weights: Union[CoarseLoFTR, str], onnx_path: str,
                     opset: int = DEFAULT_OPSET, input_size: Optional[Tuple[int, int]] = None,
                     preset: Optional[str] = None,
                     verify_images: Optional[Tuple[np.ndarray, np.ndarray]] = None,
                     tolerance: float = 1e-4) -> TwoStageExportReport:
    """Export the encoder and the matcher stage (module doc) as two static ONNX graphs beside
    ``onnx_path`` (:func:`two_stage_paths`), each verified against torch.

    Arguments as :func:`export_onnx`; ValueError when a check exceeds ``tolerance``.
    """
    model, (width, height) = _model_to_export(model_or_weights, opset, input_size, preset)
    image0, image1 = _verification_pair(verify_images, width, height)
    encoder_path, matcher_path = two_stage_paths(onnx_path)
    with torch.no_grad():
        expected = model(image0, image1)
        encoded0, encoded1 = model.encode(image0), model.encode(image1)
        matched = model.match_encoded(encoded0["coarse_feat"], encoded1["coarse_feat"])
        os.makedirs(os.path.dirname(os.path.abspath(onnx_path)), exist_ok=True)
        encoder_outputs = [COARSE_FEAT] + ([FINE_FEAT] if model.config.fine is not None else [])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(_EncoderWrapper(model).eval(), (image0,), encoder_path,
                              opset_version=opset, input_names=[IMAGE],
                              output_names=encoder_outputs, do_constant_folding=True,
                              dynamo=False)
            torch.onnx.export(_MatcherWrapper(model).eval(),
                              (encoded0["coarse_feat"], encoded1["coarse_feat"]), matcher_path,
                              opset_version=opset, input_names=[COARSE_FEAT0, COARSE_FEAT1],
                              output_names=[CONF_MATRIX], do_constant_folding=True, dynamo=False)
    size = (width, height)
    _attach_metadata(encoder_path, model, size, {STAGE_METADATA_KEY: ENCODER_STAGE,
                                                 PARTNER_METADATA_KEY: os.path.basename(
                                                     matcher_path)})
    _attach_metadata(matcher_path, model, size, {STAGE_METADATA_KEY: MATCHER_STAGE,
                                                 PARTNER_METADATA_KEY: os.path.basename(
                                                     encoder_path)})
    diffs = {
        ENCODER_STAGE: _verify_graph(encoder_path, {IMAGE: image0.numpy()},
                                     {name: encoded0[name].numpy() for name in encoder_outputs}),
        MATCHER_STAGE: _verify_graph(
            matcher_path, {COARSE_FEAT0: encoded0["coarse_feat"].numpy(),
                           COARSE_FEAT1: encoded1["coarse_feat"].numpy()},
            {CONF_MATRIX: matched["conf_matrix"].numpy()}),
        "chained": {CONF_MATRIX: _verify_chain(encoder_path, matcher_path, image0.numpy(),
                                               image1.numpy(),
                                               expected["conf_matrix"].numpy())},
    }
    worst = max(value for stage in diffs.values() for value in stage.values()
                if not np.isnan(value))
    if max(diffs[MATCHER_STAGE][CONF_MATRIX], diffs["chained"][CONF_MATRIX]) > tolerance:
        raise ValueError(f"{encoder_path}, {matcher_path}: onnxruntime differs from torch by "
                         f"{worst:.3g} (tolerance {tolerance}): {diffs}")
    return TwoStageExportReport(encoder_path=encoder_path, matcher_path=matcher_path,
                                opset=opset, input_size=size, max_abs_diff=diffs)


def _model_to_export(model_or_weights: Union[CoarseLoFTR, str], opset: int,
                     input_size: Optional[Tuple[int, int]], preset: Optional[str]
                     ) -> Tuple[CoarseLoFTR, Tuple[int, int]]:
    """The model (loaded from a weights file if given one) in eval mode, and the ``(width,
    height)`` to export it at; ValueError for an unsupported opset or an input size the model
    cannot take."""
    if opset not in SUPPORTED_OPSETS:
        raise ValueError(f"opset {opset} not supported; choose one of {SUPPORTED_OPSETS}")
    if isinstance(model_or_weights, str):
        model, _ = load_model(model_or_weights, preset=preset, input_size=input_size)
    else:
        model = model_or_weights
    model = model.eval()
    width, height = input_size or model.config.input_size
    model.config.check_input_size(width, height)
    return model, (width, height)


def _verification_pair(verify_images: Optional[Tuple[np.ndarray, np.ndarray]], width: int,
                       height: int) -> Tuple[torch.Tensor, torch.Tensor]:
    if verify_images is None:
        rng = np.random.default_rng(0)
        verify_images = (rng.random((1, 1, height, width), dtype=np.float32),
                         rng.random((1, 1, height, width), dtype=np.float32))
    pair = tuple(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
                 for image in verify_images)
    if any(tuple(image.shape) != (1, 1, height, width) for image in pair):
        raise ValueError(f"verification images must be (1, 1, {height}, {width})")
    return pair[0], pair[1]


def _attach_metadata(onnx_path: str, model: CoarseLoFTR, input_size: Tuple[int, int],
                     extra: Optional[Dict[str, str]] = None) -> None:
    import onnx

    graph = onnx.load(onnx_path)
    config = model.config.with_input_size(*input_size)
    entries = {CONFIG_METADATA_KEY: json.dumps(config.to_dict())}
    entries.update(extra or {})
    for key, value in entries.items():
        graph.metadata_props.add(key=key, value=value)
    graph.producer_name = "loftr_ros"
    onnx.save(graph, onnx_path)


def _verify_graph(onnx_path: str, feeds: Dict[str, np.ndarray],
                  expected: Dict[str, np.ndarray]) -> Dict[str, float]:
    """Max abs difference of each output of ``onnx_path`` under onnxruntime from ``expected``."""
    import onnxruntime

    session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    names = list(expected)
    results = session.run(names, feeds)
    return {name: float(np.abs(result - expected[name]).max()) for name, result in
            zip(names, results)}


def _verify_chain(encoder_path: str, matcher_path: str, image0: np.ndarray, image1: np.ndarray,
                  expected_conf: np.ndarray) -> float:
    """Max abs conf_matrix difference of the ONNX encoder -> ONNX matcher chain from torch."""
    import onnxruntime

    encoder = onnxruntime.InferenceSession(encoder_path, providers=["CPUExecutionProvider"])
    matcher = onnxruntime.InferenceSession(matcher_path, providers=["CPUExecutionProvider"])
    coarse0 = encoder.run([COARSE_FEAT], {IMAGE: image0})[0]
    coarse1 = encoder.run([COARSE_FEAT], {IMAGE: image1})[0]
    conf = matcher.run([CONF_MATRIX], {COARSE_FEAT0: coarse0, COARSE_FEAT1: coarse1})[0]
    return float(np.abs(conf - expected_conf).max())


def _verify(onnx_path: str, image0: np.ndarray, image1: np.ndarray,
            expected: Dict[str, np.ndarray]) -> Dict[str, float]:
    return _verify_graph(onnx_path, {INPUT0: image0, INPUT1: image1}, expected)
