"""The TensorRT path's clear failures that can be triggered without a GPU.

- TensorRT / pycuda not installed -> BackendUnavailableError naming the missing module and how
  to install it (forced by making the import fail, whether or not they are installed here);
- missing / empty engine file -> ModelLoadError before TensorRT is even needed; a truncated or
  garbage file -> the 'not installed' message here (deserializing needs TensorRT; the GPU tests
  cover the real deserialize failure);
- engine built for another TensorRT / GPU (its JSON) -> a reason naming both versions;
- engine input size different from the model config -> InputSizeError (pure check on the
  engine's tensor list);
- API choice by feature detection (tensor-name API vs binding API) on objects that have exactly
  the attributes each TensorRT generation has.
"""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from loftr_ros.cli import build_engine as cli
from loftr_ros.model.presets import get_preset
from loftr_ros.runtime.base import (
    BackendUnavailableError,
    InputSizeError,
    LoftrRuntimeError,
    ModelLoadError,
)
from loftr_ros.runtime.tensorrt.platform import import_pycuda_driver, import_tensorrt
from loftr_ros.runtime.tensorrt.runtime import (
    BINDING_API,
    TENSOR_NAME_API,
    TensorRTRuntime,
    TensorSpec,
    choose_api,
    map_engine_tensors,
    map_stage_tensors,
    read_engine_bytes,
    stage_engine_files,
)

LITE = get_preset("lite")
SEED = get_preset("seed")


