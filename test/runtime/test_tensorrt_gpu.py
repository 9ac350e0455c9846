"""TensorRT on a real GPU (marker ``gpu``; skipped with the reason where CUDA, TensorRT or pycuda
is absent).

For every preset at its default size (random weights; the seed also with its real weights and
its own ONNX): build an engine with
:func:`loftr_ros.runtime.tensorrt.builder.get_or_build_engine`, run it with
:class:`TensorRTRuntime` on a real photo pair, compare with onnxruntime (CPU): max abs diff of
every output <= 1e-4 for fp32 engines, <= 1e-2 for fp16. Prints build time and latencies.
Also the failures that need a real TensorRT: truncated engine, engine recorded for another
TensorRT, size mismatch, use after close.
"""
from __future__ import annotations

import os
import statistics
import time

import numpy as np
import pytest

from loftr_ros.model.presets import PRESETS, get_preset
from loftr_ros.runtime.base import InputSizeError, LoftrRuntimeError, ModelLoadError
from loftr_ros.runtime.onnx_runtime import OnnxRuntime
from loftr_ros.runtime.tensorrt.builder import get_or_build_engine
from loftr_ros.runtime.tensorrt.cache import read_engine_metadata
from loftr_ros.runtime.tensorrt.runtime import BINDING_API, TENSOR_NAME_API, TensorRTRuntime

pytestmark = pytest.mark.gpu

TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}
RUNS = 20


def _unavailable_reason():
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        return f"TensorRT is not installed ({exc})"
    try:
        import pycuda.driver as cuda
    except ImportError as exc:
        return f"pycuda is not installed ({exc})"
    try:
        cuda.init()
        if cuda.Device.count() < 1:
            return "no CUDA GPU"
    except Exception as exc:  # no driver / no device
        return f"no usable CUDA GPU ({exc})"
    return None


REASON = _unavailable_reason()
if REASON:
    pytest.skip(f"needs CUDA + TensorRT + pycuda: {REASON}", allow_module_level=True)


def _images(photo_pair):
    image0, image1, _ = photo_pair
    return ((image0.astype(np.float32) / 255.0)[None, None],
            (image1.astype(np.float32) / 255.0)[None, None])


def _median_ms(function, runs=RUNS, warmup=3):
    for _ in range(warmup):
        function()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


@pytest.fixture(scope="module")
def exports(tmp_path_factory, photo_pair):
    """(preset name[, weights]) -> ONNX path: random init at the default size, or the given
    seed checkpoint ('seed-real')."""
    pytest.importorskip("torch", reason="exporting needs PyTorch")
    import torch

    from loftr_ros.deploy.onnx_export import export_onnx
    from loftr_ros.model.network import build_model

    folder = tmp_path_factory.mktemp("trt_onnx")
    images = _images(photo_pair)
    cache = {}

    def get(name, weights=None):
        if name not in cache:
            path = str(folder / f"{name}.onnx")
            if weights is not None:
                export_onnx(weights, path, preset="seed", verify_images=images)
            else:
                torch.manual_seed(0)
                export_onnx(build_model(get_preset(name)).eval(), path, verify_images=images)
            cache[name] = path
        return cache[name]

    return get


def _compare(onnx_path, engine_path, photo_pair, precision, label, config=None, preset=None):
    images = _images(photo_pair)
    reference = OnnxRuntime(onnx_path, preset=preset, providers=["CPUExecutionProvider"])
    runtime = TensorRTRuntime(config or reference.config, engine_path, preset=preset)
    try:
        expected = reference.run(*images)
        actual = runtime.run(*images)
        assert set(actual) == set(expected)
        diffs = {name: float(np.abs(actual[name] - expected[name]).max()) for name in expected}
        trt_ms = _median_ms(lambda: runtime.run(*images))
        ort_ms = _median_ms(lambda: reference.run(*images), runs=3, warmup=1)
        print(f"\n{label} {precision}: {runtime.description}; max abs diff {diffs}; "
              f"TensorRT {trt_ms:.2f} ms (median of {RUNS}), onnxruntime CPU {ort_ms:.1f} ms")
        for name, diff in diffs.items():
            assert diff <= TOLERANCE[precision], f"{name}: {diff} > {TOLERANCE[precision]}"
    finally:
        runtime.close()
    return runtime


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("preset", sorted(PRESETS) + ["seed-real"])
def test_engine_matches_onnxruntime(preset, precision, exports, tmp_path_factory, photo_pair,
                                    request):
    weights = request.getfixturevalue("seed_files")[0] if preset == "seed-real" else None
    onnx_path = exports(preset, weights)
    cache = str(tmp_path_factory.getbasetemp() / "engines")
    started = time.monotonic()
    engine_path = get_or_build_engine(onnx_path, cache_dir=cache, fp16=precision == "fp16",
                                      log=print)
    print(f"{preset} {precision}: built in {time.monotonic() - started:.1f} s -> "
          f"{os.path.basename(engine_path)}")
    assert read_engine_metadata(engine_path)["precision"] == precision
    _compare(onnx_path, engine_path, photo_pair, precision, preset)


