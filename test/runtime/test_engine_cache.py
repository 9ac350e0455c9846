"""Engine cache: key and file name, cache folder (default, unwritable fallback), and that an engine
built for another TensorRT version or GPU is never reused. No TensorRT needed: the platform is
passed in and the builder is replaced by a function that records the request and writes a file."""
from __future__ import annotations

import os
import stat

import onnx
import pytest
from onnx import TensorProto, helper

from loftr_ros.runtime import onnx_info
from loftr_ros.runtime.base import LoftrRuntimeError, ModelLoadError
from loftr_ros.runtime.tensorrt import builder as trt_builder
from loftr_ros.runtime.tensorrt import cache as engine_cache
from loftr_ros.runtime.tensorrt import platform as trt_platform
from loftr_ros.runtime.tensorrt.cache import EngineKey
from loftr_ros.runtime.tensorrt.platform import PlatformInfo

JETSON = PlatformInfo(trt_version="8.5.2.2", gpu_name=trt_platform.gpu_label("Orin", (8, 7)))
UPGRADED = PlatformInfo(trt_version="8.6.2.3", gpu_name=JETSON.gpu_name)
OTHER_GPU = PlatformInfo(trt_version="8.5.2.2", gpu_name=trt_platform.gpu_label("NVIDIA Tegra X1",
                                                                          (5, 3)))


