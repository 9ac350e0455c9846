"""Run several matching methods on the same image pairs and tabulate their accuracy.

A pair with a homography (:class:`loftr_ros.evaluation.datasets.HomographyPair`) is scored by
:mod:`loftr_ros.evaluation.metrics` (corner error), a pair with known cameras
(:class:`loftr_ros.evaluation.pose_datasets.PosePair`) by :mod:`loftr_ros.evaluation.pose_metrics`
(relative pose error, epipolar precision); a data set holds one kind.

A *method* is anything with ``match(image0, image1)`` returning an object with ``keypoints0`` and
``keypoints1`` (float32 ``[N,2]`` pixels of the images passed in): a
:class:`loftr_ros.Matcher`, or a baseline from :mod:`loftr_ros.evaluation.baselines`.
:func:`build_method` makes them from names:

======================  ===========================================================================
``model``               a LoFTR Matcher with the given backend/weights (weights None = the bundled
                        default model) and refinement (default ``auto``)
``seed``                the Coarse LoFTR TRT seed's own ONNX file under onnxruntime
``seed-torch``          the seed's ``LoFTR_teacher.pt`` under torch, ``seed`` preset
``sift``, ``orb``       the OpenCV baselines
======================  ===========================================================================

The seed methods refine by ``SEED_REFINEMENT`` (the seed project itself leaves matches on its
16-pixel grid; ``expectation`` is the cheap sub-cell step every model gets here), not by the
photometric step of ``auto``. The seed files are looked up in
``$LOFTR_SHARED_DIR/seed_weights`` (default: the ``shared`` folder beside the repository).
Latency is the wall time of one ``match`` call (pre-processing, inference, matching; for
baselines detection, description and matching) after one warm-up call; the table shows its
median, and for the learned matchers the median of the network's share (``Matches.timings``).
Each timed call starts after a short pause (``SETTLE_S``) so that it does not share the CPU with
the previous method's onnxruntime threads, which spin on for a while after a run.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np

from loftr_ros.evaluation import baselines, metrics, pose_metrics
from loftr_ros.evaluation.datasets import HomographyPair
from loftr_ros.evaluation.pose_datasets import PosePair

#: ``model-cached``: the ``model`` matcher through the path the ROS node takes: image 0 encoded
#: first (``Matcher.encode``), then matched with image 1 (same matches as ``model`` by design)
METHOD_NAMES = ("model", "model-cached", "seed", "seed-torch", "sift", "orb")
DEFAULT_METHODS = ("model", "seed", "sift", "orb")
SEED_ONNX = "LoFTR_teacher.onnx"
SEED_TORCH = "LoFTR_teacher.pt"
SEED_REFINEMENT = "expectation"
_REPO = Path(__file__).resolve().parents[2]


class MethodUnavailable(RuntimeError):
    """A method cannot be built here (weights missing, backend not installed...)."""


@dataclass
class Method:
    """A named matcher: ``match(image0, image1)`` -> object with keypoints0/keypoints1."""

    name: str
    match: Callable[[np.ndarray, np.ndarray], Any]
    description: str = ""


@dataclass
class MethodReport:
    """Per-pair results and their summary for one method on one data set."""

    name: str
    description: str
    pairs: List[Dict[str, Any]] = field(default_factory=list)
    summary: Dict[str, float] = field(default_factory=dict)


def shared_dir() -> Path:
    """``$LOFTR_SHARED_DIR``, else the ``shared`` folder beside the repository."""
    return Path(os.environ.get("LOFTR_SHARED_DIR") or _REPO.parent / "shared")


def seed_weights_file(file_name: str) -> Path:
    """Path of a seed weights file; MethodUnavailable if it is not there."""
    path = shared_dir() / "seed_weights" / file_name
    if not path.is_file():
        raise MethodUnavailable(f"seed weights {path} not found (set LOFTR_SHARED_DIR to the "
                                "folder holding seed_weights/)")
    return path


def _create_matcher(threads: Optional[int], **kwargs: Any):
    """``Matcher.create(**kwargs, threads=threads)``; MethodUnavailable with the reason."""
    try:
        from loftr_ros.matching.matcher import Matcher
    except ImportError as error:
        raise MethodUnavailable(f"loftr_ros.matching.matcher cannot be imported: {error}"
                                ) from error
    try:
        return Matcher.create(threads=threads or None, **kwargs)
    except Exception as error:  # the factory's own errors are clear; keep them as the reason
        raise MethodUnavailable(f"{type(error).__name__}: {error}") from error


def build_method(name: str, backend: str = "onnxruntime", weights: Optional[str] = None,
                 preset: Optional[str] = None, threads: Optional[int] = 2,
                 refinement: str = "auto", verify_alignment: bool = False) -> Method:
    """Make the method called ``name`` (one of :data:`METHOD_NAMES`).

    ``backend``/``weights``/``preset``/``refinement``/``verify_alignment`` configure ``model``
    and ``model-cached`` only; ``threads`` is the CPU thread count given to the learned matchers
    (onnxruntime intra-op / torch threads). Raises MethodUnavailable with the reason when the
    method cannot run here.
    """
    if name in baselines.BASELINES:
        baseline = baselines.BASELINES[name]()
        return Method(name, baseline.match, f"OpenCV {name.upper()}, ratio {baselines.RATIO}, "
                                            "mutual NN")
    if name in ("model", "model-cached"):
        matcher = _create_matcher(threads, backend=backend, weights=weights, preset=preset,
                                  refinement=refinement, verify_alignment=verify_alignment)
        label = f"{backend}, {weights or 'bundled default'}, refinement {refinement}" + (
            ", verify_alignment" if verify_alignment else "")
        if name == "model":
            return Method(name, matcher.match, label)
        return Method(name, lambda image0, image1: matcher.match(matcher.encode(image0), image1),
                      f"{label}, image 0 encoded first")
    if name == "seed":
        path = seed_weights_file(SEED_ONNX)
        matcher = _create_matcher(threads, backend="onnxruntime", weights=str(path),
                                  preset="seed", refinement=SEED_REFINEMENT)
        return Method(name, matcher.match, f"onnxruntime, {path.name} (the seed's own ONNX), "
                                           f"refinement {SEED_REFINEMENT}")
    if name == "seed-torch":
        path = seed_weights_file(SEED_TORCH)
        matcher = _create_matcher(threads, backend="torch", weights=str(path), preset="seed",
                                  refinement=SEED_REFINEMENT)
        return Method(name, matcher.match, f"torch, {path.name}, refinement {SEED_REFINEMENT}")
    raise ValueError(f"unknown method {name!r}; known: {', '.join(METHOD_NAMES)}")


#: seconds of pause before each timed call. Back to back on 2 cores, the default model and the
#: seed's ONNX slowed each other's inference from 34 and 41 ms (50 ms apart) to 81 and 76 ms.
SETTLE_S = 0.05


def score_pair(pair: Union[HomographyPair, PosePair], keypoints0: np.ndarray,
               keypoints1: np.ndarray, latency_ms: float, estimators: Sequence[str],
               inference_ms: float = float("nan")
               ) -> Union[metrics.PairResult, pose_metrics.PosePairResult]:
    """Score one method's matches on one pair by the protocol of the pair's kind."""
    if isinstance(pair, PosePair):
        return pose_metrics.evaluate_pose_pair(
            keypoints0, keypoints1, pair.intrinsics0, pair.intrinsics1, pair.rotation,
            pair.translation, latency_ms, estimators, inference_ms)
    height, width = pair.image0.shape[:2]
    return metrics.evaluate_pair(keypoints0, keypoints1, pair.H_0to1, width, height, latency_ms,
                                 estimators, inference_ms)


def summarize(results: Sequence[Any]) -> Dict[str, float]:
    """The summary of one method's pair results (homography or pose, by their type)."""
    if results and isinstance(results[0], pose_metrics.PosePairResult):
        return pose_metrics.summarize_poses(results)
    return metrics.summarize(results)