def test_seed_own_onnx_outputs_by_name(seed_files, tmp_path, photo_pair):
    """The seed's ONNX (outputs '1019' sim and '1026' conf): conf is found by name."""
    engine_path = get_or_build_engine(seed_files[1], cache_dir=str(tmp_path), fp16=False)
    images = _images(photo_pair)
    runtime = TensorRTRuntime.from_engine_file(engine_path, preset="seed")
    reference = OnnxRuntime(seed_files[1], preset="seed", providers=["CPUExecutionProvider"])
    try:
        diff = np.abs(runtime.run(*images)["conf_matrix"] - reference.run(*images)["conf_matrix"])
        print(f"\nseed's own ONNX fp32: max abs diff {diff.max():.2e}")
        assert diff.max() <= TOLERANCE["fp32"]
    finally:
        runtime.close()


def test_both_apis_where_available(exports, tmp_path, photo_pair):
    import tensorrt as trt

    onnx_path = exports("seed")
    engine_path = get_or_build_engine(onnx_path, cache_dir=str(tmp_path), fp16=False)
    images = _images(photo_pair)
    results = {}
    for api in (TENSOR_NAME_API, BINDING_API):
        try:
            runtime = TensorRTRuntime(None, engine_path, api=api)
        except LoftrRuntimeError as exc:
            print(f"\nTensorRT {trt.__version__}: {api} API unavailable ({exc})")
            continue
        try:
            assert runtime.api == api
            results[api] = runtime.run(*images)["conf_matrix"]
        finally:
            runtime.close()
    print(f"\nTensorRT {trt.__version__}: APIs run {sorted(results)}")
    assert results
    if len(results) == 2:
        assert np.array_equal(results[TENSOR_NAME_API], results[BINDING_API])


def test_gpu_failures_are_clear(exports, tmp_path, photo_pair):
    import json

    onnx_path = exports("seed")
    engine_path = get_or_build_engine(onnx_path, cache_dir=str(tmp_path / "cache"), fp16=False)
    data = open(engine_path, "rb").read()

    truncated = tmp_path / "truncated.engine"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="cannot deserialize") as info:
        TensorRTRuntime(get_preset("seed"), str(truncated))
    print(f"\ntruncated: {info.value}")

    foreign = tmp_path / "foreign.engine"
    foreign.write_bytes(data)
    meta = read_engine_metadata(engine_path)
    meta["trt_version"] = "7.1.3"
    (tmp_path / "foreign.engine.json").write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="TensorRT 7.1.3") as info:
        TensorRTRuntime(None, str(foreign))
    print(f"foreign: {info.value}")

    with pytest.raises(InputSizeError, match="320x240") as info:
        TensorRTRuntime(get_preset("seed").with_input_size(320, 240), engine_path)
    print(f"size: {info.value}")

    runtime = TensorRTRuntime(None, engine_path)
    images = _images(photo_pair)
    with pytest.raises(InputSizeError):
        runtime.run(images[0][:, :, :240], images[1][:, :, :240])
    runtime.close()
    runtime.close()  # twice is fine
    with pytest.raises(LoftrRuntimeError, match="closed"):
        runtime.run(*images)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_two_stage_engines_match_onnxruntime(precision, tmp_path, photo_pair):
    """The bundled two-stage model: two engines under one key, loaded from either file; the
    encoder + matcher chain (and a reference encoded once) agrees with onnxruntime."""
    from loftr_ros.runtime import default_weights

    onnx_path = default_weights("onnx")
    engine_path = get_or_build_engine(onnx_path, cache_dir=str(tmp_path),
                                      fp16=precision == "fp16", log=print)
    metadata = read_engine_metadata(engine_path)
    assert metadata["stage"] == "encoder" and metadata["partner"].endswith("-matcher.engine")
    runtime = _compare(onnx_path, engine_path, photo_pair, precision, "lite two-stage")
    assert runtime.two_stage
    partner = os.path.join(str(tmp_path), metadata["partner"])
    by_matcher = TensorRTRuntime.from_engine_file(partner)
    reference = OnnxRuntime(onnx_path, providers=["CPUExecutionProvider"])
    try:
        images = _images(photo_pair)
        encoded = by_matcher.encode(images[0])   # the cached reference
        frame = by_matcher.encode(images[1])
        expected = reference.match(reference.encode(images[0]), reference.encode(images[1]))
        actual = by_matcher.match(encoded, frame)
        for name in expected:
            assert np.abs(actual[name] - expected[name]).max() <= TOLERANCE[precision], name
        per_frame = _median_ms(lambda: by_matcher.match(encoded, by_matcher.encode(images[1])))
        whole = _median_ms(lambda: by_matcher.run(*images))
        print(f"two-stage {precision}: per frame against a cached reference {per_frame:.2f} ms, "
              f"whole pair {whole:.2f} ms")
    finally:
        by_matcher.close()
