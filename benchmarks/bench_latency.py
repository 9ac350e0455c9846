"""CPU latency of every preset at 640x480 under torch and onnxruntime, beside the seed's own ONNX,
SIFT and ORB, in one run::

    python benchmarks/bench_latency.py                      # all presets, 2 threads
    python benchmarks/bench_latency.py --presets seed,lite --repeats 30 --json bench.json

Each row times ``Matcher.match`` on one real photo pair (pre-processing, inference, matching and
sub-cell refinement): median and 90th percentile over ``--repeats`` runs after ``--warmup`` runs,
plus the median of the inference alone. Heavy rows stop after ``--max-seconds`` (at least 3 runs).
Weights: the seed's real checkpoint for ``seed``, the bundled default weights where they exist,
random initialisation otherwise — inference time does not depend on the weight values (matching
time grows a little with the number of matches, which untrained weights do not produce). ONNX
files are exported into a temporary folder with :func:`loftr_ros.deploy.onnx_export.export_onnx`.

Refinement: each Matcher's default (``auto``: the photometric step) except for the seed, which
gets ``expectation`` as in ``loftr-eval``.

The node's per-frame geometry (parameter ``estimate``): MAGSAC++ homography and essential
matrix on the default model's matches of the pair, timed beside ``Matcher.match`` of the same
pair (``--estimate-only`` runs just this table).

Last, a head to head of the ONNX model the onnxruntime backend loads by default on the CPU
(``default_cpu_onnx``), the other bundled encoder (INT8 or float, whichever is not the default)
and the seed's own ONNX in alternating blocks (``--rounds``): the fair answer to "is it as fast
as the seed" on a machine whose speed drifts.

``--fixed-reference`` times what the ROS node does per frame instead: frames matched against one
reference encoded once (``Matcher.encode``), beside the seed's own ONNX on whole pairs, in
alternating rounds, with the per-stage breakdown of both and the rest of the node's per-frame
path (image message -> array, matches message, debug picture) timed on the same frames::

    LOFTR_SHARED_DIR=../shared python benchmarks/bench_latency.py --fixed-reference --threads 2
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

# Run as a script from a checkout: make the repository's package importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loftr_ros.evaluation.runner import SEED_REFINEMENT  # noqa: E402 (after the path insert)

WIDTH, HEIGHT = 640, 480


@dataclass
class Row:
    """One timed configuration."""

    method: str
    backend: str
    weights: str
    median_ms: float
    p90_ms: float
    inference_ms: float
    runs: int
    matches: float


def photo_pair(seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """A 640x480 gray pair of a real photo under a random homography (random texture if
    scikit-image is absent)."""
    from loftr_ros.synthetic.homography import make_pair

    try:
        from skimage import data
        source = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    except ImportError:
        noise = np.random.default_rng(seed).random((60, 80)).astype(np.float32)
        source = (cv2.resize(noise, (800, 600), interpolation=cv2.INTER_CUBIC) * 255).clip(
            0, 255).astype(np.uint8)
    image0, image1, _ = make_pair(np.random.default_rng(seed), source, WIDTH, HEIGHT)
    return image0, image1


def time_calls(call: Callable[[], object], repeats: int, warmup: int, max_seconds: float
               ) -> Tuple[List[float], List[object]]:
    """Wall times (ms) of ``call()`` and its results, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        call()
    times, results = [], []
    started = time.perf_counter()
    for index in range(repeats):
        start = time.perf_counter()
        results.append(call())
        times.append(1e3 * (time.perf_counter() - start))
        if index >= 2 and time.perf_counter() - started > max_seconds:
            break
    return times, results


def _row(method: str, backend: str, weights: str, times: List[float], results: List[object]
         ) -> Row:
    inference = [r.timings.get("inference", float("nan")) for r in results]  # type: ignore
    return Row(method, backend, weights, float(np.median(times)), float(np.percentile(times, 90)),
               float(np.median(inference)), len(times),
               float(np.mean([len(r) for r in results])))  # type: ignore[arg-type]


def _shared_seed_file(name: str) -> Optional[str]:
    shared = os.environ.get("LOFTR_SHARED_DIR") or str(Path(__file__).resolve().parents[2] /
                                                       "shared")
    path = os.path.join(shared, "seed_weights", name)
    return path if os.path.isfile(path) else None


