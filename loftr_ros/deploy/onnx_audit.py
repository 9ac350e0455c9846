"""Static checks of an exported ONNX graph for TensorRT, runnable without a GPU.

``audit_onnx(path)`` answers "will TensorRT's ONNX parser import this graph as one static engine?"
from the graph alone:

- every op is one that the ONNX parser of TensorRT 8.2 (JetPack 4.6, the oldest we support) imports
  (:data:`TRT82_PARSER_OPS`, from onnx-tensorrt's operator support matrix of its 8.2 release; later
  releases only add ops), and none with data-dependent output shapes or control flow
  (:data:`FORBIDDEN_OPS`), no custom domains;
- every graph input and output dimension is a positive integer (one engine per size);
- the opset is one the parsers read (TensorRT 8.2 up to 13, 8.4 - 8.6 up to 17);
- the parser's "must be an initializer" restrictions hold (Conv weights, Slice/Squeeze/Unsqueeze
  axes, TopK's K...).

The fp16 checks (float16 conversion, range scan) live in :mod:`loftr_ros.deploy.fp16`.

CLI: ``python -m loftr_ros.deploy.onnx_audit model.onnx [--trt 8.2]`` prints the report, exit 1 on
errors.
"""
from __future__ import annotations

import argparse
import collections
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple, Union

#: Ops marked supported ("Y") in onnx-tensorrt's docs/operators.md of the TensorRT 8.2 release,
#: plus Reciprocal, which that table marks "N" although the same release's parser source
#: (builtin_op_importers.cpp) imports it. NonMaxSuppression (experimental there) is left out.
#: Later releases only add ops (NonZero in 8.5, LayerNormalization in 8.6 — so not JetPack 5's
#: TensorRT 8.5), so a graph made of these ops parses on every TensorRT a Jetson runs.
TRT82_PARSER_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast
Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace
DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather
GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual
GRU HardSigmoid Identity If ImageScaler InstanceNormalization IsNaN LeakyRelu Less LessOrEqual Log
LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean Min Mul Neg Not Or Pad
ParametricSoftplus Pow PRelu QuantizeLinear RandomUniform RandomUniformLike Range ReduceL1 ReduceL2
ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare
Relu Reshape Resize ReverseSequence RNN Round ScaledTanh Scan Scatter ScatterElements ScatterND
Selu Shape Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt
Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Unsqueeze Upsample Where
Reciprocal
""".split())

#: Ops refused even where some parser imports them: why, in one line each.
FORBIDDEN_OPS: Dict[str, str] = {
    "Einsum": "Einsum: TensorRT's einsum layer is restricted and absent before opset 12; "
              "write it as MatMul / Mul + ReduceSum",
    "NonZero": "NonZero: data-dependent output shape (TensorRT 8.2 cannot parse it); "
               "keep thresholding/nonzero on the host",
    "TopK": "TopK: selection belongs to the host-side matching, not the engine",
    "Loop": "Loop: control flow; the engine must be one static graph",
    "If": "If: control flow; the engine must be one static graph",
    "Scan": "Scan: control flow; the engine must be one static graph",
    "Unique": "Unique: data-dependent output shape",
    "Compress": "Compress: data-dependent output shape",
    "NonMaxSuppression": "NonMaxSuppression: data-dependent output, experimental in TensorRT 8.2",
}

#: Newest opset each TensorRT's ONNX parser reads (onnx-tensorrt release notes / operator docs).
TRT_MAX_OPSET: Dict[str, int] = {"8.2": 13, "8.4": 17, "8.5": 17, "8.6": 17, "10": 20}
MIN_OPSET = 9
MAX_OPSET = 17  # the newest opset that every TensorRT of JetPack 5 and 6 reads

#: (op, input index) that TensorRT 8.2's parser requires to be an initializer/constant.
_CONSTANT_INPUTS: Dict[str, Tuple[int, ...]] = {
    "Conv": (1,), "ConvTranspose": (1,), "Slice": (3,), "Squeeze": (1,), "Unsqueeze": (1,),
    "TopK": (1,), "CumSum": (1,),
}

ModelLike = Union[str, bytes, "Any"]  # path, serialized bytes or onnx.ModelProto


@dataclass
class AuditReport:
    """Result of :func:`audit_onnx`.

    Attributes:
        source: file name (or ``<model>``).
        opset: default-domain opset of the graph.
        op_counts: op type -> number of nodes.
        inputs / outputs: tensor name -> shape (ints; a str or None marks a dynamic dim).
        errors: problems that stop TensorRT from building a static engine of this graph.
        warnings: things that work but deserve attention (e.g. an opset TensorRT 8.2 cannot read).
    """

    source: str
    opset: int
    op_counts: Dict[str, int] = field(default_factory=dict)
    inputs: Dict[str, List[Any]] = field(default_factory=dict)
    outputs: Dict[str, List[Any]] = field(default_factory=dict)
    errors: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when there is no error."""
        return not self.errors

    def format(self) -> str:
        """Human-readable multi-line report."""
        verdict = "OK" if self.ok else "FAILED"
        lines = [f"ONNX audit of {self.source}: {verdict} (opset {self.opset}, "
                 f"{sum(self.op_counts.values())} nodes, {len(self.op_counts)} op types)"]
        for kind, tensors in (("input", self.inputs), ("output", self.outputs)):
            for name, shape in tensors.items():
                lines.append(f"  {kind} {name}: {shape}")
        lines.append("  ops: " + ", ".join(f"{op} x{count}" for op, count in
                                           sorted(self.op_counts.items())))
        lines += [f"  ERROR: {text}" for text in self.errors]
        lines += [f"  warning: {text}" for text in self.warnings]
        return "\n".join(lines)


