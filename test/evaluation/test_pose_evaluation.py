"""Pose evaluation: metrics on hand-made geometry, the 3D data sets (rendered scenes always; Castle
and Motorcycle where their data is here), the runner, the overview table and the curves."""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from loftr_ros.cli import evaluate
from loftr_ros.evaluation import baselines, castle, pose_datasets, pose_metrics, report, runner
from loftr_ros.matching import geometry

K = np.array([[500.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]])


def _rotation(axis, degrees):
    vector = np.asarray(axis, np.float64)
    vector = vector / np.linalg.norm(vector) * math.radians(degrees)
    return cv2.Rodrigues(vector)[0]


def _scene_matches(rotation, translation, count=300, seed=0, intrinsics=K):
    """Pixels of random points 2-8 m in front of camera 0 (those in front of camera 1 too)."""
    rng = np.random.default_rng(seed)
    points0 = np.stack([rng.uniform(-3, 3, count), rng.uniform(-2, 2, count),
                        rng.uniform(2, 8, count)], axis=1)
    points1 = points0 @ rotation.T + translation
    points0, points1 = points0[points1[:, 2] > 0.5], points1[points1[:, 2] > 0.5]
    pixels0 = points0[:, :2] / points0[:, 2:] * intrinsics[0, 0] + intrinsics[:2, 2]
    pixels1 = points1[:, :2] / points1[:, 2:] * intrinsics[0, 0] + intrinsics[:2, 2]
    return pixels0, pixels1


# ------------------------------------------------------------------------------------- metrics

def test_exact_matches_give_zero_pose_error_and_full_precision():
    rotation, translation = _rotation([0.2, 1.0, 0.1], 12.0), np.array([0.8, 0.1, 0.2])
    pixels0, pixels1 = _scene_matches(rotation, translation)
    result = pose_metrics.evaluate_pose_pair(pixels0, pixels1, K, K, rotation, translation,
                                             estimators=("ransac", "magsac"))
    assert result.pose_error < 0.1 and result.other_pose_errors["magsac"] < 0.1
    assert result.epipolar_precision == 1.0 and result.num_matches == len(pixels0) > 250
    summary = pose_metrics.summarize_poses([result])
    assert summary["pose auc@5"] > 98 and summary["magsac pose auc@20"] > 99
    assert summary["epipolar_precision"] == 100.0 and summary["failures"] == 0


def test_outliers_are_rejected_and_counted():
    rotation, translation = _rotation([0.0, 1.0, 0.0], 20.0), np.array([1.0, 0.0, 0.3])
    pixels0, pixels1 = _scene_matches(rotation, translation, seed=1)
    rng = np.random.default_rng(2)
    pixels1 = pixels1 + rng.normal(0, 0.3, pixels1.shape)
    pixels1[:90] = rng.uniform([0, 0], [640, 480], size=(90, 2))  # 30 % outliers
    result = pose_metrics.evaluate_pose_pair(pixels0, pixels1, K, K, rotation, translation,
                                             estimators=("magsac",))
    assert result.pose_error < 2.0
    assert result.epipolar_precision == pytest.approx(1 - 90 / len(pixels0), abs=0.03)


def test_symmetric_epipolar_distance_of_a_hand_made_pair():
    # Rectified cameras (R = I, t along x): epipolar lines are rows. A point 0.01 (normalised)
    # off its row is 0.01 from the line in each image: d = 0.01^2 + 0.01^2.
    pixels0 = np.array([[320.0, 240.0]])
    pixels1 = np.array([[320.0 + 50.0, 240.0 + 5.0]])
    essential = pose_metrics.essential_from_pose(np.eye(3), np.array([1.0, 0.0, 0.0]))
    distance = pose_metrics.symmetric_epipolar_distance(pixels0, pixels1, K, K, essential)
    assert distance[0] == pytest.approx(2e-4)
    # The scale of t does not matter; 5e-4 accepts it, a row further off does not.
    assert pose_metrics.epipolar_precision(pixels0, pixels1, K, K, np.eye(3),
                                           np.array([7.0, 0.0, 0.0])) == 1.0
    assert pose_metrics.epipolar_precision(pixels0, pixels1 + [0, 10], K, K, np.eye(3),
                                           np.array([1.0, 0.0, 0.0])) == 0.0


