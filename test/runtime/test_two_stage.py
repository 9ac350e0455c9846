"""The two-stage network (encoder per image, matcher per pair) equals the single-pass network:
torch and onnxruntime (float), the exported files name each other, and single-graph ONNX files
still load (their encoding is the prepared image)."""
from __future__ import annotations

import os
import shutil

import numpy as np
import onnx
import pytest
import torch

from loftr_ros.deploy.onnx_export import export_two_stage, two_stage_paths
from loftr_ros.matching.preprocess import prepare
from loftr_ros.model.checkpoint import load_model
from loftr_ros.runtime import default_weights
from loftr_ros.runtime.base import (
    COARSE_FEAT,
    CONF_MATRIX,
    ENCODER_STAGE,
    FINE_FEAT,
    IMAGE,
    MATCHER_STAGE,
    PARTNER_METADATA_KEY,
    STAGE_METADATA_KEY,
    ModelLoadError,
)
from loftr_ros.runtime.onnx_runtime import OnnxRuntime
from loftr_ros.runtime.torch_runtime import TorchRuntime

SMALL = (320, 240)
PARITY = 1e-5


@pytest.fixture(scope="module")
def small_inputs(photo_pair: tuple) -> tuple:
    return prepare(photo_pair[0], SMALL)[0], prepare(photo_pair[1], SMALL)[0]


@pytest.fixture(scope="module")
def single_pass(small_inputs: tuple) -> dict:
    """The bundled checkpoint's single-pass outputs at 320x240."""
    model, _ = load_model(default_weights("pt"), input_size=SMALL)
    with torch.no_grad():
        outputs = model.eval()(*(torch.from_numpy(image) for image in small_inputs))
    return {name: value[0].numpy() for name, value in outputs.items()}


def test_torch_two_stages_equal_the_single_pass(small_inputs: tuple, single_pass: dict) -> None:
    runtime = TorchRuntime.from_weights(default_weights("pt"), input_size=SMALL, device="cpu")
    encoded = [runtime.encode(image) for image in small_inputs]
    assert set(encoded[0]) == {COARSE_FEAT, FINE_FEAT}
    assert encoded[0][COARSE_FEAT].shape == (20 * 15, 96)
    outputs = runtime.match(*encoded)
    assert np.abs(outputs[CONF_MATRIX] - single_pass["conf_matrix"]).max() <= PARITY
    assert np.array_equal(outputs["fine_feat0"], encoded[0][FINE_FEAT])


def test_bundled_onnx_two_stages_equal_the_single_pass(small_inputs: tuple,
                                                       single_pass: dict) -> None:
    runtime = OnnxRuntime(default_weights("onnx", SMALL))
    assert runtime.two_stage and runtime.matcher_path.endswith("lite_320x240_matcher.onnx")
    outputs = runtime.match(*(runtime.encode(image) for image in small_inputs))
    assert np.abs(outputs[CONF_MATRIX] - single_pass["conf_matrix"]).max() <= PARITY
    for index in (0, 1):
        assert np.abs(outputs[f"fine_feat{index}"] - single_pass[f"fine_feat{index}"]).max() \
            <= 1e-4
    by_matcher = OnnxRuntime(runtime.matcher_path)   # either file opens the model
    assert by_matcher.path == runtime.path and by_matcher.config == runtime.config


def test_export_names_the_partner_and_a_missing_partner_is_clear(tmp_path, seed_files: tuple
                                                                 ) -> None:
    report = export_two_stage(seed_files[0], str(tmp_path / "seed.onnx"), preset="seed",
                              opset=13)
    assert (report.encoder_path, report.matcher_path) == two_stage_paths(
        str(tmp_path / "seed.onnx"))
    for path, stage, partner in ((report.encoder_path, ENCODER_STAGE, report.matcher_path),
                                 (report.matcher_path, MATCHER_STAGE, report.encoder_path)):
        metadata = {p.key: p.value for p in onnx.load(path).metadata_props}
        assert metadata[STAGE_METADATA_KEY] == stage
        assert metadata[PARTNER_METADATA_KEY] == os.path.basename(partner)
    assert report.max_abs_diff["chained"][CONF_MATRIX] <= PARITY
    moved = tmp_path / "alone"
    moved.mkdir()
    shutil.copy(report.encoder_path, moved)
    with pytest.raises(ModelLoadError, match="seed_matcher.onnx is missing"):
        OnnxRuntime(str(moved / "seed_encoder.onnx"))


def test_a_single_graph_onnx_still_runs_and_encodes_its_input(seed_files: tuple,
                                                              photo_pair: tuple) -> None:
    runtime = OnnxRuntime(seed_files[1], preset="seed")
    inputs = [prepare(image, runtime.input_size)[0] for image in photo_pair[:2]]
    encoded = [runtime.encode(image) for image in inputs]
    assert not runtime.two_stage and list(encoded[0]) == [IMAGE]
    assert encoded[0][IMAGE] is inputs[0]
    assert np.array_equal(runtime.match(*encoded)[CONF_MATRIX],
                          runtime.run(*inputs)[CONF_MATRIX])
