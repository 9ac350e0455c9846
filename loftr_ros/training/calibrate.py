"""Calibrate a trained model's match filters on TRAINING-domain validation pairs.

Three settings of the matcher's post-processing are calibrated together and written into the
weights' config, so every runtime (torch, onnxruntime, TensorRT, the ROS node) applies them:

- ``match_threshold``: the confidence a coarse match must exceed; candidates
  :data:`THRESHOLDS` plus the model's own ``match_threshold``;
- ``fine.min_peak_mass``: matches whose fine window distribution holds less probability than
  this around its peak (flat or repetitive texture) are dropped; candidates :data:`CANDIDATES`;
- ``fine.keep_sharpest``: that filter never leaves fewer matches than this while more exist (the
  sharpest are kept); candidates :data:`FLOORS`.

Every combination is scored, with the refinement the matcher applies by default
(``photometric``), on two validation sets built from the training photos with
:data:`CALIBRATION_SEED`, a seed the training never uses, at the model's input size:

- **planar**: ``pairs_per_image`` synthetic homography pairs of every photo
  (:class:`loftr_ros.evaluation.datasets.SyntheticPairs`), scored by homography AUC@5px;
- **3D**: ``scene_pairs`` rendered 3D scenes textured with the photos
  (:class:`loftr_ros.evaluation.pose_datasets.ScenePairs`), scored as ``loftr-eval`` scores its
  3D rows (:mod:`loftr_ros.evaluation.pose_metrics`): relative pose AUC@10 and AUC@20 degrees of
  the essential matrix estimated from the matches and the intrinsics (RANSAC), and epipolar
  precision (mean over pairs, percent).

**Selection rule.** Among the candidates whose planar AUC@5 is within :data:`PLANAR_TOLERANCE`
(1.0) point of the best planar AUC@5 of all candidates, the one with the highest
``3D AUC@10 + 3D AUC@20 + 3D epipolar precision`` is chosen; ties go to the earlier candidate in
the order of :func:`candidate_grid` (threshold ascending, then ``min_peak_mass`` ascending, then
``keep_sharpest`` descending). The network runs once per pair; only the post-processing is
repeated per candidate. Never calibrate on held-out images.

    python -m loftr_ros.training.calibrate runs/lite/model.pt --data data/train --out lite.pt

``--input-size`` and ``--refinement fine`` calibrate for another deployment, e.g. the Jetson
profile (``config/jetson.yaml``: 320x240, ``fine``); the written file then has that input size.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from loftr_ros.cli import size_argument
from loftr_ros.evaluation import pose_metrics
from loftr_ros.evaluation.datasets import SyntheticPairs
from loftr_ros.evaluation.metrics import auc, corner_error, estimated_homography, precision
from loftr_ros.evaluation.pose_datasets import ScenePairs
from loftr_ros.matching.photometric import photometric_image
from loftr_ros.matching.postprocess import CellMatches, MatchingOptions, match_confidence
from loftr_ros.model.checkpoint import load_model, save_model
from loftr_ros.model.network import CoarseLoFTR
from loftr_ros.model.presets import ModelConfig

#: ``fine.min_peak_mass`` candidates (0 = keep every mutual match)
CANDIDATES = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
#: ``fine.keep_sharpest`` candidates, in candidate order (0 = the limit alone decides)
FLOORS = (64, 32, 16, 0)
#: ``match_threshold`` candidates besides the model's own
THRESHOLDS = (0.1, 0.2, 0.3)
#: planar AUC@5 points a candidate may lose against the best one and still be chosen
PLANAR_TOLERANCE = 1.0
CALIBRATION_SEED = 424242  # not a training seed
SCENE_PAIRS = 60
REFINEMENTS = ("photometric", "fine")
#: threads that score a pair's candidates (the robust estimators)
WORKERS = min(4, os.cpu_count() or 1)


@dataclass(frozen=True)
class Candidate:
    """One combination of the calibrated post-processing settings."""

    threshold: float
    min_peak_mass: float
    keep_sharpest: int

    def options(self, config: ModelConfig, refinement: str) -> MatchingOptions:
        """The matching options that apply this candidate to ``config``'s model."""
        return MatchingOptions(threshold=self.threshold, border_margin=config.border_margin,
                               refinement=refinement, min_peak_mass=self.min_peak_mass,
                               keep_sharpest=self.keep_sharpest)


