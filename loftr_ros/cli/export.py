"""``loftr-export WEIGHTS OUT.onnx``: static-shape ONNX export, verified against torch.

With ``--int8-calibration DIR`` the file written is the INT8 graph for onnxruntime on the CPU
(:mod:`loftr_ros.deploy.quantization`), calibrated on the images of DIR; the float graph it
comes from is verified against torch first."""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loftr-export", description=__doc__)
    parser.add_argument("weights", nargs="?", help="checkpoint (default: bundled default model)")
    parser.add_argument("out", help="output .onnx path")
    parser.add_argument("--preset", help="preset for checkpoints without an embedded config")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (13 for TensorRT 8.2)")
    parser.add_argument("--width", type=int, help="input width (default: the model's)")
    parser.add_argument("--height", type=int, help="input height (default: the model's)")
    parser.add_argument("--verify-images", nargs=2, metavar=("IMG0", "IMG1"),
                        help="real image pair for the onnxruntime-vs-torch check")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--int8-calibration", metavar="DIR",
                        help="write an INT8 graph for onnxruntime on the CPU, calibrated on the "
                             "images in DIR (50+ frames of your scene are best)")
    parser.add_argument("--calibration-pairs", type=int, default=32,
                        help="image pairs used for INT8 calibration (32)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from loftr_ros.deploy.onnx_export import export_onnx
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
        result = export_onnx(model, args.out, opset=args.opset, verify_images=verify,
                             tolerance=args.tolerance)
    except (CheckpointError, LoftrRuntimeError, ValueError, KeyError, OSError) as exc:
        print(f"loftr-export: {exc}", file=sys.stderr)
        return 2
    diffs = ", ".join(f"{name} {value:.2e}" for name, value in result.max_abs_diff.items())
    print(f"exported {report.format} checkpoint {weights} (preset {model.config.name}) -> "
          f"{result.onnx_path}: opset {result.opset}, input {result.input_size[0]}x"
          f"{result.input_size[1]}, outputs {result.output_names}")
    print(f"onnxruntime vs torch max abs diff: {diffs}")
    return 0


def _export_int8(model: object, args: argparse.Namespace, verify: Optional[tuple]) -> int:
    """Float export to a temporary file (verified against torch), then INT8 to ``args.out``."""
    import tempfile

    import numpy as np

    from loftr_ros.deploy.onnx_export import export_onnx
    from loftr_ros.deploy.quantization import quantize_cpu_int8
    from loftr_ros.runtime.onnx_runtime import OnnxRuntime
    from loftr_ros.runtime.tensorrt.calibrator import calibration_pairs

    # read the calibration frames first: a bad folder fails before the slow export
    pairs = calibration_pairs(args.int8_calibration, model.config.input_size,  # type: ignore
                              max_pairs=args.calibration_pairs)
    with tempfile.TemporaryDirectory() as folder:
        float_path = os.path.join(folder, "float.onnx")
        export_onnx(model, float_path, opset=args.opset, verify_images=verify,
                    tolerance=args.tolerance)
        report = quantize_cpu_int8(float_path, args.out, pairs)
        check = verify or pairs[0]
        float_out = OnnxRuntime(float_path).run(*check)
        int8_out = OnnxRuntime(args.out).run(*check)
    diffs = ", ".join(f"{name} {np.abs(float_out[name] - int8_out[name]).max():.3f}"
                      for name in float_out)
    print(f"wrote INT8 {report.onnx_path}: {len(report.quantized)} convolutions in int8, "
          f"{len(report.kept_float)} kept in float, {report.calibration_pairs} calibration pairs "
          f"from {args.int8_calibration}")
    print(f"int8 vs float max abs diff: {diffs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
