"""INT8 graphs for onnxruntime on the CPU: what is quantised, metadata, agreement with the float
graph, the runtime's default (the float graph) and the INT8 file when asked, and the export CLI."""
from __future__ import annotations

import os

import cv2
import numpy as np
import onnx
import pytest

from loftr_ros.deploy.onnx_export import CONFIG_METADATA_KEY
from loftr_ros.deploy.quantization import (
    QUANTIZATION_KEY,
    convolutions_kept_in_float,
    is_quantized,
    quantize_cpu_int8,
)
from loftr_ros.matching.matcher import Matcher
from loftr_ros.matching.preprocess import prepare
from loftr_ros.runtime import create_runtime, default_cpu_onnx, default_weights, int8_onnx
from loftr_ros.runtime.onnx_runtime import OnnxRuntime
from loftr_ros.synthetic.homography import make_pair

SMALL_FLOAT = default_weights("onnx", (320, 240))
BUNDLED_INT8 = int8_onnx()


def _right(matches, homography: np.ndarray, pixels: float) -> int:
    """How many of the matches have their image-1 point within ``pixels`` of the truth."""
    from loftr_ros.evaluation.metrics import warp_points

    truth = warp_points(homography, matches.keypoints0.astype(np.float64))
    return int(np.sum(np.linalg.norm(matches.keypoints1 - truth, axis=1) < pixels))


def _compare(float_runtime: OnnxRuntime, int8_runtime: OnnxRuntime, pairs: list,
             tolerance: float = 0.03) -> None:
    """Over ``pairs`` (img0, img1, H), the INT8 graph finds about as many matches as the float
    graph, as many of them right (the share within 3 px at most ``tolerance`` lower)."""
    counts, right = [0, 0], [0, 0]
    for image0, image1, homography in pairs:
        for index, runtime in enumerate((float_runtime, int8_runtime)):
            matches = Matcher(runtime, refinement="fine").match(image0, image1)
            counts[index] += len(matches)
            right[index] += _right(matches, homography, 3.0)
    share = [right[index] / max(counts[index], 1) for index in range(2)]
    print(f"{counts[0]} float / {counts[1]} int8 matches, within 3 px: "
          f"{share[0]:.1%} / {share[1]:.1%}")
    assert abs(counts[1] - counts[0]) < 0.1 * counts[0]
    assert share[1] > share[0] - tolerance


def _weights_by_kind(path: str) -> dict:
    """{"int8": [...], "float": [...]}: Conv node names of a graph by where their weights come
    from (a DequantizeLinear node, or a float initializer)."""
    model = onnx.load(path)
    producers = {output: node.op_type for node in model.graph.node for output in node.output}
    initializers = {tensor.name for tensor in model.graph.initializer}
    kinds: dict = {"int8": [], "float": []}
    for node in model.graph.node:
        if node.op_type == "Conv":
            weight = node.input[1]
            if producers.get(weight) == "DequantizeLinear":
                kinds["int8"].append(node.name)
            else:
                assert weight in initializers, f"{node.name}: weights from {producers.get(weight)}"
                kinds["float"].append(node.name)
    return kinds


def test_the_image_convolution_the_coarse_output_and_the_fine_head_stay_float() -> None:
    kept = convolutions_kept_in_float(onnx.load(default_weights("onnx")))
    assert kept == ["/backbone/conv1/Conv", "/backbone/layer3_outconv/Conv",
                    "/backbone/fine_head/context/Conv",
                    "/backbone/fine_head/lateral/Conv",
                    "/backbone/fine_head/fuse/fuse.2/Conv"]