def _model_for(preset: str):
    """(model, weights label) at 640x480: real weights where we have them, else random init."""
    from loftr_ros.model.checkpoint import load_model
    from loftr_ros.model.network import build_model
    from loftr_ros.model.presets import DEFAULT_PRESET, get_preset
    from loftr_ros.runtime import default_weights

    if preset == "seed" and _shared_seed_file("LoFTR_teacher.pt"):
        model, _ = load_model(_shared_seed_file("LoFTR_teacher.pt"), preset="seed",
                              input_size=(WIDTH, HEIGHT))
        return model.eval(), "LoFTR_teacher.pt"
    if preset == DEFAULT_PRESET and os.path.isfile(default_weights("pt")):
        model, _ = load_model(default_weights("pt"), input_size=(WIDTH, HEIGHT))
        return model.eval(), "bundled"
    config = get_preset(preset).with_input_size(WIDTH, HEIGHT)
    return build_model(config).eval(), "random init"


def bench_presets(presets: Sequence[str], pair: Tuple[np.ndarray, np.ndarray], threads: int,
                  repeats: int, warmup: int, max_seconds: float, folder: str,
                  log: Callable[[str], None]) -> List[Row]:
    """torch and onnxruntime rows for each preset, through ``Matcher.match``."""
    import torch

    from loftr_ros.deploy.onnx_export import export_onnx
    from loftr_ros.matching.matcher import Matcher
    from loftr_ros.runtime.onnx_runtime import OnnxRuntime
    from loftr_ros.runtime.torch_runtime import TorchRuntime

    torch.manual_seed(0)
    rows = []
    for preset in presets:
        model, label = _model_for(preset)
        refinement = SEED_REFINEMENT if preset == "seed" else "auto"
        matcher = Matcher(TorchRuntime(model, device="cpu", threads=threads),
                          refinement=refinement)
        log(f"{preset}: torch")
        times, results = time_calls(lambda: matcher.match(*pair), repeats, warmup, max_seconds)
        rows.append(_row(preset, "torch", label, times, results))
        onnx_path = os.path.join(folder, f"{preset}.onnx")
        log(f"{preset}: export ONNX")
        export_onnx(model, onnx_path)
        matcher = Matcher(OnnxRuntime(onnx_path, threads=threads), refinement=refinement)
        log(f"{preset}: onnxruntime")
        times, results = time_calls(lambda: matcher.match(*pair), repeats, warmup, max_seconds)
        rows.append(_row(preset, "onnxruntime", label, times, results))
        matcher.close()
    return rows


def bench_seed_onnx(pair, threads: int, repeats: int, warmup: int, max_seconds: float
                    ) -> Optional[Row]:
    """The Coarse LoFTR TRT seed's own ONNX file under onnxruntime (None if not found)."""
    from loftr_ros.matching.matcher import Matcher

    path = _shared_seed_file("LoFTR_teacher.onnx")
    if path is None:
        return None
    matcher = Matcher.create(backend="onnxruntime", weights=path, preset="seed", threads=threads,
                             refinement=SEED_REFINEMENT)
    times, results = time_calls(lambda: matcher.match(*pair), repeats, warmup, max_seconds)
    return _row("seed (its own ONNX)", "onnxruntime", "LoFTR_teacher.onnx", times, results)


@dataclass
class DuelResult:
    """One contender of the head to head: per call and per block, in ms."""

    model: str
    inference_ms: List[float]
    match_ms: List[float]
    inference_block_medians_ms: List[float]
    match_block_medians_ms: List[float]