def candidate_grid(config: ModelConfig, masses: Sequence[float] = CANDIDATES,
                   floors: Sequence[int] = FLOORS,
                   thresholds: Sequence[float] = THRESHOLDS) -> List[Candidate]:
    """Every candidate in selection order: threshold ascending (the model's own
    ``match_threshold`` among them, each value once), then ``masses`` and ``floors`` in the order
    given. With ``min_peak_mass`` 0 the floor has no effect, so only the first floor is listed."""
    values = sorted({float(config.match_threshold), *(float(t) for t in thresholds)})
    grid = []
    for threshold in values:
        for mass in masses:
            for floor in (floors[:1] if mass == 0 else floors):
                grid.append(Candidate(threshold, float(mass), int(floor)))
    return grid


def _eligible(rows: Sequence[Dict[str, float]], tolerance: float) -> List[bool]:
    """Per row: its ``auc@5`` is at least the best ``auc@5`` minus ``tolerance``."""
    best_planar = max(row["auc@5"] for row in rows)
    return [row["auc@5"] >= best_planar - tolerance for row in rows]


def select(rows: Sequence[Dict[str, float]], tolerance: float = PLANAR_TOLERANCE) -> int:
    """Index of the row the selection rule picks (see the module docstring): among the rows whose
    ``auc@5`` is at least the best ``auc@5`` minus ``tolerance``, the highest ``3d score``; ties
    -> the lowest index."""
    if not rows:
        raise ValueError("no candidates to select from")
    eligible = [index for index, ok in enumerate(_eligible(rows, tolerance)) if ok]
    return max(eligible, key=lambda index: (rows[index]["3d score"], -index))


def _network_outputs(model: CoarseLoFTR, image0: np.ndarray, image1: np.ndarray
                     ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, List[np.ndarray]]:
    """(conf [L,S], fine0, fine1, the two model inputs [H,W] in [0,1]) of one uint8 pair."""
    inputs = [np.asarray(image, dtype=np.float32) / 255.0 for image in (image0, image1)]
    with torch.no_grad():
        outputs = model(*(torch.from_numpy(image)[None, None] for image in inputs))
    return (outputs["conf_matrix"][0].numpy(), outputs["fine_feat0"][0].numpy(),
            outputs["fine_feat1"][0].numpy(), inputs)


def candidate_scores(model: CoarseLoFTR, image0: np.ndarray, image1: np.ndarray,
                     candidates: Sequence[Candidate], refinement: str,
                     score: Callable[[CellMatches], Any],
                     pool: Optional[Executor] = None) -> List[Any]:
    """``score(matches)`` of every candidate's matches on one pair (uint8 images at the model's
    input size). The network runs once; candidates that select the same matches share one
    refinement and one score (the refinement of a match depends only on the selected set).
    ``pool`` runs the scores in its threads (OpenCV's estimators release the GIL)."""
    config = model.config
    conf, fine0, fine1, inputs = _network_outputs(model, image0, image1)
    images = tuple(photometric_image(image) for image in inputs)
    unique: Dict[bytes, CellMatches] = {}
    keys = []
    for candidate in candidates:
        chosen = match_confidence(conf, config, candidate.options(config, "fine"), fine0, fine1)
        key = chosen.indices0.tobytes() + b"|" + chosen.indices1.tobytes()
        if key not in unique:
            unique[key] = chosen if refinement == "fine" else match_confidence(
                conf, config, candidate.options(config, refinement), fine0, fine1, images=images)
        keys.append(key)
    scores = (pool.map(score, unique.values()) if pool is not None
              else map(score, unique.values()))
    scored = dict(zip(unique, scores))
    return [scored[key] for key in keys]


