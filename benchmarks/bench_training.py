"""Time the three-stage training recipe of docs/training.md on this machine and project its total,
without running it (numbers, no asserts)::

    python benchmarks/bench_training.py                     # CPU, or CUDA where torch sees it
    python benchmarks/bench_training.py --device cpu --threads 2 --loader-workers 4

Per stage (the sizes, transformer layers, batch sizes, epochs, pairs, 3D-scene share and camera
motion, and validation pairs of the ``loftr-train`` commands in docs/training.md), it measures on
``--data``:

- the making of one training pair (random view, homography or rendered 3D room, photometric
  changes, ground truth: ``trainer.dataset[i]``, CPU work whatever the device; the mean, as a
  stage that mixes planar and 3D pairs pays for both kinds);
- one optimiser step (forward, losses, backward, clip, AdamW) on ``--device``, on a batch made
  beforehand, so that it times the device alone;
- one validation (``Trainer.validate``: the stage's validation pairs, run after each epoch; the
  model is untrained here, so the matching share of it may differ a little from a real run's).

and projects the stage: ``steps x (batch x pair + step) + epochs x validation`` with the pairs made
in the training process (``--workers 0``, as the recipe's commands), and ``steps x max(step, batch x
pair / W) + epochs x validation`` with ``--workers W`` loader processes, which needs W cores free
beside the training process (on a GPU machine). Checkpoint writes are left out (under a second).
"""
from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

# Run as a script from a checkout: make the repository's package importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_latency import cpu_name  # noqa: E402 (same folder)