def head_to_head(pair, threads: int, rounds: int, repeats: int, warmup: int
                 ) -> Optional[List[DuelResult]]:
    """The default CPU graph (``default_cpu_onnx``), the other bundled encoder (the INT8 one when
    the default is float, else the float one) and the seed's own ONNX, in alternating blocks,
    each with its default refinement (the seed: ``expectation``).

    This machine's speed drifts by tens of percent within a minute (shared host), so two rows
    timed one after the other can disagree by more than the models differ. Here each round times
    ``repeats`` calls of one model, then of the other (one onnxruntime session alive at a time,
    so no idle spinning threads compete), ``rounds`` times. Both the inference alone and the
    whole ``match`` (pre-processing, inference, matching, refinement) are recorded. Returns None
    when the seed ONNX is not found.
    """
    from loftr_ros.matching.matcher import Matcher
    from loftr_ros.runtime import default_cpu_onnx, default_weights, int8_onnx

    seed_path = _shared_seed_file("LoFTR_teacher.onnx")
    if seed_path is None:
        return None
    default = default_cpu_onnx()
    contenders = [(f"default model ({os.path.basename(default)})", default, None),
                  ("seed (its own ONNX)", seed_path, "seed")]
    other = default_weights("onnx") if default != default_weights("onnx") else int8_onnx()
    if other is not None:
        kind = "INT8 encoder" if other == int8_onnx() else "float graph"
        contenders.insert(1, (f"{kind} ({os.path.basename(other)})", other, None))
    results = {name: DuelResult(name, [], [], [], []) for name, _, _ in contenders}
    for _ in range(rounds):
        for name, path, preset in contenders:
            matcher = Matcher.create(backend="onnxruntime", weights=path, preset=preset,
                                     threads=threads,
                                     refinement=SEED_REFINEMENT if preset == "seed" else "auto")
            _, calls = time_calls(lambda: matcher.match(*pair), repeats, warmup, 1e9)
            inference = [r.timings["inference"] for r in calls]  # type: ignore[attr-defined]
            whole = [r.timings["total"] for r in calls]  # type: ignore[attr-defined]
            result = results[name]
            result.inference_ms += inference
            result.match_ms += whole
            result.inference_block_medians_ms.append(float(np.median(inference)))
            result.match_block_medians_ms.append(float(np.median(whole)))
            matcher.close()
    return [results[name] for name, _, _ in contenders]


def head_to_head_markdown(results: Sequence[DuelResult]) -> str:
    lines = ["| model | inference median ms | p90 ms | whole match median ms | p90 ms | "
             "match block medians ms |", "|---|---:|---:|---:|---:|---|"]
    for r in results:
        lines.append(f"| {r.model} | {np.median(r.inference_ms):.1f} | "
                     f"{np.percentile(r.inference_ms, 90):.1f} | {np.median(r.match_ms):.1f} | "
                     f"{np.percentile(r.match_ms, 90):.1f} | "
                     f"{' '.join(f'{m:.0f}' for m in r.match_block_medians_ms)} |")
    seed = results[-1]
    for r in results[:-1]:
        for what, ours, theirs in (
                ("inference", r.inference_block_medians_ms, seed.inference_block_medians_ms),
                ("whole match", r.match_block_medians_ms, seed.match_block_medians_ms)):
            ratios = np.array(ours) / np.array(theirs)
            lines.append(f"\nPer-round ratio {r.model} / seed, {what}: median "
                         f"{np.median(ratios):.2f} (min {ratios.min():.2f}, max {ratios.max():.2f})"
                         f" over {len(ratios)} rounds.")
    return "\n".join(lines)


#: per-stage keys of Matches.timings, in the order of the per-frame path
STAGES = ("preprocess", "encode", "match_stage", "mutual_nearest", "refinement", "total")


def reference_frames(count: int) -> Tuple[np.ndarray, List[np.ndarray]]:
    """A 640x480 reference and ``count`` frames of the same photo under other homographies."""
    reference, first = photo_pair(0)
    frames = [first] + [photo_pair(seed)[1] for seed in range(1, count)]
    return reference, frames


