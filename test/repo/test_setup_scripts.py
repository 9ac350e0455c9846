"""scripts/setup.sh, scripts/env.sh, scripts/link_data_files.py and the pinned requirements."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT as REPO

sys.path.insert(0, os.path.join(REPO, "scripts"))

import link_data_files  # noqa: E402

ENV_VARIABLES = ("PATH", "VIRTUAL_ENV", "AMENT_PREFIX_PATH", "RMW_IMPLEMENTATION",
                 "FASTDDS_DEFAULT_PROFILES_FILE", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID",
                 "LOFTR_SHARED_DIR", "PYTHONPATH", "LD_LIBRARY_PATH",
                 "_ROS_WHEELS_BOOTSTRAP_COMPLETE")


def sourced_env(**environment: str) -> dict:
    """The variables scripts/env.sh leaves in a bash that starts with ``environment``."""
    script = "source scripts/env.sh; " + "; ".join(
        f'echo "{name}=${{{name}-<unset>}}"' for name in ENV_VARIABLES)
    base = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
    out = subprocess.run(["bash", "-c", script], cwd=REPO, env=dict(base, **environment),
                         capture_output=True, text=True, check=True, timeout=30).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def test_env_sh_defaults():
    env = sourced_env(_ROS_WHEELS_BOOTSTRAP_COMPLETE="1")
    venv = os.path.join(REPO, ".venv")
    assert env["_ROS_WHEELS_BOOTSTRAP_COMPLETE"] == "<unset>"
    assert env["PATH"].split(":")[0] == os.path.join(venv, "bin")
    assert env["VIRTUAL_ENV"] == venv
    assert env["AMENT_PREFIX_PATH"] == venv
    assert env["RMW_IMPLEMENTATION"] == "rmw_fastrtps_cpp"
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == os.path.join(REPO, "config",
                                                                "fastdds_localhost.xml")
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert 10 <= int(env["ROS_DOMAIN_ID"]) <= 99
    assert env["LOFTR_SHARED_DIR"] == os.path.join(os.path.dirname(REPO), "shared")


def test_env_sh_keeps_what_the_user_chose():
    env = sourced_env(ROS_DOMAIN_ID="7", LOFTR_SHARED_DIR="/data/shared",
                      ROS_AUTOMATIC_DISCOVERY_RANGE="SUBNET",
                      FASTDDS_DEFAULT_PROFILES_FILE="/etc/my_profile.xml")
    assert env["ROS_DOMAIN_ID"] == "7"
    assert env["LOFTR_SHARED_DIR"] == "/data/shared"
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SUBNET"
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == "/etc/my_profile.xml"


def test_env_sh_keeps_a_sourced_ros_install_out():
    env = sourced_env(ROS_DISTRO="humble", AMENT_PREFIX_PATH="/opt/ros/humble",
                      PYTHONPATH="/opt/ros/humble/lib/python3.10/site-packages:/home/me/lib",
                      LD_LIBRARY_PATH="/opt/ros/humble/lib")
    assert env["AMENT_PREFIX_PATH"] == os.path.join(REPO, ".venv")
    assert env["PYTHONPATH"] == "/home/me/lib"
    assert env["LD_LIBRARY_PATH"] == "<unset>"


def test_setup_sh_rejects_unknown_arguments():
    result = subprocess.run(["./scripts/setup.sh", "--no-such-option"], cwd=REPO,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "unknown argument" in result.stderr
    usage = subprocess.run(["./scripts/setup.sh", "--help"], cwd=REPO, capture_output=True,
                           text=True, timeout=30)
    assert usage.returncode == 0 and "--runtime-only" in usage.stdout


def test_link_data_files_makes_a_findable_ament_prefix(tmp_path):
    prefix = str(tmp_path)
    link_data_files.link_all(prefix)
    share = tmp_path / "share"
    assert (share / "ament_index" / "resource_index" / "packages" / "loftr_ros").exists()
    assert os.path.realpath(share / "loftr_ros" / "package.xml") == \
        os.path.realpath(os.path.join(REPO, "package.xml"))
    assert (share / "loftr_ros" / "launch" / "matcher.launch.py").exists()
    assert (share / "loftr_ros" / "config" / "matcher.yaml").exists()
    assert os.readlink(tmp_path / "lib" / "loftr_ros" / "matcher_node") == \
        os.path.join("..", "..", "bin", "matcher_node")
    # Idempotent, and files no longer in setup.py disappear.
    stale = share / "loftr_ros" / "config" / "old.yaml"
    stale.symlink_to(os.path.join(REPO, "config", "matcher.yaml"))
    link_data_files.link_all(prefix)
    assert not stale.exists()
    assert (share / "loftr_ros" / "package.xml").exists()


def test_ament_index_finds_the_venv_package():
    """In the environment scripts/test.sh runs in, the package's share folder is findable."""
    prefix = os.environ.get("AMENT_PREFIX_PATH", "")
    if os.path.join(REPO, ".venv") not in prefix.split(os.pathsep):
        pytest.skip("AMENT_PREFIX_PATH does not name .venv (run via scripts/test.sh or source "
                    "scripts/env.sh)")
    packages = pytest.importorskip("ament_index_python.packages")
    share = packages.get_package_share_directory("loftr_ros")
    assert os.path.realpath(os.path.join(share, "package.xml")) == \
        os.path.realpath(os.path.join(REPO, "package.xml"))


def _requirements(name: str) -> list:
    with open(os.path.join(REPO, "requirements", name), encoding="utf-8") as handle:
        return [line.split("#", 1)[0].strip() for line in handle if line.split("#", 1)[0].strip()]


def test_the_pins_the_docs_ask_for():
    runtime, tests, torch = (_requirements(n) for n in ("runtime.txt", "test.txt", "torch.txt"))
    assert "opencv-python-headless<5" in runtime
    assert "pytest<9" in tests
    assert "-r runtime.txt" in tests
    assert torch == ["torch==2.13.0"]
    assert "torch" not in " ".join(runtime + tests)
    for wheel in ("ros-rclpy==9.1.2", "ros-sensor-msgs==5.5.1", "ros-std-srvs==5.5.1",
                  "ros-std-msgs==5.5.1", "ros-diagnostic-msgs==5.5.1",
                  "ros-rmw-fastrtps-cpp==9.3.3"):
        assert wheel in runtime


def test_installed_versions_respect_the_pins():
    cv2 = pytest.importorskip("cv2")
    assert int(cv2.__version__.split(".")[0]) < 5, cv2.__version__
    assert int(pytest.__version__.split(".")[0]) < 9, pytest.__version__