def load_model_proto(model: ModelLike) -> Tuple[Any, str]:
    """``(onnx.ModelProto, a name for messages)`` from a path, serialized bytes or a ModelProto."""
    import onnx

    if isinstance(model, str):
        return onnx.load(model), model
    if isinstance(model, (bytes, bytearray)):
        return onnx.load_from_string(bytes(model)), "<bytes>"
    return model, "<model>"


def _shape_of(value_info: Any) -> List[Any]:
    dims: List[Any] = []
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return [None]
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param"):
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return dims


def is_static_shape(shape: Sequence[Any]) -> bool:
    """True when every dim is a positive int (``[None]`` = unknown rank)."""
    return all(isinstance(dim, int) and dim > 0 for dim in shape)


def _default_opset(model: Any) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 0


def _trt_key(version: str) -> str:
    major_minor = ".".join(str(version).split(".")[:2])
    if major_minor in TRT_MAX_OPSET:
        return major_minor
    major = str(version).split(".")[0]
    if major in TRT_MAX_OPSET:
        return major
    raise ValueError(f"unknown TensorRT version {version!r}; known: {sorted(TRT_MAX_OPSET)}")


def audit_onnx(model: ModelLike, target_trt: Optional[str] = None) -> AuditReport:
    """Audit an ONNX graph for a static TensorRT engine.

    Args:
        model: path, serialized bytes or ``onnx.ModelProto``.
        target_trt: TensorRT version the engine must build on (``"8.2"``, ``"8.5"``, ``"10"``...).
            None = any of JetPack 5/6 (opset up to 17, with a warning above TensorRT 8.2's 13).
            The op allow-list is always TensorRT 8.2's.
    Returns:
        an :class:`AuditReport`; ``report.ok`` is False when TensorRT would refuse the graph.
    """
    proto, source = load_model_proto(model)
    graph = proto.graph
    report = AuditReport(source=source, opset=_default_opset(proto))

    # Opset range.
    max_opset = MAX_OPSET if target_trt is None else TRT_MAX_OPSET[_trt_key(target_trt)]
    if not MIN_OPSET <= report.opset <= max_opset:
        where = f"TensorRT {target_trt}" if target_trt else "TensorRT 8.4-8.6 (JetPack 5/6)"
        report.errors.append(f"opset {report.opset} is outside {MIN_OPSET}..{max_opset}, the range "
                             f"{where}'s ONNX parser reads")
    elif target_trt is None and report.opset > TRT_MAX_OPSET["8.2"]:
        report.warnings.append(f"opset {report.opset} needs TensorRT >= 8.4 (JetPack 5+); "
                               "TensorRT 8.2 (JetPack 4.6) reads opsets up to 13: export with "
                               "--opset 13 for it")
    for entry in proto.opset_import:
        if entry.domain not in ("", "ai.onnx"):
            report.errors.append(f"custom op domain {entry.domain!r}: TensorRT needs a plugin")

    # Graph inputs and outputs: static, positive dims.
    initializers = {tensor.name for tensor in graph.initializer}
    for kind, values, target in (("input", graph.input, report.inputs),
                                 ("output", graph.output, report.outputs)):
        for value in values:
            if value.name in initializers:
                continue  # old exporters list initializers as inputs
            shape = _shape_of(value)
            target[value.name] = shape
            if not is_static_shape(shape):
                report.errors.append(f"graph {kind} {value.name!r} has shape {shape}: every dim "
                                     "must be a fixed positive int (one engine per input size)")

    # Ops.
    counts: Dict[str, int] = collections.Counter()
    constants = set(initializers)
    problems: Dict[str, Set[str]] = collections.defaultdict(set)
    for node in graph.node:
        counts[node.op_type] += 1
        if node.op_type == "Constant":
            constants.update(node.output)
        if node.domain not in ("", "ai.onnx"):
            problems[f"op {node.domain}::{node.op_type} (custom domain: TensorRT needs a plugin)"]\
                .add(node.name)
            continue
        if node.op_type in FORBIDDEN_OPS:
            problems[FORBIDDEN_OPS[node.op_type]].add(node.name)
        elif node.op_type not in TRT82_PARSER_OPS:
            problems[f"{node.op_type}: not imported by TensorRT 8.2's ONNX parser"].add(node.name)
        for index in _CONSTANT_INPUTS.get(node.op_type, ()):
            if index < len(node.input) and node.input[index] and \
                    node.input[index] not in constants:
                problems[f"{node.op_type} input {index} must be an initializer or Constant "
                         "for TensorRT 8.2"].add(node.name)
        if any(attr.type in (5, 10) for attr in node.attribute):  # GRAPH / GRAPHS: subgraphs
            problems[f"{node.op_type} holds a subgraph (control flow)"].add(node.name)
    report.op_counts = dict(counts)
    for text, nodes in sorted(problems.items()):
        names = sorted(name or "<unnamed>" for name in nodes)
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        report.errors.append(f"{text} [{len(names)} node(s): {shown}]")

    _check_inferred_shapes(proto, report)
    return report