def test_quantized_graph_keeps_the_config_and_agrees_with_the_float_one(
        tmp_path, photo_pair: tuple, photo_gray: np.ndarray) -> None:
    size = (320, 240)
    calibration = [(prepare(photo_pair[0], size)[0], prepare(photo_pair[1], size)[0])]
    out = str(tmp_path / "small_int8.onnx")
    report = quantize_cpu_int8(SMALL_FLOAT, out, calibration)
    assert len(report.quantized) == 15 and len(report.kept_float) == 5
    kinds = _weights_by_kind(out)
    assert sorted(kinds["int8"]) == sorted(report.quantized)
    assert sorted(kinds["float"]) == sorted(report.kept_float)
    model = onnx.load(out)
    keys = {prop.key for prop in model.metadata_props}
    assert {CONFIG_METADATA_KEY, QUANTIZATION_KEY} <= keys
    assert sum(node.op_type == "QuantizeLinear" for node in model.graph.node) >= 15
    assert is_quantized(out) and not is_quantized(SMALL_FLOAT)
    float_out = OnnxRuntime(SMALL_FLOAT).run(*calibration[0])
    int8_out = OnnxRuntime(out).run(*calibration[0])
    assert {name: value.shape for name, value in float_out.items()} == \
        {name: value.shape for name, value in int8_out.items()}
    # one calibration pair and a small input (about 60-110 matches a pair): four pairs, and a
    # looser bound than for the bundled graph
    pairs = [make_pair(np.random.default_rng(seed), photo_gray, 640, 480)
             for seed in (11, 12, 13, 14)]
    _compare(OnnxRuntime(SMALL_FLOAT), OnnxRuntime(out), pairs, tolerance=0.05)


def test_quantization_needs_calibration_pairs(tmp_path) -> None:
    with pytest.raises(ValueError, match="calibration"):
        quantize_cpu_int8(SMALL_FLOAT, str(tmp_path / "x.onnx"), [])


@pytest.mark.skipif(BUNDLED_INT8 is None, reason="no bundled INT8 graph")
def test_bundled_int8_graph_matches_like_the_float_graph(photo_pair: tuple) -> None:
    """The bundled INT8 graph is the bundled float graph quantised: same config, about the same
    matches, as many of them right."""
    assert is_quantized(BUNDLED_INT8)
    kinds = _weights_by_kind(BUNDLED_INT8)
    assert len(kinds["int8"]) == 15
    assert sorted(kinds["float"]) == sorted(convolutions_kept_in_float(
        onnx.load(default_weights("onnx"))))
    int8_runtime = OnnxRuntime(BUNDLED_INT8)
    float_runtime = OnnxRuntime(default_weights("onnx"))
    assert int8_runtime.config == float_runtime.config
    _compare(float_runtime, int8_runtime, [photo_pair])


def test_onnxruntime_loads_the_float_graph_by_default_and_the_int8_one_when_asked() -> None:
    """The default on the CPU is the float two-stage model (the network exactly); the bundled
    INT8 encoder is loaded, with its float matcher, only when passed as weights."""
    assert default_cpu_onnx() == default_weights("onnx")
    assert default_cpu_onnx((320, 240)) == SMALL_FLOAT
    runtime = create_runtime(backend="onnxruntime")
    assert runtime.path == default_weights("onnx") and not runtime.int8
    assert int8_onnx((320, 240)) is None   # no INT8 graph ships for 320x240
    if BUNDLED_INT8 is None:
        pytest.skip("no bundled INT8 graph")
    assert os.path.basename(BUNDLED_INT8) == "lite_encoder_int8.onnx"
    asked = create_runtime(backend="onnxruntime", weights=BUNDLED_INT8)
    assert asked.path == BUNDLED_INT8 and asked.int8 and asked.two_stage
    assert asked.matcher_path == default_weights("onnx").replace("_encoder.onnx", "_matcher.onnx")
    image = np.zeros((1, 1, 480, 640), np.float32)
    outputs = asked.run(image, image)
    assert outputs.keys() == runtime.run(image, image).keys()


def test_export_cli_writes_an_int8_graph(tmp_path, photo_pair: tuple,
                                         capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("torch")
    from loftr_ros.cli.export import main

    folder = tmp_path / "frames"
    folder.mkdir()
    for index, image in enumerate(photo_pair[:2]):
        cv2.imwrite(str(folder / f"{index}.png"), image)
    out = str(tmp_path / "int8.onnx")
    code = main([default_weights("pt"), out, "--width", "320", "--height", "240",
                 "--int8-calibration", str(folder)])
    printed = capsys.readouterr().out
    encoder = str(tmp_path / "int8_encoder_int8.onnx")
    assert code == 0 and "15 convolutions in int8" in printed and is_quantized(encoder)
    runtime = OnnxRuntime(encoder)   # the float matcher beside it completes the model
    assert runtime.int8 and runtime.two_stage and runtime.matcher_path == str(
        tmp_path / "int8_matcher.onnx")
    assert main([default_weights("pt"), out, "--int8-calibration",
                 str(tmp_path / "missing")]) == 2