def _tiny_onnx(path, width=64, height=48, scale=2.0):
    """A two-input static graph (image0 + image1) * scale; ``scale`` changes the bytes."""
    shape = [1, 1, height, width]
    nodes = [helper.make_node("Add", ["image0", "image1"], ["sum"]),
             helper.make_node("Mul", ["sum", "scale"], ["conf_matrix"])]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("image0", TensorProto.FLOAT, shape),
         helper.make_tensor_value_info("image1", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("conf_matrix", TensorProto.FLOAT, shape)],
        [helper.make_tensor("scale", TensorProto.FLOAT, [], [scale])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return str(path)


class RecordingBuilder:
    """Stands in for build_engine: records each call and writes a placeholder file + JSON like
    build_engine does, so the cache logic around it is exercised for real."""

    def __init__(self):
        self.calls = []

    def __call__(self, onnx_path, engine_path, fp16=None, int8=False, calib_dir=None,
                 workspace_mb=0, verbose=False, log=None, platform=None):
        self.calls.append(dict(onnx_path=onnx_path, engine_path=engine_path, fp16=fp16,
                               int8=int8, platform=platform))
        with open(engine_path, "wb") as handle:
            handle.write(b"engine for " + platform.trt_version.encode())
        engine_cache.write_engine_metadata(engine_path, {"trt_version": platform.trt_version,
                                             "gpu_name": platform.gpu_name})


def test_sanitize_makes_file_name_safe():
    assert trt_platform.sanitize("NVIDIA GeForce RTX 3090") == "nvidia-geforce-rtx-3090"
    assert trt_platform.sanitize("Xavier / AGX (sm72)") == "xavier-agx-sm72"
    assert trt_platform.sanitize("../../etc") == "etc"
    assert trt_platform.sanitize("") == "unknown"
    assert len(trt_platform.sanitize("x" * 500)) <= 48
    assert trt_platform.gpu_label("Orin", (8, 7)) == "orin-sm87"


def test_file_name_encodes_every_part():
    key = EngineKey(model_name="lite", model_hash="3fa2b1c4d5e6f7a8b9c0", width=640, height=480,
                    precision="fp16", trt_version="8.5.2.2", gpu_name="orin-sm87")
    name = key.file_name()
    print(name)
    assert name == "lite-3fa2b1c4d5e6-640x480-fp16-trt8.5.2.2-orin-sm87.engine"
    with pytest.raises(ValueError):
        EngineKey("lite", "ab", 640, 480, "fp8", "8.5", "orin")


def test_key_reads_size_and_hash_from_onnx(tmp_path):
    path = _tiny_onnx(tmp_path / "model.onnx", width=64, height=48)
    key = engine_cache.engine_key(path, "fp32", JETSON)
    assert (key.width, key.height) == (64, 48)
    assert key.model_hash == engine_cache.file_sha256(path)
    assert len(key.file_name().split("-")[1]) == engine_cache.HASH_LENGTH
    assert onnx_info.read_onnx_input_size(path) == (64, 48)


@pytest.mark.parametrize("change", ["weights", "size", "precision", "trt", "gpu"])
def test_each_dependency_changes_the_file_name(tmp_path, change):
    base_path = _tiny_onnx(tmp_path / "model.onnx")
    base = engine_cache.engine_key(base_path, "fp16", JETSON).file_name()
    if change == "weights":
        (tmp_path / "b").mkdir()
        other_path = _tiny_onnx(tmp_path / "b" / "model.onnx", scale=3.0)  # same name and size
        other = engine_cache.engine_key(other_path, "fp16", JETSON)
    elif change == "size":
        other = engine_cache.engine_key(_tiny_onnx(tmp_path / "c.onnx", width=96), "fp16", JETSON)
        assert "96x48" in other.file_name()
    elif change == "precision":
        other = engine_cache.engine_key(base_path, "fp32", JETSON)
    elif change == "trt":
        other = engine_cache.engine_key(base_path, "fp16", UPGRADED)
    else:
        other = engine_cache.engine_key(base_path, "fp16", OTHER_GPU)
    assert other.file_name() != base


def test_precision_default_follows_fast_fp16():
    assert trt_platform.resolve_precision(None, False, JETSON) == "fp16"
    slow = PlatformInfo("8.2.1.8", "gpu", fast_fp16=False)
    assert trt_platform.resolve_precision(None, False, slow) == "fp32"
    assert trt_platform.resolve_precision(True, False, slow) == "fp16"
    assert trt_platform.resolve_precision(False, False, JETSON) == "fp32"
    assert trt_platform.resolve_precision(False, True, JETSON) == "int8"


def test_fast_fp16_by_compute_capability():
    assert trt_platform.has_fast_fp16((5, 3))  # Jetson Nano
    assert trt_platform.has_fast_fp16((6, 2))  # TX2
    assert trt_platform.has_fast_fp16((7, 2)) and trt_platform.has_fast_fp16((8, 7))  # Xavier, Orin
    assert not trt_platform.has_fast_fp16((6, 1))  # GeForce 10
    assert not trt_platform.has_fast_fp16((5, 2))


def test_default_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert engine_cache.default_cache_dir() == str(tmp_path / "xdg" / "loftr_ros" / "engines")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert engine_cache.default_cache_dir() == str(tmp_path / "home" / ".cache" / "loftr_ros" /
                                             "engines")


def test_cache_dir_is_created(tmp_path):
    wanted = tmp_path / "a" / "b"
    assert engine_cache.resolve_cache_dir(str(wanted)) == str(wanted)
    assert wanted.is_dir()


def _unwritable_dir(tmp_path):
    """A folder this process cannot create files in (a regular file in the way works for root
    too: nothing can be created 'inside' a file)."""
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    return str(blocker / "engines")


def test_unwritable_cache_dir_falls_back_and_says_so(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(engine_cache.tempfile, "tempdir", str(tmp_path / "tmp"))
    os.makedirs(tmp_path / "tmp")
    lines = []
    folder = engine_cache.resolve_cache_dir(_unwritable_dir(tmp_path), log=lines.append)
    print(lines)
    assert folder.startswith(str(tmp_path / "tmp"))
    assert os.path.isdir(folder)
    assert len(lines) == 1 and "not writable" in lines[0] and folder in lines[0]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root ignores directory permissions")
def test_read_only_cache_dir_falls_back(tmp_path, monkeypatch):
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(stat.S_IRUSR | stat.S_IXUSR)
    monkeypatch.setattr(engine_cache.tempfile, "tempdir", str(tmp_path))
    try:
        assert engine_cache.resolve_cache_dir(str(read_only)) != str(read_only)
    finally:
        read_only.chmod(stat.S_IRWXU)


def test_no_writable_folder_at_all_is_a_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setattr(engine_cache.tempfile, "tempdir", str(blocker))
    with pytest.raises(LoftrRuntimeError, match="not writable"):
        engine_cache.resolve_cache_dir(_unwritable_dir(tmp_path))


def test_get_or_build_builds_once_then_reuses(tmp_path):
    onnx_path = _tiny_onnx(tmp_path / "model.onnx")
    builder = RecordingBuilder()
    lines = []
    kwargs = dict(cache_dir=str(tmp_path / "cache"), platform=JETSON, builder=builder,
                  log=lines.append)
    first = trt_builder.get_or_build_engine(onnx_path, **kwargs)
    second = trt_builder.get_or_build_engine(onnx_path, **kwargs)
    assert first == second and os.path.isfile(first)
    assert len(builder.calls) == 1
    assert builder.calls[0]["fp16"] is True  # Orin has fast fp16: the default
    assert any("using cached engine" in line for line in lines)
    trt_builder.get_or_build_engine(onnx_path, rebuild=True, **kwargs)
    assert len(builder.calls) == 2


@pytest.mark.parametrize("platform", [UPGRADED, OTHER_GPU], ids=["new-tensorrt", "other-gpu"])
def test_stale_engine_is_never_reused(tmp_path, platform):
    onnx_path = _tiny_onnx(tmp_path / "model.onnx")
    cache = str(tmp_path / "cache")
    builder = RecordingBuilder()
    old = trt_builder.get_or_build_engine(onnx_path, cache_dir=cache, platform=JETSON,
                                          builder=builder)
    new = trt_builder.get_or_build_engine(onnx_path, cache_dir=cache, platform=platform,
                                     builder=builder)
    assert new != old
    assert len(builder.calls) == 2 and builder.calls[1]["platform"] == platform
    with open(new, "rb") as handle:
        assert platform.trt_version.encode() in handle.read()


def test_engine_whose_json_disagrees_is_rebuilt(tmp_path):
    """A file at the right name but recorded for another TensorRT (copied by hand, say) is not
    trusted: it is rebuilt."""
    onnx_path = _tiny_onnx(tmp_path / "model.onnx")
    cache = str(tmp_path / "cache")
    builder = RecordingBuilder()
    path = trt_builder.get_or_build_engine(onnx_path, cache_dir=cache, platform=JETSON,
                                      builder=builder)
    engine_cache.write_engine_metadata(path, {"trt_version": "8.2.1.8",
                                              "gpu_name": JETSON.gpu_name})
    lines = []
    trt_builder.get_or_build_engine(onnx_path, cache_dir=cache, platform=JETSON, builder=builder,
                               log=lines.append)
    assert len(builder.calls) == 2
    assert any("TensorRT 8.2.1.8" in line and "rebuilding" in line for line in lines)


def test_empty_cached_engine_is_rebuilt(tmp_path):
    onnx_path = _tiny_onnx(tmp_path / "model.onnx")
    cache = str(tmp_path / "cache")
    builder = RecordingBuilder()
    path = trt_builder.get_or_build_engine(onnx_path, cache_dir=cache, platform=JETSON,
                                      builder=builder)
    open(path, "wb").close()
    trt_builder.get_or_build_engine(onnx_path, cache_dir=cache, platform=JETSON, builder=builder)
    assert len(builder.calls) == 2


def test_incompatibility_reasons():
    meta = {"trt_version": "8.5.2.2", "gpu_name": "orin-sm87"}
    assert engine_cache.engine_incompatibility(meta, "8.5.2.2", "orin-sm87") is None
    assert "TensorRT 8.5.2.2" in engine_cache.engine_incompatibility(meta, "10.3.0", "orin-sm87")
    assert "GPU orin-sm87" in engine_cache.engine_incompatibility(meta, "8.5.2.2", "xavier-sm72")
    assert engine_cache.engine_incompatibility(None, "8.5.2.2", "orin-sm87") is None


def test_missing_onnx_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="no such ONNX file"):
        trt_builder.get_or_build_engine(str(tmp_path / "nope.onnx"), platform=JETSON,
                                   builder=RecordingBuilder())


def test_dynamic_onnx_input_is_refused(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["image0"], ["conf_matrix"])], "dyn",
        [helper.make_tensor_value_info("image0", TensorProto.FLOAT, [1, 1, "height", "width"])],
        [helper.make_tensor_value_info("conf_matrix", TensorProto.FLOAT, [1, 1, "h", "w"])])
    path = str(tmp_path / "dyn.onnx")
    onnx.save(helper.make_model(graph), path)
    with pytest.raises(ModelLoadError, match="static"):
        onnx_info.read_onnx_input_size(path)


