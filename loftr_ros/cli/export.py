"""``loftr-export WEIGHTS OUT.onnx``: static-shape ONNX export, verified against torch.

By default the two stages of the network are written beside OUT (``OUT_encoder.onnx``: one image
-> its features; ``OUT_matcher.onnx``: two images' features -> confidence matrix), so a fixed
reference is encoded once; each is verified against torch, and so is their chain against the
single-pass network. ``--single-graph`` writes OUT as one graph (both images in, confidence out).

With ``--int8-calibration DIR`` the encoder is also written as an INT8 graph for onnxruntime on
the CPU (``OUT_encoder_int8.onnx`` beside the float ``OUT_matcher.onnx``;
:mod:`loftr_ros.deploy.quantization`), calibrated on the images of DIR; the float graphs it
comes from are verified against torch first. With ``--single-graph`` OUT itself is INT8. The
INT8 encoder is an option for CPUs with int8 instructions (VNNI, AMX), where it may be faster
(not measured); on the AVX2 CPU of docs/benchmarks.md the float encoder is faster."""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import List, Optional


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loftr-export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", nargs="?", help="checkpoint (default: bundled default model)")
    parser.add_argument("out", help="output .onnx path (two-stage: the stem of both files)")
    parser.add_argument("--preset", help="preset for checkpoints without an embedded config")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (13 for TensorRT 8.2)")
    parser.add_argument("--width", type=int, help="input width (default: the model's)")
    parser.add_argument("--height", type=int, help="input height (default: the model's)")
    parser.add_argument("--single-graph", action="store_true",
                        help="one graph for both images instead of the encoder/matcher pair")
    parser.add_argument("--verify-images", nargs=2, metavar=("IMG0", "IMG1"),
                        help="real image pair for the onnxruntime-vs-torch check")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--int8-calibration", metavar="DIR",
                        help="also write an INT8 encoder for onnxruntime on the CPU (an option "
                             "to the float graphs), calibrated on the images in DIR (50+ frames "
                             "of your scene are best)")
    parser.add_argument("--calibration-pairs", type=int, default=32,
                        help="image pairs used for INT8 calibration (32)")
    return parser


def int8_encoder_path(encoder_path: str) -> str:
    """``<stem>_encoder_int8.onnx`` for ``<stem>_encoder.onnx``."""
    return encoder_path[:-len(".onnx")] + "_int8.onnx"


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from loftr_ros.deploy.onnx_export import export_onnx, export_two_stage
    from loftr_ros.matching.preprocess import prepare
    from loftr_ros.model.checkpoint import CheckpointError, load_model
    from loftr_ros.runtime import default_weights
    from loftr_ros.runtime.base import LoftrRuntimeError

    weights = args.weights or default_weights("pt")
    size = (args.width, args.height) if args.width and args.height else None
    try:
        model, report = load_model(weights, preset=args.preset, input_size=size)
        verify = None
        if args.verify_images:
            import cv2

            pair = []
            for path in args.verify_images:
                image = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
                if image is None:
                    raise ValueError(f"cannot read image {path}")
                pair.append(prepare(image, model.config.input_size)[0])
            verify = (pair[0], pair[1])
        if args.int8_calibration:
            return _export_int8(model, args, verify)
        if not args.single_graph:
            staged = export_two_stage(model, args.out, opset=args.opset, verify_images=verify,
                                      tolerance=args.tolerance)
        else:
            result = export_onnx(model, args.out, opset=args.opset, verify_images=verify,
                                 tolerance=args.tolerance)
    except (CheckpointError, LoftrRuntimeError, ValueError, KeyError, OSError) as exc:
        print(f"loftr-export: {exc}", file=sys.stderr)
        return 2
    source = f"exported {report.format} checkpoint {weights} (preset {model.config.name})"
    if not args.single_graph:
        print(f"{source} -> {staged.encoder_path} + {staged.matcher_path}: opset {staged.opset}, "
              f"input {staged.input_size[0]}x{staged.input_size[1]}")
        for stage, diffs in staged.max_abs_diff.items():
            text = ", ".join(f"{name} {value:.2e}" for name, value in diffs.items())
            print(f"onnxruntime vs torch max abs diff, {stage}: {text}")
        return 0
    diffs_text = ", ".join(f"{name} {value:.2e}" for name, value in result.max_abs_diff.items())
    print(f"{source} -> {result.onnx_path}: opset {result.opset}, input {result.input_size[0]}x"
          f"{result.input_size[1]}, outputs {result.output_names}")
    print(f"onnxruntime vs torch max abs diff: {diffs_text}")
    return 0


def _export_int8(model: object, args: argparse.Namespace, verify: Optional[tuple]) -> int:
    """Float export to a temporary folder (verified against torch), then INT8 beside OUT."""
    import tempfile

    import numpy as np

    from loftr_ros.deploy.onnx_export import export_onnx, export_two_stage, two_stage_paths
    from loftr_ros.deploy.quantization import quantize_cpu_int8
    from loftr_ros.runtime.onnx_runtime import OnnxRuntime
    from loftr_ros.runtime.tensorrt.calibrator import calibration_pairs

    # read the calibration frames first: a bad folder fails before the slow export
    pairs = calibration_pairs(args.int8_calibration, model.config.input_size,  # type: ignore
                              max_pairs=args.calibration_pairs)
    check = verify or pairs[0]
    with tempfile.TemporaryDirectory() as folder:
        float_path = os.path.join(folder, os.path.basename(args.out))
        if args.single_graph:
            export_onnx(model, float_path, opset=args.opset, verify_images=verify,
                        tolerance=args.tolerance)
            report = quantize_cpu_int8(float_path, args.out, pairs)
            loaded = float_path, args.out
        else:
            staged = export_two_stage(model, float_path, opset=args.opset, verify_images=verify,
                                      tolerance=args.tolerance)
            encoder_out, matcher_out = two_stage_paths(args.out)
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            # the INT8 encoder keeps the float one's metadata: its partner is OUT_matcher.onnx
            shutil.copyfile(staged.matcher_path, matcher_out)
            report = quantize_cpu_int8(staged.encoder_path, int8_encoder_path(encoder_out),
                                       pairs)
            loaded = staged.encoder_path, report.onnx_path
        float_out = OnnxRuntime(loaded[0]).run(*check)
        int8_out = OnnxRuntime(loaded[1]).run(*check)
    diffs = ", ".join(f"{name} {np.abs(float_out[name] - int8_out[name]).max():.3f}"
                      for name in float_out)
    print(f"wrote INT8 {report.onnx_path}: {len(report.quantized)} convolutions in int8, "
          f"{len(report.kept_float)} kept in float, {report.calibration_pairs} calibration pairs "
          f"from {args.int8_calibration}")
    print(f"int8 vs float max abs diff: {diffs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
