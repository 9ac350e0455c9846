"""``loftr-match IMG0 IMG1``: match two images, print a summary, optionally save a picture/JSON."""
from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

import cv2

from loftr_ros.matching.postprocess import REFINEMENTS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loftr-match", description=__doc__)
    parser.add_argument("image0")
    parser.add_argument("image1")
    parser.add_argument("--out", help="write a side-by-side visualisation (PNG/JPEG)")
    parser.add_argument("--json", help="write the matches as JSON")
    parser.add_argument("--backend", default="auto",
                        choices=["auto", "tensorrt", "onnxruntime", "torch"])
    parser.add_argument("--weights", help="weights/ONNX/engine (default: bundled model)")
    parser.add_argument("--preset", help="preset for files without an embedded config")
    parser.add_argument("--threshold", type=float, help="confidence threshold")
    parser.add_argument("--max-matches", type=int, default=0)
    parser.add_argument("--refinement", default="auto",
                        choices=list(REFINEMENTS))
    parser.add_argument("--threads", type=int, help="CPU threads")
    parser.add_argument("--repeat", type=int, default=1, help="run N times, report the median")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from loftr_ros.matching.drawing import draw_matches
    from loftr_ros.matching.matcher import Matcher
    from loftr_ros.runtime.base import LoftrRuntimeError

    images = []
    for path in (args.image0, args.image1):
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            print(f"loftr-match: cannot read image {path}", file=sys.stderr)
            return 2
        images.append(image)
    try:
        matcher = Matcher.create(backend=args.backend, weights=args.weights, preset=args.preset,
                                 threshold=args.threshold, max_matches=args.max_matches,
                                 refinement=args.refinement, threads=args.threads)
    except (LoftrRuntimeError, ValueError, KeyError) as exc:
        print(f"loftr-match: {exc}", file=sys.stderr)
        return 2
    totals = []
    for _ in range(max(1, args.repeat)):
        result = matcher.match(images[0], images[1])
        totals.append(result.timings["total"])
    totals.sort()
    timing = ", ".join(f"{key} {value:.1f} ms" for key, value in result.timings.items())
    print(f"{len(result)} matches ({matcher.runtime.description}, preset {matcher.config.name}, "
          f"input {result.input_size[0]}x{result.input_size[1]}, refinement {result.refinement})")
    print(f"timings (last run): {timing}; median total over {len(totals)} runs: "
          f"{totals[len(totals) // 2]:.1f} ms")
    if args.out:
        picture = draw_matches(images[0], images[1], result.keypoints0, result.keypoints1,
                               result.scores,
                               [f"{len(result)} matches", matcher.runtime.description])
        if not cv2.imwrite(args.out, picture):
            print(f"loftr-match: cannot write {args.out}", file=sys.stderr)
            return 2
        print(f"wrote {args.out}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"keypoints0": result.keypoints0.tolist(),
                       "keypoints1": result.keypoints1.tolist(), "scores": result.scores.tolist(),
                       "input_size": list(result.input_size),
                       "image0_size": list(result.image0_size),
                       "image1_size": list(result.image1_size), "refinement": result.refinement,
                       "timings_ms": result.timings}, handle)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
