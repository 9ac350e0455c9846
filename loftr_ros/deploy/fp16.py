"""fp16 safety of an exported graph, checked on the CPU before a TensorRT fp16 engine is built.

``convert_to_fp16`` converts a graph to float16 (onnxruntime runs it on the CPU, so its matches can
be compared with the float32 graph's), and ``fp16_range_scan`` reports the largest magnitude of
every intermediate tensor, the direct answer to "does anything overflow fp16 (65504)?".
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, Iterable, List, Tuple

import numpy as np

from loftr_ros.deploy.onnx_audit import ModelLike, load_model_proto

#: Largest finite float16 value.
FP16_MAX = 65504.0


def convert_to_fp16(model: ModelLike, keep_fp32_ops: Iterable[str] = (),
                    keep_fp32_nodes: Iterable[str] = ()) -> Any:
    """Convert a float32 graph to float16 with onnxconverter-common, inputs/outputs kept float32.

    Args:
        model: path, bytes or ModelProto (not modified).
        keep_fp32_ops: op types to keep in float32 (e.g. ``("Softmax",)``), added to
            onnxconverter-common's default block list.
        keep_fp32_nodes: node names to keep in float32.
    Returns:
        the float16 ``onnx.ModelProto``.

    Two repairs around onnxconverter-common 1.16: a graph output that other nodes also read gets
    an Identity in front (otherwise the converter leaves those readers on the float32 copy), and a
    ``Cast(to=float)`` whose output the converter turned into float16 is made ``Cast(to=float16)``.
    """
    import onnx
    from onnx import TensorProto, helper
    from onnxconverter_common import float16

    proto, _ = load_model_proto(model)
    proto = onnx.ModelProto.FromString(proto.SerializeToString())  # work on a copy
    graph = proto.graph
    outputs = {value.name for value in graph.output}
    consumed = {name for node in graph.node for name in node.input}
    for name in sorted(outputs & consumed):
        internal = name + "__internal"
        for node in graph.node:
            for index, value in enumerate(node.output):
                if value == name:
                    node.output[index] = internal
            for index, value in enumerate(node.input):
                if value == name:
                    node.input[index] = internal
        graph.node.append(helper.make_node("Identity", [internal], [name], name=name + "__out"))
    del graph.value_info[:]  # stale float32 entries confuse the converter; it re-infers them
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "float32 number ... will be truncated": expected here
        converted = float16.convert_float_to_float16(
            proto, keep_io_types=True,
            op_block_list=list(float16.DEFAULT_OP_BLOCK_LIST) + list(keep_fp32_ops),
            node_block_list=list(keep_fp32_nodes))
    types = {value.name: value.type.tensor_type.elem_type for value in
             list(converted.graph.value_info) + list(converted.graph.output)}
    for node in converted.graph.node:
        if node.op_type == "Cast" and types.get(node.output[0]) == TensorProto.FLOAT16:
            for attr in node.attribute:
                if attr.name == "to" and attr.i == TensorProto.FLOAT:
                    attr.i = TensorProto.FLOAT16
    return converted


def fp16_range_scan(model: ModelLike, feeds: Dict[str, np.ndarray],
                    threads: int = 1) -> List[Tuple[str, str, float]]:
    """Largest magnitude of every float intermediate tensor of a float32 graph on ``feeds``.

    Runs the graph under onnxruntime (CPU) with every float tensor exposed as an output.

    Returns:
        ``[(tensor name, producing op, max |value|)]`` sorted by magnitude, largest first;
        compare with :data:`FP16_MAX` (65504).
    """
    import onnx
    import onnxruntime
    from onnx import TensorProto

    proto, _ = load_model_proto(model)
    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    inferred = onnx.shape_inference.infer_shapes(proto)
    float_tensors = {value.name for value in inferred.graph.value_info
                     if value.type.tensor_type.elem_type == TensorProto.FLOAT}
    producer = {name: node.op_type for node in proto.graph.node for name in node.output}
    existing = {value.name for value in proto.graph.output}
    for value in inferred.graph.value_info:
        if value.name in float_tensors and value.name not in existing \
                and producer.get(value.name) != "Constant":
            proto.graph.output.append(value)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    # No graph fusion: keep the tensors as the exported graph (and TensorRT's parser) sees them.
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(proto.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    values = session.run(names, feeds)
    scan = [(name, producer.get(name, "?"), float(np.abs(value).max()) if value.size else 0.0)
            for name, value in zip(names, values) if value.dtype == np.float32]
    return sorted(scan, key=lambda item: -item[2])
