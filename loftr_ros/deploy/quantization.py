"""Static INT8 quantisation of an exported ONNX graph, for onnxruntime on the CPU.

The convolutions are quantised (QDQ format: weights int8 per output channel, activations uint8
with ranges calibrated by min/max on real image pairs), except where precision reaches the output
directly: the convolutions that read the images, the convolutions named ``*outconv*`` (they
feed the transformer) and the fine head's (``*fine_head*``: their features place the matches).
Attention, normalisation and the dual softmax stay in float32.

The result is for onnxruntime on the CPU. TensorRT and the CUDA provider take the float ONNX.
Only :func:`quantize_cpu_int8` imports ``onnxruntime.quantization``.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from loftr_ros.runtime.base import PARTNER_METADATA_KEY

#: metadata key written into quantised graphs; its value says what was quantised
QUANTIZATION_KEY = "loftr_ros.deploy.quantization"
QUANTIZATION_VALUE = "int8 convolutions (QDQ, per channel, min/max calibration)"
#: convolution names that stay in float32 (besides the first convolution)
FLOAT_CONVOLUTION_NAME_PARTS = ("outconv", "fine_head")


@dataclass
class QuantizationReport:
    """What :func:`quantize_cpu_int8` did."""

    onnx_path: str
    quantized: List[str]      # convolution node names now in int8
    kept_float: List[str]     # convolution node names left in float32
    calibration_pairs: int


def convolutions_kept_in_float(model: "object") -> List[str]:
    """Names of the Conv nodes of an ``onnx.ModelProto`` that stay in float32 (module doc): those
    that read an image (a graph input reaches them through no other convolution) and those named
    like ``FLOAT_CONVOLUTION_NAME_PARTS``."""
    graph = model.graph  # type: ignore[attr-defined]
    producers = {output: node for node in graph.node for output in node.output}
    inputs = {value.name for value in graph.input}

    def reads_image(tensor: str, seen: set) -> bool:
        if tensor in inputs:
            return True
        node = producers.get(tensor)
        if node is None or node.op_type == "Conv" or tensor in seen:
            return False
        seen.add(tensor)
        return any(reads_image(name, seen) for name in node.input if name)

    return [node.name for node in graph.node if node.op_type == "Conv" and (
        reads_image(node.input[0], set())
        or any(part in node.name for part in FLOAT_CONVOLUTION_NAME_PARTS))]


def _partner_from(out_path: str, source_path: str, partner: str) -> str:
    """The partner graph's name as seen from ``out_path``: the same name where such a file sits
    beside ``out_path``, else the relative path to the source graph's partner."""
    out_folder = os.path.dirname(os.path.abspath(out_path))
    if os.path.isfile(os.path.join(out_folder, partner)):
        return partner
    source_partner = os.path.join(os.path.dirname(os.path.abspath(source_path)), partner)
    return os.path.relpath(source_partner, out_folder)


def is_quantized(onnx_path: str) -> bool:
    """True for a graph written by :func:`quantize_cpu_int8` (reads only the metadata)."""
    import onnx

    model = onnx.load(onnx_path, load_external_data=False)
    return any(prop.key == QUANTIZATION_KEY for prop in model.metadata_props)


def quantize_cpu_int8(onnx_path: str, out_path: str,
                      calibration_pairs: Sequence[Tuple[np.ndarray, np.ndarray]],
                      work_dir: Optional[str] = None) -> QuantizationReport:
    """Write an INT8 copy of the float ONNX graph ``onnx_path`` to ``out_path``.

    ``calibration_pairs`` are model-sized float32 ``[1,1,H,W]`` inputs, prepared as the matcher
    prepares frames (:func:`loftr_ros.runtime.tensorrt.calibrator.calibration_pairs` reads them
    from a folder). A two-input graph (the single-graph model) gets each pair; a one-input graph
    (the encoder of a two-stage model) gets each image of each pair. The graph's metadata (the
    embedded model config) is carried over, plus ``QUANTIZATION_KEY``.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration_pairs:
        raise ValueError("INT8 calibration needs at least one image pair")
    source = onnx.load(onnx_path)
    names = [value.name for value in source.graph.input]
    if len(names) not in (1, 2):
        raise ValueError(f"{onnx_path}: expected one or two image inputs, found {names}")
    if len(names) == 2:
        feeds = [{names[0]: np.asarray(pair[0], np.float32),
                  names[1]: np.asarray(pair[1], np.float32)} for pair in calibration_pairs]
    else:
        feeds = [{names[0]: np.asarray(image, np.float32)} for pair in calibration_pairs
                 for image in pair]
    kept = convolutions_kept_in_float(source)
    convolutions = [node.name for node in source.graph.node if node.op_type == "Conv"]

    class PairReader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._feeds: Iterator = iter(feeds)

        def get_next(self) -> Optional[dict]:
            return next(self._feeds, None)

    with tempfile.TemporaryDirectory(dir=work_dir) as folder:
        prepared = os.path.join(folder, "prepared.onnx")
        quant_pre_process(onnx_path, prepared, skip_symbolic_shape=True)
        quantize_static(prepared, out_path, PairReader(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["Conv"], nodes_to_exclude=kept, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": False})
    quantized_model = onnx.load(out_path)
    del quantized_model.metadata_props[:]
    for prop in source.metadata_props:
        value = prop.value
        if prop.key == PARTNER_METADATA_KEY:
            value = _partner_from(out_path, onnx_path, value)
        quantized_model.metadata_props.add(key=prop.key, value=value)
    quantized_model.metadata_props.add(key=QUANTIZATION_KEY, value=QUANTIZATION_VALUE)
    onnx.save(quantized_model, out_path)
    return QuantizationReport(onnx_path=out_path,
                              quantized=[name for name in convolutions if name not in kept],
                              kept_float=kept, calibration_pairs=len(calibration_pairs))