@pytest.fixture
def no_tensorrt(monkeypatch):
    """Make ``import tensorrt`` fail as on a machine without it."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


@pytest.fixture
def no_pycuda(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)


@pytest.fixture
def garbage_engine(tmp_path):
    path = tmp_path / "model.engine"
    path.write_bytes(b"\x00\x01garbage, not a TensorRT plan" * 10)
    return str(path)


def test_tensorrt_missing_is_one_clear_message(no_tensorrt, garbage_engine):
    with pytest.raises(BackendUnavailableError) as info:
        import_tensorrt()
    message = str(info.value)
    print(message)
    assert "TensorRT is not installed" in message and "JetPack" in message
    assert "\n" not in message
    with pytest.raises(BackendUnavailableError, match="TensorRT is not installed"):
        TensorRTRuntime(LITE, garbage_engine)


def test_pycuda_missing_is_one_clear_message(no_pycuda, garbage_engine, monkeypatch):
    with pytest.raises(BackendUnavailableError) as info:
        import_pycuda_driver()
    print(info.value)
    assert "pycuda is not installed" in str(info.value)
    assert "python3-pycuda" in str(info.value)
    # With TensorRT importable (a bare module stands in for it: only the import is exercised),
    # the runtime reports the missing pycuda.
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    with pytest.raises(BackendUnavailableError, match="pycuda is not installed"):
        TensorRTRuntime(LITE, garbage_engine)


def test_missing_engine_file(tmp_path):
    with pytest.raises(ModelLoadError, match="no such TensorRT engine file"):
        TensorRTRuntime(LITE, str(tmp_path / "absent.engine"))


def test_empty_engine_file(tmp_path):
    path = tmp_path / "empty.engine"
    path.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="empty") as info:
        TensorRTRuntime(LITE, str(path))
    assert "loftr-build-engine" in str(info.value)


def test_truncated_engine_without_tensorrt_says_not_installed(no_tensorrt, garbage_engine):
    assert read_engine_bytes(garbage_engine)  # readable: the next step needs TensorRT
    with pytest.raises(BackendUnavailableError, match="TensorRT is not installed"):
        TensorRTRuntime.from_engine_file(garbage_engine)


def _tiny_onnx(path, preset="seed", size=32):
    """A static two-input graph carrying loftr_ros config metadata (what loftr-export writes)."""
    import json

    from onnx import TensorProto, helper, save

    graph = helper.make_graph(
        [helper.make_node("Add", ["image0", "image1"], ["conf_matrix"])], "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 1, size, size])
         for n in ("image0", "image1")],
        [helper.make_tensor_value_info("conf_matrix", TensorProto.FLOAT, [1, 1, size, size])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    entry = model.metadata_props.add()
    entry.key = "loftr_ros.config"
    entry.value = json.dumps(get_preset(preset).with_input_size(size, size).to_dict())
    save(model, str(path))
    return str(path)


def test_factory_engine_file_without_tensorrt_is_clear(no_tensorrt, tmp_path):
    """An engine file is TensorRT-only: no fallback, the clear error."""
    from loftr_ros.runtime import create_runtime

    path = tmp_path / "model.engine"
    path.write_bytes(b"plan")
    with pytest.raises(BackendUnavailableError, match="TensorRT is not installed"):
        create_runtime("tensorrt", weights=str(path), allow_fallback=True)


def test_factory_onnx_without_tensorrt_falls_back_only_if_allowed(no_tensorrt, tmp_path):
    pytest.importorskip("onnxruntime")
    from loftr_ros.runtime import create_runtime

    path = _tiny_onnx(tmp_path / "m.onnx")
    cache = str(tmp_path / "cache")
    with pytest.raises(BackendUnavailableError, match="TensorRT is not installed"):
        create_runtime("tensorrt", weights=path, engine_cache_dir=cache)
    runtime = create_runtime("tensorrt", weights=path, engine_cache_dir=cache,
                             allow_fallback=True)
    assert runtime.name == "onnxruntime"


# ------------------------------------------------------------------------------------------------
# Engine tensors vs model config


def _specs(width, height, tokens, outputs=("conf_matrix",), inputs=("image0", "image1"),
           fine_shape=(1, 32, 120, 160)):
    specs = [TensorSpec(name, (1, 1, height, width), np.dtype(np.float32), True)
             for name in inputs]
    for name in outputs:
        shape = (1, tokens, tokens) if name in ("conf_matrix", "1026", "1019") else fine_shape
        specs.append(TensorSpec(name, shape, np.dtype(np.float32), False))
    return specs


def test_matching_engine_maps_outputs_by_name():
    specs = _specs(640, 480, 1200, outputs=("fine_feat1", "conf_matrix", "fine_feat0"))
    inputs, outputs = map_engine_tensors(specs, LITE, "x.engine")
    assert inputs == ("image0", "image1")
    assert outputs == {"conf_matrix": "conf_matrix", "fine_feat0": "fine_feat0",
                       "fine_feat1": "fine_feat1"}


def test_input_size_mismatch_is_input_size_error():
    specs = _specs(320, 240, 300, outputs=("conf_matrix", "fine_feat0", "fine_feat1"))
    with pytest.raises(InputSizeError) as info:
        map_engine_tensors(specs, LITE, "small.engine")
    message = str(info.value)
    print(message)
    assert "320x240" in message and "640x480" in message and "small.engine" in message


def test_dynamic_engine_shape_is_refused():
    specs = [TensorSpec("image0", (1, 1, -1, -1), np.dtype(np.float32), True),
             TensorSpec("image1", (1, 1, -1, -1), np.dtype(np.float32), True),
             TensorSpec("conf_matrix", (1, -1, -1), np.dtype(np.float32), False)]
    with pytest.raises(ModelLoadError, match="dynamic shape"):
        map_engine_tensors(specs, SEED, "dyn.engine")


def test_missing_outputs_are_refused():
    with pytest.raises(ModelLoadError, match="no output named 'conf_matrix'"):
        map_engine_tensors(_specs(640, 480, 1200, outputs=("sim",)), SEED, "x.engine")
    with pytest.raises(ModelLoadError, match="fine_feat0"):
        map_engine_tensors(_specs(640, 480, 1200), LITE, "x.engine")
    with pytest.raises(ModelLoadError, match="2 image inputs"):
        map_engine_tensors(_specs(640, 480, 1200, inputs=("image0",)), SEED, "x.engine")


def test_seed_engine_uses_the_seed_names():
    """An engine built from the seed's own ONNX: inputs img0/img1, conf is output '1026' (its
    binding order is not trusted)."""
    specs = _specs(640, 480, 1200, outputs=("1019", "1026"), inputs=("img0", "img1"))
    inputs, outputs = map_engine_tensors(specs, SEED, "seed.engine")
    assert inputs == ("img0", "img1") and outputs == {"conf_matrix": "1026"}


# ------------------------------------------------------------------------------------------------
# API choice


class _Trt10Engine:
    num_io_tensors = 3

    def get_tensor_name(self, index):
        return ""


class _Trt10Context:
    def set_tensor_address(self, name, pointer):
        pass

    def execute_async_v3(self, stream_handle):
        return True


class _Trt82Engine:
    num_bindings = 3


class _Trt82Context:
    def execute_async_v2(self, bindings, stream_handle):
        return True


class _Trt86Context(_Trt10Context, _Trt82Context):
    pass


class _Trt86Engine(_Trt10Engine, _Trt82Engine):
    pass


def test_api_choice_by_feature_detection():
    assert choose_api(_Trt10Engine(), _Trt10Context()) == TENSOR_NAME_API
    assert choose_api(_Trt82Engine(), _Trt82Context()) == BINDING_API
    assert choose_api(_Trt86Engine(), _Trt86Context()) == TENSOR_NAME_API  # both: the new one
    with pytest.raises(LoftrRuntimeError, match="TensorRT 8.2 or newer"):
        choose_api(object(), object())


# ------------------------------------------------------------------------------------------------
# CLI


def test_cli_without_tensorrt_is_one_line_and_nonzero(no_tensorrt, tmp_path, capsys):
    path = _tiny_onnx(tmp_path / "m.onnx")
    status = cli.main([path, "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip()
    print(err)
    assert status == 1
    assert err.count("\n") == 0 and "TensorRT is not installed" in err


def test_cli_input_size_picks_the_bundled_model_the_node_loads(no_tensorrt, monkeypatch,
                                                                 capsys):
    """--input-size 320x240 builds from the ONNX that input_width/input_height 320/240 select
    (config/jetson.yaml), so the node finds that engine in the cache."""
    from loftr_ros.runtime import default_weights

    chosen = []
    monkeypatch.setattr(cli, "_audit_notes", lambda path: chosen.append(path) or [])
    status = cli.main(["--input-size", "320x240", "--cache-dir", "/nonexistent/cache"])
    assert status == 1 and "TensorRT is not installed" in capsys.readouterr().err
    assert chosen == [default_weights("onnx", (320, 240))]
    assert chosen[0].endswith("lite_320x240_encoder.onnx")
    with pytest.raises(SystemExit):
        cli.main(["--input-size", "320by240"])
    assert "size must look like 640x480, not '320by240'" in capsys.readouterr().err
    assert cli.main(["--input-size", "100x100"]) == 1
    assert "lite_100x100_encoder.onnx is missing" in capsys.readouterr().err
    assert cli.main(["model.onnx", "--input-size", "320x240"]) == 2
    assert "own size" in capsys.readouterr().err


def test_cli_argument_errors(tmp_path, capsys):
    assert cli.main([str(tmp_path / "absent.onnx")]) == 1
    assert "no such ONNX file" in capsys.readouterr().err
    assert cli.main([str(tmp_path / "m.onnx"), "--int8"]) == 2
    assert "--calib-dir" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["m.onnx", "--fp16", "--no-fp16"])


# ------------------------------------------------------------------------------------------------
# Two-stage engines (encoder + matcher)


def _stage_specs(stage, width=640, height=480, channels=96, fine=True):
    tokens = (width // 16) * (height // 16)
    f32 = np.dtype(np.float32)
    if stage == "encoder":
        specs = [TensorSpec("image", (1, 1, height, width), f32, True),
                 TensorSpec("coarse_feat", (1, tokens, channels), f32, False)]
        if fine:
            specs.append(TensorSpec("fine_feat", (1, 32, height // 4, width // 4), f32, False))
        return specs
    return [TensorSpec("coarse_feat0", (1, tokens, channels), f32, True),
            TensorSpec("coarse_feat1", (1, tokens, channels), f32, True),
            TensorSpec("conf_matrix", (1, tokens, tokens), f32, False)]


def test_stage_engines_are_checked_against_the_config():
    assert map_stage_tensors(_stage_specs("encoder"), LITE, "e.engine", "encoder") == [
        "coarse_feat", "fine_feat"]
    assert map_stage_tensors(_stage_specs("matcher"), LITE, "m.engine", "matcher") == [
        "conf_matrix"]
    with pytest.raises(InputSizeError, match="built for 320x240"):
        map_stage_tensors(_stage_specs("encoder", 320, 240), LITE, "e.engine", "encoder")
    with pytest.raises(ModelLoadError, match="needs inputs"):
        map_stage_tensors(_stage_specs("encoder", fine=False), LITE, "e.engine", "encoder")
    with pytest.raises(ModelLoadError, match="needs inputs"):   # an encoder given as matcher
        map_stage_tensors(_stage_specs("encoder"), LITE, "e.engine", "matcher")
    with pytest.raises(ModelLoadError, match=r"needs \(1, 300, 96\)"):   # 320x240 tokens
        map_stage_tensors(_stage_specs("matcher"), LITE.with_input_size(320, 240), "m.engine",
                          "matcher")


def test_stage_engine_files_find_the_partner(tmp_path):
    import json

    encoder, matcher = tmp_path / "m-encoder.engine", tmp_path / "m-matcher.engine"
    for path, stage, partner in ((encoder, "encoder", matcher), (matcher, "matcher", encoder)):
        path.write_bytes(b"plan")
        (tmp_path / (path.name + ".json")).write_text(json.dumps(
            {"stage": stage, "partner": partner.name}))
    expected = (str(encoder), str(matcher))
    assert stage_engine_files(str(matcher), {"stage": "matcher", "partner": encoder.name}) == \
        expected
    assert stage_engine_files(str(encoder), {"stage": "encoder", "partner": matcher.name}) == \
        expected
    assert stage_engine_files(str(encoder), {"precision": "fp16"}) is None
    matcher.unlink()
    with pytest.raises(ModelLoadError, match="its matcher engine .*m-matcher.engine is missing"):
        stage_engine_files(str(encoder), {"stage": "encoder", "partner": matcher.name})


def test_two_stage_engine_without_tensorrt_says_not_installed(no_tensorrt, tmp_path):
    """The partner is found first (a missing one is named), then TensorRT is needed."""
    import json

    encoder = tmp_path / "m-encoder.engine"
    encoder.write_bytes(b"plan")
    (tmp_path / "m-encoder.engine.json").write_text(json.dumps(
        {"stage": "encoder", "partner": "m-matcher.engine"}))
    with pytest.raises(ModelLoadError, match="m-matcher.engine is missing"):
        TensorRTRuntime.from_engine_file(str(encoder))
    (tmp_path / "m-matcher.engine").write_bytes(b"plan")
    with pytest.raises(BackendUnavailableError, match="TensorRT is not installed"):
        TensorRTRuntime.from_engine_file(str(encoder))
