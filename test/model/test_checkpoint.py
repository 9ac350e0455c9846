"""Checkpoint loading: original LoFTR layout, seed layout, our own format, and clear errors."""
from __future__ import annotations

import dataclasses
import json
import os

import pytest
import torch

from loftr_ros.model.checkpoint import CheckpointError, load_model, save_model
from loftr_ros.model.network import build_model
from loftr_ros.model.presets import ModelConfig, get_preset


def _bn(prefix: str, channels: int) -> dict:
    return {f"{prefix}.weight": (channels,), f"{prefix}.bias": (channels,),
            f"{prefix}.running_mean": (channels,), f"{prefix}.running_var": (channels,),
            f"{prefix}.num_batches_tracked": ()}


def original_loftr_shapes() -> dict:
    """Key -> shape of an original LoFTR DS checkpoint, written out from the original layout
    (docs/model.md, "Checkpoints"), not derived from our model, so that a naming or shape error
    in the model makes the test fail."""
    shapes = {"backbone.conv1.weight": (128, 1, 7, 7)}
    shapes.update(_bn("backbone.bn1", 128))
    dims = {1: (128, 128), 2: (128, 196), 3: (196, 256)}
    for layer, (in_dim, out_dim) in dims.items():
        for block in (0, 1):
            first_in = in_dim if block == 0 else out_dim
            base = f"backbone.layer{layer}.{block}"
            shapes[f"{base}.conv1.weight"] = (out_dim, first_in, 3, 3)
            shapes[f"{base}.conv2.weight"] = (out_dim, out_dim, 3, 3)
            shapes.update(_bn(f"{base}.bn1", out_dim))
            shapes.update(_bn(f"{base}.bn2", out_dim))
        if layer > 1:
            shapes[f"backbone.layer{layer}.0.downsample.0.weight"] = (out_dim, in_dim, 1, 1)
            shapes.update(_bn(f"backbone.layer{layer}.0.downsample.1", out_dim))
    shapes["backbone.layer3_outconv.weight"] = (256, 256, 1, 1)
    for index in range(8):
        base = f"loftr_coarse.layers.{index}"
        for name in ("q_proj", "k_proj", "v_proj", "merge"):
            shapes[f"{base}.{name}.weight"] = (256, 256)
        shapes[f"{base}.mlp.0.weight"] = (512, 512)
        shapes[f"{base}.mlp.2.weight"] = (256, 512)
        for norm in ("norm1", "norm2"):
            shapes[f"{base}.{norm}.weight"] = (256,)
            shapes[f"{base}.{norm}.bias"] = (256,)
    return shapes


FINE_SHAPES = {
    "backbone.layer2_outconv.weight": (256, 196, 1, 1),
    "backbone.layer2_outconv2.0.weight": (256, 256, 3, 3),
    "backbone.layer2_outconv2.1.weight": (256,), "backbone.layer2_outconv2.1.bias": (256,),
    "backbone.layer2_outconv2.1.running_mean": (256,),
    "backbone.layer2_outconv2.1.running_var": (256,),
    "backbone.layer2_outconv2.3.weight": (196, 256, 3, 3),
    "backbone.layer1_outconv.weight": (196, 128, 1, 1),
    "fine_preprocess.down_proj.weight": (128, 256), "fine_preprocess.down_proj.bias": (128,),
    "loftr_fine.layers.0.q_proj.weight": (128, 128),
    "coarse_matching.bin_score": (),
}


def _tensor(shape: tuple, seed: int) -> torch.Tensor:
    if shape == ():
        return torch.tensor(7, dtype=torch.int64)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def original_ckpt(tmp_path_factory: pytest.TempPathFactory) -> str:
    coarse = original_loftr_shapes()
    assert len(coarse) == 171  # 91 backbone (with num_batches_tracked) + 80 (docs/model.md)
    state = {f"matcher.{key}": _tensor(shape, i) for i, (key, shape) in
             enumerate({**coarse, **FINE_SHAPES}.items())}
    path = str(tmp_path_factory.mktemp("ckpt") / "outdoor_ds.ckpt")
    torch.save({"epoch": 29, "state_dict": state, "hparams": {}}, path)
    return path


