"""``loftr-export WEIGHTS OUT.onnx``: static-shape ONNX export, verified against torch."""
from __future__ import annotations

import argparse
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
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from loftr_ros.export import export_onnx
    from loftr_ros.model.checkpoint import CheckpointError, load_model
    from loftr_ros.preprocess import prepare
    from loftr_ros.runtime import default_weights

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
        result = export_onnx(model, args.out, opset=args.opset, verify_images=verify,
                             tolerance=args.tolerance)
    except (CheckpointError, ValueError, KeyError, OSError) as exc:
        print(f"loftr-export: {exc}", file=sys.stderr)
        return 2
    diffs = ", ".join(f"{name} {value:.2e}" for name, value in result.max_abs_diff.items())
    print(f"exported {report.format} checkpoint {weights} (preset {model.config.name}) -> "
          f"{result.onnx_path}: opset {result.opset}, input {result.input_size[0]}x"
          f"{result.input_size[1]}, outputs {result.output_names}")
    print(f"onnxruntime vs torch max abs diff: {diffs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
