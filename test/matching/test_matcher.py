"""The Matcher facade, the runtime factory and the loftr-match / loftr-export CLIs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import cv2
import numpy as np
import pytest
from conftest import REPO_ROOT

from loftr_ros.matching.matcher import Matcher
from loftr_ros.runtime import create_runtime, default_weights
from loftr_ros.runtime.base import LoftrRuntimeError, ModelLoadError
from loftr_ros.synthetic.homography import warp_points


def _errors(result, homography: np.ndarray) -> np.ndarray:
    return np.linalg.norm(warp_points(homography, result.keypoints0) - result.keypoints1, axis=1)


@pytest.fixture(scope="module")
def seed_matcher(seed_files: tuple) -> Matcher:
    return Matcher.create(backend="onnxruntime", weights=seed_files[1], preset="seed")


def test_seed_matcher_on_a_real_pair(seed_matcher: Matcher, photo_pair: tuple) -> None:
    image0, image1, homography = photo_pair
    result = seed_matcher.match(image0, image1)
    assert len(result) > 50
    assert result.keypoints0.dtype == np.float32 and result.scores.dtype == np.float32
    assert result.input_size == (640, 480) and result.image1_size == (640, 480)
    assert np.median(_errors(result, homography)) < 16  # seed: one 16-px cell
    assert {"preprocess", "encode", "match_stage", "inference", "mutual_nearest", "refinement",
            "matching", "total"} == set(result.timings)


def test_keypoints_are_in_original_pixels(seed_matcher: Matcher, photo_pair: tuple) -> None:
    """Upscaling image 1 (and colour) must scale its keypoints, not change the matches."""
    image0, image1, homography = photo_pair
    big = cv2.cvtColor(cv2.resize(image1, (960, 720), interpolation=cv2.INTER_LINEAR),
                       cv2.COLOR_GRAY2BGR)
    result = seed_matcher.match(image0, big)
    assert result.image1_size == (960, 720)
    scaled = np.diag([1.5, 1.5, 1.0]) @ homography
    assert np.median(_errors(result, scaled)) < 16 * 1.5
    assert result.keypoints1[:, 0].max() > 640  # really in the 960-wide frame


def test_live_options(seed_matcher: Matcher, photo_pair: tuple) -> None:
    image0, image1, _ = photo_pair
    base = len(seed_matcher.match(image0, image1))
    seed_matcher.max_matches = 10
    assert len(seed_matcher.match(image0, image1)) == 10
    seed_matcher.max_matches = 0
    seed_matcher.threshold = 0.99
    assert len(seed_matcher.match(image0, image1)) < base
    seed_matcher.threshold = 0.01
    with pytest.raises(ValueError):
        seed_matcher.threshold = 2.0
    with pytest.raises(ValueError, match="no fine stage"):
        seed_matcher.refinement = "fine"
    assert seed_matcher.threshold == 0.01 and seed_matcher.refinement == "auto"


def test_concurrent_calls_give_the_sequential_result(seed_matcher: Matcher,
                                                     photo_pair: tuple) -> None:
    image0, image1, _ = photo_pair
    expected = seed_matcher.match(image0, image1).keypoints1
    results = []

    def work() -> None:
        for _ in range(2):
            results.append(seed_matcher.match(image0, image1).keypoints1)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 6
    for keypoints in results:
        np.testing.assert_array_equal(keypoints, expected)


def test_factory_errors(tmp_path, seed_files: tuple) -> None:
    with pytest.raises(LoftrRuntimeError, match="unknown backend"):
        create_runtime(backend="magic")
    with pytest.raises(ModelLoadError, match="no such weights file"):
        create_runtime(backend="onnxruntime", weights=str(tmp_path / "none.onnx"))
    with pytest.raises(ModelLoadError, match="needs an .onnx"):
        create_runtime(backend="onnxruntime", weights=seed_files[0])
    with pytest.raises(ModelLoadError, match="needs a checkpoint"):
        create_runtime(backend="torch", weights=seed_files[1])
    with pytest.raises(ModelLoadError, match="pass its preset"):
        create_runtime(backend="onnxruntime", weights=seed_files[1])
    with pytest.raises(ModelLoadError, match="320x240"):
        create_runtime(backend="onnxruntime", weights=seed_files[1], preset="seed",
                       input_size=(320, 240))
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 100)
    with pytest.raises(ModelLoadError, match="corrupt.onnx"):
        create_runtime(backend="onnxruntime", weights=str(corrupt), preset="seed")


def test_onnx_metadata_must_agree_with_the_graph(tmp_path) -> None:
    """An ONNX file whose loftr_ros metadata names another input size than its graph takes
    (edited or mixed up) is refused at load time, not at the first frame."""
    import onnx

    from loftr_ros.deploy.onnx_export import CONFIG_METADATA_KEY

    small = default_weights("onnx", (320, 240))
    if not os.path.isfile(small):
        pytest.skip("bundled lite_320x240_encoder.onnx missing")
    model = onnx.load(small)
    for prop in model.metadata_props:
        if prop.key == CONFIG_METADATA_KEY:
            config = json.loads(prop.value)
            assert (config["input_width"], config["input_height"]) == (320, 240)
            config["input_width"], config["input_height"] = 640, 480
            prop.value = json.dumps(config)
    edited = tmp_path / "edited.onnx"
    onnx.save(model, str(edited))
    with pytest.raises(ModelLoadError, match="metadata says 640x480 but the graph takes 320x240"):
        create_runtime(backend="onnxruntime", weights=str(edited))
    assert create_runtime(backend="onnxruntime", weights=small).input_size == (320, 240)
    folder = tmp_path / "folder.onnx"
    folder.mkdir()
    with pytest.raises(ModelLoadError, match="not a file"):
        create_runtime(backend="onnxruntime", weights=str(folder))


def test_auto_backend_follows_the_file_type(seed_files: tuple) -> None:
    assert create_runtime(weights=seed_files[1], preset="seed").name == "onnxruntime"
    assert create_runtime(weights=seed_files[0]).name == "torch"


def test_onnxruntime_path_never_imports_torch(seed_files: tuple) -> None:
    code = ("import sys; from loftr_ros.matching.matcher import Matcher; import numpy as np; "
            f"m = Matcher.create(backend='onnxruntime', weights={seed_files[1]!r}, preset='seed'); "
            "m.match(np.zeros((480, 640), np.uint8), np.zeros((480, 640), np.uint8)); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO_ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_bundled_default_model_is_precise_under_camera_motion() -> None:
    """The shipped default model on frames of a moving virtual camera over the bundled photo (the
    demo's and node tests' sequence): sub-cell accuracy. On frames 1-11 of 12, 98.7-100% of the
    matches are within 3 px; with ``min_peak_mass`` 0, 94-96% and 1.8-1.9 times as many."""
    from loftr_ros.synthetic.virtual_camera import (
        make_sequence,
        relative_homography,
        transfer_error,
    )

    matcher = Matcher.create(backend="onnxruntime")
    assert matcher.config.name == "lite" and matcher.config.fine is not None
    images, homographies = make_sequence(7, (640, 480), step=3.0)
    for index in (1, 3, 6):
        result = matcher.match(images[0], images[index])
        errors = transfer_error(relative_homography(homographies[0], homographies[index]),
                                result.keypoints0, result.keypoints1)
        print(f"frame {index}: {len(result)} matches, median error {np.median(errors):.2f} px")
        assert result.refinement == "fine+photometric" and len(result) > 300
        assert np.median(errors) < 2.0
        assert np.mean(errors < 4.0) >= 0.85
    # the fine-window filter: the model's calibrated limit by default, 0 keeps every match
    assert 0.0 < matcher.min_peak_mass == matcher.config.fine.min_peak_mass
    filtered = len(matcher.match(images[0], images[3]))
    matcher.min_peak_mass = 0.0
    assert matcher.min_peak_mass == 0.0 and len(matcher.match(images[0], images[3])) > filtered
    with pytest.raises(ValueError, match="min_peak_mass"):
        matcher.min_peak_mass = 1.5
    # the floor under that filter: never fewer than keep_sharpest matches while more exist
    matcher.min_peak_mass = 1.0   # nothing has all of its window's mass within 3x3 cells
    assert matcher.keep_sharpest == matcher.config.fine.keep_sharpest   # the calibrated floor
    matcher.keep_sharpest = 64
    assert len(matcher.match(images[0], images[3])) == 64
    matcher.keep_sharpest = 10
    assert len(matcher.match(images[0], images[3])) == 10
    matcher.keep_sharpest = 0
    assert len(matcher.match(images[0], images[3])) < 10
    with pytest.raises(ValueError, match="keep_sharpest"):
        matcher.keep_sharpest = -1
    # verify_alignment (off by default): also drops the matches the photometric step cannot align
    matcher.min_peak_mass = 0.0
    every = matcher.match(images[0], images[3])
    assert matcher.verify_alignment is False
    matcher.verify_alignment = True
    verified = matcher.match(images[0], images[3])
    assert 0 < len(verified) < len(every)
    kept = {tuple(point) for point in every.keypoints0.tolist()}
    assert all(tuple(point) in kept for point in verified.keypoints0.tolist())


def test_bundled_default_model_beats_the_seed_on_a_hard_pair(photo_pair: tuple,
                                                             seed_matcher: Matcher) -> None:
    """A strong random homography of an upscaled 600x400 photo (rotation, zoom, perspective,
    photometric change): more correct matches than the seed model, and more precise ones."""
    image0, image1, homography = photo_pair
    ours = Matcher.create(backend="onnxruntime").match(image0, image1)
    seed = seed_matcher.match(image0, image1)
    ours_errors, seed_errors = _errors(ours, homography), _errors(seed, homography)
    print(f"default: {np.sum(ours_errors < 3)} of {len(ours)} within 3 px; seed: "
          f"{np.sum(seed_errors < 3)} of {len(seed)}")
    assert np.sum(ours_errors < 3) > 2 * np.sum(seed_errors < 3)
    assert np.mean(ours_errors < 3) > np.mean(seed_errors < 3)


def test_bundled_onnx_equals_bundled_checkpoint(photo_pair: tuple) -> None:
    from loftr_ros.matching.preprocess import prepare

    torch_runtime = create_runtime(backend="torch")
    onnx_runtime = create_runtime(backend="onnxruntime", weights=default_weights("onnx"))
    inputs = [prepare(image, (640, 480))[0] for image in photo_pair[:2]]
    expected = torch_runtime.run(*inputs)
    actual = onnx_runtime.run(*inputs)
    for name in expected:
        assert np.abs(expected[name] - actual[name]).max() <= 1e-3, name


def test_match_cli_writes_picture_and_json(tmp_path, photo_pair: tuple, seed_files: tuple,
                                           capsys: pytest.CaptureFixture) -> None:
    from loftr_ros.cli.match import main

    paths = []
    for index, image in enumerate(photo_pair[:2]):
        path = str(tmp_path / f"{index}.png")
        cv2.imwrite(path, image)
        paths.append(path)
    out_png, out_json = str(tmp_path / "vis.png"), str(tmp_path / "m.json")
    code = main([paths[0], paths[1], "--weights", seed_files[1], "--preset", "seed",
                 "--out", out_png, "--json", out_json])
    printed = capsys.readouterr().out
    assert code == 0 and " matches (onnxruntime" in printed
    picture = cv2.imread(out_png)
    assert picture.shape == (480, 1280, 3)
    data = json.load(open(out_json))
    assert len(data["keypoints0"]) == len(data["scores"]) > 0
    assert main([str(tmp_path / "missing.png"), paths[1]]) == 2


def test_export_cli(tmp_path, seed_files: tuple, capsys: pytest.CaptureFixture) -> None:
    from loftr_ros.cli.export import main

    out = str(tmp_path / "seed.onnx")
    assert main([seed_files[0], out, "--opset", "13"]) == 0
    assert "max abs diff, chained" in capsys.readouterr().out
    assert os.path.isfile(str(tmp_path / "seed_encoder.onnx"))
    assert os.path.isfile(str(tmp_path / "seed_matcher.onnx")) and not os.path.exists(out)
    assert main([seed_files[0], out, "--opset", "13", "--single-graph"]) == 0
    assert os.path.isfile(out)
    assert main([str(tmp_path / "nope.pt"), out]) == 2


@pytest.mark.slow
def test_torch_compile_runs_on_cpu(photo_pair: tuple, seed_files: tuple) -> None:
    import torch

    from loftr_ros.matching.preprocess import prepare
    from loftr_ros.runtime.torch_runtime import TorchRuntime

    eager = TorchRuntime.from_weights(seed_files[0], device="cpu")
    compiled = TorchRuntime.from_weights(seed_files[0], device="cpu", compile_model=True)
    inputs = [prepare(image, (640, 480))[0] for image in photo_pair[:2]]
    expected = eager.run(*inputs)["conf_matrix"]
    actual = compiled.run(*inputs)["conf_matrix"]
    assert isinstance(compiled._forward, torch.nn.Module) or callable(compiled._forward)
    np.testing.assert_allclose(actual, expected, atol=1e-4)


def test_bundled_jetson_size_and_missing_sizes() -> None:
    """config/jetson.yaml's 320x240 has its own bundled static graph; other sizes say how to
    export one."""
    small = Matcher.create(backend="onnxruntime", input_size=(320, 240))
    assert small.runtime.input_size == (320, 240) and small.config.name == "lite"
    result = small.match(np.zeros((480, 640), np.uint8), np.zeros((480, 640), np.uint8))
    assert result.input_size == (320, 240)
    with pytest.raises(ModelLoadError, match="loftr-export .* --width 480 --height 352"):
        Matcher.create(backend="onnxruntime", input_size=(480, 352))
