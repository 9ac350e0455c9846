"""Training pieces: ground truth from homographies, deterministic pairs, a real short training
run with resume, the torch/numpy fine-refinement twins, and DDP with gloo on 2 processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import PHOTO_PATH, REPO_ROOT

from loftr_ros.matching.postprocess import fine_window_probabilities, refine_with_fine_features
from loftr_ros.model.presets import get_preset
from loftr_ros.synthetic.homography import make_pair, warp_points
from loftr_ros.training.losses import (
    bilinear_target,
    coarse_focal_loss,
    fine_expectation,
    fine_loss,
    unseen_mass_loss,
    window_offsets,
)
from loftr_ros.training.supervision import coarse_truth
from loftr_ros.training.trainer import HomographyPairs, TrainConfig, Trainer


def test_ground_truth_of_identity_and_cell_shift() -> None:
    truth = coarse_truth(np.eye(3), 64, 48, 16)
    assert truth.match_j.tolist() == list(range(12))
    shift = np.array([[1, 0, 16], [0, 1, 0], [0, 0, 1]], dtype=np.float64)
    truth = coarse_truth(shift, 64, 48, 16)
    # grid 4x3: cells in the last column leave the image
    expected = [i + 1 if i % 4 != 3 else -1 for i in range(12)]
    assert truth.match_j.tolist() == expected
    np.testing.assert_allclose(truth.target_xy[0], [16, 0])
    assert np.isnan(truth.target_xy[3]).all()


def test_ground_truth_is_mutual_under_zoom() -> None:
    zoom = np.diag([2.0, 2.0, 1.0])  # image 1 sees image 0 magnified: many cells share a target
    truth = coarse_truth(zoom, 160, 128, 16)
    matched = truth.match_j[truth.match_j >= 0]
    assert len(matched) == len(set(matched.tolist())) > 0


def test_pairs_are_deterministic_and_consistent(photo_gray: np.ndarray) -> None:
    first = make_pair(np.random.default_rng(5), photo_gray, 320, 240)
    second = make_pair(np.random.default_rng(5), photo_gray, 320, 240)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    image0, image1, homography = make_pair(np.random.default_rng(5), photo_gray, 320, 240,
                                           apply_photometric=False)
    # a textured point of image 0 lands on the same grey value in image 1
    ys, xs = np.nonzero(np.abs(np.diff(image0.astype(int), axis=1)) > 30)
    point = np.array([[xs[len(xs) // 2], ys[len(ys) // 2]]], dtype=np.float64)
    target = warp_points(homography, point)[0]
    if 1 <= target[0] < 318 and 1 <= target[1] < 238:
        patch0 = image0[int(point[0, 1]) - 1:int(point[0, 1]) + 2,
                        int(point[0, 0]) - 1:int(point[0, 0]) + 2].astype(float)
        patch1 = image1[int(round(target[1])) - 1:int(round(target[1])) + 2,
                        int(round(target[0])) - 1:int(round(target[0])) + 2].astype(float)
        assert abs(patch0.mean() - patch1.mean()) < 40


def test_dataset_items_depend_only_on_seed_epoch_index(photo_gray: np.ndarray) -> None:
    data = HomographyPairs([photo_gray], 160, 128, 16, length=4, seed=3)
    a = data[2]["image1"].clone()
    data.epoch = 1
    b = data[2]["image1"].clone()
    data.epoch = 0
    assert torch.equal(a, data[2]["image1"]) and not torch.equal(a, b)


def test_focal_loss_prefers_correct_matches() -> None:
    match_j = torch.tensor([[1, -1]])
    good = torch.tensor([[[0.05, 0.9], [0.02, 0.03]]])
    bad = torch.tensor([[[0.9, 0.05], [0.02, 0.03]]])
    assert coarse_focal_loss(good, match_j) < coarse_focal_loss(bad, match_j)


def test_fine_soft_target_is_bilinear_and_centred_on_the_truth() -> None:
    positions = window_offsets(2, torch.device("cpu"))[None].expand(3, -1, -1) + 10
    target = torch.tensor([[10.25, 9.5], [11.0, 12.0], [30.0, 10.0]])  # last: outside the window
    soft = bilinear_target(positions, target)
    assert torch.allclose(soft.sum(1), torch.ones(3))
    mean = (soft[..., None] * positions.float()).sum(1)
    assert torch.allclose(mean[:2], target[:2])
    assert int((soft[0] > 0).sum()) == 4 and int((soft[1] > 0).sum()) == 1
    assert soft[2].max() == 1.0 and positions[2, soft[2].argmax()].tolist() == [12, 10]
    # The cross-entropy is lowest when the predicted window distribution IS the soft target.
    sharp = torch.log(soft[:1].clamp(min=1e-9))
    blunt = torch.log_softmax(torch.zeros(1, 25), dim=1)
    expected = target[:1]
    def soft_ce(log_prob):
        return fine_loss(expected, log_prob, positions[:1], target[:1],
                         ce_target="bilinear")["fine_ce"]

    assert soft_ce(sharp) < soft_ce(blunt)
    with pytest.raises(ValueError, match="ce_target"):
        fine_loss(expected, sharp, positions[:1], target[:1], ce_target="nearest-ish")


def test_fine_refinement_twins_agree() -> None:
    """The numpy window softmax used at inference equals the torch one the loss trains, and the
    local soft-argmax stays within one fine cell of the window peak."""
    config = get_preset("lite").with_input_size(128, 96)
    generator = torch.Generator().manual_seed(0)
    fine0 = torch.randn(1, 32, 24, 32, generator=generator)
    fine1 = torch.randn(1, 32, 24, 32, generator=generator)
    grid_w = 128 // 16
    indices0 = np.array([0, 9, 20, 47])
    indices1 = np.array([1, 9, 31, 40])
    cell = lambda idx: torch.from_numpy(np.stack([idx % grid_w, idx // grid_w], 1))  # noqa: E731
    _, log_prob, positions = fine_expectation(fine0, fine1, torch.zeros(4, dtype=torch.long),
                                              cell(indices0), cell(indices1), 4, 4, 0.1)
    prob, ours_positions = fine_window_probabilities(fine0[0].numpy(), fine1[0].numpy(),
                                                     indices0, indices1, grid_w, config)
    np.testing.assert_allclose(prob, log_prob.exp().numpy(), atol=1e-5)
    np.testing.assert_array_equal(ours_positions, positions.numpy())
    refined, mass = refine_with_fine_features(fine0[0].numpy(), fine1[0].numpy(), indices0,
                                              indices1, grid_w, config)
    peaks = positions.numpy()[np.arange(4), prob.argmax(1)] * 4
    assert np.abs(refined - peaks).max() <= 4.0 + 1e-4
    assert mass.shape == (4,) and np.all((mass > 0) & (mass <= 1 + 1e-6))


@pytest.fixture()
def tiny_data(tmp_path) -> str:
    folder = tmp_path / "images"
    folder.mkdir()
    import shutil

    shutil.copy(PHOTO_PATH, folder / "coffee.png")
    return str(folder)


def _tiny_config(data: str, out: str, **changes: object) -> TrainConfig:
    values = dict(data_dirs=[data], out_dir=out, width=160, height=128, batch_size=2, epochs=2,
                  pairs_per_epoch=4, val_pairs=2, warmup_steps=2, seed=4, device="cpu")
    values.update(changes)
    return TrainConfig(**values)  # type: ignore[arg-type]


@pytest.mark.slow
def test_training_runs_resumes_and_is_deterministic(tiny_data: str, tmp_path) -> None:
    torch.set_num_threads(1)
    full = Trainer(_tiny_config(tiny_data, str(tmp_path / "full")))
    full.run(progress=False)
    assert full.step == 4
    log = [json.loads(line) for line in open(full.log_path)]
    assert any("val_precision_3px" in record for record in log)
    # one epoch, then a new trainer resumes from last.ckpt for the second
    half = Trainer(_tiny_config(tiny_data, str(tmp_path / "half"), epochs=1))
    half.run(progress=False)
    resumed = Trainer(_tiny_config(tiny_data, str(tmp_path / "half")))
    resumed.resume(resumed.checkpoint_path())
    assert (resumed.epoch, resumed.step) == (1, 2)
    resumed.run(progress=False)
    for key, value in full.module.state_dict().items():
        torch.testing.assert_close(value, resumed.module.state_dict()[key], rtol=1e-4, atol=1e-5)
    out = str(tmp_path / "model.pt")
    resumed.export_weights(out)
    from loftr_ros.model.checkpoint import load_model

    model, report = load_model(out)
    assert report.format == "loftr_ros" and model.config.input_size == (640, 480)
    assert report.metadata["steps"] == 4


@pytest.mark.slow
def test_train_cli_under_torchrun_with_two_gloo_processes(tiny_data: str, tmp_path) -> None:
    out = str(tmp_path / "ddp")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO_ROOT)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               "2", "-m", "loftr_ros.cli.train", "--data", tiny_data, "--out", out, "--width",
               "160", "--height", "128", "--batch-size", "1", "--epochs", "1",
               "--pairs-per-epoch", "4", "--val-pairs", "1", "--device", "cpu", "--no-progress"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "world size 2" in result.stdout
    assert os.path.isfile(os.path.join(out, "model.pt"))
    state = torch.load(os.path.join(out, "last.ckpt"), weights_only=False)
    assert state["step"] == 2  # 4 pairs / (batch 1 x 2 processes)


@pytest.mark.slow
def test_mixed_training_resumes_inside_an_epoch(tiny_data: str, tmp_path) -> None:
    """Planar + 3D pairs; a run stopped mid-epoch and resumed ends where an uninterrupted run
    ends."""
    torch.set_num_threads(1)
    changes = dict(scene_mix=0.5, pairs_per_epoch=8, checkpoint_every=1)
    full = Trainer(_tiny_config(tiny_data, str(tmp_path / "full"), **changes))
    full.run(progress=False)
    assert full.step == 8
    log = [json.loads(line) for line in open(full.log_path)]
    assert any("val_precision_3px" in record for record in log)

    # a loader worker process makes the same pairs
    stopped = Trainer(_tiny_config(tiny_data, str(tmp_path / "stopped"), workers=1, **changes))
    step = stopped.train_step

    def stop_after_five(batch):
        if stopped.step == 5:
            raise KeyboardInterrupt
        return step(batch)

    stopped.train_step = stop_after_five  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        stopped.run(progress=False)
    resumed = Trainer(_tiny_config(tiny_data, str(tmp_path / "stopped"), **changes))
    resumed.resume(resumed.checkpoint_path())
    assert (resumed.epoch, resumed.step) == (1, 5)
    resumed.run(progress=False)
    for key, value in full.module.state_dict().items():
        torch.testing.assert_close(value, resumed.module.state_dict()[key], rtol=1e-4, atol=1e-5)


def test_scene_ranges_reach_the_rendered_pairs(tiny_data: str, tmp_path, capsys) -> None:
    """``--scene-baseline``/``--scene-max-rotation`` set the 3D pairs' ranges; bad ones are
    refused with the reason."""
    from loftr_ros.cli import train as train_cli

    wide = Trainer(_tiny_config(tiny_data, str(tmp_path / "wide"), scene_mix=1.0,
                                scene_baseline=(0.9, 1.0), scene_max_rotation_deg=60.0))
    for dataset in (wide.dataset, wide.val_dataset):
        assert dataset.scene_params.baseline == (0.9, 1.0)
        assert dataset.scene_params.max_rotation_deg == 60.0
    default = Trainer(_tiny_config(tiny_data, str(tmp_path / "default"), scene_mix=1.0))
    assert default.dataset.scene_params.baseline == (0.05, 0.6)
    assert not torch.equal(wide.dataset[0]["image1"], default.dataset[0]["image1"])

    arguments = ["--data", tiny_data, "--out", str(tmp_path / "bad"), "--width", "160",
                 "--height", "128", "--device", "cpu", "--no-progress"]
    assert train_cli.main(arguments + ["--scene-baseline", "0.9,0.1"]) == 2
    assert "baseline must be" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_cli.main(arguments + ["--scene-baseline", "wide"])
    assert "LOW,HIGH" in capsys.readouterr().err


def test_coarse_negative_weight_scales_the_negative_term(tiny_data: str, tmp_path) -> None:
    """``coarse_negative_weight`` multiplies the coarse focal loss's non-matching term."""
    from torch.utils.data import default_collate

    torch.manual_seed(0)
    trainers = {weight: Trainer(_tiny_config(tiny_data, str(tmp_path / str(weight)),
                                             coarse_negative_weight=weight))
                for weight in (0.0, 1.0, 1000.0)}
    batch = default_collate([trainers[0.0].dataset[index] for index in range(2)])
    state = trainers[0.0].module.state_dict()
    coarse = {}
    for weight, trainer in trainers.items():
        trainer.module.load_state_dict(state)
        with torch.no_grad():
            coarse[weight] = float(trainer.compute_losses(batch)["coarse"])
    negative = coarse[1.0] - coarse[0.0]
    assert negative > 0
    assert coarse[1000.0] - coarse[0.0] == pytest.approx(1000.0 * negative, rel=1e-3)