def fixed_reference(threads: int, rounds: int, repeats: int, warmup: int, frames: int
                    ) -> Optional[dict]:
    """Per-frame time against one encoded reference (the default CPU model, its default
    refinement) and the seed's own ONNX on whole pairs (``expectation``), in ``rounds``
    alternating blocks of ``repeats`` frames. The seed runs twice: as the onnxruntime backend
    runs a single graph (idle threads spinning) and with the idle threads stopped, as the
    backend runs a two-stage model. None when the seed ONNX is not found."""
    from loftr_ros.matching.matcher import Matcher
    from loftr_ros.runtime import default_cpu_onnx
    from loftr_ros.runtime.onnx_runtime import OnnxRuntime

    seed_path = _shared_seed_file("LoFTR_teacher.onnx")
    if seed_path is None:
        return None
    reference, sequence = reference_frames(frames)
    ours_name = f"default model ({os.path.basename(default_cpu_onnx())}), cached reference"
    seed_name = "seed (its own ONNX), whole pairs"
    still_name = "seed (its own ONNX), whole pairs, idle threads not spinning"
    names = (ours_name, seed_name, still_name)
    totals: dict = {name: [] for name in names}
    stages: dict = {name: {} for name in names}
    block_medians: dict = {name: [] for name in names}
    matches: dict = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            if name == ours_name:
                matcher = Matcher.create(backend="onnxruntime", threads=threads)
                encoded = matcher.encode(reference)
                def call(frame, m=matcher, ref=encoded):  # noqa: E306
                    return m.match(ref, frame)
            else:
                matcher = Matcher(OnnxRuntime(seed_path, preset="seed", threads=threads,
                                              idle_spinning=None if name == seed_name else
                                              False), refinement=SEED_REFINEMENT)
                def call(frame, m=matcher):  # noqa: E306
                    return m.match(reference, frame)
            cycle = iter(range(10 ** 9))
            _, results = time_calls(lambda: call(sequence[next(cycle) % len(sequence)]),
                                    repeats, warmup, 1e9)
            block = [r.timings["total"] for r in results]  # type: ignore[attr-defined]
            totals[name] += block
            block_medians[name].append(float(np.median(block)))
            matches[name] += [len(r) for r in results]  # type: ignore[arg-type]
            for result in results:
                for key, value in result.timings.items():  # type: ignore[attr-defined]
                    stages[name].setdefault(key, []).append(value)
            matcher.close()
    ratios = {name: (np.array(block_medians[ours_name]) / np.array(block_medians[name])).tolist()
              for name in (seed_name, still_name)}
    return {"names": names, "totals": totals, "stages": stages,
            "block_medians": block_medians, "ratios": ratios, "matches": matches}


def node_path_extras(threads: int, repeats: int) -> Optional[Dict[str, float]]:
    """Median ms of the node's per-frame work outside ``Matcher.match`` on 640x480 bgr8 frames:
    sensor_msgs/Image -> array, the ~/matches message, and the debug picture (drawn and
    converted). None without the ROS message packages."""
    try:
        from std_msgs.msg import Header

        from loftr_ros.matching.drawing import draw_matches
        from loftr_ros.ros.image_conversion import array_to_image_msg, image_msg_to_array
        from loftr_ros.ros.matches_msg import matches_to_msg
    except ImportError:
        return None
    from loftr_ros.matching.matcher import Matcher

    reference, sequence = reference_frames(2)
    bgr = cv2.cvtColor(sequence[0], cv2.COLOR_GRAY2BGR)
    message = array_to_image_msg(bgr, "bgr8", header=Header())
    matcher = Matcher.create(backend="onnxruntime", threads=threads)
    result = matcher.match(matcher.encode(reference), bgr)
    matcher.close()
    steps = {
        "image message -> array": lambda: image_msg_to_array(message),
        "matches message": lambda: matches_to_msg(result.keypoints0, result.keypoints1,
                                                  result.scores, message.header, (0, 0)),
        "debug picture (draw + message)": lambda: array_to_image_msg(
            draw_matches(reference, bgr, result.keypoints0, result.keypoints1, result.scores,
                         text_lines=["matches"], max_lines=150, max_side=1280), "bgr8",
            header=message.header),
    }
    return {name: float(np.median(time_calls(step, repeats, 2, 1e9)[0]))
            for name, step in steps.items()}


def fixed_reference_markdown(result: dict, extras: Optional[Dict[str, float]]) -> str:
    lines = ["| per frame | median ms | p90 ms | matches | " +
             " | ".join(f"{stage} ms" for stage in STAGES[:-1]) + " | inference ms |",
             "|---|---:|---:|---:|" + "---:|" * len(STAGES)]
    for name in result["names"]:
        total = np.array(result["totals"][name])
        stages = result["stages"][name]
        cells = [f"{np.median(stages[key]):.1f}" if key in stages else "-"
                 for key in STAGES[:-1]]
        lines.append(f"| {name} | {np.median(total):.1f} | {np.percentile(total, 90):.1f} | "
                     f"{np.mean(result['matches'][name]):.0f} | " + " | ".join(cells) +
                     f" | {np.median(stages['inference']):.1f} |")
    lines.append("")
    for name, values in result["ratios"].items():
        ratios = np.array(values)
        lines.append(f"Per-round ratio cached reference / {name}: median "
                     f"{np.median(ratios):.2f} (min {ratios.min():.2f}, max {ratios.max():.2f}) "
                     f"over {len(ratios)} rounds.")
    lines.append("Block medians ms: " + "; ".join(
        f"{name}: {' '.join(f'{m:.0f}' for m in result['block_medians'][name])}"
        for name in result["names"]) + ".")
    lines.append("(For the seed, 'encode' only stores the prepared input: its single graph runs "
                 "whole in 'match_stage'.)")
    if extras:
        lines.append("\nRest of the node's per-frame path (median ms): " + ", ".join(
            f"{name} {value:.2f}" for name, value in extras.items()) + ".")
    return "\n".join(lines)