def _planar_rows(model: CoarseLoFTR, pairs: Iterable[Any], candidates: Sequence[Candidate],
                 refinement: str, pool: Optional[Executor] = None) -> List[Dict[str, float]]:
    width, height = model.config.input_size
    per_pair = []
    for pair in pairs:
        def score(matches: CellMatches, pair: Any = pair) -> Tuple[float, float, int]:
            estimate = estimated_homography(matches.keypoints0, matches.keypoints1)
            return (corner_error(estimate, pair.H_0to1, width, height),
                    precision(matches.keypoints0, matches.keypoints1, pair.H_0to1),
                    len(matches.scores))
        per_pair.append(candidate_scores(model, pair.image0, pair.image1, candidates, refinement,
                                         score, pool))
    rows = []
    for index in range(len(candidates)):
        errors, precisions, counts = zip(*(scores[index] for scores in per_pair))
        areas = auc(errors)
        rows.append({"auc@3": areas[3.0], "auc@5": areas[5.0], "auc@10": areas[10.0],
                     "precision@3px": 100 * float(np.mean(precisions)),
                     "matches": float(np.mean(counts))})
    return rows


def _scene_rows(model: CoarseLoFTR, pairs: Iterable[Any], candidates: Sequence[Candidate],
                refinement: str, pool: Optional[Executor] = None) -> List[Dict[str, float]]:
    per_pair = []
    for pair in pairs:
        def score(matches: CellMatches, pair: Any = pair) -> pose_metrics.PosePairResult:
            return pose_metrics.evaluate_pose_pair(matches.keypoints0, matches.keypoints1,
                                                   pair.intrinsics0, pair.intrinsics1,
                                                   pair.rotation, pair.translation)
        per_pair.append(candidate_scores(model, pair.image0, pair.image1, candidates, refinement,
                                         score, pool))
    rows = []
    for index in range(len(candidates)):
        summary = pose_metrics.summarize_poses([scores[index] for scores in per_pair])
        rows.append({"3d auc@5": summary["pose auc@5"], "3d auc@10": summary["pose auc@10"],
                     "3d auc@20": summary["pose auc@20"],
                     "3d epipolar precision": summary["epipolar_precision"],
                     "3d matches": summary["mean_matches"], "3d failures": summary["failures"],
                     "3d score": (summary["pose auc@10"] + summary["pose auc@20"]
                                  + summary["epipolar_precision"])})
    return rows


def calibrate(model: CoarseLoFTR, image_dir: str, pairs_per_image: int = 3,
              scene_pairs: int = SCENE_PAIRS, candidates: Optional[Sequence[Candidate]] = None,
              seed: int = CALIBRATION_SEED, refinement: str = "photometric",
              tolerance: float = PLANAR_TOLERANCE, workers: int = WORKERS
              ) -> Tuple[Candidate, List[Dict[str, float]]]:
    """Score every candidate (default :func:`candidate_grid`) on the planar and 3D validation
    pairs of the photos in ``image_dir`` and apply the selection rule.

    Returns (the chosen candidate, one row per candidate in candidate order: its settings,
    planar ``auc@3/5/10``, ``precision@3px`` and ``matches``, 3D ``3d auc@5/10/20``,
    ``3d epipolar precision``, ``3d matches``, ``3d failures``, ``3d score``, and ``eligible``
    (1.0 when its planar AUC@5 is within ``tolerance`` of the best)).

    ``refinement``: ``photometric`` (the matcher's default, on the pair's own images) or
    ``fine``. ``workers``: threads that score the candidates (same results for any number).
    """
    if refinement not in REFINEMENTS:
        raise ValueError(f"refinement must be 'photometric' or 'fine', got {refinement!r}")
    config = model.config
    if config.fine is None:
        raise ValueError(f"preset {config.name!r} has no fine stage to calibrate")
    candidates = list(candidate_grid(config) if candidates is None else candidates)
    size = config.input_size
    model.eval()
    planar_set = SyntheticPairs(Path(image_dir), pairs_per_image=pairs_per_image, seed=seed,
                                size=size)
    scene_set = ScenePairs(Path(image_dir), count=scene_pairs, seed=seed, size=size)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        planar = _planar_rows(model, planar_set, candidates, refinement, pool)
        scenes = _scene_rows(model, scene_set, candidates, refinement, pool)
    rows: List[Dict[str, float]] = []
    for candidate, planar_row, scene_row in zip(candidates, planar, scenes):
        rows.append({"threshold": candidate.threshold, "min_peak_mass": candidate.min_peak_mass,
                     "keep_sharpest": float(candidate.keep_sharpest), **planar_row, **scene_row})
    for row, ok in zip(rows, _eligible(rows, tolerance)):
        row["eligible"] = float(ok)
    return candidates[select(rows, tolerance)], rows