def test_unseen_mass_loss_is_the_mean_of_minus_log_one_minus_mass() -> None:
    """Rows of unseen image-0 cells and columns of unseen image-1 cells, each -log(1 - mass);
    zero when no cell is unseen; its gradient lowers those masses."""
    conf = torch.tensor([[[0.5, 0.1, 0.0], [0.0, 0.2, 0.0], [0.1, 0.0, 0.6]]], requires_grad=True)
    unseen0 = torch.tensor([[True, False, False]])
    unseen1 = torch.tensor([[False, False, True]])
    loss = unseen_mass_loss(conf, unseen0, unseen1)
    # row 0 mass 0.6, column 2 mass 0.6
    assert float(loss) == pytest.approx(-np.log(0.4), rel=1e-6)
    loss.backward()
    assert conf.grad is not None
    assert torch.all(conf.grad[0, 0] > 0) and torch.all(conf.grad[0, :, 2] > 0)
    assert float(conf.grad[0, 1, 1]) == 0.0           # a cell pair of two seen cells
    none = torch.zeros_like(unseen0)
    assert float(unseen_mass_loss(conf.detach(), none, torch.zeros_like(unseen1))) == 0.0
    full = unseen_mass_loss(torch.tensor([[[1.0]]]), torch.tensor([[True]]), torch.tensor([[True]]))
    assert torch.isfinite(full)                       # a mass of 1 is clamped, not infinite


