"""Self-supervised training of a coarse LoFTR model (+ fine stage), torch.

One pair = two views with a dense ground-truth correspondence (``synthetic.pairs``): a random
view of a photo and a homography-warped, photometrically changed second view
(``homography.homography_pair``), or, for a share ``scene_mix`` of the pairs, two cameras in a
rendered 3D room textured with the photos (``scenes3d.render_pair``). Ground truth from
``supervision.field_truth``. Runs on CPU or CUDA, in one process or under ``torchrun``
(DistributedDataParallel; gloo on CPU, nccl on CUDA). Deterministic for a given seed and world
size.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from loftr_ros.image_files import image_files
from loftr_ros.model.checkpoint import load_model, save_model
from loftr_ros.model.network import CoarseLoFTR, build_model
from loftr_ros.model.presets import ModelConfig, get_preset
from loftr_ros.synthetic.homography import HomographyParams, homography_pair
from loftr_ros.synthetic.pairs import CorrespondencePair, inside
from loftr_ros.synthetic.scenes3d import SceneParams, render_pair, with_camera_motion
from loftr_ros.training.losses import (
    coarse_focal_loss,
    distillation_loss,
    fine_expectation,
    fine_loss,
    unseen_mass_loss,
)
from loftr_ros.training.supervision import field_truth


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved with its checkpoints).

    ``scene_mix`` is the share of 3D-scene pairs (the rest are planar homography pairs);
    ``scene_baseline`` and ``scene_max_rotation_deg``, where given, replace those ranges of the
    rendered pairs' :class:`SceneParams` (camera translation as a fraction of the depth looked at,
    and the largest relative rotation);
    ``unseen_weight`` > 0 adds :func:`unseen_mass_loss` (cells seen in one image only) to the
    coarse loss with that weight;
    ``checkpoint_every`` > 0 also writes ``last.ckpt`` every that many steps (besides each epoch);
    ``layers``, when given, replaces the preset's transformer schedule (e.g. ``["self", "cross",
    "self", "cross"]``); with ``init_weights`` the weights' own schedule applies and ``layers``
    must equal it.
    """

    data_dirs: List[str]
    out_dir: str
    preset: str = "lite"
    width: int = 320
    height: int = 240
    batch_size: int = 4
    epochs: int = 10
    pairs_per_epoch: int = 2000
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    grad_clip: float = 1.0
    coarse_negative_weight: float = 1.0
    unseen_weight: float = 0.0
    fine_weight: float = 1.0
    fine_samples: int = 128
    fine_ce_weight: float = 1.0
    fine_ce_target: str = "nearest"
    teacher: Optional[str] = None
    teacher_preset: Optional[str] = None
    distill_weight: float = 0.5
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    val_pairs: int = 16
    max_image_side: int = 1280
    init_weights: Optional[str] = None
    scene_mix: float = 0.0
    scene_baseline: Optional[Tuple[float, float]] = None
    scene_max_rotation_deg: Optional[float] = None
    checkpoint_every: int = 0
    layers: Optional[List[str]] = None
    extra: Dict[str, Any] = field(default_factory=dict)


def list_images(directories: List[str]) -> List[str]:
    """All image files under the given folders (recursive), sorted for determinism."""
    paths: List[str] = []
    for directory in directories:
        paths.extend(image_files(directory, recursive=True))
    return sorted(set(paths))


def load_gray(path: str, max_side: int) -> np.ndarray:
    """Read an image as grayscale uint8, downscaled so its longer side is at most ``max_side``."""
    image = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f"{path}: cannot read image")
    scale = max_side / max(image.shape)
    if scale < 1.0:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return image


