"""ONNX export: torch vs onnxruntime parity for every preset (opsets 13 and 17), seed
compatibility against the seed's own ONNX, and static-graph properties."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from loftr_ros.deploy.onnx_export import CONFIG_METADATA_KEY, export_onnx
from loftr_ros.matching.preprocess import prepare
from loftr_ros.model.checkpoint import load_model
from loftr_ros.model.network import build_model
from loftr_ros.model.presets import PRESETS, get_preset
from loftr_ros.runtime.onnx_runtime import OnnxRuntime


def _real_inputs(photo_pair: tuple, size: tuple) -> tuple:
    return prepare(photo_pair[0], size)[0], prepare(photo_pair[1], size)[0]


@pytest.mark.slow
@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_onnxruntime_matches_torch(preset: str, opset: int, photo_pair: tuple, tmp_path) -> None:
    config = get_preset(preset)
    torch.manual_seed(0)
    model = build_model(config).eval()
    inputs = _real_inputs(photo_pair, config.input_size)
    path = str(tmp_path / f"{preset}_{opset}.onnx")
    report = export_onnx(model, path, opset=opset, verify_images=inputs)
    print(f"{preset} opset {opset}: max abs diff {report.max_abs_diff}")
    assert report.max_abs_diff["conf_matrix"] <= 1e-4
    graph = onnx.load(path)
    assert graph.opset_import[0].version == opset
    assert [o.name for o in graph.graph.output] == report.output_names
    ops = {node.op_type for node in graph.graph.node}
    assert not ops & {"Einsum", "NonZero", "TopK", "Shape", "ScatterND", "Loop", "If"}, ops
    for value in list(graph.graph.input) + list(graph.graph.output):
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
        assert all(d > 0 for d in dims), (value.name, dims)
    metadata = {p.key: p.value for p in graph.metadata_props}
    assert json.loads(metadata[CONFIG_METADATA_KEY])["name"] == preset
    # The onnxruntime runtime reads the config back and returns outputs by name.
    runtime = OnnxRuntime(path)
    assert runtime.config == config
    if config.coarse_stride == 8:
        return  # 442 GFLOP per pair: export_onnx's own check above already ran ORT vs torch
    outputs = runtime.run(*inputs)
    with torch.no_grad():
        expected = model(torch.from_numpy(inputs[0]), torch.from_numpy(inputs[1]))
    np.testing.assert_allclose(outputs["conf_matrix"], expected["conf_matrix"][0].numpy(),
                               atol=1e-4)
    if config.fine is not None:
        np.testing.assert_allclose(outputs["fine_feat1"], expected["fine_feat1"][0].numpy(),
                                   atol=1e-3)


def test_seed_weights_match_the_seed_onnx(seed_files: tuple, photo_pair: tuple) -> None:
    """Our seed preset + LoFTR_teacher.pt equals the seed project's own ONNX (an external
    artifact) on real images."""
    model, _ = load_model(seed_files[0])
    seed_runtime = OnnxRuntime(seed_files[1], preset="seed")
    inputs = _real_inputs(photo_pair, (640, 480))
    with torch.no_grad():
        ours = model(torch.from_numpy(inputs[0]), torch.from_numpy(inputs[1]))["conf_matrix"]
    theirs = seed_runtime.run(*inputs)["conf_matrix"]
    diff = float(np.abs(ours[0].numpy() - theirs).max())
    print(f"seed torch vs seed ONNX: max abs diff {diff:.2e}, max conf {theirs.max():.3f}")
    assert theirs.shape == (1200, 1200)
    assert diff <= 1e-4


def test_seed_export_matches_seed_onnx(seed_files: tuple, photo_pair: tuple, tmp_path) -> None:
    inputs = _real_inputs(photo_pair, (640, 480))
    path = str(tmp_path / "seed.onnx")
    export_onnx(seed_files[0], path, opset=13, verify_images=inputs)
    ours = OnnxRuntime(path).run(*inputs)["conf_matrix"]
    theirs = OnnxRuntime(seed_files[1], preset="seed").run(*inputs)["conf_matrix"]
    assert float(np.abs(ours - theirs).max()) <= 1e-4


def test_export_rejects_bad_arguments(tmp_path) -> None:
    model = build_model(get_preset("seed"))
    with pytest.raises(ValueError, match="opset"):
        export_onnx(model, str(tmp_path / "x.onnx"), opset=9)
    with pytest.raises(ValueError, match="multiples"):
        export_onnx(model, str(tmp_path / "x.onnx"), input_size=(650, 480))


def test_input_size_is_part_of_the_export(tmp_path) -> None:
    model = build_model(get_preset("seed").with_input_size(320, 256)).eval()
    path = str(tmp_path / "small.onnx")
    export_onnx(model, path, opset=17)
    runtime = OnnxRuntime(path)
    assert runtime.input_size == (320, 256)
    assert runtime.run(np.zeros((1, 1, 256, 320), np.float32),
                       np.zeros((1, 1, 256, 320), np.float32))["conf_matrix"].shape == (320, 320)


def test_calibrated_settings_travel_in_the_onnx_metadata(tmp_path) -> None:
    """The calibrated threshold, min_peak_mass and keep_sharpest reach a matcher built on the
    exported two-stage ONNX, as they do one built on the checkpoint."""
    from loftr_ros.deploy.onnx_export import export_two_stage
    from loftr_ros.matching.matcher import Matcher
    from loftr_ros.model.checkpoint import save_model
    from loftr_ros.training.calibrate import Candidate, calibrated_config

    torch.manual_seed(0)
    config = calibrated_config(get_preset("lite").with_input_size(160, 128),
                               Candidate(0.3, 0.45, 16))
    model = build_model(config).eval()
    report = export_two_stage(model, str(tmp_path / "small.onnx"), opset=13)
    runtime = OnnxRuntime(report.encoder_path)
    assert runtime.config == config
    weights = str(tmp_path / "small.pt")
    save_model(model, weights)
    for matcher in (Matcher(runtime), Matcher.create(backend="torch", weights=weights)):
        assert (matcher.threshold, matcher.min_peak_mass, matcher.keep_sharpest) == (
            0.3, 0.45, 16)