def evaluate(methods: Sequence[Method], pairs: Iterable[Union[HomographyPair, PosePair]],
             max_pairs: Optional[int] = None, progress: Optional[Callable] = None,
             warmup: bool = True,
             estimators: Sequence[str] = (metrics.DEFAULT_ESTIMATOR,),
             settle_s: float = SETTLE_S) -> List[MethodReport]:
    """Run every method on every pair (each pair is generated once); returns one report each.

    ``settle_s``: pause before each timed call (see ``SETTLE_S``).

    ``estimators``: robust estimators (homography or essential matrix, by the pair's kind) to
    score each method's matches with; the first is the primary one (see
    :func:`loftr_ros.evaluation.metrics.evaluate_pair`,
    :func:`loftr_ros.evaluation.pose_metrics.evaluate_pose_pair`).

    ``progress`` wraps the pair iterator (e.g. ``functools.partial(tqdm, total=n)``).
    """
    reports = [MethodReport(m.name, m.description) for m in methods]
    results: List[List[Any]] = [[] for _ in methods]
    iterator = iter(pairs)
    if progress is not None:
        iterator = progress(iterator)
    for index, pair in enumerate(iterator):
        if max_pairs is not None and index >= max_pairs:
            break
        for method, report, method_results in zip(methods, reports, results):
            if warmup and index == 0:
                method.match(pair.image0, pair.image1)
            time.sleep(settle_s)
            start = time.perf_counter()
            matches = method.match(pair.image0, pair.image1)
            latency_ms = 1e3 * (time.perf_counter() - start)
            inference_ms = getattr(matches, "timings", {}).get("inference", float("nan"))
            result = score_pair(pair, matches.keypoints0, matches.keypoints1, latency_ms,
                                estimators, inference_ms)
            method_results.append(result)
            report.pairs.append({"pair": pair.name, **asdict(result)})
    for report, method_results in zip(reports, results):
        report.summary = summarize(method_results)
    return reports