def test_pose_error_ignores_the_sign_of_t_and_takes_the_larger_error():
    rotation = _rotation([0, 0, 1], 3.0)
    assert pose_metrics.pose_errors_deg(np.eye(3), np.array([-1.0, 0, 0]), np.eye(3),
                                        np.array([2.0, 0, 0])) == (0.0, 0.0)
    errors = pose_metrics.pose_errors_deg(rotation, np.array([1.0, 0.1, 0]), np.eye(3),
                                          np.array([1.0, 0, 0]))
    assert errors[0] == pytest.approx(3.0) and errors[1] == pytest.approx(
        math.degrees(math.atan(0.1)))


def test_too_few_matches_fail_with_infinite_error():
    four = np.array([[10.0, 10], [100, 20], [50, 200], [300, 300]])
    result = pose_metrics.evaluate_pose_pair(four, four + 3, K, K, np.eye(3),
                                             np.array([1.0, 0, 0]))
    assert math.isinf(result.pose_error) and result.num_matches == 4
    none = pose_metrics.evaluate_pose_pair(np.zeros((0, 2)), np.zeros((0, 2)), K, K, np.eye(3),
                                           np.array([1.0, 0, 0]))
    assert none.epipolar_precision == 0.0
    summary = pose_metrics.summarize_poses([result, none])
    assert summary["failures"] == 2 and summary["pose auc@20"] == 0.0
    with pytest.raises(ValueError, match="estimator"):
        pose_metrics.evaluate_pose_pair(four, four, K, K, np.eye(3), np.ones(3), estimators=())


# ------------------------------------------------------------------------- rendered 3D scenes

def _photo_folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for index in range(2):
        noise = rng.random((60, 80)).astype(np.float32)
        photo = cv2.resize(noise, (640, 480), interpolation=cv2.INTER_CUBIC) * 255
        cv2.imwrite(str(folder / f"p{index}.png"), photo.clip(0, 255).astype(np.uint8))
    return folder


def test_scene_pairs_are_repeatable_and_carry_a_consistent_pose(tmp_path):
    folder = _photo_folder(tmp_path)
    first = list(pose_datasets.ScenePairs(folder, count=2, seed=3, size=(320, 240)))
    again = list(pose_datasets.ScenePairs(folder, count=2, seed=3, size=(320, 240)))
    other = next(iter(pose_datasets.ScenePairs(folder, count=1, seed=4, size=(320, 240))))
    assert [p.name for p in first] == ["scene/0", "scene/1"]
    for one, two in zip(first, again):
        assert np.array_equal(one.image0, two.image0) and np.array_equal(one.image1, two.image1)
        np.testing.assert_array_equal(one.rotation, two.rotation)
    assert not np.array_equal(first[0].image0, other.image0)
    pair = first[0]
    assert pair.image0.shape == (240, 320) and pair.image0.dtype == np.uint8
    assert geometry.valid_intrinsics(pair.intrinsics0) and pair.translation.shape == (3,)
    np.testing.assert_allclose(pair.rotation @ pair.rotation.T, np.eye(3), atol=1e-9)
    with pytest.raises(pose_datasets.DatasetError, match="does not exist"):
        pose_datasets.ScenePairs(tmp_path / "none")