def test_unseen_weight_adds_the_unseen_term(tiny_data: str, tmp_path) -> None:
    """``unseen_weight`` (``loftr-train --unseen-weight``) adds that multiple of the unseen-cell
    term to the total; at 0 the term is not computed."""
    from torch.utils.data import default_collate

    from loftr_ros.cli import train as train_cli

    torch.manual_seed(0)
    trainers = {weight: Trainer(_tiny_config(tiny_data, str(tmp_path / str(weight)),
                                             scene_mix=0.5, unseen_weight=weight))
                for weight in (0.0, 2.0)}
    batch = default_collate([trainers[0.0].dataset[index] for index in range(2)])
    assert bool(batch["unseen0"].any()) and bool(batch["unseen1"].any())
    state = trainers[0.0].module.state_dict()
    losses = {}
    for weight, trainer in trainers.items():
        trainer.module.load_state_dict(state)
        with torch.no_grad():
            losses[weight] = {k: float(v) for k, v in trainer.compute_losses(batch).items()}
    assert "unseen" not in losses[0.0]
    assert losses[2.0]["unseen"] > 0
    assert losses[2.0]["total"] - losses[0.0]["total"] == pytest.approx(
        2.0 * losses[2.0]["unseen"], rel=1e-4)

    parser = train_cli.build_parser()
    arguments = ["--data", tiny_data, "--out", str(tmp_path / "cli")]
    assert parser.parse_args(arguments).unseen_weight == 0.0
    assert parser.parse_args(arguments + ["--unseen-weight", "3"]).unseen_weight == 3.0
