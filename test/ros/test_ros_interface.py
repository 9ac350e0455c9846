"""The ROS contract (loftr_ros.ros.interface) is consistent, and the config files follow it."""
import glob
import os

import numpy as np
import pytest
import yaml
from conftest import REPO_ROOT as REPO

from loftr_ros.ros import interface as api

PYTHON_TYPES = {api.STRING: str, api.BOOL: bool, api.INTEGER: int, api.DOUBLE: float}


def test_imports_without_rclpy():
    import subprocess
    import sys

    code = ("import sys, loftr_ros.ros.interface; "
            "assert not [m for m in sys.modules if m.startswith(('rclpy', 'sensor_msgs'))]")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_topics():
    names = [t.name for t in api.TOPICS]
    assert len(set(names)) == len(names)
    assert set(names) == {"image", "image/compressed", "camera_info", "~/set_reference",
                          "~/matches", "~/homography", "~/relative_pose", "~/debug_image",
                          "~/reference_image", "/diagnostics"}
    for topic in api.TOPICS:
        assert topic.kind in (api.SUB, api.PUB, api.SRV)
        assert topic.msg_type.count("/") == 2 and topic.notes
        if topic.kind != api.SRV:
            assert topic.qos in (api.QOS_SENSOR_DATA, api.QOS_RELIABLE, api.QOS_SYSTEM_DEFAULT,
                                 api.QOS_LATCHED, api.QOS_FROM_PARAMETER)
    by_name = {t.name: t for t in api.TOPICS}
    assert by_name["~/reference_image"].qos == api.QOS_LATCHED
    assert by_name["image"].qos == api.QOS_FROM_PARAMETER
    from loftr_ros.matching.preprocess import MIN_IMAGE_SIDE
    assert f"side under {MIN_IMAGE_SIDE} px" in by_name["image"].notes


@pytest.mark.parametrize("spec", api.PARAMETERS, ids=lambda s: s.name)
def test_parameter_spec(spec):
    assert spec.type in PYTHON_TYPES and spec.description
    if spec.default is not api.FROM_MODEL:
        assert type(spec.default) is PYTHON_TYPES[spec.type]
        assert spec.check(spec.default) is None
    else:
        assert spec.dynamic, "a default taken from the model needs a live parameter"
    if spec.choices is not None:
        assert spec.type == api.STRING and spec.default in spec.choices
    if spec.range is not None:
        assert spec.type in (api.INTEGER, api.DOUBLE) and spec.range[0] <= spec.range[1]
    assert not (spec.read_only and spec.dynamic)
    assert spec.default_text


def test_parameter_set():
    names = [p.name for p in api.PARAMETERS]
    assert len(set(names)) == len(names)
    for required in ("backend", "weights", "preset", "onnx_path", "engine_path",
                     "engine_cache_dir", "fp16", "allow_backend_fallback", "input_width",
                     "input_height", "threshold", "max_matches", "border_margin", "refinement",
                     "min_peak_mass", "keep_sharpest",
                     "image_qos", "auto_reference", "publish_debug_image", "diagnostics_period",
                     "estimate", "estimate_threshold_px", "min_inliers", "image_transport",
                     "pose_frame_id"):
        assert required in names
    assert {"threshold", "max_matches", "border_margin", "min_peak_mass", "keep_sharpest",
            "publish_debug_image"} <= set(
        api.DYNAMIC_PARAMETERS)
    for name in ("backend", "weights", "preset", "allow_backend_fallback", "input_width",
                 "input_height", "image_qos", "estimate", "image_transport"):
        assert api.PARAMETERS_BY_NAME[name].read_only
    assert api.PARAMETERS_BY_NAME["backend"].choices == ("auto", "tensorrt", "onnxruntime",
                                                         "torch")
    assert api.PARAMETERS_BY_NAME["threshold"].range[:2] == (0.0, 1.0)


def test_parameter_defaults_are_the_library_defaults():
    from loftr_ros.matching.postprocess import MatchingOptions

    assert api.PARAMETERS_BY_NAME["max_matches"].default == MatchingOptions.max_matches
    # the model's calibrated values: MatchingOptions' None, the node's "from model"
    for name in ("min_peak_mass", "keep_sharpest"):
        assert getattr(MatchingOptions, name) is None, name
        assert api.PARAMETERS_BY_NAME[name].default is api.FROM_MODEL, name


