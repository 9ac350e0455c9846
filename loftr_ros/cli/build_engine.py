"""``loftr-build-engine [MODEL.onnx]``: build (or find in the cache) the TensorRT engine of an ONNX
model for this GPU and TensorRT version.

    loftr-build-engine                              # the bundled default model, fp16, cached
    loftr-build-engine --input-size 320x240         # the bundled model config/jetson.yaml runs
    loftr-build-engine model.onnx --out model.engine --no-fp16 --workspace 512
    loftr-build-engine model.onnx --int8 --calib-dir ~/robot_frames

Prints progress and the elapsed time (a build takes minutes on a Jetson Nano); the engine path is
the last line. Errors are one line on stderr and a non-zero exit status.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable, List, Optional

from loftr_ros.cli import size_argument


def build_parser() -> argparse.ArgumentParser:
    from loftr_ros.runtime.tensorrt.builder import DEFAULT_WORKSPACE_MB
    from loftr_ros.runtime.tensorrt.cache import default_cache_dir

    parser = argparse.ArgumentParser(prog="loftr-build-engine", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("onnx", nargs="?",
                        help="static-shape ONNX from loftr-export (default: the bundled model)")
    parser.add_argument("--input-size", metavar="WxH", type=size_argument,
                        help="the bundled model at this input size, as the node's input_width / "
                             "input_height select it (e.g. 320x240 for config/jetson.yaml; "
                             "default 640x480); not with an ONNX file")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", help="write the engine to this file (always builds)")
    where.add_argument("--cache-dir", help=f"engine cache folder (default {default_cache_dir()})")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--fp16", dest="fp16", action="store_true", default=None,
                           help="allow fp16 kernels (default: where the GPU has fast fp16)")
    precision.add_argument("--no-fp16", dest="fp16", action="store_false",
                           help="strict fp32 engine")
    parser.add_argument("--int8", action="store_true",
                        help="INT8 kernels, calibrated on --calib-dir (never enabled otherwise)")
    parser.add_argument("--calib-dir", help="folder of calibration images (frames of your scene)")
    parser.add_argument("--workspace", type=int, default=DEFAULT_WORKSPACE_MB, metavar="MB",
                        help="builder workspace limit in MB (default %(default)s; 256-512 on a "
                             "Jetson Nano)")
    parser.add_argument("--rebuild", action="store_true", help="ignore a cached engine")
    parser.add_argument("--verbose", action="store_true", help="TensorRT's verbose builder log")
    return parser


def _audit_notes(onnx_path: str) -> List[str]:
    """Problems the static audit finds (printed as notes: newer TensorRT may still parse them)."""
    try:
        from loftr_ros.deploy.onnx_audit import audit_onnx

        report = audit_onnx(onnx_path)
    except ImportError:
        return []
    except Exception as exc:  # an unreadable file is reported by the builder itself
        return [f"ONNX audit skipped: {exc}"]
    return report.errors + report.warnings


def _build_to_file(onnx_path: str, args: argparse.Namespace, log: Callable[[str], None]) -> str:
    """``--out``: the engine of a single graph at OUT; for a two-stage model the encoder's at OUT
    and the matcher's beside it (``<OUT stem>-matcher.engine``), linked to each other."""
    from loftr_ros.runtime.onnx_info import read_onnx_metadata, two_stage_files
    from loftr_ros.runtime.tensorrt.builder import build_engine, link_stage_engines

    stages = two_stage_files(onnx_path, read_onnx_metadata(onnx_path))
    if stages is None:
        build_engine(onnx_path, args.out, fp16=args.fp16, int8=args.int8,
                     calib_dir=args.calib_dir, workspace_mb=args.workspace,
                     verbose=args.verbose, log=log)
        return args.out
    stem = args.out[:-len(".engine")] if args.out.endswith(".engine") else args.out
    matcher_out = f"{stem}-matcher.engine"
    build_engine(stages[0], args.out, fp16=args.fp16, int8=args.int8, calib_dir=args.calib_dir,
                 workspace_mb=args.workspace, verbose=args.verbose, log=log)
    build_engine(stages[1], matcher_out, fp16=True if args.int8 else args.fp16,
                 workspace_mb=args.workspace, verbose=args.verbose, log=log)
    link_stage_engines(args.out, matcher_out)
    return args.out


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from loftr_ros.runtime.base import LoftrRuntimeError
    from loftr_ros.runtime.tensorrt.builder import get_or_build_engine

    def log(line: str) -> None:
        print(line, flush=True)

    if args.calib_dir and not args.int8:
        print("loftr-build-engine: --calib-dir is only used with --int8", file=sys.stderr)
        return 2
    if args.int8 and not args.calib_dir:
        print("loftr-build-engine: --int8 needs --calib-dir FOLDER (calibration images); "
              "without them use fp16", file=sys.stderr)
        return 2
    if args.input_size and args.onnx:
        print("loftr-build-engine: --input-size picks a bundled model; an ONNX file has its own "
              "size", file=sys.stderr)
        return 2
    onnx_path = args.onnx
    if onnx_path is None:
        from loftr_ros.runtime import default_weights

        onnx_path = default_weights("onnx", args.input_size)
        if not os.path.isfile(onnx_path):
            print(f"loftr-build-engine: the bundled default model {onnx_path} is missing; pass an "
                  "ONNX file (make one with loftr-export)", file=sys.stderr)
            return 1
    if not os.path.isfile(onnx_path):
        print(f"loftr-build-engine: {onnx_path}: no such ONNX file", file=sys.stderr)
        return 1
    for note in _audit_notes(onnx_path):
        log(f"note: {note}")
    started = time.monotonic()
    try:
        if args.out:
            path = _build_to_file(onnx_path, args, log)
        else:
            path = get_or_build_engine(onnx_path, cache_dir=args.cache_dir, fp16=args.fp16,
                                       workspace_mb=args.workspace, int8=args.int8,
                                       calib_dir=args.calib_dir, verbose=args.verbose,
                                       rebuild=args.rebuild, log=log)
    except LoftrRuntimeError as exc:
        print("loftr-build-engine: " + " ".join(str(exc).split()), file=sys.stderr)  # one line
        return 1
    except KeyboardInterrupt:
        print("loftr-build-engine: interrupted", file=sys.stderr)
        return 130
    log(f"done in {time.monotonic() - started:.1f} s")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