def test_int8_needs_calibration_images(tmp_path):
    onnx_path = _tiny_onnx(tmp_path / "model.onnx")
    with pytest.raises(LoftrRuntimeError, match="calibration"):
        trt_builder.get_or_build_engine(onnx_path, int8=True, platform=JETSON,
                                   builder=RecordingBuilder(), cache_dir=str(tmp_path))
    calib = tmp_path / "calib"
    calib.mkdir()
    (calib / "a.png").write_bytes(b"1234")
    builder = RecordingBuilder()
    path = trt_builder.get_or_build_engine(onnx_path, int8=True, calib_dir=str(calib),
                                      platform=JETSON, builder=builder, cache_dir=str(tmp_path))
    assert "-int8-" in os.path.basename(path) and builder.calls[0]["int8"] is True
    (calib / "b.png").write_bytes(b"5678")  # another calibration set: another engine
    other = trt_builder.get_or_build_engine(onnx_path, int8=True, calib_dir=str(calib),
                                       platform=JETSON, builder=builder, cache_dir=str(tmp_path))
    assert other != path


def _stage_onnx(folder, stem="two", width=64, height=48):
    """A tiny two-stage model as loftr-export writes it: ``<stem>_encoder.onnx`` (image ->
    coarse_feat) and ``<stem>_matcher.onnx`` (coarse_feat0, coarse_feat1 -> conf_matrix), whose
    metadata name their stage and each other."""
    shape = [1, 1, height, width]
    encoder = helper.make_graph(
        [helper.make_node("Identity", ["image"], ["coarse_feat"])], "encoder",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("coarse_feat", TensorProto.FLOAT, shape)])
    matcher = helper.make_graph(
        [helper.make_node("Add", ["coarse_feat0", "coarse_feat1"], ["conf_matrix"])], "matcher",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)
         for n in ("coarse_feat0", "coarse_feat1")],
        [helper.make_tensor_value_info("conf_matrix", TensorProto.FLOAT, shape)])
    paths = [str(folder / f"{stem}_encoder.onnx"), str(folder / f"{stem}_matcher.onnx")]
    for graph, path, stage, partner in ((encoder, paths[0], "encoder", paths[1]),
                                        (matcher, paths[1], "matcher", paths[0])):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.metadata_props.add(key="loftr_ros.stage", value=stage)
        model.metadata_props.add(key="loftr_ros.partner", value=os.path.basename(partner))
        onnx.save(model, path)
    return paths