def test_launch_argument_text_becomes_a_typed_checked_value():
    by_name = api.PARAMETERS_BY_NAME
    assert by_name["backend"].from_text("onnxruntime") == "onnxruntime"
    assert by_name["threshold"].from_text("0.3") == 0.3
    assert by_name["max_matches"].from_text("500") == 500
    assert by_name["fp16"].from_text("False") is False and by_name["fp16"].from_text("1") is True
    for name, text, words in [("backend", "cuda", "must be one of"),
                              ("threshold", "2", r"must be in \[0.0, 1.0\]"),
                              ("max_matches", "many", "integer parameter"),
                              ("fp16", "maybe", "bool parameter")]:
        with pytest.raises(ValueError, match=words):
            by_name[name].from_text(text)


def test_check_reports_problems():
    backend = api.PARAMETERS_BY_NAME["backend"]
    assert "one of" in backend.check("cuda")
    threshold = api.PARAMETERS_BY_NAME["threshold"]
    assert threshold.check(0.5) is None and "[0.0, 1.0]" in threshold.check(1.5)


def test_matches_schema():
    names = [f.name for f in api.MATCHES_FIELDS]
    assert names == ["ref_u", "ref_v", "cur_u", "cur_v", "score", "ref_sec", "ref_nanosec",
                     "inlier"]
    assert [f.type_name for f in api.MATCHES_FIELDS] == ["FLOAT32"] * 5 + ["UINT32"] * 2 + [
        "UINT8"]
    offset = 0
    for field in api.MATCHES_FIELDS:
        assert field.offset == offset and field.meaning
        offset += api.MATCHES_DTYPE[field.name].itemsize
    assert offset == 29, "the packed fields"
    assert api.MATCHES_POINT_STEP == api.MATCHES_DTYPE.itemsize == 32, "rows 4-byte aligned"
    assert api.MATCHES_DTYPE["ref_u"] == np.dtype("<f4")
    assert api.MATCHES_DTYPE["ref_sec"] == np.dtype("<u4")
    assert api.MATCHES_DTYPE["inlier"] == np.dtype("u1")
    assert api.MATCHES_IS_BIGENDIAN is False


def config_files():
    return sorted(glob.glob(os.path.join(REPO, "config", "*.yaml")))


def test_config_files_exist():
    names = {os.path.basename(p) for p in config_files()}
    assert {"matcher.yaml", "jetson.yaml"} <= names


@pytest.mark.parametrize("path", config_files(), ids=os.path.basename)
def test_config_file_follows_the_contract(path):
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    assert list(data) == ["/**"], "one wildcard section, so any node name/namespace gets it"
    params = data["/**"]["ros__parameters"]
    for name, value in params.items():
        spec = api.PARAMETERS_BY_NAME.get(name)
        assert spec is not None, f"{name} is not a loftr_matcher parameter"
        assert type(value) is PYTHON_TYPES[spec.type], f"{name}: {value!r} is not {spec.type}"
        assert spec.check(value) is None, spec.check(value)


def test_jetson_profile():
    with open(os.path.join(REPO, "config", "jetson.yaml"), encoding="utf-8") as handle:
        params = yaml.safe_load(handle)["/**"]["ros__parameters"]
    assert params["backend"] == "tensorrt" and params["fp16"] is True
    assert params["input_width"] % 16 == 0 and params["input_height"] % 16 == 0
    assert 0 < params["input_width"] * params["input_height"] <= 640 * 480


def test_descriptors_build():
    pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) not installed")
    from loftr_ros.ros.node import descriptor, qos_profile

    for spec in api.PARAMETERS:
        desc = descriptor(spec)
        assert desc.name == spec.name and desc.read_only == spec.read_only
        assert bool(desc.integer_range or desc.floating_point_range) == (spec.range is not None)
    for kind in (api.QOS_SENSOR_DATA, api.QOS_RELIABLE, api.QOS_SYSTEM_DEFAULT, api.QOS_LATCHED):
        qos_profile(kind)
