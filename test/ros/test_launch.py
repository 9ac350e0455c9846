"""launch/matcher.launch.py and the package metadata (package.xml, setup.py data_files).

`launch` and `launch_ros` are not on PyPI. Where they are importable (a ROS machine), the launch
file is started for real and the node must come up. Everywhere, the launch file is checked
statically: its arguments, the executables it starts (must be console scripts of setup.py) and
the config files it names.
"""
import ast
import os
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest
from conftest import REPO_ROOT as REPO

from loftr_ros.ros import interface as api

LAUNCH_FILE = os.path.join(REPO, "launch", "matcher.launch.py")
REQUIRED_ARGUMENTS = {"camera_topic", "params_file", "namespace", "use_player", "player_path",
                      "fastdds_profile"}


def launch_tree():
    with open(LAUNCH_FILE, encoding="utf-8") as handle:
        return ast.parse(handle.read(), LAUNCH_FILE)


def calls(tree, name):
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == name]


def keyword(call, name):
    for item in call.keywords:
        if item.arg == name:
            return item.value
    return None


def setup_kwargs():
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    try:
        from link_data_files import read_setup_kwargs
    finally:
        sys.path.pop(0)
    return read_setup_kwargs(REPO)


def _is_spec_name(node):
    return isinstance(node, ast.Attribute) and node.attr == "name" and \
        getattr(node.value, "id", None) == "spec"


def _is_api_parameters(node):
    """Whether ``node`` is the expression ``api.PARAMETERS``."""
    return isinstance(node, ast.Attribute) and node.attr == "PARAMETERS" and \
        getattr(node.value, "id", None) == "api"


def _nodes_in_parameter_loops(tree):
    """ids of every AST node inside a for loop or list comprehension over ``api.PARAMETERS``."""
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.For):
            iterables = [node.iter]
        elif isinstance(node, ast.ListComp):
            iterables = [generator.iter for generator in node.generators]
        else:
            continue
        if any(_is_api_parameters(iterable) for iterable in iterables):
            inside.update(id(inner) for inner in ast.walk(node))
    return inside


def test_launch_declares_the_arguments():
    tree = launch_tree()
    fixed = [c for c in calls(tree, "DeclareLaunchArgument") if isinstance(c.args[0], ast.Constant)]
    declared = {c.args[0].value for c in fixed}
    assert REQUIRED_ARGUMENTS <= declared
    used = {c.args[0].value for c in calls(tree, "LaunchConfiguration")
            if isinstance(c.args[0], ast.Constant)}
    assert declared == used, "every declared argument is used and vice versa"
    for call in calls(tree, "DeclareLaunchArgument"):
        assert keyword(call, "description") is not None, ast.dump(call.args[0])
    # and one argument per node parameter, declared and read in loops over api.PARAMETERS
    per_parameter = [c for c in calls(tree, "DeclareLaunchArgument") + calls(
        tree, "LaunchConfiguration") if _is_spec_name(c.args[0])]
    assert len(per_parameter) == 2
    inside = _nodes_in_parameter_loops(tree)
    assert all(id(call) in inside for call in per_parameter)
    assert not declared & set(api.PARAMETERS_BY_NAME), "a fixed argument shadows a parameter"


def test_launch_starts_the_package_executables():
    tree = launch_tree()
    executables = {keyword(c, "executable").value for c in calls(tree, "Node")}
    assert executables == {api.NODE_EXECUTABLE, api.PLAYER_EXECUTABLE}
    names = {keyword(c, "name").value for c in calls(tree, "Node")}
    assert api.NODE_NAME in names
    scripts = {entry.split("=")[0].strip()
               for entry in setup_kwargs()["entry_points"]["console_scripts"]}
    assert executables <= scripts
    remaps = [ast.literal_eval(keyword(c, "remappings").elts[0].elts[0])
              for c in calls(tree, "Node")]
    assert set(remaps) == {api.IMAGE_TOPIC}


def test_launch_output_has_no_tty_emulation():
    """emulate_tty=True puts ANSI colour codes into redirected and logged output."""
    for call in calls(launch_tree(), "Node"):
        value = keyword(call, "emulate_tty")
        assert value is None or (isinstance(value, ast.Constant) and value.value is False)


def test_launch_gives_every_node_the_fast_dds_profile():
    """Stock Fast DDS loses many 640x480 bgr8 frames (benchmarks/bench_transport.py): every node
    the launch file starts gets the package's profile, which is installed and parses."""
    tree = launch_tree()
    for call in calls(tree, "Node"):
        assert keyword(call, "additional_env") is not None, ast.dump(call)
    source = open(LAUNCH_FILE, encoding="utf-8").read()
    assert "FASTDDS_DEFAULT_PROFILES_FILE" in source
    (profile,) = set(re.findall(r'"([\w.-]+\.xml)"', source))
    root = ET.parse(os.path.join(REPO, "config", profile)).getroot()
    namespace = {"dds": "http://www.eprosima.com"}
    segments = [int(e.text) for e in root.iter("{http://www.eprosima.com}segment_size")]
    assert segments and min(segments) >= 4 * 640 * 480 * 3, "room for several bgr8 frames"
    default = [p for p in root.iterfind(".//dds:participant", namespace)
               if p.get("is_default_profile") == "true"]
    assert default, "a default participant profile, so FASTDDS_DEFAULT_PROFILES_FILE applies it"
    assert not list(root.iter("{http://www.eprosima.com}interfaceWhiteList")), \
        "launch's profile keeps every interface (other machines reach the nodes)"
    installed = dict(setup_kwargs()["data_files"])[os.path.join("share", "loftr_ros", "config")]
    assert f"config/{profile}" in installed


