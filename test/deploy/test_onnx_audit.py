"""Static TensorRT audit of the exported ONNX graphs (no GPU needed).

Every preset is exported at its default size with random weights (the op set does not depend on
the weight values) at opsets 13 and 17 and must pass; hand-made graphs with Einsum, NonZero, a
dynamic dim, an op TensorRT 8.2 cannot parse, ... must fail, so the audit can fail.
"""
from __future__ import annotations

import dataclasses

import onnx
import pytest
from onnx import TensorProto, helper

from loftr_ros.deploy.onnx_audit import (
    FORBIDDEN_OPS,
    TRT82_PARSER_OPS,
    audit_onnx,
    is_static_shape,
    main,
)
from loftr_ros.model.presets import PRESETS, get_preset

OPSETS = (13, 17)
_EXPORTS = {}


def _architecture(preset):
    """The config fields that shape the graph (indoor and outdoor differ only in their weights,
    name and thresholds)."""
    data = dataclasses.asdict(get_preset(preset))
    for key in ("name", "match_threshold", "border_margin"):
        data.pop(key)
    return repr(sorted(data.items()))


def _export(preset, opset, folder):
    """Export a random-init model of ``preset`` once per architecture and opset."""
    torch = pytest.importorskip("torch", reason="exporting needs PyTorch")
    from loftr_ros.deploy.onnx_export import export_onnx
    from loftr_ros.model.network import build_model

    key = (_architecture(preset), opset)
    if key not in _EXPORTS:
        torch.manual_seed(0)
        model = build_model(get_preset(preset)).eval()
        path = str(folder / f"{preset}_opset{opset}.onnx")
        export_onnx(model, path, opset=opset)
        _EXPORTS[key] = path
    return _EXPORTS[key]


def _preset_params():
    params = []
    for name in sorted(PRESETS):
        heavy = get_preset(name).coarse_stride == 8  # outdoor/indoor: 4800 tokens, ~1 min export
        for opset in OPSETS:
            marks = [pytest.mark.slow] if heavy else []
            params.append(pytest.param(name, opset, marks=marks, id=f"{name}-opset{opset}"))
    return params


