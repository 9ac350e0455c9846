"""``loftr-eval``: accuracy and latency of LoFTR models, the seed model, SIFT and ORB, on planar
pairs (homography) and 3D pairs (relative pose).

Data sets (``--sets``, see docs/evaluation.md):

- ``synthetic``: held-out photos (``data/heldout``) under random homographies;
- ``scenes3d``: rendered 3D scenes textured with the same held-out photos;
- ``castle``: ViSP's rendered Castle-simu sequence (Debian ``visp-images-data``, fetched into
  ``data/cache`` on first use), frame pairs at growing gaps;
- ``motorcycle``: scikit-image's rectified Motorcycle stereo pair;
- ``hpatches``: an HPatches folder (``--hpatches``).

Examples::

    loftr-eval                                   # all four default sets
    loftr-eval --sets scenes3d,castle --plot curves.png --json eval.json
    loftr-eval --hpatches ~/hpatches-sequences-release --synthetic data/heldout
    loftr-eval --methods model,sift --backend torch --weights runs/lite/last.pt --max-pairs 20

Prints one markdown table per data set (homography: AUC of the corner error at 3/5/10 px and
precision at 3 px; pose: AUC of the pose error at 5/10/20 degrees and epipolar precision; each
with mean matches, failures and median latency), then one overview table (see
:mod:`loftr_ros.evaluation`).
"""
from __future__ import annotations

import argparse
import functools
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2

from loftr_ros.cli import float_pair_argument
from loftr_ros.evaluation import castle, datasets, metrics, pose_datasets, report, runner
from loftr_ros.matching.postprocess import REFINEMENTS