def test_launch_config_files_exist_and_are_installed():
    source = open(LAUNCH_FILE, encoding="utf-8").read()
    named = set(re.findall(r'"([\w.-]+\.yaml)"', source))
    assert named == {"matcher.yaml"}
    for name in named:
        assert os.path.isfile(os.path.join(REPO, "config", name))
    destinations = {dest: files for dest, files in setup_kwargs()["data_files"]}
    installed = destinations[os.path.join("share", "loftr_ros", "config")]
    assert "config/matcher.yaml" in installed and "config/jetson.yaml" in installed
    assert "launch/matcher.launch.py" in destinations[os.path.join("share", "loftr_ros",
                                                                   "launch")]
    assert "package.xml" in destinations[os.path.join("share", "loftr_ros")]
    assert os.path.isfile(os.path.join(REPO, "resource", "loftr_ros"))


def test_package_xml():
    root = ET.parse(os.path.join(REPO, "package.xml")).getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "loftr_ros"
    assert root.findtext("version") == setup_kwargs()["version"]
    assert root.findtext("license")
    maintainer = root.find("maintainer")
    # colcon silently builds a package with an invalid e-mail as plain Python (no ament index)
    assert re.fullmatch(r"[\w.+-]+@[\w-]+(\.[\w-]+)+", maintainer.get("email"))
    assert root.find("export/build_type").text == "ament_python"
    depends = {e.text for e in root if e.tag in ("depend", "exec_depend")}
    assert {"rclpy", "sensor_msgs", "std_msgs", "std_srvs", "diagnostic_msgs", "python3-numpy",
            "python3-opencv", "cv_bridge", "launch", "launch_ros"} <= depends
    # every ROS message package the node imports is declared
    node_source = open(os.path.join(REPO, "loftr_ros", "ros", "node.py"),
                       encoding="utf-8").read()
    for package in set(re.findall(r"^from (\w+_(?:msgs|srvs|interfaces))\.", node_source, re.M)):
        assert package in depends, package


def test_pip_install_brings_the_non_ros_runtime_requirements():
    """`pip install .[cpu]` gets what requirements/runtime.txt lists besides the ROS wheels and
    the set-up's own setuptools floor, with the same pins (opencv<5: see docs/troubleshooting.md);
    onnxruntime only through the extra (it would clobber onnxruntime-gpu)."""
    with open(os.path.join(REPO, "requirements", "runtime.txt"), encoding="utf-8") as handle:
        lines = [line.split("#")[0].strip() for line in handle]
    wanted = {line for line in lines if line and not line.startswith(("ros-", "setuptools"))}
    assert wanted == {"numpy", "opencv-python-headless<5", "onnxruntime"}
    kwargs = setup_kwargs()
    assert wanted - {"onnxruntime"} <= set(kwargs["install_requires"])
    assert "onnxruntime" not in kwargs["install_requires"]
    assert kwargs["extras_require"]["cpu"] == ["onnxruntime"]


def test_setup_cfg_uses_the_ament_script_dir():
    text = open(os.path.join(REPO, "setup.cfg"), encoding="utf-8").read()
    assert "$base/lib/loftr_ros" in text


def _launch_ros_available():
    try:
        import launch  # noqa: F401
        import launch_ros  # noqa: F401
        from launch import LaunchService  # noqa: F401  (not the unrelated PyPI "launch")
    except Exception:
        return False
    return True


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.skipif(not _launch_ros_available(),
                    reason="launch/launch_ros not installed (not on PyPI): checked statically")
def test_launch_starts_the_node():
    """Where launch_ros exists: the launch file brings loftr_matcher up in a namespace."""
    from ros_helpers import RosClient, configure_ros_environment, require_rclpy, wait_for

    require_rclpy()
    try:
        from ament_index_python.packages import get_package_share_directory

        get_package_share_directory("loftr_ros")
    except Exception as exc:
        pytest.skip(f"loftr_ros not in the ament index ({exc}); run scripts/setup.sh")
    params = os.path.join(REPO, "config", "matcher.yaml")  # the bundled model, onnxruntime
    runner = textwrap.dedent(f"""
        import sys
        from launch import LaunchDescription, LaunchService
        from launch.actions import IncludeLaunchDescription
        from launch.launch_description_sources import PythonLaunchDescriptionSource
        source = PythonLaunchDescriptionSource({LAUNCH_FILE!r})
        args = {{"namespace": "launch_test", "params_file": {params!r},
                 "camera_topic": "/launch_test/camera"}}.items()
        service = LaunchService(argv=[])
        service.include_launch_description(
            LaunchDescription([IncludeLaunchDescription(source, launch_arguments=args)]))
        sys.exit(service.run())
    """)
    configure_ros_environment()
    process = subprocess.Popen([sys.executable, "-c", runner], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    client = RosClient("launch_test_client")
    try:
        names = wait_for(lambda: ("loftr_matcher", "/launch_test") in
                         client.node.get_node_names_and_namespaces(), 60.0)
        assert names, "loftr_matcher did not come up under /launch_test"
        from std_srvs.srv import Trigger

        response = client.call(Trigger, "/launch_test/loftr_matcher/set_reference", timeout=30)
        assert not response.success and "no frame" in response.message
    finally:
        client.close()
        process.send_signal(2)
        try:
            output, _ = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
    assert "Traceback" not in output, output