def bench_baselines(pair, repeats: int, warmup: int, max_seconds: float) -> List[Row]:
    """OpenCV SIFT and ORB as in ``loftr-eval``."""
    from loftr_ros.evaluation import baselines

    rows = []
    for name, make in baselines.BASELINES.items():
        method = make()
        times, results = time_calls(lambda: method.match(*pair), repeats, warmup, max_seconds)
        rows.append(_row(name, "opencv", "-", times, results))
    return rows


@dataclass
class EstimateRow:
    """Per-frame cost of one stage of the node's worker on the same matches."""

    stage: str
    median_ms: float
    p90_ms: float
    matches: int
    inliers: int


def bench_estimate(pair, threads: int, repeats: int, warmup: int) -> List[EstimateRow]:
    """``estimate: homography`` and ``estimate: essential`` on the default model's matches of
    ``pair``, beside the ``Matcher.match`` call that produced them (onnxruntime)."""
    from loftr_ros.matching.matcher import Matcher
    from loftr_ros.ros.geometry_outputs import CameraModel, estimate_frame_geometry

    matcher = Matcher.create(backend="onnxruntime", threads=threads)
    times, results = time_calls(lambda: matcher.match(*pair), repeats, warmup, 60.0)
    result = results[-1]
    rows = [EstimateRow("Matcher.match (the peer: model + matching + refinement)",
                        float(np.median(times)), float(np.percentile(times, 90)),
                        len(result.scores), len(result.scores))]
    focal = WIDTH / (2 * np.tan(np.radians(30.0)))  # a 60-degree horizontal field of view
    camera = CameraModel(np.array([[focal, 0, (WIDTH - 1) / 2], [0, focal, (HEIGHT - 1) / 2],
                                   [0, 0, 1]]), np.zeros(0), (WIDTH, HEIGHT))
    for mode, threshold in (("homography", 3.0), ("essential", 1.0)):
        def estimate(mode=mode, threshold=threshold):
            return estimate_frame_geometry(mode, result.keypoints0, result.keypoints1, threshold,
                                           15, camera, camera, (WIDTH, HEIGHT))

        times, outputs = time_calls(estimate, max(repeats, 50), warmup, 30.0)
        rows.append(EstimateRow(f"estimate: {mode} (MAGSAC++)", float(np.median(times)),
                                float(np.percentile(times, 90)), len(result.scores),
                                int(outputs[-1].inliers.sum())))
    return rows


