"""Evaluation: metrics on hand-made cases, data set loaders on real files, OpenCV baselines."""
from __future__ import annotations

import json
import math
import time

import cv2
import numpy as np
import pytest

from loftr_ros.cli import evaluate
from loftr_ros.evaluation import baselines, datasets, metrics, runner
from loftr_ros.synthetic.homography import warp_points

W, H = 640, 480


def _shift(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def _textured_photo(seed: int = 0, size=(600, 800)) -> np.ndarray:
    """A real photo when scikit-image is there, else a smooth random texture."""
    try:
        from skimage import data
        return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    except ImportError:
        rng = np.random.default_rng(seed)
        noise = rng.random((size[0] // 8, size[1] // 8)).astype(np.float32)
        return (cv2.resize(noise, size[::-1], interpolation=cv2.INTER_CUBIC) * 255).clip(
            0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------- metrics

def test_perfect_homography_has_zero_error_and_full_auc():
    H_gt = np.array([[1.1, 0.05, 12.0], [-0.03, 0.95, -7.0], [1e-5, 2e-5, 1.0]])
    assert metrics.corner_error(H_gt, H_gt, W, H) == 0.0
    assert metrics.auc([0.0] * 10) == {3.0: 100.0, 5.0: 100.0, 10.0: 100.0}


def test_shifted_homography_has_the_shift_as_corner_error():
    H_gt = _shift(10, 20)
    assert metrics.corner_error(_shift(13, 24), H_gt, W, H) == pytest.approx(5.0)
    # A pure scale about the origin: corners move by 0, 0.1*639, 0.1*|(639,479)|, 0.1*479.
    scale = np.diag([1.1, 1.1, 1.0])
    expected = np.mean([0, 63.9, 0.1 * math.hypot(639, 479), 47.9])
    assert metrics.corner_error(scale, np.eye(3), W, H) == pytest.approx(expected)


def test_auc_of_known_errors():
    # Errors 0 and 2 px: the curve goes (0,0) -> (0,0.5) -> (2,1) -> (t,1), linear in between.
    # Trapezoids: [0,0]: 0; [0,2]: 2*(0.5+1)/2 = 1.5; [2,t]: (t-2)*1.
    aucs = metrics.auc([0.0, 2.0], thresholds=(3.0, 10.0))
    assert aucs[3.0] == pytest.approx(100 * (1.5 + 1.0) / 3.0)
    assert aucs[10.0] == pytest.approx(100 * (1.5 + 8.0) / 10.0)
    # Errors above the threshold do not count below it.
    assert metrics.auc([4.0], thresholds=(3.0,))[3.0] == 0.0
    assert metrics.auc([]) == {3.0: 0.0, 5.0: 0.0, 10.0: 0.0}


def test_failures_are_infinite_and_lower_the_auc():
    H_gt = _shift(5, 5)
    assert metrics.corner_error(None, H_gt, W, H) == math.inf
    three = np.array([[0, 0], [10, 0], [0, 10]], np.float32)
    assert metrics.estimated_homography(three, three + 5) is None
    result = metrics.evaluate_pair(three, three + 5, H_gt, W, H)
    assert result.corner_error == math.inf and result.num_matches == 3
    assert result.precision == 1.0
    perfect = metrics.auc([0.0, 0.0])[5.0]
    with_failure = metrics.auc([0.0, 0.0, math.inf, math.inf])[5.0]
    assert perfect == 100.0 and with_failure == pytest.approx(50.0)
    summary = metrics.summarize([result, metrics.PairResult(0.0, 10, 1.0, 3.0)])
    assert summary["failures"] == 1 and summary["auc@5"] == pytest.approx(50.0)
    assert summary["median_latency_ms"] == 3.0 and summary["mean_matches"] == 6.5


def test_precision_at_3px_on_hand_made_matches():
    H_gt = _shift(10, 0)
    keypoints0 = np.array([[0, 0], [100, 100], [200, 50], [300, 300]], np.float32)
    keypoints1 = keypoints0 + [10, 0]
    keypoints1[1] += [2.9, 0]      # still correct (< 3 px)
    keypoints1[2] += [0, 3.0]      # wrong: exactly 3 px is not < 3
    keypoints1[3] += [40, -20]     # wrong
    assert metrics.precision(keypoints0, keypoints1, H_gt) == pytest.approx(0.5)
    np.testing.assert_allclose(metrics.reprojection_errors(keypoints0, keypoints1, H_gt),
                               [0, 2.9, 3.0, math.hypot(40, 20)], atol=1e-4)
    assert metrics.precision(np.zeros((0, 2)), np.zeros((0, 2)), H_gt) == 0.0


def test_ransac_recovers_a_homography_despite_outliers():
    rng = np.random.default_rng(0)
    H_gt = np.array([[0.9, 0.1, 30.0], [-0.05, 1.05, -10.0], [1e-4, -5e-5, 1.0]])
    keypoints0 = rng.uniform([0, 0], [W, H], size=(200, 2))
    keypoints1 = warp_points(H_gt, keypoints0) + rng.normal(0, 0.3, size=(200, 2))
    keypoints1[:60] = rng.uniform([0, 0], [W, H], size=(60, 2))  # 30 % outliers
    result = metrics.evaluate_pair(keypoints0, keypoints1, H_gt, W, H)
    assert result.corner_error < 1.0
    assert result.precision == pytest.approx(140 / 200, abs=0.02)


def test_second_estimator_is_scored_beside_ransac():
    """Dense noisy matches: both estimators are reported; MAGSAC++ re-weights every match, so its
    corner error is no worse here than RANSAC's (which keeps one sample's inliers)."""
    rng = np.random.default_rng(1)
    H_gt = np.array([[0.95, 0.05, 20.0], [-0.03, 1.02, 5.0], [5e-5, -2e-5, 1.0]])
    keypoints0 = rng.uniform([0, 0], [W, H], size=(600, 2))
    keypoints1 = warp_points(H_gt, keypoints0) + rng.normal(0, 1.5, size=(600, 2))
    keypoints1[:200] = rng.uniform([0, 0], [W, H], size=(200, 2))
    result = metrics.evaluate_pair(keypoints0, keypoints1, H_gt, W, H,
                                   estimators=("ransac", "magsac"))
    assert set(result.other_corner_errors) == {"magsac"}
    assert result.other_corner_errors["magsac"] <= result.corner_error + 0.1
    assert result.other_corner_errors["magsac"] < 2.0
    summary = metrics.summarize([result])
    assert "magsac auc@5" in summary and summary["magsac failures"] == 0
    with pytest.raises(ValueError, match="unknown estimator"):
        metrics.estimated_homography(keypoints0, keypoints1, "lmeds")


# ------------------------------------------------------------------------------------ datasets

def _write_hpatches_sequence(folder, image0, homographies, extension=".ppm"):
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / f"1{extension}"), cv2.cvtColor(image0, cv2.COLOR_GRAY2BGR))
    height, width = image0.shape
    for k, H_k in homographies.items():
        warped = cv2.warpPerspective(image0, H_k, (width, height))
        cv2.imwrite(str(folder / f"{k}{extension}"), cv2.cvtColor(warped, cv2.COLOR_GRAY2BGR))
        np.savetxt(folder / f"H_1_{k}", H_k, fmt="%.10e")


def test_hpatches_loader_reads_real_files_and_rescales_the_homography(tmp_path):
    photo = cv2.resize(_textured_photo(), (800, 600))
    homographies = {k: _shift(4.0 * k, -3.0 * k) for k in range(2, 7)}
    _write_hpatches_sequence(tmp_path / "v_fake", photo, homographies)
    _write_hpatches_sequence(tmp_path / "i_fake", photo, {2: _shift(1, 1)}, extension=".png")
    pairs = datasets.HPatchesPairs(tmp_path)
    assert len(pairs) == 6
    items = list(pairs)
    assert [p.name for p in items] == ["i_fake/1-2"] + [f"v_fake/1-{k}" for k in range(2, 7)]
    pair = items[3]  # v_fake 1-4: shift (16, -12) at 800x600 -> (12.8, -9.6) at 640x480
    assert pair.image0.shape == (480, 640) and pair.image0.dtype == np.uint8
    np.testing.assert_allclose(pair.H_0to1, _shift(12.8, -9.6), atol=1e-9)
    # The rescaled homography really maps the resized images onto each other.
    warped = cv2.warpPerspective(pair.image0, pair.H_0to1, (640, 480))
    inner = (slice(40, -40), slice(40, -40))
    assert np.mean(np.abs(warped[inner].astype(int) - pair.image1[inner])) < 4.0
    full = list(datasets.HPatchesPairs(tmp_path, short_side=None))
    np.testing.assert_allclose(full[3].H_0to1, homographies[4])
    assert full[3].image0.shape == (600, 800)


def test_hpatches_loader_errors_name_the_file(tmp_path):
    with pytest.raises(datasets.DatasetError, match="does not exist"):
        datasets.HPatchesPairs(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(datasets.DatasetError, match="no HPatches sequences"):
        datasets.HPatchesPairs(tmp_path / "empty")
    sequence = tmp_path / "seq" / "v_bad"
    sequence.mkdir(parents=True)
    (sequence / "H_1_2").write_text("1 0 0\n0 1 0\n")
    pairs = datasets.HPatchesPairs(tmp_path / "seq")
    with pytest.raises(datasets.DatasetError, match="no image 1"):
        list(pairs)
    cv2.imwrite(str(sequence / "1.png"), np.zeros((10, 10), np.uint8))
    cv2.imwrite(str(sequence / "2.png"), np.zeros((10, 10), np.uint8))
    with pytest.raises(datasets.DatasetError, match="H_1_2"):
        list(pairs)


def _heldout_folder(tmp_path):
    folder = tmp_path / "heldout"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), _textured_photo(1))
    cv2.imwrite(str(folder / "b.png"), cv2.flip(_textured_photo(2), 1))
    return folder


def test_synthetic_pairs_are_deterministic_with_the_seed(tmp_path):
    folder = _heldout_folder(tmp_path)
    first = list(datasets.SyntheticPairs(folder, pairs_per_image=2, seed=7))
    again = list(datasets.SyntheticPairs(folder, pairs_per_image=2, seed=7))
    other = list(datasets.SyntheticPairs(folder, pairs_per_image=2, seed=8))
    assert [p.name for p in first] == ["a/0", "a/1", "b/0", "b/1"]
    assert len(datasets.SyntheticPairs(folder, pairs_per_image=2)) == 4
    for one, two in zip(first, again):
        assert np.array_equal(one.image0, two.image0) and np.array_equal(one.image1, two.image1)
        assert np.array_equal(one.H_0to1, two.H_0to1)
    assert not np.allclose(first[0].H_0to1, other[0].H_0to1)
    assert first[0].image0.shape == (480, 640) and first[0].image0.dtype == np.uint8
    # A pair does not depend on which other images are in the folder.
    cv2.imwrite(str(folder / "0_new.jpg"), _textured_photo(3))
    grown = {p.name: p for p in datasets.SyntheticPairs(folder, pairs_per_image=2, seed=7)}
    assert np.array_equal(grown["b/1"].H_0to1, first[3].H_0to1)
    with pytest.raises(datasets.DatasetError, match="does not exist"):
        datasets.SyntheticPairs(tmp_path / "missing")


# ----------------------------------------------------------------------------------- baselines

@pytest.mark.parametrize("make", [baselines.sift, baselines.orb])
def test_baseline_finds_the_homography_of_a_synthetic_pair(tmp_path, make):
    pair = next(iter(datasets.SyntheticPairs(_heldout_folder(tmp_path), pairs_per_image=1,
                                             seed=0)))
    method = make()
    matches = method.match(pair.image0, pair.image1)
    assert matches.keypoints0.shape == matches.keypoints1.shape and len(matches) >= 20
    assert matches.keypoints0.dtype == np.float32 and matches.scores.shape == (len(matches),)
    assert np.all((matches.scores >= 0) & (matches.scores <= 1))
    assert matches.timings["total_ms"] > 0
    result = metrics.evaluate_pair(matches.keypoints0, matches.keypoints1, pair.H_0to1, W, H)
    assert result.corner_error < 3.0
    assert result.precision > 0.5


def test_mutual_ratio_matching_on_hand_made_descriptors():
    descriptors0 = np.array([[0, 0], [10, 0], [0, 10]], np.float32)
    # 0 <-> 0 clear; 1 has two equally close candidates (ratio 1, rejected); 2 <-> 3 clear.
    descriptors1 = np.array([[0.1, 0], [10, 1], [10, -1], [0, 10.1], [50, 50]], np.float32)
    pairs, ratios = baselines.mutual_ratio_matches(descriptors0, descriptors1, cv2.NORM_L2)
    assert pairs.tolist() == [[0, 0], [2, 3]]
    assert np.all(ratios < baselines.RATIO)
    empty, _ = baselines.mutual_ratio_matches(descriptors0, None, cv2.NORM_L2)
    assert empty.shape == (0, 2)


# -------------------------------------------------------------------------------- runner + CLI

class _Oracle:
    """Matches that are exactly right: a grid of image-0 points and their true positions."""

    def __init__(self, pairs):
        self.truth = {id(p.image0): p.H_0to1 for p in pairs}

    def match(self, image0, image1):
        grid = np.stack(np.meshgrid(np.arange(40, 600, 40), np.arange(40, 440, 40)), -1)
        keypoints0 = grid.reshape(-1, 2).astype(np.float32)
        keypoints1 = warp_points(self.truth[id(image0)], keypoints0).astype(np.float32)
        return baselines.FeatureMatches(keypoints0, keypoints1, np.ones(len(keypoints0)))


class _Nothing:
    def match(self, image0, image1):
        empty = np.zeros((0, 2), np.float32)
        return baselines.FeatureMatches(empty, empty, np.zeros(0, np.float32))


class _TimedOracle(_Oracle):
    """The oracle's matches with a network time, like a learned matcher's ``Matches``."""

    def match(self, image0, image1):
        matches = super().match(image0, image1)
        matches.timings = {"inference": 7.0}
        return matches


def test_runner_pauses_before_each_timed_call(tmp_path):
    """No timed call starts right after the previous one ended (onnxruntime's threads spin on
    after a run), and the pause is not part of the latency."""
    pairs = list(datasets.SyntheticPairs(_heldout_folder(tmp_path), pairs_per_image=1, seed=0))
    calls = []

    def recorded(image0, image1):
        calls.append([time.perf_counter()])
        matches = _Nothing().match(image0, image1)
        calls[-1].append(time.perf_counter())
        return matches

    methods = [runner.Method(name, recorded, name) for name in ("a", "b")]
    reports = runner.evaluate(methods, pairs, max_pairs=2, settle_s=0.2)
    assert len(calls) == 6  # pair 0: a warm-up, a timed, b warm-up, b timed; pair 1: a, b
    gaps = [calls[i][0] - calls[i - 1][1] for i in (1, 3, 4, 5)]
    assert min(gaps) >= 0.2, gaps
    assert max(report.summary["median_latency_ms"] for report in reports) < 100.0


def test_runner_tabulates_methods_on_the_same_pairs(tmp_path):
    pairs = list(datasets.SyntheticPairs(_heldout_folder(tmp_path), pairs_per_image=2, seed=0))
    methods = [runner.Method("oracle", _Oracle(pairs).match, "truth"),
               runner.Method("nothing", _Nothing().match, "no matches"),
               runner.Method("timed", _TimedOracle(pairs).match, "truth, timed")]
    reports = runner.evaluate(methods, pairs, max_pairs=3, estimators=("ransac", "magsac"))
    oracle, nothing, timed = reports
    assert math.isnan(oracle.summary["median_inference_ms"])
    assert timed.summary["median_inference_ms"] == 7.0
    assert oracle.summary["pairs"] == 3 and len(oracle.pairs) == 3
    assert oracle.summary["auc@3"] == pytest.approx(100.0, abs=1e-3)
    assert oracle.summary["precision@3px"] == pytest.approx(100.0)
    assert nothing.summary["auc@10"] == 0.0 and nothing.summary["failures"] == 3
    assert nothing.summary["precision@3px"] == 0.0
    table = runner.markdown_table(reports).splitlines()
    assert table[0].startswith("| method | AUC@3px") and len(table) == 5
    assert "MAGSAC++ AUC@5" in table[0] and table[0].endswith("| median ms | inference ms |")
    assert table[2].startswith("| oracle | 100.0 | 100.0 | 100.0 | 100.0 | 100.0 | 100.0 |")
    assert table[2].endswith("| – |") and table[4].endswith("| 7.0 |")
    assert "| 3/3 |" in table[3]
    runner.write_json(tmp_path / "out.json", {"synthetic": reports}, {"threads": 2})
    data = json.loads((tmp_path / "out.json").read_text())
    assert data["datasets"]["synthetic"]["nothing"]["pairs"][0]["corner_error"] == "inf"
    assert data["settings"] == {"threads": 2}


def test_unknown_or_unavailable_methods(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="unknown method"):
        runner.build_method("superglue")
    monkeypatch.setenv("LOFTR_SHARED_DIR", str(tmp_path))
    with pytest.raises(runner.MethodUnavailable, match="LoFTR_teacher.onnx"):
        runner.build_method("seed")
    assert runner.build_method("sift").name == "sift"


def test_loftr_eval_cli_with_baselines(tmp_path, capsys):
    folder = _heldout_folder(tmp_path)
    code = evaluate.main(["--sets", "synthetic", "--synthetic", str(folder), "--pairs-per-image",
                          "1", "--methods", "sift,orb", "--json", str(tmp_path / "eval.json"),
                          "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "## synthetic: 2 pairs" in out and "| sift |" in out and "| orb |" in out
    data = json.loads((tmp_path / "eval.json").read_text())
    assert set(data["datasets"]["synthetic"]) == {"sift", "orb"}
    assert data["datasets"]["synthetic"]["sift"]["summary"]["auc@10"] > 50
    assert evaluate.main(["--synthetic", str(tmp_path / "none"), "--no-progress"]) == 2


def test_seed_onnx_through_the_runner(tmp_path):
    """The seed model (its own ONNX, via Matcher) runs in the same table as the baselines."""
    pytest.importorskip("onnxruntime")
    try:
        seed = runner.build_method("seed")
    except runner.MethodUnavailable as error:
        pytest.skip(f"seed model unavailable: {error}")
    pairs = datasets.SyntheticPairs(_heldout_folder(tmp_path), pairs_per_image=1, seed=0)
    report, = runner.evaluate([seed], pairs, max_pairs=1)
    assert report.summary["pairs"] == 1 and report.summary["mean_matches"] > 10
    # Stride-16 matches: most lie within a cell of the truth, few within 3 px (findings.md).
    assert report.pairs[0]["corner_error"] < 20