DEFAULT_SYNTHETIC = Path("data/heldout")
SET_NAMES = ("synthetic", "scenes3d", "castle", "motorcycle", "hpatches")
DEFAULT_SETS = ("synthetic", "scenes3d", "castle", "motorcycle")
#: sets that come from a package or wheel rather than a folder the user points at
FETCHED_SETS = ("castle", "motorcycle")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loftr-eval", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hpatches", type=Path, metavar="DIR",
                        help="HPatches sequences folder (dirs with 1..6 images and H_1_k files)")
    parser.add_argument("--sets", default=None,
                        help="comma-separated data sets, from: " + ", ".join(SET_NAMES) +
                             f" (default {','.join(DEFAULT_SETS)}; with --hpatches: hpatches, "
                             "plus synthetic if --synthetic is given)")
    parser.add_argument("--synthetic", type=Path, metavar="DIR",
                        help="folder of held-out photos for synthetic homography pairs "
                             f"(default {DEFAULT_SYNTHETIC})")
    parser.add_argument("--pairs-per-image", type=int, default=5,
                        help="synthetic pairs per held-out photo (5)")
    parser.add_argument("--scenes3d", type=Path, metavar="DIR",
                        help="folder of held-out photos that texture the 3D scenes (default: the "
                             f"--synthetic folder, else {DEFAULT_SYNTHETIC})")
    parser.add_argument("--scene-pairs", type=int, default=50,
                        help="rendered 3D-scene pairs (50)")
    parser.add_argument("--scene-baseline", type=float_pair_argument, metavar="LOW,HIGH",
                        help="camera translation of the 3D-scene pairs as a fraction of the depth "
                             "both cameras look at (default 0.05,0.6)")
    parser.add_argument("--scene-max-rotation", type=float, metavar="DEG",
                        help="largest relative rotation of the 3D-scene pairs' cameras (45)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the synthetic and 3D-scene pairs (0)")
    parser.add_argument("--castle", type=Path, metavar="DIR",
                        help="the Castle-simu folder (default: fetched into --cache)")
    parser.add_argument("--castle-gaps", default=",".join(map(str, castle.DEFAULT_GAPS)),
                        help="frame gaps of the Castle-simu pairs "
                             f"({','.join(map(str, castle.DEFAULT_GAPS))})")
    parser.add_argument("--castle-starts", type=int, default=castle.DEFAULT_STARTS_PER_GAP,
                        help="Castle-simu pairs per gap, start frames spread over the sequence "
                             f"({castle.DEFAULT_STARTS_PER_GAP})")
    parser.add_argument("--cache", type=Path, default=castle.DEFAULT_CACHE,
                        help="where Debian packages are downloaded and extracted "
                             f"({castle.DEFAULT_CACHE})")
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
    parser.add_argument("--verify-alignment", action="store_true",
                        help="the 'model' methods drop the matches whose patches the photometric "
                             "refinement cannot align (Matcher option verify_alignment)")
    parser.add_argument("--threads", type=int, default=2,
                        help="CPU threads for onnxruntime/torch and OpenCV, for a fair race (2)")
    parser.add_argument("--max-pairs", type=int, default=None,
                        help="stop each data set after this many pairs")
    parser.add_argument("--hpatches-short-side", type=int, default=datasets.HPATCHES_SHORT_SIDE,
                        help="resize HPatches images to this shorter side, 0 = original (480)")
    parser.add_argument("--estimators", default="ransac,magsac",
                        help="robust estimators (homography, essential matrix) to score matches "
                             "with, the first primary: ransac (OpenCV RANSAC), magsac (OpenCV "
                             "MAGSAC++); 3 px for homographies, 1 px for essential matrices "
                             "(default ransac,magsac)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write results as JSON")
    parser.add_argument("--plot", type=Path, metavar="PNG",
                        help="also draw the cumulative error curves of every data set (needs "
                             "matplotlib)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    return parser


def _set_names(args: argparse.Namespace) -> Tuple[List[str], bool]:
    """The chosen data set names, and whether the user named them (else they are defaults)."""
    if args.sets is not None:
        names = [name.strip() for name in args.sets.split(",") if name.strip()]
        unknown = [name for name in names if name not in SET_NAMES]
        if unknown or not names:
            raise ValueError(f"unknown or no data set(s) {unknown}; known: {', '.join(SET_NAMES)}")
        if "hpatches" in names and args.hpatches is None:
            raise ValueError("the hpatches set needs --hpatches DIR")
        return names, True
    if args.hpatches is not None:
        return ["hpatches"] + (["synthetic"] if args.synthetic is not None else []), True
    return list(DEFAULT_SETS), False


def _load(name: str, args: argparse.Namespace) -> Any:
    photos = args.synthetic or DEFAULT_SYNTHETIC
    if name == "hpatches":
        return datasets.HPatchesPairs(args.hpatches, args.hpatches_short_side or None)
    if name == "synthetic":
        return datasets.SyntheticPairs(photos, args.pairs_per_image, args.seed)
    if name == "scenes3d":
        return pose_datasets.ScenePairs(args.scenes3d or photos, args.scene_pairs, args.seed,
                                        baseline=args.scene_baseline,
                                        max_rotation_deg=args.scene_max_rotation)
    if name == "castle":
        gaps = [int(gap) for gap in args.castle_gaps.split(",") if gap.strip()]
        folder = args.castle or castle.cached_castle(args.cache) or castle.fetch_castle(
            args.cache)
        return castle.CastlePairs(folder, gaps, args.castle_starts)
    return pose_datasets.MotorcyclePairs()


def _datasets(args: argparse.Namespace) -> Dict[str, Any]:
    """The data sets to run, by name. By default, a set whose source cannot be had here
    (``castle`` without apt, ``motorcycle`` without scikit-image) is skipped with a line on
    stderr; a named set, or a missing photo folder, raises DatasetError."""
    names, named = _set_names(args)
    chosen: Dict[str, Any] = {}
    for name in names:
        try:
            chosen[name] = _load(name, args)
        except (datasets.DatasetError, ValueError) as error:
            if named or name not in FETCHED_SETS:
                raise
            print(f"loftr-eval: skipping data set '{name}': {error}", file=sys.stderr)
    if not chosen:
        raise datasets.DatasetError("no data set could be loaded")
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
                                               args.threads, args.refinement,
                                               args.verify_alignment))
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
        motion = ""
        if isinstance(pairs, pose_datasets.ScenePairs):
            low, high = pairs.params.baseline
            motion = (f", baseline {low:g}-{high:g} of the depth, rotation up to "
                      f"{pairs.params.max_rotation_deg:g} deg")
        print(f"\n## {name}: {total} pairs{motion}, {elapsed:.0f} s, {args.threads} threads\n")
        print(runner.markdown_table(reports))
        print()
        for method_report in reports:
            print(f"- {method_report.name}: {method_report.description}")
    if len(results) > 1:
        print("\n## overview (percent; the primary estimator first)\n")
        print(report.overview_table(results))
    if args.json is not None:
        settings = {
            "methods": {m.name: m.description for m in methods}, "threads": args.threads,
            "seed": args.seed, "pairs_per_image": args.pairs_per_image,
            "estimators": estimators, "sets": list(chosen),
            "max_pairs": args.max_pairs, "hpatches": str(args.hpatches or ""),
            "synthetic": str(args.synthetic or ""), "scenes3d": str(args.scenes3d or ""),
            "scene_pairs": args.scene_pairs, "scene_baseline": args.scene_baseline,
            "scene_max_rotation": args.scene_max_rotation, "castle_gaps": args.castle_gaps,
            "castle_starts": args.castle_starts,
            "hpatches_short_side": args.hpatches_short_side, "opencv": cv2.__version__,
            "python": platform.python_version(), "machine": platform.machine(),
        }
        runner.write_json(args.json, results, settings)
        print(f"\nwrote {args.json}")
    if args.plot is not None:
        try:
            report.plot_error_curves(results, args.plot,
                                     metrics.ESTIMATOR_LABELS.get(estimators[0], estimators[0]))
        except ImportError as error:
            print(f"loftr-eval: cannot plot ({error}); install matplotlib", file=sys.stderr)
            return 1
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