@dataclass(frozen=True)
class Stage:
    """One ``loftr-train`` command of the recipe (only what sets its cost)."""

    name: str
    width: int
    height: int
    batch_size: int
    epochs: int
    pairs_per_epoch: int
    layers: Optional[Tuple[str, ...]] = None   # None: the lite preset's (self, cross, cross)
    scene_mix: float = 0.0
    scene_baseline: Optional[Tuple[float, float]] = None   # None: the rooms' own ranges
    scene_max_rotation_deg: Optional[float] = None
    val_pairs: int = 16

    @property
    def steps(self) -> int:
        return self.epochs * (self.pairs_per_epoch // self.batch_size)


TWO_PAIRS = ("self", "cross", "self", "cross")
#: the training commands of docs/training.md ("The bundled model's recipe"); stage 3 starts from
#: stage 2's layers 0, 1 and 3, which the lite preset's schedule is
RECIPE = (Stage("stage 1", 320, 240, batch_size=4, epochs=3, pairs_per_epoch=1600,
                layers=TWO_PAIRS),
          Stage("stage 2", 640, 480, batch_size=2, epochs=7, pairs_per_epoch=800,
                layers=TWO_PAIRS),
          Stage("stage 3", 640, 480, batch_size=2, epochs=24, pairs_per_epoch=200,
                scene_mix=0.5, scene_baseline=(0.05, 1.0), scene_max_rotation_deg=60.0,
                val_pairs=8))


@dataclass
class StageTiming:
    """Measured times (ms) of one stage and its projected minutes."""

    stage: Stage
    pair_ms: float
    step_ms: float
    validation_ms: float
    workers: int

    @property
    def inline_minutes(self) -> float:
        per_step = self.stage.batch_size * self.pair_ms + self.step_ms
        return (self.stage.steps * per_step
                + self.stage.epochs * self.validation_ms) / 60e3

    @property
    def loader_minutes(self) -> float:
        per_step = max(self.step_ms, self.stage.batch_size * self.pair_ms / self.workers)
        return (self.stage.steps * per_step + self.stage.epochs * self.validation_ms) / 60e3


def wall_times_ms(call: Callable[[], object], repeats: int, synchronize: Callable[[], None]
                  ) -> List[float]:
    """Wall times of ``repeats`` runs of ``call()`` in milliseconds."""
    times: List[float] = []
    for _ in range(repeats):
        synchronize()
        started = time.perf_counter()
        call()
        synchronize()
        times.append((time.perf_counter() - started) * 1e3)
    return times


def time_stage(stage: Stage, data: Sequence[str], device: str, steps: int, pairs: int,
               workers: int, out_dir: str) -> StageTiming:
    """Build the stage's trainer and time its parts (see the module docstring)."""
    import torch
    from torch.utils.data import default_collate

    from loftr_ros.training.trainer import TrainConfig, Trainer

    config = TrainConfig(data_dirs=list(data), out_dir=out_dir, width=stage.width,
                         height=stage.height, batch_size=stage.batch_size, epochs=stage.epochs,
                         pairs_per_epoch=stage.pairs_per_epoch, device=device, seed=0,
                         layers=list(stage.layers) if stage.layers else None,
                         scene_mix=stage.scene_mix, scene_baseline=stage.scene_baseline,
                         scene_max_rotation_deg=stage.scene_max_rotation_deg,
                         val_pairs=stage.val_pairs)
    trainer = Trainer(config)
    on_cuda = trainer.device.type == "cuda"

    def synchronize() -> None:
        if on_cuda:
            torch.cuda.synchronize(trainer.device)

    trainer.dataset[0]          # warm-up, as for the optimiser step below
    index = itertools.count(1)
    pair_ms = statistics.mean(wall_times_ms(lambda: trainer.dataset[next(index)], pairs,
                                            lambda: None))
    batch = default_collate([trainer.dataset[i] for i in range(stage.batch_size)])
    trainer.train_step(batch)   # warm-up: allocations, kernel selection
    step_ms = statistics.median(wall_times_ms(lambda: trainer.train_step(batch), steps,
                                              synchronize))
    validation_ms = wall_times_ms(trainer.validate, 1, synchronize)[0]
    return StageTiming(stage, pair_ms, step_ms, validation_ms, workers)


def markdown(timings: Sequence[StageTiming]) -> str:
    """The timings as a markdown table with a total row."""
    workers = timings[0].workers if timings else 0
    lines = ["| stage | size | batch | steps | pair ms | step ms | validation ms | "
             f"projected min, --workers 0 | projected min, --workers {workers} |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for t in timings:
        s = t.stage
        lines.append(f"| {s.name} | {s.width}x{s.height} | {s.batch_size} | {s.steps} | "
                     f"{t.pair_ms:.1f} | {t.step_ms:.1f} | {t.validation_ms:.0f} | "
                     f"{t.inline_minutes:.1f} | {t.loader_minutes:.1f} |")
    lines.append(f"| total | | | {sum(t.stage.steps for t in timings)} | | | | "
                 f"{sum(t.inline_minutes for t in timings):.1f} | "
                 f"{sum(t.loader_minutes for t in timings):.1f} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", action="append", default=None,
                        help="training image folder (default data/train; repeatable)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda (auto)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0 = torch's default; the recipe uses 2)")
    parser.add_argument("--steps", type=int, default=10, help="timed optimiser steps (10)")
    parser.add_argument("--pairs", type=int, default=40, help="timed training pairs (40)")
    parser.add_argument("--loader-workers", type=int, default=4,
                        help="loader processes of the second projection (4)")
    args = parser.parse_args(argv)
    data = args.data or ["data/train"]
    missing = [folder for folder in data if not os.path.isdir(folder)]
    if missing:
        parser.error(f"no such folder {missing} (./scripts/get_training_data.sh makes data/train)")
    if args.loader_workers < 1:
        parser.error("--loader-workers must be >= 1")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    timings = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="loftr_bench_train_") as out_dir:
        for stage in RECIPE:
            print(f"[bench] {stage.name}: {stage.width}x{stage.height}", file=sys.stderr,
                  flush=True)
            timings.append(time_stage(stage, data, args.device, args.steps, args.pairs,
                                      args.loader_workers, out_dir))
    load_after = os.getloadavg()
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    where = (torch.cuda.get_device_name(0) if device.startswith("cuda")
             else f"{torch.get_num_threads()} torch threads, {cpu_name()}")
    print(f"\nThe training recipe (docs/training.md) on {device} ({where}; "
          f"{os.cpu_count()} cores, load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after), per stage the mean of {args.pairs} pairs and the "
          f"median of {args.steps} steps:\n")
    print(markdown(timings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