class TrainingPairs(Dataset):
    """Deterministic random pairs: item k of epoch e depends only on (seed, e, k).

    A share ``scene_mix`` of the items are 3D-scene pairs rendered from all the photos, the rest
    planar homography pairs of one photo each. ``with_fields`` adds the image-0 correspondence
    field and its validity (for validation).
    """

    def __init__(self, images: List[np.ndarray], width: int, height: int, stride: int,
                 length: int, seed: int, photometric: bool = True,
                 geometry: HomographyParams = HomographyParams(), scene_mix: float = 0.0,
                 scene_params: SceneParams = SceneParams(), with_fields: bool = False) -> None:
        if not images:
            raise ValueError("no training images")
        if not 0.0 <= scene_mix <= 1.0:
            raise ValueError(f"scene_mix must be in [0, 1], got {scene_mix}")
        self.images = images
        self.width, self.height, self.stride = width, height, stride
        self.length, self.seed, self.epoch = length, seed, 0
        self.photometric = photometric
        self.geometry = geometry
        self.scene_mix = scene_mix
        self.scene_params = scene_params
        self.with_fields = with_fields

    def __len__(self) -> int:
        return self.length

    def make_pair(self, index: int) -> CorrespondencePair:
        """The item's pair, before conversion to tensors."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        # Only draw the kind when there is a choice: planar-only runs keep their pair stream.
        if self.scene_mix > 0 and rng.random() < self.scene_mix:
            return render_pair(rng, self.images, self.width, self.height, self.scene_params)
        source = self.images[int(rng.integers(len(self.images)))]
        return homography_pair(rng, source, self.width, self.height, self.geometry,
                               apply_photometric=self.photometric)

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        pair = self.make_pair(index)
        truth = field_truth(pair, self.stride)
        item = {
            "image0": torch.from_numpy(pair.image0).float()[None] / 255.0,
            "image1": torch.from_numpy(pair.image1).float()[None] / 255.0,
            "match_j": torch.from_numpy(truth.match_j),
            "unseen0": torch.from_numpy(truth.unseen0),
            "unseen1": torch.from_numpy(truth.unseen1),
            "target_xy": torch.from_numpy(np.nan_to_num(truth.target_xy, nan=-1.0)),
            "is_3d": torch.tensor(pair.homography is None),
        }
        if self.with_fields:
            item["field0to1"] = torch.from_numpy(pair.field0to1)
            item["valid0"] = torch.from_numpy(pair.valid0)
        return item


class HomographyPairs(TrainingPairs):
    """Planar pairs only (``scene_mix`` 0)."""

    def __init__(self, images: List[np.ndarray], width: int, height: int, stride: int,
                 length: int, seed: int, photometric: bool = True,
                 geometry: HomographyParams = HomographyParams()) -> None:
        super().__init__(images, width, height, stride, length, seed, photometric, geometry)


def truth_errors(field0to1: np.ndarray, valid0: np.ndarray, keypoints0: np.ndarray,
                 keypoints1: np.ndarray) -> np.ndarray:
    """Pixel error of each match against the true field at the nearest image-0 pixel; inf where
    that pixel is hidden in image 1 (a match there is wrong whatever its position)."""
    height, width = valid0.shape
    if len(keypoints0) == 0:
        return np.zeros(0)
    cols = np.clip(np.rint(keypoints0[:, 0]).astype(int), 0, width - 1)
    rows = np.clip(np.rint(keypoints0[:, 1]).astype(int), 0, height - 1)
    truth = field0to1[rows, cols].astype(np.float64)
    hidden = ~valid0[rows, cols] & inside(truth, width, height)
    errors = np.linalg.norm(truth - keypoints1, axis=1)
    errors[hidden | ~np.isfinite(errors)] = np.inf
    return errors


def teacher_alignment(student: ModelConfig, teacher: ModelConfig, width: int, height: int
                      ) -> torch.Tensor:
    """Teacher token index co-located with each student token (teacher stride must divide)."""
    if student.coarse_stride % teacher.coarse_stride:
        raise ValueError("the teacher's coarse stride must divide the student's")
    ratio = student.coarse_stride // teacher.coarse_stride
    grid_w, grid_h = width // student.coarse_stride, height // student.coarse_stride
    teacher_w = width // teacher.coarse_stride
    rows, cols = torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing="ij")
    return ((rows * ratio) * teacher_w + cols * ratio).reshape(-1)


class Trainer:
    """Holds model, optimiser, data and the loop. ``run()`` trains to ``config.epochs``."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if config.device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        else:
            device = config.device
        if self.world_size > 1:
            backend = "nccl" if device == "cuda" else "gloo"
            if not dist.is_initialized():
                dist.init_process_group(backend=backend)
            if device == "cuda":
                local_rank = int(os.environ.get("LOCAL_RANK", "0"))
                torch.cuda.set_device(local_rank)
                device = f"cuda:{local_rank}"
        self.device = torch.device(device)
        torch.manual_seed(config.seed)
        model_config = get_preset(config.preset).with_input_size(config.width, config.height)
        if config.layers:
            model_config = dataclasses.replace(model_config, layer_names=tuple(config.layers))
        if config.init_weights:
            self.model, _ = load_model(config.init_weights,
                                       input_size=(config.width, config.height))
            if config.layers and tuple(config.layers) != self.model.config.layer_names:
                raise ValueError(
                    f"{config.init_weights} has the transformer layers "
                    f"{list(self.model.config.layer_names)}, not {list(config.layers)}: "
                    f"drop --layers, or make a subset first (python -m "
                    f"loftr_ros.training.layer_subset)")
            self.model.train()
        else:
            self.model = build_model(model_config)
        self.model_config = self.model.config
        self.model.to(self.device)
        self.module: CoarseLoFTR = self.model
        if self.world_size > 1:
            self.model = torch.nn.parallel.DistributedDataParallel(self.model)  # type: ignore
        self.teacher: Optional[CoarseLoFTR] = None
        self.teacher_index: Optional[torch.Tensor] = None
        if config.teacher:
            self.teacher, _ = load_model(config.teacher, preset=config.teacher_preset,
                                         input_size=(config.width, config.height))
            self.teacher.to(self.device).eval()
            self.teacher_index = teacher_alignment(self.model_config, self.teacher.config,
                                                   config.width, config.height).to(self.device)
        self.optimizer = torch.optim.AdamW(self.module.parameters(), lr=config.lr,
                                           weight_decay=config.weight_decay)
        paths = list_images(config.data_dirs)
        images = [load_gray(path, config.max_image_side) for path in paths]
        self.num_images = len(images)
        scene_params = self.scene_params()
        self.dataset = TrainingPairs(images, config.width, config.height,
                                     self.model_config.coarse_stride, config.pairs_per_epoch,
                                     config.seed, scene_mix=config.scene_mix,
                                     scene_params=scene_params)
        self.val_dataset = TrainingPairs(images, config.width, config.height,
                                         self.model_config.coarse_stride, config.val_pairs,
                                         config.seed + 7919, scene_mix=config.scene_mix,
                                         scene_params=scene_params, with_fields=True)
        self.steps_per_epoch = config.pairs_per_epoch // (config.batch_size * self.world_size)
        self.total_steps = self.steps_per_epoch * config.epochs
        self.epoch = 0
        self.step = 0
        os.makedirs(config.out_dir, exist_ok=True)
        self.log_path = os.path.join(config.out_dir, "log.jsonl")

    # -------------------------------------------------------------------------- bookkeeping
    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def learning_rate(self) -> float:
        """Linear warm-up, then cosine decay to 5% of the peak."""
        if self.step < self.config.warmup_steps:
            return self.config.lr * (self.step + 1) / self.config.warmup_steps
        progress = (self.step - self.config.warmup_steps) / max(
            1, self.total_steps - self.config.warmup_steps)
        return self.config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))

    def scene_params(self) -> SceneParams:
        """The ranges of the rendered 3D pairs: the defaults with the config's baseline and
        rotation limit."""
        return with_camera_motion(SceneParams(), self.config.scene_baseline,
                                  self.config.scene_max_rotation_deg)

    def checkpoint_path(self) -> str:
        return os.path.join(self.config.out_dir, "last.ckpt")

    def save_checkpoint(self) -> None:
        """Resumable state (rank 0 only), written atomically."""
        if not self.is_main:
            return
        state = {"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "epoch": self.epoch, "step": self.step, "train_config": asdict(self.config),
                 "model_config": self.model_config.to_dict()}
        temporary = self.checkpoint_path() + ".tmp"
        torch.save(state, temporary)
        os.replace(temporary, self.checkpoint_path())

    def resume(self, path: str) -> None:
        """Continue from a ``last.ckpt`` written by :meth:`save_checkpoint`."""
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])

    def log(self, record: Dict[str, Any]) -> None:
        if self.is_main:
            with open(self.log_path, "a") as handle:
                handle.write(json.dumps(record) + "\n")

    # -------------------------------------------------------------------------- one step
    def compute_losses(self, batch: Dict[str, torch.Tensor],
                       model: Optional[torch.nn.Module] = None) -> Dict[str, torch.Tensor]:
        """Forward one batch and return every loss term (``total`` is optimised).

        ``model`` defaults to the (possibly DDP-wrapped) training model; validation passes the
        bare module, since a DDP forward on rank 0 alone would wait for the other ranks.
        """
        model = self.model if model is None else model
        image0 = batch["image0"].to(self.device)
        image1 = batch["image1"].to(self.device)
        match_j = batch["match_j"].to(self.device)
        outputs = model(image0, image1)
        losses = {"coarse": coarse_focal_loss(outputs["conf_matrix"], match_j,
                                              negative_weight=self.config.coarse_negative_weight)}
        total = losses["coarse"]
        if self.config.unseen_weight:
            losses["unseen"] = unseen_mass_loss(outputs["conf_matrix"],
                                                batch["unseen0"].to(self.device),
                                                batch["unseen1"].to(self.device))
            total = total + self.config.unseen_weight * losses["unseen"]
        fine = self.model_config.fine
        if fine is not None and "fine_feat0" in outputs:
            fine_terms = self._fine_losses(outputs, match_j, batch["target_xy"].to(self.device))
            if fine_terms:
                losses.update(fine_terms)
                total = total + self.config.fine_weight * fine_terms["fine"]
        if self.teacher is not None and self.teacher_index is not None:
            with torch.no_grad():
                teacher_sim = self.teacher(image0, image1)["sim_matrix"]
                teacher_sim = teacher_sim[:, self.teacher_index][:, :, self.teacher_index]
            losses["distill"] = distillation_loss(outputs["sim_matrix"], teacher_sim)
            total = total + self.config.distill_weight * losses["distill"]
        losses["total"] = total
        return losses

    def _fine_losses(self, outputs: Dict[str, torch.Tensor], match_j: torch.Tensor,
                     target_xy: torch.Tensor) -> Dict[str, torch.Tensor]:
        fine = self.model_config.fine
        assert fine is not None
        stride = self.model_config.coarse_stride
        grid_w = self.config.width // stride
        generator = torch.Generator().manual_seed(self.config.seed * 100003 + self.step)
        batch_index, rows = [], []
        for pair in range(match_j.shape[0]):
            positives = torch.nonzero(match_j[pair] >= 0).reshape(-1).cpu()
            if positives.numel() > self.config.fine_samples:
                choice = torch.randperm(positives.numel(), generator=generator)
                positives = positives[choice[:self.config.fine_samples]]
            batch_index.append(torch.full_like(positives, pair))
            rows.append(positives)
        if not rows or sum(r.numel() for r in rows) == 0:
            return {}
        b = torch.cat(batch_index).to(self.device)
        i = torch.cat(rows).to(self.device)
        j = match_j[b, i]
        cell0 = torch.stack([i % grid_w, i // grid_w], dim=1)
        cell1 = torch.stack([j % grid_w, j // grid_w], dim=1)
        ratio = stride // fine.stride
        expected, log_prob, positions = fine_expectation(
            outputs["fine_feat0"], outputs["fine_feat1"], b, cell0, cell1, ratio,
            fine.window_radius, fine.temperature)
        target = target_xy[b, i] / fine.stride
        return fine_loss(expected, log_prob, positions, target,
                         classification_weight=self.config.fine_ce_weight,
                         ce_target=self.config.fine_ce_target)

    def train_step(self, batch: Dict[str, torch.Tensor]) -> Dict[str, float]:
        """One optimiser step on ``batch`` at the scheduled learning rate; returns the loss
        terms (rounded floats, which also waits for the device to finish the step)."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        losses = self.compute_losses(batch)
        self.optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.step += 1
        return {key: round(float(value.detach()), 5) for key, value in losses.items()}

    # -------------------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self) -> Dict[str, float]:
        """Coarse MNN precision (exact cell) and pixel error on fixed validation pairs, over all
        pairs and, when the mix has both kinds, for the 3D and the planar pairs apart."""
        from loftr_ros.matching.postprocess import MatchingOptions, match_confidence  # numpy side

        self.module.eval()
        losses: List[float] = []
        kinds: Dict[str, Dict[str, Any]] = {}
        for index in range(len(self.val_dataset)):
            item = self.val_dataset[index]
            batch = {key: value[None] for key, value in item.items()}
            losses.append(float(self._val_losses(batch)))
            outputs = self.module(batch["image0"].to(self.device), batch["image1"].to(self.device))
            result = match_confidence(
                outputs["conf_matrix"][0].cpu().numpy(), self.model_config,
                MatchingOptions(threshold=self.model_config.match_threshold, border_margin=0),
                fine_feat0=_maybe_numpy(outputs.get("fine_feat0")),
                fine_feat1=_maybe_numpy(outputs.get("fine_feat1")))
            errors = truth_errors(item["field0to1"].numpy(), item["valid0"].numpy(),
                                  result.keypoints0, result.keypoints1)
            truth_j = item["match_j"].numpy()[result.indices0]
            for kind in ("all", "3d" if bool(item["is_3d"]) else "planar"):
                tally = kinds.setdefault(kind, {"errors": [], "correct": 0, "total": 0,
                                                "pairs": 0})
                tally["errors"].extend(errors.tolist())
                tally["correct"] += int((truth_j == result.indices1).sum())
                tally["total"] += len(result.indices0)
                tally["pairs"] += 1
        self.module.train()
        metrics = {"val_loss": float(np.mean(losses))}
        for kind, tally in kinds.items():
            if kind != "all" and len(kinds) < 3:
                continue                       # one kind only: the overall numbers say it all
            prefix = "val_" if kind == "all" else f"val_{kind}_"
            errors_array = np.array(tally["errors"]) if tally["errors"] else np.array([np.inf])
            metrics.update({
                prefix + "matches_per_pair": tally["total"] / max(1, tally["pairs"]),
                prefix + "coarse_precision": tally["correct"] / max(1, tally["total"]),
                prefix + "median_error_px": float(np.median(errors_array)),
                prefix + "precision_3px": float((errors_array < 3).mean())})
        return metrics

    def _val_losses(self, batch: Dict[str, torch.Tensor]) -> float:
        return float(self.compute_losses(batch, model=self.module)["total"])

    # -------------------------------------------------------------------------- loop
    def run(self, progress: bool = True) -> None:
        """Train until ``config.epochs``; saves last.ckpt every epoch and on Ctrl-C."""
        from tqdm import tqdm

        self.module.train()
        try:
            while self.epoch < self.config.epochs:
                self.dataset.epoch = self.epoch
                indices = list(range(self.rank, self.steps_per_epoch * self.config.batch_size
                                     * self.world_size, self.world_size))
                first_step = self.step - self.epoch * self.steps_per_epoch
                # Resuming inside an epoch: the same batches as before, without making the
                # pairs of the steps already done.
                subset = torch.utils.data.Subset(
                    self.dataset, indices[first_step * self.config.batch_size:])
                # Workers start in fresh interpreters: a forked child inherits OpenCV's thread
                # pool without its threads and can hang in its first parallel call.
                loader = DataLoader(subset, batch_size=self.config.batch_size, shuffle=False,
                                    num_workers=self.config.workers, drop_last=True,
                                    worker_init_fn=_single_threaded_worker,
                                    multiprocessing_context="spawn" if self.config.workers
                                    else None)
                bar = tqdm(total=self.steps_per_epoch, initial=first_step,
                           desc=f"epoch {self.epoch + 1}/{self.config.epochs}",
                           disable=not (progress and self.is_main), dynamic_ncols=True)
                started = time.time()
                for batch in loader:
                    values = self.train_step(batch)
                    bar.set_postfix(loss=values["total"], coarse=values["coarse"],
                                    fine=values.get("fine_l2", 0.0))
                    bar.update(1)
                    if self.step % 20 == 0:
                        self.log({"step": self.step, "epoch": self.epoch,
                                  "lr": self.learning_rate(), **values})
                    every = self.config.checkpoint_every
                    if every > 0 and self.step % every == 0 and \
                            self.step % self.steps_per_epoch != 0:
                        self.save_checkpoint()
                bar.close()
                self.epoch += 1
                metrics = self.validate() if self.is_main else {}
                self.log({"step": self.step, "epoch": self.epoch,
                          "epoch_seconds": round(time.time() - started, 1), **metrics})
                if self.is_main:
                    print(json.dumps({"epoch": self.epoch, **metrics}), flush=True)
                self.save_checkpoint()
                if self.world_size > 1:
                    dist.barrier()  # the other ranks wait for rank 0's validation and checkpoint
        except KeyboardInterrupt:
            self.save_checkpoint()
            raise

    def export_weights(self, path: str, metadata: Optional[Dict[str, Any]] = None) -> None:
        """Write the trained model in the loftr_ros format with the preset's default input size."""
        if not self.is_main:
            return
        preset = get_preset(self.config.preset)
        config = self.model_config.with_input_size(preset.input_width, preset.input_height)
        model = CoarseLoFTR(config)
        model.load_state_dict(self.module.state_dict())
        info = {"train_config": asdict(self.config), "steps": self.step, "epochs": self.epoch,
                "num_training_images": self.num_images, "world_size": self.world_size}
        info.update(metadata or {})
        save_model(model, path, info)


def _single_threaded_worker(worker_id: int) -> None:
    """Loader workers make pairs with numpy/OpenCV: one thread each, so that N workers use N
    cores and leave the training process its own."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _maybe_numpy(tensor: Optional[torch.Tensor]) -> Optional[np.ndarray]:
    return None if tensor is None else tensor[0].detach().cpu().numpy()
