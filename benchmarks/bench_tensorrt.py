"""TensorRT latency of every preset on this GPU, beside onnxruntime, in one run::

    python benchmarks/bench_tensorrt.py                              # all presets, fp16 + fp32
    python benchmarks/bench_tensorrt.py --presets seed,lite --precisions fp16 --repeats 200
    python benchmarks/bench_tensorrt.py --onnx my_model.onnx         # a given ONNX file

For each model and precision: the engine build time (or the cache hit), then the median and 90th
percentile of ``TensorRTRuntime.run`` (host->device copies, inference, device->host copy of the
confidence matrix) over ``--repeats`` runs after ``--warmup``, the max abs difference to
onnxruntime on the same photo pair, and onnxruntime's own median (CUDA provider if installed, else
CPU, few runs). For two-stage models (the bundled default: encoder and matcher engines) also the
per-frame median against a reference encoded once (``encode`` of the frame + ``match``), what
the ROS node runs per frame. Weights: the bundled default model where it exists, the seed's real
checkpoint for ``seed``, random initialisation otherwise (latency does not depend on weight
values).

Needs a CUDA GPU with TensorRT and pycuda (and PyTorch to export presets); exits with status 2 and
the reason otherwise. ``--json FILE`` also writes the rows.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Row:
    model: str
    precision: str
    build_s: float
    trt_median_ms: float
    trt_p90_ms: float
    ort_median_ms: float
    ort_provider: str
    max_abs_diff: float
    device: str
    cached_reference_median_ms: float = float("nan")


def photo_pair() -> Tuple[np.ndarray, np.ndarray]:
    """640x480 float32 [1,1,H,W] pair: the bundled photo under a random homography."""
    import cv2

    from loftr_ros.synthetic.homography import make_pair

    photo = cv2.imread(str(REPO / "loftr_ros" / "data" / "coffee.png"), cv2.IMREAD_GRAYSCALE)
    if photo is None:
        photo = (np.random.default_rng(0).random((480, 640)) * 255).astype(np.uint8)
    image0, image1, _ = make_pair(np.random.default_rng(11), photo, 640, 480)
    return ((image0.astype(np.float32) / 255.0)[None, None],
            (image1.astype(np.float32) / 255.0)[None, None])


def resize_pair(pair, width: int, height: int):
    import cv2

    return tuple(cv2.resize(image[0, 0], (width, height), interpolation=cv2.INTER_AREA)[None, None]
                 for image in pair)


def timings(call: Callable[[], object], repeats: int, warmup: int) -> Tuple[float, float]:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1e3)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.9 * len(times)))]


def export_preset(preset: str, folder: str) -> str:
    """ONNX of ``preset``: bundled weights, the seed's checkpoint, or random init."""
    from loftr_ros.deploy.onnx_export import export_onnx
    from loftr_ros.model.presets import DEFAULT_PRESET, get_preset
    from loftr_ros.runtime import default_weights

    bundled = Path(default_weights("onnx"))   # the two-stage model's encoder
    if preset == DEFAULT_PRESET and bundled.is_file():
        return str(bundled)
    path = os.path.join(folder, f"{preset}.onnx")
    shared = os.environ.get("LOFTR_SHARED_DIR", str(REPO.parent / "shared"))
    seed_pt = os.path.join(shared, "seed_weights", "LoFTR_teacher.pt")
    if preset == "seed" and os.path.isfile(seed_pt):
        export_onnx(seed_pt, path, preset="seed")
        return path
    import torch

    from loftr_ros.model.network import build_model

    torch.manual_seed(0)
    export_onnx(build_model(get_preset(preset)).eval(), path)
    return path


