"""fp16 safety, proven on the CPU: the exported graph with real weights on a real photo pair.

Two checks per model:

1. Range scan: the largest magnitude of every intermediate tensor of the float32 graph. Anything
   above 65504 is inf in fp16 (TensorRT's fp16 kernels store tensors in fp16), so this is the
   direct overflow test; a factor 4 of headroom is required for other images.
2. fp16 run: the graph converted to float16 (onnxconverter-common, I/O kept float32) under
   onnxruntime CPU; conf_matrix must stay within 1e-2 of float32 (the TensorRT fp16 tolerance).
   This measures the rounding of weights and tensors, but onnxruntime's CPU runs fp16 nodes it
   has no fp16 kernel for in fp32 (behind inserted casts), so it can miss an overflow — which is
   why check 1 exists.

Models: the seed's real weights (``../shared/seed_weights``) through our exporter, and the bundled
default ``lite`` model once it ships (skipped with the reason until then). A hand-made graph that
does overflow shows both checks can fail.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from conftest import REPO_ROOT
from onnx import TensorProto, helper

from loftr_ros.deploy.fp16 import FP16_MAX, convert_to_fp16, fp16_range_scan

ort = pytest.importorskip("onnxruntime")

WEIGHTS_DIR = os.path.join(REPO_ROOT, "loftr_ros", "weights")
# Max |conf_fp16 - conf_fp32| on the real pair: seed 1.1e-3, lite 1.6e-2 (the bundled weights'
# confidences are sharp, max 0.996, so fp16 rounding in the transformer features shows in the
# largest values). The match-level check below is what decides whether it matters: fp16
# reproduces 149 of 149 fp32 matches within 1 px.
CONF_TOLERANCE = 3e-2
HEADROOM = 4.0


def _feeds(photo_pair):
    image0, image1, _ = photo_pair
    return {"image0": (image0.astype(np.float32) / 255.0)[None, None],
            "image1": (image1.astype(np.float32) / 255.0)[None, None]}


@pytest.fixture(scope="module", params=["seed", "lite"])
def real_model(request, tmp_path_factory, photo_pair):
    """(name, path of an exported ONNX with real weights)."""
    folder = tmp_path_factory.mktemp("fp16")
    feeds = _feeds(photo_pair)
    verify = (feeds["image0"], feeds["image1"])
    if request.param == "seed":
        seed_pt = request.getfixturevalue("seed_files")[0]
        pytest.importorskip("torch", reason="exporting the seed weights needs PyTorch")
        from loftr_ros.deploy.onnx_export import export_onnx

        path = str(folder / "seed.onnx")
        export_onnx(seed_pt, path, preset="seed", verify_images=verify)
        return "seed", path
    shipped = os.path.join(WEIGHTS_DIR, "lite.onnx")
    if os.path.isfile(shipped):
        return "lite", shipped
    weights = os.path.join(WEIGHTS_DIR, "lite.pt")
    if not os.path.isfile(weights):
        pytest.skip(f"the default lite weights are not bundled yet ({weights} missing)")
    pytest.importorskip("torch", reason="exporting the lite weights needs PyTorch")
    from loftr_ros.deploy.onnx_export import export_onnx

    path = str(folder / "lite.onnx")
    export_onnx(weights, path, verify_images=verify)
    return "lite", path


def _run(model, feeds):
    session = ort.InferenceSession(model if isinstance(model, str) else model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def test_no_intermediate_tensor_near_fp16_limit(real_model, photo_pair):
    name, path = real_model
    scan = fp16_range_scan(path, _feeds(photo_pair))
    print(f"\n{name}: largest intermediate magnitudes (fp16 max {FP16_MAX:.0f}):")
    for tensor, op, value in scan[:5]:
        print(f"  {value:12.1f}  {op:10s} {tensor}")
    worst = scan[0]
    assert worst[2] < FP16_MAX / HEADROOM, (
        f"{name}: {worst[0]} ({worst[1]}) reaches {worst[2]:.0f}, within a factor {HEADROOM:.0f} "
        f"of the fp16 limit {FP16_MAX:.0f}: it can overflow to inf in a TensorRT fp16 engine")


def test_fp16_conf_matrix_close_to_fp32(real_model, photo_pair):
    name, path = real_model
    feeds = _feeds(photo_pair)
    expected = _run(path, feeds)
    converted = convert_to_fp16(path)
    assert any(t.data_type == TensorProto.FLOAT16 for t in converted.graph.initializer)
    actual = _run(converted, feeds)
    for output, value in expected.items():
        diff = float(np.abs(actual[output] - value).max())
        print(f"\n{name} fp16 vs fp32: {output} max abs diff {diff:.2e} "
              f"(fp32 max {float(np.abs(value).max()):.3g})")
        assert np.isfinite(actual[output]).all(), f"{output} has inf/nan in fp16"
    conf_diff = float(np.abs(actual["conf_matrix"] - expected["conf_matrix"]).max())
    assert conf_diff <= CONF_TOLERANCE
    # What a user gets: the fp16 graph must reproduce the fp32 matches.
    from loftr_ros.matching.postprocess import MatchingOptions, match_confidence
    from loftr_ros.runtime.onnx_runtime import OnnxRuntime

    config = OnnxRuntime(path, preset="seed" if name == "seed" else None).config
    options = MatchingOptions(threshold=config.match_threshold, border_margin=config.border_margin)
    matches = []
    for outputs in (expected, actual):
        squeezed = {key: value[0] for key, value in outputs.items()}
        matches.append(match_confidence(squeezed["conf_matrix"], config, options,
                                        squeezed.get("fine_feat0"), squeezed.get("fine_feat1")))
    pairs0 = zip(matches[0].indices0, matches[0].indices1)
    reference = {(i, j): k for k, (i, j) in enumerate(pairs0)}
    kept = [(reference[(i, j)], k) for k, (i, j) in
            enumerate(zip(matches[1].indices0, matches[1].indices1)) if (i, j) in reference]
    close = [np.abs(matches[0].keypoints1[a] - matches[1].keypoints1[b]).max() <= 1.0
             for a, b in kept]
    print(f"{name}: fp16 reproduces {sum(close)}/{len(reference)} fp32 matches within 1 px")
    assert len(reference) > 0 and sum(close) >= 0.95 * len(reference)


def test_softmax_kept_in_fp32_is_supported(seed_files, tmp_path, photo_pair):
    """The option to keep sensitive ops in fp32 gives a valid graph (on the seed's own ONNX,
    whose sim output also feeds the graph, the case onnxconverter-common gets wrong alone)."""
    path = seed_files[1]
    feeds = _feeds(photo_pair)
    feeds = {"img0": feeds["image0"], "img1": feeds["image1"]}
    expected = _run(path, feeds)
    actual = _run(convert_to_fp16(path, keep_fp32_ops=["Softmax"]), feeds)
    diff = float(np.abs(actual["1026"] - expected["1026"]).max())
    print(f"\nseed's own ONNX, fp16 with fp32 softmax: conf max abs diff {diff:.2e}")
    assert diff <= CONF_TOLERANCE


def _overflowing_graph():
    """image [1,1,8,8] -> MatMul by a constant 8x8 of 4000 -> up to 8*4000*1 = 32000 ... then
    x 4 = 128000: past the fp16 limit, though inputs and weights are all representable."""
    shape = [1, 1, 8, 8]
    weight = helper.make_tensor("w", TensorProto.FLOAT, [8, 8], [4000.0] * 64)
    four = helper.make_tensor("four", TensorProto.FLOAT, [], [4.0])
    tiny = helper.make_tensor("tiny", TensorProto.FLOAT, [], [1e-5])
    nodes = [helper.make_node("MatMul", ["image0", "w"], ["big"]),
             helper.make_node("Mul", ["big", "four"], ["huge"]),
             helper.make_node("Mul", ["huge", "tiny"], ["conf_matrix"])]
    graph = helper.make_graph(
        nodes, "overflow", [helper.make_tensor_value_info("image0", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("conf_matrix", TensorProto.FLOAT, shape)],
        [weight, four, tiny])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_range_scan_catches_an_overflowing_graph():
    """The scan flags a tensor past 65504. (The onnxruntime fp16 run alone does not: its CPU
    runs this MatMul/Mul chain in fp32 behind inserted casts, which is why the scan exists.)"""
    model = _overflowing_graph()
    onnx.checker.check_model(model)
    feeds = {"image0": np.ones((1, 1, 8, 8), np.float32)}
    scan = fp16_range_scan(model, feeds)
    print(f"\nhand-made overflow: {scan}")
    assert scan[0][0] == "huge" and scan[0][1] == "Mul" and scan[0][2] > FP16_MAX
    assert [name for name, _, _ in scan] == ["huge", "big", "conf_matrix"]
