"""What an ONNX file says about itself: its image input size and its loftr_ros metadata.

Every reader takes a path or an open onnxruntime session (no second load where one exists). A
path is read with the ``onnx`` package where installed (graph only, no weights copied), else with
onnxruntime. No torch.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Tuple, Union

from loftr_ros.model.presets import ModelConfig, get_preset
from loftr_ros.runtime.base import (
    CONFIG_METADATA_KEY,
    ENCODER_STAGE,
    MATCHER_STAGE,
    PARTNER_METADATA_KEY,
    STAGE_METADATA_KEY,
    ModelLoadError,
)

#: an onnxruntime.InferenceSession or a file path
OnnxSource = Union[str, Any]


def _facts(source: OnnxSource) -> Tuple[Optional[List[Any]], Dict[str, str]]:
    """(shape of the first graph input or None, metadata dict) of ``source``."""
    if not isinstance(source, str):
        inputs = source.get_inputs()
        shape = list(inputs[0].shape) if inputs else None
        return shape, dict(source.get_modelmeta().custom_metadata_map)
    try:
        import onnx
    except ImportError:
        onnx = None
    if onnx is None:
        try:
            import onnxruntime
        except ImportError:
            raise ModelLoadError(f"{source}: reading it needs the onnx or onnxruntime "
                                 "package") from None
        try:
            session = onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types
            raise ModelLoadError(f"{source}: not a readable ONNX file: {exc}") from None
        return _facts(session)
    try:
        model = onnx.load(source, load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others for corrupt files
        raise ModelLoadError(f"{source}: not a readable ONNX file: {exc}") from None
    initializers = {tensor.name for tensor in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    shape = None
    if inputs:
        shape = [dim.dim_value if dim.HasField("dim_value") else dim.dim_param or None
                 for dim in inputs[0].type.tensor_type.shape.dim]
    return shape, {entry.key: entry.value for entry in model.metadata_props}


def _image_size(shape: Optional[List[Any]]) -> Optional[Tuple[int, int]]:
    """(width, height) of a static ``[1, 1, H, W]`` shape, else None."""
    if not shape or len(shape) != 4:
        return None
    if not all(isinstance(dim, int) and dim > 0 for dim in shape[2:]):
        return None
    return int(shape[3]), int(shape[2])


def read_onnx_metadata(source: OnnxSource) -> Dict[str, str]:
    """The ONNX file's metadata (key -> string)."""
    return _facts(source)[1]


def read_onnx_input_size(source: OnnxSource) -> Tuple[int, int]:
    """``(width, height)`` of the first graph input ``[1, 1, H, W]``; ModelLoadError if the file
    is unreadable or that input is not a static image."""
    shape = _facts(source)[0]
    size = _image_size(shape)
    if size is None:
        name = source if isinstance(source, str) else "ONNX graph"
        raise ModelLoadError(f"{name}: first input has shape {shape}, expected a static "
                             "[1, 1, H, W] (export it with loftr-export)")
    return size


def read_onnx_config(source: OnnxSource) -> Optional[Dict[str, Any]]:
    """The loftr_ros model config (a dict) stored in the ONNX metadata, or None."""
    text = read_onnx_metadata(source).get(CONFIG_METADATA_KEY)
    return json.loads(text) if text else None


def model_config_of_onnx(source: OnnxSource, path: str, preset: Optional[str]) -> ModelConfig:
    """Model config of an ONNX graph: its loftr_ros metadata (checked against the graph's image
    input where it has one), else ``preset`` at the graph's input size.

    Raises:
        ModelLoadError: invalid metadata, another preset than ``preset``, metadata and graph of
            different sizes, or neither metadata nor preset.
    """
    shape, metadata = _facts(source)
    graph_size = _image_size(shape)
    if CONFIG_METADATA_KEY in metadata:
        try:
            config = ModelConfig.from_dict(json.loads(metadata[CONFIG_METADATA_KEY]))
        except (ValueError, TypeError, KeyError) as exc:
            raise ModelLoadError(f"{path}: invalid loftr_ros config metadata: {exc}") from None
        if preset and preset != config.name:
            raise ModelLoadError(f"{path}: holds preset {config.name!r}, not {preset!r}")
        if graph_size is not None and graph_size != config.input_size:
            raise ModelLoadError(
                f"{path}: its metadata says {config.input_width}x{config.input_height} but the "
                f"graph takes {graph_size[0]}x{graph_size[1]} images (an edited or mixed-up file)")
        return config
    if not preset:
        raise ModelLoadError(f"{path}: ONNX file without loftr_ros metadata; pass its preset "
                             "(e.g. preset='seed' for the Coarse LoFTR TRT ONNX)")
    if graph_size is None:
        raise ModelLoadError(f"{path}: input shape {shape} is not static [1,1,H,W]")
    return get_preset(preset).with_input_size(*graph_size)




def two_stage_files(path: str, metadata: Dict[str, str]) -> Optional[Tuple[str, str]]:
    """``(encoder path, matcher path)`` of a two-stage model given either of its files and that
    file's metadata; None for a single-graph ONNX. The metadata gives the partner's path relative
    to the file's folder (usually just its name; ModelLoadError where it is missing)."""
    stage = metadata.get(STAGE_METADATA_KEY)
    if stage not in (ENCODER_STAGE, MATCHER_STAGE):
        return None
    partner_name = metadata.get(PARTNER_METADATA_KEY)
    if not partner_name:
        raise ModelLoadError(f"{path}: a {stage} graph whose metadata names no partner graph")
    partner = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(path)),
                                            partner_name))
    if not os.path.isfile(partner):
        other = MATCHER_STAGE if stage == ENCODER_STAGE else ENCODER_STAGE
        raise ModelLoadError(f"{path}: the {stage} of a two-stage model; its {other} "
                             f"{partner} is missing (loftr-export writes both)")
    path = os.path.abspath(path)
    return (path, partner) if stage == ENCODER_STAGE else (partner, path)


__all__ = ["read_onnx_metadata", "read_onnx_input_size", "read_onnx_config",
           "model_config_of_onnx", "two_stage_files"]