def _check_inferred_shapes(proto: Any, report: AuditReport) -> None:
    """Fail on Where nodes whose output shape ONNX shape inference cannot pin to static ints (a
    Where fed by data-dependent shapes). Other intermediate tensors are not checked: inference
    often leaves Reshape outputs unknown that TensorRT resolves at build time."""
    import onnx

    if "Where" not in report.op_counts:
        return
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception as exc:  # malformed graphs: report, do not crash the audit
        report.warnings.append(f"ONNX shape inference failed: {exc}")
        return
    shapes = {value.name: _shape_of(value) for value in
              list(inferred.graph.value_info) + list(inferred.graph.output)}
    for node in inferred.graph.node:
        if node.op_type == "Where":
            shape = shapes.get(node.output[0], [None])
            if not is_static_shape(shape):
                report.errors.append(f"Where node {node.name!r} has a non-static output shape "
                                     f"{shape}")


# ------------------------------------------------------------------------------------------------
# CLI


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m loftr_ros.deploy.onnx_audit MODEL.onnx [--trt VERSION]``: print the report;
    exit 0 when TensorRT can build it, 1 otherwise, 2 when the file cannot be read."""
    parser = argparse.ArgumentParser(prog="python -m loftr_ros.deploy.onnx_audit",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("onnx", nargs="+", help="ONNX file(s) to audit")
    parser.add_argument("--trt", default=None,
                        help=f"target TensorRT version ({', '.join(sorted(TRT_MAX_OPSET))}); "
                             "default: any TensorRT of JetPack 5/6, op set of 8.2")
    args = parser.parse_args(argv)
    status = 0
    for path in args.onnx:
        try:
            report = audit_onnx(path, target_trt=args.trt)
        except Exception as exc:  # unreadable file: one line, not a traceback
            print(f"error: cannot read {path}: {exc}", file=sys.stderr)
            status = max(status, 2)
            continue
        print(report.format())
        if not report.ok:
            status = max(status, 1)
    return status


if __name__ == "__main__":
    sys.exit(main())
