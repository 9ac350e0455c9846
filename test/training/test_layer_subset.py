"""training.layer_subset: a shorter transformer schedule that starts from trained weights."""
from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch
from conftest import PHOTO_PATH

from loftr_ros.model.checkpoint import load_model, save_model
from loftr_ros.model.network import build_model
from loftr_ros.model.presets import CROSS, SELF, get_preset
from loftr_ros.training.layer_subset import keep_layers, main
from loftr_ros.training.trainer import TrainConfig, Trainer

FOUR = (SELF, CROSS, SELF, CROSS)


def _four_layer_model() -> torch.nn.Module:
    config = get_preset("lite").with_input_size(128, 96)
    torch.manual_seed(3)
    return build_model(dataclasses.replace(config, layer_names=FOUR)).eval()


def test_kept_layers_carry_their_weights_and_the_rest_is_copied() -> None:
    source = _four_layer_model()
    subset = keep_layers(source, [0, 1, 3])
    assert subset.config.layer_names == (SELF, CROSS, CROSS)
    source_state, subset_state = source.state_dict(), subset.state_dict()
    for key, value in subset_state.items():
        origin = key.replace("loftr_coarse.layers.2.", "loftr_coarse.layers.3.")
        assert torch.equal(value, source_state[origin]), key
    # the dropped self layer's weights differ from the ones that took its place
    q_source = source_state["loftr_coarse.layers.2.q_proj.weight"]
    assert not torch.equal(subset_state["loftr_coarse.layers.2.q_proj.weight"], q_source)
    image = torch.rand(1, 1, 96, 128)
    with torch.no_grad():
        outputs = subset(image, image)
    assert outputs["conf_matrix"].shape == (1, 48, 48)


@pytest.mark.parametrize("keep", [[], [0, 4], [1, 0], [0, 0, 1], [0, 2]])
def test_bad_indices_are_refused(keep) -> None:
    with pytest.raises(ValueError):
        keep_layers(_four_layer_model(), keep)


def test_cli_writes_a_loadable_subset(tmp_path, capsys) -> None:
    source_path, out_path = tmp_path / "four.pt", tmp_path / "three.pt"
    save_model(_four_layer_model(), str(source_path))
    assert main([str(source_path), str(out_path), "--keep", "0,1,3"]) == 0
    model, report = load_model(str(out_path))
    assert model.config.layer_names == (SELF, CROSS, CROSS)
    assert report.metadata["layer_subset"]["kept"] == [0, 1, 3]
    assert main([str(source_path), str(tmp_path / "x.pt"), "--keep", "0,2"]) == 2
    assert "no cross layer" in capsys.readouterr().err


def test_trainer_layers_replace_the_preset_schedule(tmp_path) -> None:
    data = tmp_path / "images"
    data.mkdir()
    shutil.copy(PHOTO_PATH, data / "coffee.png")
    config = dict(data_dirs=[str(data)], width=160, height=128, batch_size=2, epochs=1,
                  pairs_per_epoch=2, val_pairs=2, warmup_steps=1, device="cpu")
    trainer = Trainer(TrainConfig(out_dir=str(tmp_path / "run"), layers=list(FOUR), **config))
    assert trainer.module.config.layer_names == FOUR
    save_model(trainer.module, str(tmp_path / "four.pt"))
    with pytest.raises(ValueError, match="layer_subset"):
        Trainer(TrainConfig(out_dir=str(tmp_path / "run2"), layers=[SELF, CROSS],
                            init_weights=str(tmp_path / "four.pt"), **config))