def test_scene_pairs_take_other_camera_motion_ranges(tmp_path):
    """``baseline``/``max_rotation_deg`` reach the generator; bad ranges are refused."""
    folder = _photo_folder(tmp_path)
    default = pose_datasets.ScenePairs(folder, count=1, seed=3, size=(320, 240))
    wide = pose_datasets.ScenePairs(folder, count=1, seed=3, size=(320, 240),
                                    baseline=(0.9, 1.0), max_rotation_deg=60.0)
    assert default.params.baseline == (0.05, 0.6) and default.params.max_rotation_deg == 45.0
    assert wide.params.baseline == (0.9, 1.0) and wide.params.max_rotation_deg == 60.0
    assert not np.array_equal(next(iter(wide)).image1, next(iter(default)).image1)
    with pytest.raises(ValueError, match="baseline"):
        pose_datasets.ScenePairs(folder, baseline=(0.5, 0.1))
    with pytest.raises(ValueError, match="max_rotation_deg"):
        pose_datasets.ScenePairs(folder, max_rotation_deg=0.0)


class _PoseOracle:
    """Exact matches for each pair: random points seen by both of its cameras."""

    def __init__(self, pairs):
        self.truth = {id(p.image0): p for p in pairs}

    def match(self, image0, image1):
        pair = self.truth[id(image0)]
        pixels0, pixels1 = _scene_matches(pair.rotation, pair.translation, 200)
        # the oracle's cameras are K's; re-project into the pair's own cameras
        points0 = geometry.normalize_points(pixels0, K)
        points1 = geometry.normalize_points(pixels1, K)
        keypoints0 = points0 * pair.intrinsics0[[0, 1], [0, 1]] + pair.intrinsics0[:2, 2]
        keypoints1 = points1 * pair.intrinsics1[[0, 1], [0, 1]] + pair.intrinsics1[:2, 2]
        return baselines.FeatureMatches(keypoints0.astype(np.float32),
                                        keypoints1.astype(np.float32),
                                        np.ones(len(keypoints0), np.float32))


def test_runner_scores_pose_pairs_and_tabulates_them(tmp_path):
    pairs = list(pose_datasets.ScenePairs(_photo_folder(tmp_path), count=2, size=(320, 240)))
    methods = [runner.Method("oracle", _PoseOracle(pairs).match, "truth"),
               runner.Method("sift", baselines.sift().match, "SIFT")]
    reports = runner.evaluate(methods, pairs, estimators=("ransac", "magsac"), settle_s=0.0)
    oracle, sift = reports
    assert oracle.summary["pose auc@5"] > 95 and oracle.summary["epipolar_precision"] == 100.0
    assert oracle.summary["pairs"] == 2 and "magsac pose auc@10" in oracle.summary
    assert sift.summary["pairs"] == 2 and 0 <= sift.summary["epipolar_precision"] <= 100
    table = runner.markdown_table(reports).splitlines()
    assert table[0].startswith("| method | AUC@5° | AUC@10° | AUC@20° | MAGSAC++ AUC@5°")
    assert table[2].startswith("| oracle |") and "| 0/2 |" in table[2]
    overview = report.overview_table({"scenes3d": reports}).splitlines()
    assert overview[0] == ("| method | scenes3d AUC@5/10/20° | scenes3d MAGSAC++ | "
                           "scenes3d epipolar precision |")
    assert overview[2].startswith("| oracle |") and overview[2].endswith("| 100.0 |")
    errors = report.pair_errors(oracle)
    assert set(errors) == {"primary", "magsac"} and np.all(errors["primary"] < 1.0)


def test_cumulative_curve_steps_at_each_error():
    x, y = report.cumulative_curve(np.array([3.0, 1.0, np.inf, 30.0]), 20.0)
    np.testing.assert_allclose(x, [0, 1, 1, 3, 3, 20])
    np.testing.assert_allclose(y, [0, 0, 0.25, 0.25, 0.5, 0.5])
    x, y = report.cumulative_curve(np.array([np.inf]), 20.0)
    np.testing.assert_allclose(y, [0, 0])