@pytest.mark.parametrize("preset, opset", _preset_params())
def test_every_preset_export_passes_the_audit(preset, opset, tmp_path_factory):
    path = _export(preset, opset, tmp_path_factory.getbasetemp())
    report = audit_onnx(path)
    print(report.format())
    assert report.ok, report.format()
    config = get_preset(preset)
    width, height = config.input_size
    assert report.inputs == {"image0": [1, 1, height, width], "image1": [1, 1, height, width]}
    assert "conf_matrix" in report.outputs
    tokens = (width // config.coarse_stride) * (height // config.coarse_stride)
    assert report.outputs["conf_matrix"] == [1, tokens, tokens]
    if opset <= 13:
        assert audit_onnx(path, target_trt="8.2").ok


def test_indoor_shares_outdoor_architecture():
    """Why the indoor audit may reuse the outdoor export: identical graph-shaping fields."""
    assert _architecture("indoor") == _architecture("outdoor")


def test_seed_reference_onnx_passes(seed_files):
    """The seed's own ONNX is known to build with TensorRT 8.x (trtexec): the audit agrees."""
    report = audit_onnx(seed_files[1], target_trt="8.2")
    assert report.ok, report.format()


# ------------------------------------------------------------------------------------------------
# Hand-made graphs the audit must refuse

SHAPE = [1, 1, 8, 8]


def _model(nodes, inputs=None, outputs=None, initializers=(), opset=13, domains=()):
    inputs = inputs or [helper.make_tensor_value_info("image0", TensorProto.FLOAT, SHAPE),
                        helper.make_tensor_value_info("image1", TensorProto.FLOAT, SHAPE)]
    outputs = outputs or [helper.make_tensor_value_info("conf_matrix", TensorProto.FLOAT, None)]
    graph = helper.make_graph(nodes, "handmade", inputs, outputs, list(initializers))
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    return helper.make_model(graph, opset_imports=opsets)


def _out(shape):
    return [helper.make_tensor_value_info("conf_matrix", TensorProto.FLOAT, shape)]


def test_clean_handmade_graph_passes():
    model = _model([helper.make_node("MatMul", ["image0", "image1"], ["conf_matrix"])],
                   outputs=_out(SHAPE))
    report = audit_onnx(model)
    assert report.ok, report.format()


def test_einsum_fails():
    model = _model([helper.make_node("Einsum", ["image0", "image1"], ["conf_matrix"],
                                     equation="nchw,nchw->nchw")], outputs=_out(SHAPE))
    report = audit_onnx(model)
    assert not report.ok
    assert any("Einsum" in error for error in report.errors), report.errors


def test_nonzero_fails():
    model = _model([helper.make_node("NonZero", ["image0"], ["conf_matrix"])],
                   outputs=[helper.make_tensor_value_info("conf_matrix", TensorProto.INT64,
                                                          [4, "n"])])
    report = audit_onnx(model)
    assert not report.ok
    assert any("NonZero" in error for error in report.errors)
    assert any("conf_matrix" in error and "fixed positive int" in error for error in report.errors)


@pytest.mark.parametrize("dims", [[1, 1, "height", 8], [1, 1, None, 8], [1, 1, -1, 8],
                                  [0, 1, 8, 8]])
def test_dynamic_input_dim_fails(dims):
    value = helper.make_tensor_value_info("image0", TensorProto.FLOAT, dims)
    if dims[2] is None:  # an unset dim (neither value nor name)
        value.type.tensor_type.shape.dim[2].Clear()
    other = helper.make_tensor_value_info("image1", TensorProto.FLOAT, SHAPE)
    model = _model([helper.make_node("Add", ["image0", "image1"], ["conf_matrix"])],
                   inputs=[value, other], outputs=_out(SHAPE))
    report = audit_onnx(model)
    assert not report.ok
    assert any("'image0'" in error for error in report.errors), report.errors


@pytest.mark.parametrize("op", ["LayerNormalization", "Mod", "Xor", "BitShift"])
def test_op_outside_trt82_parser_fails(op):
    """Ops newer TensorRT parses but 8.2 (and for LayerNormalization 8.5) does not."""
    inputs = ["image0", "image1"]
    opset = 17 if op == "LayerNormalization" else 13
    model = _model([helper.make_node(op, inputs, ["conf_matrix"])], outputs=_out(SHAPE),
                   opset=opset)
    report = audit_onnx(model)
    assert not report.ok
    assert any(error.startswith(op) for error in report.errors), report.errors


@pytest.mark.parametrize("op", ["TopK", "Loop", "If", "Scan"])
def test_forbidden_ops_fail(op):
    node = helper.make_node(op, ["image0"], ["conf_matrix"])
    report = audit_onnx(_model([node], outputs=_out(SHAPE)))
    assert any(FORBIDDEN_OPS[op] in error for error in report.errors), report.errors


def test_where_with_dynamic_shape_fails():
    nodes = [helper.make_node("NonZero", ["image0"], ["nz"]),
             helper.make_node("Cast", ["nz"], ["nzf"], to=TensorProto.FLOAT),
             helper.make_node("Greater", ["nzf", "zero"], ["mask"]),
             helper.make_node("Where", ["mask", "nzf", "zero"], ["conf_matrix"])]
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    report = audit_onnx(_model(nodes, initializers=[zero]))
    assert any("Where node" in error and "non-static" in error for error in report.errors), \
        report.errors
    static = _model([helper.make_node("Greater", ["image0", "image1"], ["mask"]),
                     helper.make_node("Where", ["mask", "image0", "image1"], ["conf_matrix"])],
                    outputs=_out(SHAPE))
    assert audit_onnx(static).ok


def test_custom_domain_fails():
    node = helper.make_node("FusedThing", ["image0", "image1"], ["conf_matrix"],
                            domain="com.example")
    report = audit_onnx(_model([node], outputs=_out(SHAPE), domains=["com.example"]))
    assert not report.ok
    assert any("custom" in error for error in report.errors)


def test_conv_weights_must_be_constant():
    node = helper.make_node("Conv", ["image0", "image1"], ["conf_matrix"])
    report = audit_onnx(_model([node], outputs=_out(SHAPE)))
    assert any("Conv input 1 must be an initializer" in error for error in report.errors)
    weight = helper.make_tensor("w", TensorProto.FLOAT, [1, 1, 1, 1], [1.0])
    node = helper.make_node("Conv", ["image0", "w"], ["conf_matrix"])
    assert audit_onnx(_model([node], outputs=_out(SHAPE), initializers=[weight])).ok


@pytest.mark.parametrize("opset, target, ok, warns", [
    (13, None, True, False), (17, None, True, True), (18, None, False, False),
    (8, None, False, False), (17, "8.2", False, False), (13, "8.2", True, False),
    (17, "8.5", True, False), (18, "10.3", True, False)])
def test_opset_range(opset, target, ok, warns):
    model = _model([helper.make_node("Add", ["image0", "image1"], ["conf_matrix"])],
                   outputs=_out(SHAPE), opset=opset)
    report = audit_onnx(model, target_trt=target)
    assert report.ok == ok, report.format()
    assert bool(report.warnings) == warns, report.warnings


def test_allow_list_is_trt82s():
    assert {"Conv", "MatMul", "Softmax", "Elu", "Resize", "ReduceMean"} <= TRT82_PARSER_OPS
    assert not {"LayerNormalization", "NonZero", "Mod", "Xor"} & TRT82_PARSER_OPS
    assert "Reciprocal" in TRT82_PARSER_OPS  # docs table says N, the 8.2 parser imports it


def test_is_static_shape():
    assert is_static_shape([1, 1, 480, 640])
    assert not is_static_shape([1, "n"]) and not is_static_shape([None]) and \
        not is_static_shape([1, 0])


def test_cli_exit_codes(tmp_path, capsys):
    good = tmp_path / "good.onnx"
    bad = tmp_path / "bad.onnx"
    onnx.save(_model([helper.make_node("Add", ["image0", "image1"], ["conf_matrix"])],
                     outputs=_out(SHAPE)), str(good))
    onnx.save(_model([helper.make_node("Einsum", ["image0", "image1"], ["conf_matrix"],
                                       equation="nchw,nchw->nchw")], outputs=_out(SHAPE)),
              str(bad))
    assert main([str(good)]) == 0
    assert "OK" in capsys.readouterr().out
    assert main([str(good), str(bad)]) == 1
    assert "ERROR: Einsum" in capsys.readouterr().out
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\x01 not onnx")
    assert main([str(garbage)]) == 2
    assert "cannot read" in capsys.readouterr().err
