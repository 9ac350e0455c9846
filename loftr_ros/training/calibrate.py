"""Calibrate a trained model's ``fine.min_peak_mass`` on TRAINING-domain validation pairs.

Matches whose fine window distribution holds little probability around its peak sit on flat or
repetitive texture; dropping them raises the precision of what is left. The limit that gives the
best homography AUC@5px on synthetic pairs of the training photos (a seed the training never used),
with the refinement the matcher applies by default (``photometric``) and its default
``keep_sharpest`` floor, is written into the weights' config, so every runtime applies it. Never
calibrate on held-out images.

    python -m loftr_ros.training.calibrate runs/lite/model.pt --data data/train --out lite.pt
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from loftr_ros.evaluation.datasets import SyntheticPairs
from loftr_ros.evaluation.metrics import auc, corner_error, estimated_homography, precision
from loftr_ros.matching.postprocess import MatchingOptions, match_confidence
from loftr_ros.model.checkpoint import load_model, save_model
from loftr_ros.model.network import CoarseLoFTR

CANDIDATES = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
CALIBRATION_SEED = 424242  # not a training seed


def calibrate_min_peak_mass(model: CoarseLoFTR, image_dir: str, pairs_per_image: int = 3,
                            candidates: Sequence[float] = CANDIDATES,
                            seed: int = CALIBRATION_SEED, refinement: str = "photometric"
                            ) -> Tuple[float, List[Dict[str, float]]]:
    """Return (best limit, one row of metrics per candidate); 0 means "keep all".

    ``refinement``: ``photometric`` (the default's, on the pair's own images) or ``fine``.
    """
    if refinement not in ("photometric", "fine"):
        raise ValueError(f"refinement must be 'photometric' or 'fine', got {refinement!r}")
    config = model.config
    if config.fine is None:
        raise ValueError(f"preset {config.name!r} has no fine stage to calibrate")
    width, height = config.input_size
    pairs = SyntheticPairs(Path(image_dir), pairs_per_image=pairs_per_image, seed=seed,
                           size=(width, height))
    errors: Dict[float, List[float]] = {c: [] for c in candidates}
    precisions: Dict[float, List[float]] = {c: [] for c in candidates}
    counts: Dict[float, List[int]] = {c: [] for c in candidates}
    model.eval()
    for pair in pairs:
        inputs = [np.asarray(image, dtype=np.float32) / 255.0 for image in (pair.image0,
                                                                             pair.image1)]
        with torch.no_grad():
            outputs = model(*(torch.from_numpy(image)[None, None] for image in inputs))
        conf = outputs["conf_matrix"][0].numpy()
        fine0, fine1 = outputs["fine_feat0"][0].numpy(), outputs["fine_feat1"][0].numpy()
        for candidate in candidates:
            options = MatchingOptions(threshold=config.match_threshold,
                                      border_margin=config.border_margin, refinement=refinement,
                                      min_peak_mass=float(candidate))
            cells = match_confidence(conf, config, options, fine0, fine1, images=tuple(inputs))
            estimate = estimated_homography(cells.keypoints0, cells.keypoints1)
            errors[candidate].append(corner_error(estimate, pair.H_0to1, width, height))
            precisions[candidate].append(precision(cells.keypoints0, cells.keypoints1, pair.H_0to1))
            counts[candidate].append(len(cells.scores))
    rows = []
    for candidate in candidates:
        areas = auc(errors[candidate])
        rows.append({"min_peak_mass": float(candidate), "auc@3": areas[3.0], "auc@5": areas[5.0],
                     "auc@10": areas[10.0], "precision@3px": 100 * float(np.mean(
                         precisions[candidate])), "matches": float(np.mean(counts[candidate]))})
    best = max(rows, key=lambda row: (row["auc@5"], row["auc@10"]))
    return best["min_peak_mass"], rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loftr_ros.training.calibrate",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", help="trained weights (loftr_ros format)")
    parser.add_argument("--data", required=True, help="folder of TRAINING photos")
    parser.add_argument("--out", required=True, help="calibrated weights file to write")
    parser.add_argument("--pairs-per-image", type=int, default=3)
    parser.add_argument("--refinement", choices=("photometric", "fine"), default="photometric",
                        help="refinement the limit is chosen for (the matcher's default)")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, report = load_model(args.weights)
    best, rows = calibrate_min_peak_mass(model, args.data, args.pairs_per_image,
                                         refinement=args.refinement)
    print("| min_peak_mass | AUC@3 | AUC@5 | AUC@10 | precision@3px | matches |")
    print("|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['min_peak_mass']:g} | {row['auc@3']:.1f} | {row['auc@5']:.1f} | "
              f"{row['auc@10']:.1f} | {row['precision@3px']:.1f} | {row['matches']:.0f} |")
    assert model.config.fine is not None
    model.config = dataclasses.replace(
        model.config, fine=dataclasses.replace(model.config.fine, min_peak_mass=best))
    metadata = dict(report.metadata)
    metadata["calibration"] = {"min_peak_mass": best, "data": args.data, "rows": rows,
                               "seed": CALIBRATION_SEED, "refinement": args.refinement,
                               "pairs_per_image": args.pairs_per_image}
    save_model(model, args.out, metadata)
    print(f"chose min_peak_mass = {best:g}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