def test_loftr_eval_cli_on_3d_scenes_with_plot(tmp_path, capsys):
    folder = _photo_folder(tmp_path)
    out = tmp_path / "eval.json"
    plot = tmp_path / "curves.png"
    code = evaluate.main(["--sets", "synthetic,scenes3d", "--synthetic", str(folder),
                          "--pairs-per-image", "1", "--scene-pairs", "2", "--methods", "orb",
                          "--json", str(out), "--plot", str(plot), "--no-progress"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "## scenes3d: 2 pairs" in text and "## synthetic: 2 pairs" in text
    assert "## overview" in text and "scenes3d epipolar precision" in text
    data = json.loads(out.read_text())
    assert set(data["datasets"]) == {"synthetic", "scenes3d"}
    assert "pose_error" in data["datasets"]["scenes3d"]["orb"]["pairs"][0]
    pytest.importorskip("matplotlib")
    image = cv2.imread(str(plot))
    assert image is not None and image.shape[1] > 600
    assert evaluate.main(["--sets", "nonsense", "--no-progress"]) == 2
    assert evaluate.main(["--sets", "hpatches", "--no-progress"]) == 2


def test_loftr_eval_cli_widens_the_3d_scenes_camera_motion(tmp_path, capsys):
    folder = _photo_folder(tmp_path)
    out = tmp_path / "eval.json"
    code = evaluate.main(["--sets", "scenes3d", "--synthetic", str(folder), "--scene-pairs", "1",
                          "--scene-baseline", "0.6,1.0", "--scene-max-rotation", "60",
                          "--methods", "orb", "--json", str(out), "--no-progress"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "## scenes3d: 1 pairs, baseline 0.6-1 of the depth, rotation up to 60 deg" in text
    settings = json.loads(out.read_text())["settings"]
    assert settings["scene_baseline"] == [0.6, 1.0] and settings["scene_max_rotation"] == 60.0
    assert evaluate.main(["--sets", "scenes3d", "--synthetic", str(folder),
                          "--scene-baseline", "1,0.5", "--no-progress"]) == 2
    assert "baseline must be" in capsys.readouterr().err


# ------------------------------------------------------------------------------- Castle-simu

def test_castle_frame_pairs_grow_in_gap():
    pairs = castle.frame_pairs((5, 35), starts_per_gap=3)
    assert pairs == [(1, 6), (18, 23), (35, 40), (1, 36), (3, 38), (5, 40)]
    assert castle.frame_pairs((39, 40, 0), starts_per_gap=4) == [(1, 40)]
    assert len(castle.frame_pairs()) == 28


def _write_castle(folder, depth_m, poses):
    for part in ("Images", "CameraPose", "Depth", "Config"):
        (folder / part).mkdir(parents=True)
    (folder / "Config" / "chateau.xml").write_text(
        "<?xml version='1.0'?><conf><camera><px>70</px><py>71</py><u0>8</u0><v0>6</v0>"
        "</camera></conf>")
    height, width = depth_m.shape
    for frame, pose in enumerate(poses, start=1):
        cv2.imwrite(str(folder / "Images" / f"Image_{frame:04d}.pgm"),
                    np.full((height, width), 40 * frame, np.uint8))
        np.savetxt(folder / "CameraPose" / f"Camera_{frame:03d}.txt", pose)
        raw = np.array([height, width], "<u4").tobytes() + np.round(
            depth_m / castle.DEPTH_UNIT_M).astype("<u2").tobytes()
        (folder / "Depth" / f"Depth_{frame:04d}.bin").write_bytes(raw)


def test_castle_reader_on_files_in_the_package_format(tmp_path):
    depth = np.zeros((12, 16))
    depth[6, 8] = 1.5   # the principal point, 1.5 m away
    pose0 = np.eye(4)
    pose1 = np.eye(4)
    pose1[:3, :3] = _rotation([0, 1, 0], 10.0)
    pose1[:3, 3] = [0.1, 0.0, 0.0]
    _write_castle(tmp_path / "Castle-simu", depth, [pose0, pose1])
    sequence = castle.CastleSequence(tmp_path / "Castle-simu")
    np.testing.assert_allclose(sequence.intrinsics, [[70, 0, 8], [0, 71, 6], [0, 0, 1]])
    assert sequence.image(2).shape == (12, 16) and sequence.image(2)[0, 0] == 80
    np.testing.assert_allclose(sequence.depth(1)[6, 8], 1.5, atol=1e-4)
    np.testing.assert_allclose(sequence.points(1), [[0.05, 0.0, 1.5]], atol=1e-4)
    rotation, translation = sequence.motion(1, 2)
    np.testing.assert_allclose(rotation, pose1[:3, :3])
    np.testing.assert_allclose(translation, [0.1, 0.0, 0.0])
    pair = sequence.pair(1, 2)
    assert pair.name == "castle/01-02" and pair.image1[0, 0] == 80
    (tmp_path / "Castle-simu" / "CameraPose" / "Camera_002.txt").write_text("1 2 3\n")
    with pytest.raises(castle.DatasetError, match="Camera_002"):
        sequence.pose(2)
    with pytest.raises(castle.DatasetError, match="no Images"):
        castle.CastleSequence(tmp_path)


def _castle_sequence():
    folder = castle.cached_castle()
    if folder is None:
        pytest.skip(f"Castle-simu not in {castle.DEFAULT_CACHE} (`loftr-eval --sets castle` "
                    "fetches it with apt-get download)")
    return castle.CastleSequence(folder)


def _project(points, intrinsics):
    return points[:, :2] / points[:, 2:] * intrinsics[[0, 1], [0, 1]] + intrinsics[:2, 2]


def test_castle_pose_convention_reprojects_depth():
    """Frame 1's depth points, moved by the frames' relative pose, land on frame 21's depth and
    intensities, and recover that pose; the inverse convention does not."""
    sequence = _castle_sequence()
    K_castle = sequence.intrinsics
    points = sequence.points(1)
    image0, image1 = sequence.image(1).astype(np.float32), sequence.image(21).astype(np.float32)
    depth1 = sequence.depth(21)

    def agreement(rotation, translation):
        moved = points @ rotation.T + translation
        pixels0, pixels1 = _project(points, K_castle), _project(moved, K_castle)
        in_depth_camera = moved - castle.DEPTH_TO_COLOR_M
        cells = np.round(_project(in_depth_camera, K_castle)).astype(int)
        inside = ((cells[:, 0] >= 0) & (cells[:, 0] < 640) & (cells[:, 1] >= 0)
                  & (cells[:, 1] < 480) & (pixels1[:, 0] >= 0) & (pixels1[:, 0] < 639)
                  & (pixels1[:, 1] >= 0) & (pixels1[:, 1] < 479))
        seen = depth1[cells[inside, 1], cells[inside, 0]]
        ratio = seen[seen > 0] / in_depth_camera[inside][seen > 0, 2]
        grey0 = image0[np.round(pixels0[inside, 1]).astype(int),
                       np.round(pixels0[inside, 0]).astype(int)]
        grey1 = image1[np.round(pixels1[inside, 1]).astype(int),
                       np.round(pixels1[inside, 0]).astype(int)]
        return float(np.median(np.abs(ratio - 1.0))), float(np.median(np.abs(grey0 - grey1)))

    rotation, translation = sequence.motion(1, 21)
    depth_error, grey_error = agreement(rotation, translation)
    assert depth_error < 0.002 and grey_error < 3.0
    # The files read as camera-to-world poses instead: X1 = P21^-1 P1 X0.
    inverse = np.linalg.inv(sequence.pose(21)) @ sequence.pose(1)
    wrong_depth, wrong_grey = agreement(inverse[:3, :3], inverse[:3, 3])
    assert wrong_depth > 10 * depth_error or wrong_grey > 3 * grey_error
    # True correspondences (with 0.5 px noise) give back the pose.
    moved = points @ rotation.T + translation
    keep = np.arange(0, len(points), 50)
    noise = np.random.default_rng(0).normal(0, 0.5, (len(keep), 2))
    error = pose_metrics.pose_error_deg(_project(points[keep], K_castle),
                                        _project(moved[keep], K_castle) + noise, K_castle,
                                        K_castle, rotation, translation, "magsac")
    assert error[0] < 0.5


# -------------------------------------------------------------------------------- Motorcycle

def test_motorcycle_disparity_and_intrinsics():
    pytest.importorskip("skimage")
    left, right, disparity = pose_datasets.load_motorcycle()
    assert left.shape == right.shape == disparity.shape == (500, 741)
    # The right view shows the left pixel (u, v) at (u - d, v): warping it back reproduces the
    # left view; the opposite sign does not.
    height, width = left.shape
    columns, rows = np.meshgrid(np.arange(width, dtype=np.float32),
                                np.arange(height, dtype=np.float32))
    known = np.isfinite(disparity)
    errors = []
    for sign in (-1.0, 1.0):
        map_x = (columns + sign * np.nan_to_num(disparity)).astype(np.float32)
        warped = cv2.remap(right, map_x, rows, cv2.INTER_LINEAR)
        usable = known & (map_x >= 0) & (map_x < width - 1)
        errors.append(np.mean(np.abs(warped.astype(float) - left)[usable]))
    assert errors[0] < 10.0 and errors[1] > 3 * errors[0]
    depth = pose_datasets.motorcycle_depth(disparity[known])
    assert 1.5 < np.median(depth) < 4.0  # a motorcycle a few metres from the rig
    # SIFT's matches agree with the disparity and give back the rectified pose.
    pair, reverse = pose_datasets.motorcycle_pairs()
    matches = baselines.sift().match(pair.image0, pair.image1)
    rows0 = np.round(matches.keypoints0[:, 1]).astype(int)
    cols0 = np.round(matches.keypoints0[:, 0]).astype(int)
    residual = matches.keypoints0[:, 0] - matches.keypoints1[:, 0] - disparity[rows0, cols0]
    assert np.median(np.abs(residual[np.isfinite(residual)])) < 0.5
    result = pose_metrics.evaluate_pose_pair(matches.keypoints0, matches.keypoints1,
                                             pair.intrinsics0, pair.intrinsics1, pair.rotation,
                                             pair.translation, estimators=("magsac",))
    assert result.pose_error < 3.0 and result.epipolar_precision > 0.9
    back = pose_metrics.evaluate_pose_pair(matches.keypoints1, matches.keypoints0,
                                           reverse.intrinsics0, reverse.intrinsics1,
                                           reverse.rotation, reverse.translation,
                                           estimators=("magsac",))
    assert back.pose_error < 3.0


def test_default_sets_skip_a_package_that_cannot_be_fetched(tmp_path, monkeypatch, capsys):
    from loftr_ros.training import data_sources

    def no_apt(package, deb_dir):
        raise data_sources.DataSourceError("apt-get not found")

    monkeypatch.setattr(data_sources, "download_package", no_apt)
    with pytest.raises(castle.DatasetError, match="cannot fetch Castle-simu: apt-get not found"):
        castle.fetch_castle(tmp_path / "cache")
    folder = _photo_folder(tmp_path)
    code = evaluate.main(["--synthetic", str(folder), "--pairs-per-image", "1", "--scene-pairs",
                          "1", "--methods", "orb", "--cache", str(tmp_path / "cache"),
                          "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "skipping data set 'castle'" in captured.err and "## castle" not in captured.out
    assert "## scenes3d: 1 pairs" in captured.out
    # Named, the same set stops the run.
    assert evaluate.main(["--sets", "castle", "--cache", str(tmp_path / "cache"),
                          "--no-progress"]) == 2
