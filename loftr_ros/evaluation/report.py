"""Views of a ``loftr-eval`` run over several data sets: one overview table and the cumulative
error curves (``--plot``).

``results`` maps a data set's name to its :class:`loftr_ros.evaluation.runner.MethodReport` list
(one per method, same order in every data set).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from loftr_ros.evaluation import metrics
from loftr_ros.evaluation.runner import MethodReport, is_pose_report

#: x range of the curves: up to the largest AUC threshold of each kind
HOMOGRAPHY_CURVE_MAX_PX = 10.0
POSE_CURVE_MAX_DEG = 20.0


def _estimator_names(report: MethodReport, pose: bool) -> List[str]:
    key = "pose auc@5" if pose else "auc@5"
    return [name for name in metrics.ESTIMATORS if f"{name} {key}" in report.summary]


def overview_table(results: Dict[str, Sequence[MethodReport]]) -> str:
    """One markdown row per method, with each data set's AUCs (primary estimator, then each
    further one) and its precision: ``AUC@3/5/10 px`` and precision@3px for homography sets,
    ``AUC@5/10/20°`` and epipolar precision for pose sets (percent)."""
    header, align = ["method"], ["---"]
    methods: List[str] = []
    for name, reports in results.items():
        if not reports:
            continue
        pose = is_pose_report(reports[0])
        unit = "°" if pose else " px"
        levels = "5/10/20" if pose else "3/5/10"
        header.append(f"{name} AUC@{levels}{unit}")
        for estimator in _estimator_names(reports[0], pose):
            header.append(f"{name} {metrics.ESTIMATOR_LABELS.get(estimator, estimator)}")
        header.append(f"{name} {'epipolar precision' if pose else 'precision@3px'}")
        methods += [r.name for r in reports if r.name not in methods]
    align += ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for method in methods:
        cells = [method]
        for reports in results.values():
            if not reports:
                continue
            pose = is_pose_report(reports[0])
            report = next((r for r in reports if r.name == method), None)
            count = 2 + len(_estimator_names(reports[0], pose))
            if report is None:
                cells += ["–"] * count
                continue
            s = report.summary
            prefix, levels = ("pose auc", (5, 10, 20)) if pose else ("auc", (3, 5, 10))
            for estimator in [""] + _estimator_names(reports[0], pose):
                key = f"{estimator} {prefix}" if estimator else prefix
                cells.append("/".join(f"{s[f'{key}@{t}']:.1f}" for t in levels))
            cells.append(f"{s['epipolar_precision' if pose else 'precision@3px']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pair_errors(report: MethodReport) -> Dict[str, np.ndarray]:
    """Per-pair errors of a report by estimator label (``primary`` first): degrees for pose
    reports, pixels for homography reports; failures are ``inf``."""
    pose = is_pose_report(report)
    key, other_key = ("pose_error", "other_pose_errors") if pose else (
        "corner_error", "other_corner_errors")
    errors = {"primary": np.array([float(p[key]) for p in report.pairs], np.float64)}
    for name in _estimator_names(report, pose):
        errors[name] = np.array([float(p[other_key].get(name, np.inf)) for p in report.pairs],
                                np.float64)
    return errors


def cumulative_curve(errors: np.ndarray, limit: float) -> Tuple[np.ndarray, np.ndarray]:
    """(x, y): the share of pairs with error <= x, as a step curve from 0 to ``limit``."""
    errors = np.sort(np.asarray(errors, np.float64))
    count = max(len(errors), 1)
    inside = errors[errors <= limit]
    x = np.concatenate([[0.0], np.repeat(inside, 2), [limit]])
    y = np.empty(len(x))
    y[0] = 0.0
    y[1:-1:2] = np.arange(len(inside)) / count
    y[2::2] = np.arange(1, len(inside) + 1) / count
    y[-1] = len(inside) / count
    return x, y


def plot_error_curves(results: Dict[str, Sequence[MethodReport]], path: Path,
                      primary_label: str = "RANSAC") -> None:
    """Write a PNG with one panel per data set: for each method, the share of pairs whose error
    is at most x (pose error in degrees or corner error in pixels), solid for the primary
    estimator and dashed for each further one. Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name for name, reports in results.items() if reports]
    columns = min(2, max(1, len(names)))
    rows = (len(names) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(6.0 * columns, 4.2 * rows),
                                squeeze=False)
    for axis, name in zip(axes.ravel(), names):
        reports = results[name]
        pose = is_pose_report(reports[0])
        limit = POSE_CURVE_MAX_DEG if pose else HOMOGRAPHY_CURVE_MAX_PX
        for index, report in enumerate(reports):
            colour = f"C{index % 10}"
            for estimator, errors in pair_errors(report).items():
                x, y = cumulative_curve(errors, limit)
                label = primary_label if estimator == "primary" else metrics.ESTIMATOR_LABELS.get(
                    estimator, estimator)
                axis.plot(x, y, color=colour, linestyle="-" if estimator == "primary" else "--",
                          label=f"{report.name} ({label})")
        axis.set_xlim(0.0, limit)
        axis.set_ylim(0.0, 1.0)
        axis.set_xlabel("pose error (degrees)" if pose else "corner error (pixels)")
        axis.set_ylabel("share of pairs")
        axis.set_title(f"{name} ({len(reports[0].pairs)} pairs)")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7, loc="upper left")
    for axis in axes.ravel()[len(names):]:
        axis.set_visible(False)
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(str(path), dpi=100)
    plt.close(figure)