def test_two_stage_model_builds_two_engines_under_one_key(tmp_path):
    encoder_onnx, matcher_onnx = _stage_onnx(tmp_path)
    cache = str(tmp_path / "cache")
    builder = RecordingBuilder()
    path = trt_builder.get_or_build_engine(matcher_onnx, cache_dir=cache, platform=JETSON,
                                           builder=builder, fp16=True)
    assert [call["onnx_path"] for call in builder.calls] == [encoder_onnx, matcher_onnx]
    encoder_engine, matcher_engine = (call["engine_path"] for call in builder.calls)
    assert path == encoder_engine and encoder_engine.endswith("-encoder.engine")
    assert matcher_engine == encoder_engine.replace("-encoder.engine", "-matcher.engine")
    assert os.path.basename(path).startswith("two-")   # the model's name, not its encoder's
    assert "-64x48-fp16-trt8.5.2.2-orin-sm87-" in os.path.basename(path)
    encoder_meta = engine_cache.read_engine_metadata(encoder_engine)
    matcher_meta = engine_cache.read_engine_metadata(matcher_engine)
    assert (encoder_meta["stage"], encoder_meta["partner"]) == (
        "encoder", os.path.basename(matcher_engine))
    assert (matcher_meta["stage"], matcher_meta["partner"]) == (
        "matcher", os.path.basename(encoder_engine))
    # cached: nothing rebuilt, from either file
    assert trt_builder.get_or_build_engine(encoder_onnx, cache_dir=cache, platform=JETSON,
                                           builder=builder, fp16=True) == path
    assert len(builder.calls) == 2
    # one stage missing: both are rebuilt, so the pair always comes from one build
    os.remove(matcher_engine)
    trt_builder.get_or_build_engine(encoder_onnx, cache_dir=cache, platform=JETSON,
                                    builder=builder, fp16=True)
    assert len(builder.calls) == 4
    # another matcher graph: another key
    with open(matcher_onnx, "ab") as handle:
        handle.write(b"\0")
    other = trt_builder.get_or_build_engine(encoder_onnx, cache_dir=cache, platform=JETSON,
                                            builder=builder, fp16=True)
    assert other != path


def test_two_stage_int8_calibrates_the_encoder_only(tmp_path):
    encoder_onnx, _ = _stage_onnx(tmp_path)
    calib = tmp_path / "calib"
    calib.mkdir()
    (calib / "a.png").write_bytes(b"1234")
    builder = RecordingBuilder()
    trt_builder.get_or_build_engine(encoder_onnx, int8=True, calib_dir=str(calib),
                                    platform=JETSON, builder=builder, cache_dir=str(tmp_path))
    encoder_call, matcher_call = builder.calls
    assert encoder_call["int8"] is True and matcher_call["int8"] is False
    assert matcher_call["fp16"] is True