def test_original_layout_loads_strictly_into_outdoor(original_ckpt: str) -> None:
    model, report = load_model(original_ckpt)
    assert report.format == "original" and report.config.name == "outdoor"
    assert set(report.ignored_keys) == set(FINE_SHAPES)
    params = sum(p.numel() for p in model.parameters())
    assert params == 9_477_848  # the original coarse path (docs/model.md)
    loaded = torch.load(original_ckpt, weights_only=False)["state_dict"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded["matcher." + key]), key


def test_indoor_preset_takes_the_same_layout(original_ckpt: str) -> None:
    _, report = load_model(original_ckpt, preset="indoor")
    assert report.config.name == "indoor"


def test_seed_checkpoint_loads_and_reports_untrained_fpn(seed_files: tuple) -> None:
    model, report = load_model(seed_files[0])
    assert report.format == "seed" and report.config.name == "seed"
    assert len(report.ignored_keys) == 16  # the untrained FPN branch (docs/model.md)
    assert sum(p.numel() for p in model.parameters()) == 124_920


def test_own_format_round_trip(tmp_path) -> None:
    model = build_model(get_preset("lite")).eval()
    path = str(tmp_path / "lite.pt")
    save_model(model, path, {"note": "test"})
    loaded, report = load_model(path)
    assert report.format == "loftr_ros" and report.metadata == {"note": "test"}
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])


def test_calibrated_settings_round_trip_and_configs_without_the_floor_load() -> None:
    """match_threshold, fine.min_peak_mass and fine.keep_sharpest travel in the config dict
    (checkpoints, ONNX metadata); a dict without keep_sharpest (weights saved without the key)
    gets 64."""
    lite = get_preset("lite")
    fine = dataclasses.replace(lite.fine, min_peak_mass=0.4, keep_sharpest=16)
    calibrated = dataclasses.replace(lite, match_threshold=0.2, fine=fine)
    data = json.loads(json.dumps(calibrated.to_dict()))
    assert data["fine"]["keep_sharpest"] == 16
    assert ModelConfig.from_dict(data) == calibrated
    del data["fine"]["keep_sharpest"]
    assert ModelConfig.from_dict(data).fine.keep_sharpest == 64 == lite.fine.keep_sharpest


def test_missing_file(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="no such weights file"):
        load_model(str(tmp_path / "nope.pt"))


def test_truncated_file(tmp_path, original_ckpt: str) -> None:
    data = open(original_ckpt, "rb").read()
    path = tmp_path / "truncated.ckpt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.ckpt.*corrupt or truncated"):
        load_model(str(path))


def test_garbage_file(tmp_path) -> None:
    path = tmp_path / "garbage.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_model(str(path))


def test_wrong_shape_names_key(tmp_path, original_ckpt: str) -> None:
    content = torch.load(original_ckpt, weights_only=False)
    content["state_dict"]["matcher.loftr_coarse.layers.3.merge.weight"] = torch.zeros(256, 128)
    path = str(tmp_path / "wrong_shape.ckpt")
    torch.save(content, path)
    pattern = r"wrong_shape.ckpt.*shape mismatch.*layers\.3\.merge"
    with pytest.raises(CheckpointError, match=pattern):
        load_model(path)


def test_missing_keys_are_listed(tmp_path, original_ckpt: str) -> None:
    content = torch.load(original_ckpt, weights_only=False)
    del content["state_dict"]["matcher.backbone.layer3_outconv.weight"]
    path = str(tmp_path / "missing.ckpt")
    torch.save(content, path)
    with pytest.raises(CheckpointError, match="missing keys.*layer3_outconv"):
        load_model(path)


def test_wrong_preset_for_file(original_ckpt: str) -> None:
    with pytest.raises(CheckpointError, match="does not fit preset 'seed'"):
        load_model(original_ckpt, preset="seed")


def test_wrong_format(tmp_path) -> None:
    path = str(tmp_path / "list.pt")
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="expected a dict"):
        load_model(path)
    path = str(tmp_path / "other.pt")
    torch.save({"weights": {"a": 1}, "version": 3}, path)
    with pytest.raises(CheckpointError, match="unknown checkpoint layout"):
        load_model(path)
