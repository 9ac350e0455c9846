"""`colcon build` installs a package that ROS tools find: share/ files and the ament index entry.

colcon (colcon-core, colcon-ros, colcon-python-setup-py from PyPI) builds into a temporary
directory; nothing is written into the source tree. A package.xml that fails validation makes
colcon build the package as plain Python, without the ament index entry: this test catches that.
"""
import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO_ROOT as REPO

pytestmark = pytest.mark.slow


def colcon_command():
    """``colcon`` next to this Python (the venv), else on PATH; None when absent."""
    local = os.path.join(os.path.dirname(sys.executable), "colcon")
    if os.path.isfile(local):
        return local
    return shutil.which("colcon")


def test_colcon_build_installs_a_findable_package(tmp_path):
    colcon = colcon_command()
    if colcon is None:
        pytest.skip("colcon not installed (pip install colcon-core colcon-ros "
                    "colcon-python-setup-py)")
    before = build_leftovers()
    result = subprocess.run(
        [colcon, "--log-base", str(tmp_path / "log"), "build", "--base-paths", REPO,
         "--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install"),
         "--event-handlers", "console_direct-"],
        capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    logs = [path.read_text(errors="replace") for path in (tmp_path / "log").rglob("*")
            if path.is_file()]
    for text in [result.stdout, result.stderr] + logs:
        assert "Unknown distribution option" not in text, "setup.py passes an option setuptools " \
            "no longer knows (colcon prints it on every build)"
    prefix = tmp_path / "install" / "loftr_ros"
    share = prefix / "share" / "loftr_ros"
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" /
            "loftr_ros").is_file(), "no ament index entry: package.xml not valid for colcon?"
    assert (share / "package.xml").is_file()
    assert (share / "launch" / "matcher.launch.py").is_file()
    for name in ("matcher.yaml", "jetson.yaml", "fastdds_localhost.xml"):
        assert (share / "config" / name).is_file(), name
    for script in ("matcher_node", "image_player"):
        assert (prefix / "lib" / "loftr_ros" / script).is_file(), f"ros2 run needs {script}"
    packages = list(prefix.glob("lib/python*/site-packages/loftr_ros"))
    assert packages and (packages[0] / "data" / "coffee.png").is_file(), "package data installed"
    assert build_leftovers() <= before, "colcon wrote build files into the source tree"


def build_leftovers():
    """What a build could leave in the source tree (build/, install/, log/, *.egg-info)."""
    names = {"build", "install", "log"}
    return {name for name in os.listdir(REPO) if name in names or name.endswith(".egg-info")}
