"""``loftr-eval``: homography accuracy and latency of LoFTR models, the seed model, SIFT and ORB.

Examples::

    loftr-eval                                   # held-out synthetic pairs from data/heldout
    loftr-eval --hpatches ~/hpatches-sequences-release --synthetic data/heldout --json eval.json
    loftr-eval --methods model,sift --backend torch --weights runs/lite/last.pt --max-pairs 20

Prints one markdown table per data set: AUC of the corner error at 3/5/10 px, mean matches,
precision at 3 px, failed homographies and median latency (see :mod:`loftr_ros.evaluation`).
"""
from __future__ import annotations

import argparse
import functools
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import cv2

from loftr_ros.evaluation import datasets, metrics, runner
from loftr_ros.matching.postprocess import REFINEMENTS

DEFAULT_SYNTHETIC = Path("data/heldout")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loftr-eval", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hpatches", type=Path, metavar="DIR",
                        help="HPatches sequences folder (dirs with 1..6 images and H_1_k files)")
    parser.add_argument("--synthetic", type=Path, metavar="DIR",
                        help="folder of held-out photos for synthetic homography pairs "
                             f"(default {DEFAULT_SYNTHETIC} when --hpatches is not given)")
    parser.add_argument("--pairs-per-image", type=int, default=5,
                        help="synthetic pairs per held-out photo (5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic pairs (0)")
    parser.add_argument("--methods", default=",".join(runner.DEFAULT_METHODS),
                        help="comma-separated, from: " + ", ".join(runner.METHOD_NAMES) +
                             f" (default {','.join(runner.DEFAULT_METHODS)})")
    parser.add_argument("--backend", default="onnxruntime",
                        help="backend of the 'model' method (onnxruntime, torch, tensorrt, auto)")
    parser.add_argument("--weights", default=None,
                        help="weights of the 'model' method (default: the bundled default model)")
    parser.add_argument("--preset", default=None, help="preset of the 'model' method, if needed")
    parser.add_argument("--refinement", default="auto", choices=REFINEMENTS,
                        help="sub-cell refinement of the 'model' method (auto)")
    parser.add_argument("--threads", type=int, default=2,
                        help="CPU threads for onnxruntime/torch and OpenCV, for a fair race (2)")
    parser.add_argument("--max-pairs", type=int, default=None,
                        help="stop each data set after this many pairs")
    parser.add_argument("--hpatches-short-side", type=int, default=datasets.HPATCHES_SHORT_SIDE,
                        help="resize HPatches images to this shorter side, 0 = original (480)")
    parser.add_argument("--estimators", default="ransac,magsac",
                        help="homography estimators to score matches with, the first primary: "
                             "ransac (OpenCV RANSAC), magsac (OpenCV MAGSAC++); 3 px threshold "
                             "(default ransac,magsac)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write results as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    return parser


def _datasets(args: argparse.Namespace) -> Dict[str, Any]:
    """The data sets to run, by name; fills in the default ``args.synthetic``."""
    chosen: Dict[str, Any] = {}
    if args.hpatches is not None:
        chosen["hpatches"] = datasets.HPatchesPairs(args.hpatches,
                                                    args.hpatches_short_side or None)
    elif args.synthetic is None:
        args.synthetic = DEFAULT_SYNTHETIC
    if args.synthetic is not None:
        chosen["synthetic"] = datasets.SyntheticPairs(args.synthetic, args.pairs_per_image,
                                                      args.seed)
    return chosen


def _methods(args: argparse.Namespace) -> List[runner.Method]:
    names = [name.strip() for name in args.methods.split(",") if name.strip()]
    unknown = [name for name in names if name not in runner.METHOD_NAMES]
    if unknown:
        raise SystemExit(f"loftr-eval: unknown method(s) {unknown}; "
                         f"known: {', '.join(runner.METHOD_NAMES)}")
    methods = []
    for name in names:
        try:
            methods.append(runner.build_method(name, args.backend, args.weights, args.preset,
                                               args.threads, args.refinement))
        except runner.MethodUnavailable as error:
            print(f"loftr-eval: skipping method '{name}': {error}", file=sys.stderr)
    if "torch" in sys.modules and args.threads:
        sys.modules["torch"].set_num_threads(args.threads)
    return methods


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        cv2.setNumThreads(args.threads)
    try:
        chosen = _datasets(args)
    except (datasets.DatasetError, ValueError) as error:
        print(f"loftr-eval: {error}", file=sys.stderr)
        return 2
    estimators = [name.strip() for name in args.estimators.split(",") if name.strip()]
    unknown = [name for name in estimators if name not in metrics.ESTIMATORS]
    if unknown or not estimators:
        print(f"loftr-eval: unknown or no estimator(s) {unknown}; known: "
              f"{', '.join(metrics.ESTIMATORS)}", file=sys.stderr)
        return 2
    methods = _methods(args)
    if not methods:
        print("loftr-eval: no method could be built", file=sys.stderr)
        return 1
    results = {}
    for name, pairs in chosen.items():
        total = len(pairs) if args.max_pairs is None else min(len(pairs), args.max_pairs)
        progress = None
        if not args.no_progress:
            from tqdm import tqdm
            progress = functools.partial(tqdm, total=total, desc=name, unit="pair",
                                         file=sys.stderr)
        start = time.perf_counter()
        try:
            reports = runner.evaluate(methods, pairs, args.max_pairs, progress,
                                      estimators=estimators)
        except datasets.DatasetError as error:
            print(f"loftr-eval: {error}", file=sys.stderr)
            return 2
        elapsed = time.perf_counter() - start
        results[name] = reports
        print(f"\n## {name}: {total} pairs, {elapsed:.0f} s, {args.threads} threads\n")
        print(runner.markdown_table(reports))
        print()
        for report in reports:
            print(f"- {report.name}: {report.description}")
    if args.json is not None:
        settings = {
            "methods": {m.name: m.description for m in methods}, "threads": args.threads,
            "seed": args.seed, "pairs_per_image": args.pairs_per_image,
            "estimators": estimators,
            "max_pairs": args.max_pairs, "hpatches": str(args.hpatches or ""),
            "synthetic": str(args.synthetic or ""),
            "hpatches_short_side": args.hpatches_short_side, "opencv": cv2.__version__,
            "python": platform.python_version(), "machine": platform.machine(),
        }
        runner.write_json(args.json, results, settings)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
