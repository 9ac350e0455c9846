"""README.md tells the truth: generated tables, first commands, examples, links, names."""
from __future__ import annotations

import ast
import contextlib
import io
import os
import re
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT as REPO

README_PATH = os.path.join(REPO, "README.md")
sys.path.insert(0, os.path.join(REPO, "scripts"))

import link_data_files  # noqa: E402
import readme_tables  # noqa: E402


@pytest.fixture(scope="module")
def readme() -> str:
    with open(README_PATH, encoding="utf-8") as handle:
        return handle.read()


def _code_blocks(text: str):
    """(start offset, language, body) of every fenced code block."""
    return [(m.start(), m.group(1), m.group(2))
            for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)]


def test_generated_tables_are_current(readme):
    assert readme_tables.render(readme) == readme, (
        "README.md's generated tables differ from the code: run python scripts/readme_tables.py")


def test_model_doc_tables_are_current():
    with open(readme_tables.MODEL_DOC, encoding="utf-8") as handle:
        text = handle.read()
    assert readme_tables.render(text, readme_tables.MODEL_DOC_TABLES) == text, (
        "docs/model.md's generated tables differ from the code: "
        "run python scripts/readme_tables.py")


def test_every_generated_section_has_content(readme):
    with open(readme_tables.MODEL_DOC, encoding="utf-8") as handle:
        model_doc = handle.read()
    sections = [(readme, name) for name in readme_tables.README_TABLES]
    sections += [(model_doc, name) for name in readme_tables.MODEL_DOC_TABLES]
    assert {name for _, name in sections} == set(readme_tables.TABLES)
    for text, name in sections:
        begin = readme_tables.BEGIN.format(name=name)
        body = text.split(begin, 1)[1].split(readme_tables.END.format(name=name), 1)[0]
        assert body.count("\n|") >= 3, f"section {name} has no table rows"


def test_first_thing_is_the_two_commands(readme):
    before_first_block = readme.split("```", 1)[0]
    assert [line for line in before_first_block.splitlines() if line.strip()] == ["# loftr_ros"]
    _, _, body = _code_blocks(readme)[0]
    commands = [line.split("#", 1)[0].strip() for line in body.splitlines() if line.strip()]
    assert commands == ["./scripts/demo.sh", "./scripts/test.sh"]


def test_the_two_commands_exist_and_are_executable():
    for name in ("demo.sh", "test.sh", "setup.sh"):
        path = os.path.join(REPO, "scripts", name)
        assert os.access(path, os.X_OK), f"scripts/{name} is missing or not executable"
    with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as handle:
        assert handle.read().split() == ["#!/usr/bin/env", "bash", "exec", "./scripts/test.sh"]


def test_local_links_exist(readme):
    for target in re.findall(r"\]\(([^)\s]+)\)", readme):
        if re.match(r"^[a-z]+://|^#|^mailto:", target):
            continue
        path = os.path.join(REPO, target.split("#", 1)[0])
        assert os.path.exists(path), f"README.md links to {target}, which does not exist"


def test_pictures_are_small(readme):
    for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", readme):
        size = os.path.getsize(os.path.join(REPO, target))
        assert size < 200 * 1024, f"{target} is {size // 1024} KB; keep README pictures < 200 KB"


def test_console_scripts_named_in_readme_exist(readme):
    scripts = {entry.split("=", 1)[0].strip() for entry in
               link_data_files.read_setup_kwargs(REPO)["entry_points"]["console_scripts"]}
    named = set(re.findall(r"\b(loftr-[a-z-]*[a-z])\b", readme))
    named.discard("loftr-ros")
    assert named <= scripts, f"README.md names commands setup.py lacks: {named - scripts}"


def _launch_arguments():
    with open(os.path.join(REPO, "launch", "matcher.launch.py"), encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    return {node.args[0].value for node in ast.walk(tree)
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
            and getattr(node.func, "id", "") == "DeclareLaunchArgument"}


def test_launch_arguments_table_matches_the_launch_file(readme):
    section = readme.split("Launch arguments of `matcher.launch.py`", 1)[1]
    table = re.search(r"((?:^\|.*\n)+)", section, re.M).group(1)
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", table, re.M))
    assert documented == _launch_arguments()


def _consumer_example(readme: str) -> str:
    marker = readme.index("<!-- example: matches-consumer")
    return next(body for start, lang, body in _code_blocks(readme)
                if start > marker and lang == "python")


def test_matches_consumer_example_reads_the_real_message(readme):
    """Runs the README's subscriber callback on messages the node's own code builds."""
    pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs (ROS 2 wheels) not installed")
    from std_msgs.msg import Header

    from loftr_ros.ros.matches_msg import matches_to_msg

    code = _consumer_example(readme)
    callback_part = code.split("rclpy.init()", 1)[0]
    namespace: dict = {}
    exec(compile(callback_part, "README.md (matches-consumer)", "exec"), namespace)

    keypoints_ref = np.array([[10.5, 20.25], [300.0, 400.0], [1.0, 2.0]], np.float32)
    keypoints_cur = keypoints_ref + np.float32(3.5)
    scores = np.array([0.5, 0.75, 1.0], np.float32)
    msg = matches_to_msg(keypoints_ref, keypoints_cur, scores, Header(), (12, 34))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        namespace["on_matches"](msg)
    assert out.getvalue().strip() == "3 matches, mean score 0.75"

    # The example's arrays are what it says they are: check by re-running its reading lines.
    local = dict(namespace, msg=msg)
    body = callback_part.split("def on_matches(msg: PointCloud2) -> None:", 1)[1]
    reading = "\n".join(line[4:] for line in body.splitlines() if "print(" not in line)
    exec(compile(reading, "README.md (matches-consumer body)", "exec"), local)
    np.testing.assert_array_equal(local["ref"], keypoints_ref)
    np.testing.assert_array_equal(local["cur"], keypoints_cur)

    empty = matches_to_msg(np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32),
                           np.zeros(0, np.float32), Header(), (12, 34))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        namespace["on_matches"](empty)
    assert out.getvalue().strip() == "0 matches, mean score 0.00"


def test_python_api_example_runs(readme):
    """The README's Python API block, run on two frames of a moving camera."""
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    from loftr_ros.synthetic.virtual_camera import make_sequence

    marker = readme.index("<!-- example: python-api")
    code = next(body for start, lang, body in _code_blocks(readme)
                if start > marker and lang == "python")
    frames, _ = make_sequence(3, (320, 240), step=1.5)
    namespace = {"img0": frames[0], "img1": frames[2]}
    exec(compile(code, "README.md (python-api)", "exec"), namespace)
    plain = namespace["m"].match(frames[0], frames[2])
    res = namespace["res"]
    assert len(res) > 50 and res.keypoints0.shape == (len(res), 2)
    np.testing.assert_array_equal(res.keypoints1, plain.keypoints1)
    np.testing.assert_array_equal(res.scores, plain.scores)