def calibrated_config(config: ModelConfig, choice: Candidate) -> ModelConfig:
    """``config`` with the chosen threshold, ``min_peak_mass`` and ``keep_sharpest``."""
    if config.fine is None:
        raise ValueError(f"preset {config.name!r} has no fine stage to calibrate")
    fine = dataclasses.replace(config.fine, min_peak_mass=choice.min_peak_mass,
                               keep_sharpest=choice.keep_sharpest)
    return dataclasses.replace(config, match_threshold=choice.threshold, fine=fine)


def table(rows: Sequence[Dict[str, float]], chosen: int, top: int = 15) -> str:
    """Markdown table of the ``top`` candidates by 3D score among the eligible ones, then the
    rest by 3D score, plus the chosen row (marked) wherever it ranks."""
    order = sorted(range(len(rows)), key=lambda i: (-rows[i]["eligible"], -rows[i]["3d score"], i))
    shown = order[:top] + ([chosen] if chosen not in order[:top] else [])
    lines = ["| threshold | min_peak_mass | keep_sharpest | planar AUC@5 | planar AUC@10 | "
             "planar matches | 3D AUC@10 | 3D AUC@20 | 3D epipolar precision | 3D matches | "
             "3D score | eligible |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---|"]
    for index in shown:
        row = rows[index]
        mark = " **chosen**" if index == chosen else ""
        lines.append(
            f"| {row['threshold']:g} | {row['min_peak_mass']:g} | {row['keep_sharpest']:.0f} | "
            f"{row['auc@5']:.1f} | {row['auc@10']:.1f} | {row['matches']:.0f} | "
            f"{row['3d auc@10']:.1f} | {row['3d auc@20']:.1f} | "
            f"{row['3d epipolar precision']:.1f} | {row['3d matches']:.0f} | "
            f"{row['3d score']:.1f} | {'yes' if row['eligible'] else 'no'}{mark} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loftr_ros.training.calibrate",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", help="trained weights (loftr_ros format)")
    parser.add_argument("--data", required=True, help="folder of TRAINING photos")
    parser.add_argument("--out", required=True, help="calibrated weights file to write")
    parser.add_argument("--pairs-per-image", type=int, default=3,
                        help="planar validation pairs per photo (3)")
    parser.add_argument("--scene-pairs", type=int, default=SCENE_PAIRS,
                        help=f"3D-scene validation pairs ({SCENE_PAIRS})")
    parser.add_argument("--input-size", metavar="WxH", type=size_argument,
                        help="calibrate at this model input size (default: the weights' own)")
    parser.add_argument("--refinement", choices=REFINEMENTS, default="photometric",
                        help="refinement the settings are chosen for (the matcher's default)")
    parser.add_argument("--top", type=int, default=15, help="table rows to print (15)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--workers", type=int, default=WORKERS,
                        help=f"threads that score the candidates ({WORKERS} here)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model, report = load_model(args.weights, input_size=args.input_size)
    except ValueError as error:   # e.g. an input size the network cannot take
        parser.error(str(error))
    started = time.perf_counter()
    choice, rows = calibrate(model, args.data, args.pairs_per_image, args.scene_pairs,
                             refinement=args.refinement, workers=args.workers)
    seconds = time.perf_counter() - started
    print(table(rows, select(rows), args.top))   # rows are in candidate order
    model.config = calibrated_config(model.config, choice)
    metadata = dict(report.metadata)
    metadata["calibration"] = {
        "match_threshold": choice.threshold, "min_peak_mass": choice.min_peak_mass,
        "keep_sharpest": choice.keep_sharpest, "data": args.data, "rows": rows,
        "seed": CALIBRATION_SEED, "refinement": args.refinement,
        "pairs_per_image": args.pairs_per_image, "scene_pairs": args.scene_pairs,
        "input_size": list(model.config.input_size),
        "planar_tolerance": PLANAR_TOLERANCE}
    save_model(model, args.out, metadata)
    print(f"chose match_threshold = {choice.threshold:g}, min_peak_mass = "
          f"{choice.min_peak_mass:g}, keep_sharpest = {choice.keep_sharpest} "
          f"({len(rows)} candidates, {seconds:.0f} s); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