def estimate_markdown(rows: Sequence[EstimateRow]) -> str:
    lines = ["| stage | median ms | p90 ms | matches | inliers |", "|---|---|---|---|---|"]
    lines += [f"| {r.stage} | {r.median_ms:.2f} | {r.p90_ms:.2f} | {r.matches} | {r.inliers} |"
              for r in rows]
    return "\n".join(lines)


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def markdown(rows: Sequence[Row]) -> str:
    lines = ["| method | backend | weights | median ms | p90 ms | inference ms | matches | runs |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        inference = "-" if np.isnan(r.inference_ms) else f"{r.inference_ms:.1f}"
        lines.append(f"| {r.method} | {r.backend} | {r.weights} | {r.median_ms:.1f} | "
                     f"{r.p90_ms:.1f} | {inference} | {r.matches:.0f} | {r.runs} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from loftr_ros.model.presets import preset_names

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default=",".join(preset_names()),
                        help=f"comma-separated (default all: {','.join(preset_names())})")
    parser.add_argument("--threads", type=int, default=2,
                        help="onnxruntime intra-op / torch / OpenCV threads (2)")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per row (20)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs per row (2)")
    parser.add_argument("--max-seconds", type=float, default=30.0,
                        help="stop a row's timed runs after this long, at least 3 runs (30)")
    parser.add_argument("--rounds", type=int, default=6,
                        help="alternating rounds of the default-vs-seed head to head (6; 0 = "
                             "skip it)")
    parser.add_argument("--estimate-only", action="store_true",
                        help="only the per-frame cost of the node's estimate (homography, "
                             "essential) beside Matcher.match")
    parser.add_argument("--fixed-reference", action="store_true",
                        help="only the per-frame time against one encoded reference vs the seed's "
                             "own ONNX on whole pairs, in --rounds alternating rounds")
    parser.add_argument("--frames", type=int, default=4,
                        help="--fixed-reference: distinct frames cycled through (4)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    if args.fixed_reference:
        return main_fixed_reference(args)
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    unknown = sorted(set(presets) - set(preset_names()))
    if unknown:
        parser.error(f"unknown preset(s) {unknown}; known: {preset_names()}")

    def log(message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    cv2.setNumThreads(args.threads)
    pair = photo_pair()
    if args.estimate_only:
        estimate_rows = bench_estimate(pair, args.threads, args.repeats, args.warmup)
        print(f"\nPer-frame geometry on one 640x480 pair, {args.threads} threads "
              f"({os.cpu_count()} cores, {cpu_name()}):\n")
        print(estimate_markdown(estimate_rows))
        if args.json:
            args.json.write_text(json.dumps(
                {"estimate": [asdict(r) for r in estimate_rows]}, indent=1) + "\n")
        return 0
    load_before = os.getloadavg()
    rows: List[Row] = []
    with tempfile.TemporaryDirectory(prefix="loftr_bench_") as folder:
        rows += bench_presets(presets, pair, args.threads, args.repeats, args.warmup,
                              args.max_seconds, folder, log)
    log("seed's own ONNX")
    seed_row = bench_seed_onnx(pair, args.threads, args.repeats, args.warmup, args.max_seconds)
    if seed_row is not None:
        rows.append(seed_row)
    else:
        log("seed ONNX not found (set LOFTR_SHARED_DIR): row skipped")
    log("OpenCV baselines")
    rows += bench_baselines(pair, args.repeats, args.warmup, args.max_seconds)
    duel = None
    if args.rounds > 0:
        log(f"default model vs seed ONNX, {args.rounds} alternating rounds")
        duel = head_to_head(pair, args.threads, args.rounds, args.repeats, args.warmup)
    load_after = os.getloadavg()

    cpu = cpu_name()
    print(f"\nLatency per 640x480 pair on CPU, {args.threads} threads "
          f"({os.cpu_count()} cores, {cpu}); load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after (compare rows of one run only; other processes skew it).")
    print("Rows with 'random init' weights time the architecture only: inference time does not "
          "depend on the weight values (the matching step does, a little: it grows with the "
          "number of matches).\n")
    print(markdown(rows))
    log("per-frame geometry (estimate)")
    estimate_rows = bench_estimate(pair, args.threads, args.repeats, args.warmup)
    print("\nPer-frame geometry of the node (parameter estimate) on the default model's matches "
          "of the same pair:\n")
    print(estimate_markdown(estimate_rows))
    if duel is not None:
        print(f"\nHead to head, {args.rounds} alternating rounds of "
              f"{args.repeats} calls each (see head_to_head):\n")
        print(head_to_head_markdown(duel))
    if args.json:
        args.json.write_text(json.dumps({
            "threads": args.threads, "size": [WIDTH, HEIGHT], "cpu_count": os.cpu_count(),
            "load_average": [load_before[0], load_after[0]],
            "rows": [asdict(r) for r in rows],
            "estimate": [asdict(r) for r in estimate_rows],
            "head_to_head": [asdict(r) for r in (duel or [])]}, indent=1) + "\n")
    return 0


def main_fixed_reference(args: argparse.Namespace) -> int:
    """``--fixed-reference``: see the module doc."""
    cv2.setNumThreads(args.threads)
    rounds = max(1, args.rounds)
    load_before = os.getloadavg()
    result = fixed_reference(args.threads, rounds, args.repeats, args.warmup, args.frames)
    if result is None:
        print("seed ONNX not found (set LOFTR_SHARED_DIR to the shared folder)", file=sys.stderr)
        return 1
    extras = node_path_extras(args.threads, args.repeats)
    load_after = os.getloadavg()
    print(f"\nPer-frame latency at 640x480 on CPU, {args.threads} threads ({os.cpu_count()} cores, "
          f"{cpu_name()}); {rounds} alternating rounds of {args.repeats} frames; load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after.\n")
    print(fixed_reference_markdown(result, extras))
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "fixed_reference": result,
                                         "node_path_extras": extras}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