def bench(onnx_path: str, label: str, precision: str, pair, args) -> Row:
    from loftr_ros.runtime.onnx_runtime import OnnxRuntime
    from loftr_ros.runtime.tensorrt.builder import get_or_build_engine
    from loftr_ros.runtime.tensorrt.runtime import TensorRTRuntime

    started = time.monotonic()
    engine_path = get_or_build_engine(onnx_path, cache_dir=args.cache_dir,
                                      fp16=precision == "fp16", workspace_mb=args.workspace,
                                      log=lambda line: print(f"  {line}", flush=True))
    build_s = time.monotonic() - started
    reference = OnnxRuntime(onnx_path, preset=args.preset)
    runtime = TensorRTRuntime(reference.config, engine_path, preset=args.preset)
    try:
        width, height = runtime.input_size
        images = resize_pair(pair, width, height)
        diff = max(float(np.abs(runtime.run(*images)[name] - value).max())
                   for name, value in reference.run(*images).items())
        trt_median, trt_p90 = timings(lambda: runtime.run(*images), args.repeats, args.warmup)
        ort_median, _ = timings(lambda: reference.run(*images), args.ort_repeats, 1)
        cached = float("nan")
        if runtime.two_stage:
            encoded = runtime.encode(images[0])
            cached, _ = timings(lambda: runtime.match(encoded, runtime.encode(images[1])),
                                args.repeats, args.warmup)
        return Row(model=label, precision=precision, build_s=round(build_s, 2),
                   cached_reference_median_ms=round(cached, 3),
                   trt_median_ms=round(trt_median, 3), trt_p90_ms=round(trt_p90, 3),
                   ort_median_ms=round(ort_median, 2), ort_provider=reference.providers[0],
                   max_abs_diff=diff, device=runtime.description)
    finally:
        runtime.close()


def markdown(rows: Sequence[Row]) -> str:
    lines = ["| model | precision | build s | TensorRT median ms | p90 ms | per frame, cached "
             "reference ms | onnxruntime ms (provider) | max abs diff |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        cached = "-" if row.cached_reference_median_ms != row.cached_reference_median_ms else \
            f"{row.cached_reference_median_ms:.2f}"
        lines.append(f"| {row.model} | {row.precision} | {row.build_s:.1f} | "
                     f"{row.trt_median_ms:.2f} | {row.trt_p90_ms:.2f} | {cached} | "
                     f"{row.ort_median_ms:.1f} ({row.ort_provider}) | {row.max_abs_diff:.1e} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from loftr_ros.model.presets import preset_names

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default=",".join(preset_names()),
                        help="comma-separated presets (default: all)")
    parser.add_argument("--onnx", nargs="*", default=[], help="extra ONNX files to time")
    parser.add_argument("--preset", help="preset of --onnx files without loftr_ros metadata")
    parser.add_argument("--precisions", default="fp16,fp32")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--ort-repeats", type=int, default=5)
    parser.add_argument("--workspace", type=int, default=1024, help="builder workspace, MB")
    parser.add_argument("--cache-dir", help="engine cache (default: a temporary folder)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)

    from loftr_ros.runtime.base import LoftrRuntimeError
    from loftr_ros.runtime.tensorrt.platform import import_pycuda_driver, import_tensorrt

    try:
        trt = import_tensorrt()
        import_pycuda_driver()
    except LoftrRuntimeError as exc:
        print(f"bench_tensorrt: {exc}", file=sys.stderr)
        return 2
    print(f"TensorRT {trt.__version__}", flush=True)
    pair = photo_pair()
    rows: List[Row] = []
    with tempfile.TemporaryDirectory() as folder:
        args.cache_dir = args.cache_dir or os.path.join(folder, "engines")
        models = [(name, None) for name in args.presets.split(",") if name] + \
            [(os.path.basename(path), path) for path in args.onnx]
        for label, path in models:
            try:
                onnx_path = path or export_preset(label, folder)
            except Exception as exc:  # report and go on with the other models
                print(f"{label}: cannot export ({exc})", flush=True)
                continue
            for precision in args.precisions.split(","):
                print(f"{label} {precision}:", flush=True)
                try:
                    row = bench(onnx_path, label, precision, pair, args)
                except LoftrRuntimeError as exc:
                    print(f"  failed: {exc}", flush=True)
                    continue
                rows.append(row)
                print(f"  TensorRT {row.trt_median_ms:.2f} ms median ({row.trt_p90_ms:.2f} p90), "
                      f"onnxruntime {row.ort_median_ms:.1f} ms, max abs diff "
                      f"{row.max_abs_diff:.1e}", flush=True)
    print()
    print(markdown(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump([asdict(row) for row in rows], handle, indent=2)
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