def is_pose_report(report: MethodReport) -> bool:
    """Whether a report holds pose results (else homography results)."""
    return "pose auc@5" in report.summary


def markdown_table(reports: Sequence[MethodReport]) -> str:
    """The results as a markdown table (AUC and precision in percent).

    The AUC columns are the primary estimator's (RANSAC unless chosen otherwise); further
    estimators in the summaries get their own AUC columns, labelled with their name. Pose reports
    get :func:`pose_markdown_table`.
    """
    if reports and is_pose_report(reports[0]):
        return pose_markdown_table(reports)
    return _auc_table(reports, "auc", ("3", "5", "10"), unit="px", other_unit="",
                      precision_key="precision@3px", precision_header="precision@3px")


def pose_markdown_table(reports: Sequence[MethodReport]) -> str:
    """Pose results as a markdown table: pose AUC@5/10/20 degrees per estimator, mean matches,
    epipolar precision (percent), failures and latency."""
    return _auc_table(reports, "pose auc", ("5", "10", "20"), unit="°", other_unit="°",
                      precision_key="epipolar_precision", precision_header="epipolar precision")


def _auc_table(reports: Sequence[MethodReport], auc_key: str, thresholds: Sequence[str],
               unit: str, other_unit: str, precision_key: str, precision_header: str) -> str:
    """A markdown table of summaries: ``{auc_key}@t`` per threshold (headed ``AUC@t{unit}``),
    the same for every further estimator in the first summary (``<label> AUC@t{other_unit}``),
    then mean matches, ``precision_key``, failures and latency."""
    others = [name for name in metrics.ESTIMATORS
              if reports and f"{name} {auc_key}@{thresholds[0]}" in reports[0].summary]
    header = "| method |" + "".join(f" AUC@{t}{unit} |" for t in thresholds)
    align = "|---|" + "---:|" * len(thresholds)
    for name in others:
        label = metrics.ESTIMATOR_LABELS.get(name, name)
        header += "".join(f" {label} AUC@{t}{other_unit} |" for t in thresholds)
        align += "---:|" * len(thresholds)
    lines = [header + f" matches | {precision_header} | failures | median ms | inference ms |",
             align + "---:|---:|---:|---:|---:|"]
    for report in reports:
        s = report.summary
        row = f"| {report.name} |" + "".join(f" {s[f'{auc_key}@{t}']:.1f} |" for t in thresholds)
        for name in others:
            row += "".join(f" {s[f'{name} {auc_key}@{t}']:.1f} |" for t in thresholds)
        lines.append(
            row + f" {s['mean_matches']:.0f} | {s[precision_key]:.1f} | "
            f"{s['failures']}/{s['pairs']} | {s['median_latency_ms']:.1f} | "
            f"{_milliseconds(s.get('median_inference_ms', float('nan')))} |")
    return "\n".join(lines)


def _milliseconds(value: float) -> str:
    return f"{value:.1f}" if np.isfinite(value) else "–"


def _finite(value: Any) -> Any:
    """JSON has no inf/nan: write them as strings."""
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def write_json(path: Path, results: Dict[str, Sequence[MethodReport]],
               settings: Dict[str, Any]) -> None:
    """Write ``{"settings": ..., "datasets": {name: {method: {summary, description, pairs}}}}``."""
    data = {"settings": settings, "datasets": {
        dataset: {r.name: {"description": r.description, "summary": r.summary, "pairs": r.pairs}
                  for r in reports} for dataset, reports in results.items()}}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(_finite(data), indent=1) + "\n")
