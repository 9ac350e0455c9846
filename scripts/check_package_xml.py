"""Check package.xml: a package that fails these checks builds "fine" but is broken for ROS users.

colcon silently treats a package whose package.xml does not validate (a bad maintainer e-mail,
say) as plain Python: no ament index entry, so ``ros2 launch loftr_ros ...`` cannot find it.
Checks:

- catkin_pkg's own validation (what colcon and rosdep use), where catkin_pkg is installed;
- format 3 with the schema reference, name and version equal to setup.py's, a description, a
  license, at least one maintainer with a valid e-mail, ``<build_type>ament_python``;
- every dependency key is a known rosdep key (ROS package or system key, list below);
- every module in IMPORT_KEYS that the package or its launch files import has its key as an
  ``<exec_depend>``/``<depend>``.

Usage: python scripts/check_package_xml.py [path/to/package.xml]. Exit status 1 with one line
per problem.
"""
from __future__ import annotations

import ast
import os
import re
import sys
import xml.etree.ElementTree as ET
from typing import Dict, Iterable, List, Optional, Set

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from link_data_files import read_setup_kwargs  # noqa: E402

#: rosdep keys this package may depend on. ROS packages: released for Humble (rosdistro's
#: humble/distribution.yaml); system keys: defined in rosdistro's rosdep/python.yaml. Add a key
#: here only after checking it there: an unknown key makes `rosdep install` fail for every user.
KNOWN_ROS_PACKAGES = {
    "ament_copyright", "ament_flake8", "ament_index_python", "ament_pep257", "builtin_interfaces",
    "cv_bridge", "diagnostic_msgs", "diagnostic_updater", "geometry_msgs", "image_transport",
    "launch",
    "launch_ros", "rcl_interfaces", "rclpy", "ros2launch", "rosidl_runtime_py", "rqt_image_view",
    "sensor_msgs", "sensor_msgs_py", "std_msgs", "std_srvs",
}
KNOWN_SYSTEM_KEYS = {
    "python3-numpy", "python3-opencv", "python3-yaml", "python3-pytest", "python3-scipy",
    "python3-skimage", "python3-tqdm", "python3-torch", "python3-onnxruntime-pip",
    "python3-pil",
}
KNOWN_KEYS = KNOWN_ROS_PACKAGES | KNOWN_SYSTEM_KEYS

#: Imported module -> the key package.xml must list as a run dependency. Modules the package
#: imports only optionally (torch, onnxruntime, tensorrt, pycuda) are installed per backend, as
#: the README says, and are not listed here.
IMPORT_KEYS = {
    "rclpy": "rclpy",
    "sensor_msgs": "sensor_msgs",
    "std_msgs": "std_msgs",
    "std_srvs": "std_srvs",
    "diagnostic_msgs": "diagnostic_msgs",
    "geometry_msgs": "geometry_msgs",
    "builtin_interfaces": "builtin_interfaces",
    "ament_index_python": "ament_index_python",
    "launch": "launch",
    "launch_ros": "launch_ros",
    "cv_bridge": "cv_bridge",
    "numpy": "python3-numpy",
    "cv2": "python3-opencv",
    "yaml": "python3-yaml",
}

DEPEND_TAGS = ("depend", "build_depend", "build_export_depend", "buildtool_depend",
               "buildtool_export_depend", "exec_depend", "test_depend", "doc_depend")
RUN_TAGS = ("depend", "exec_depend")
EMAIL = re.compile(r"^[-a-zA-Z0-9_%+]+(\.[-a-zA-Z0-9_%+]+)*@[-a-zA-Z0-9%]+(\.[-a-zA-Z0-9%]+)*"
                   r"\.[a-zA-Z]{2,}$")
SCHEMA = "package_format3.xsd"


def _text(element: Optional[ET.Element]) -> str:
    return (element.text or "").strip() if element is not None else ""


def imported_modules(paths: Iterable[str]) -> Dict[str, str]:
    """Top-level module name -> first file importing it, over the given .py files."""
    found: Dict[str, str] = {}
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), filename=path)
        for node in ast.walk(tree):
            names: List[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], os.path.relpath(path, REPO))
    return found


def package_sources(repo: str = REPO) -> List[str]:
    """The .py files that run on a user's machine: the package and the launch files."""
    paths = []
    for top in ("loftr_ros", "launch"):
        for directory, subdirs, files in os.walk(os.path.join(repo, top)):
            subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
            paths.extend(os.path.join(directory, f) for f in sorted(files) if f.endswith(".py"))
    return paths


def catkin_problems(path: str) -> List[str]:
    """catkin_pkg's validation errors and warnings, or [] when catkin_pkg is not installed."""
    try:
        from catkin_pkg.package import InvalidPackage, parse_package
    except ImportError:
        return []
    warnings: List[str] = []
    try:
        parse_package(path, warnings=warnings)
    except InvalidPackage as exc:
        return [f"catkin_pkg: {line.strip()}" for line in str(exc).splitlines()
                if line.strip() and not line.startswith("Error(s) in package")]
    return [f"catkin_pkg warning: {warning}" for warning in warnings]


def check(path: str, repo: str = REPO) -> List[str]:
    """All problems of the package.xml at ``path`` (empty list = valid)."""
    if not os.path.isfile(path):
        return [f"{path} does not exist"]
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        return [f"not well-formed XML: {exc}"]
    problems = catkin_problems(path)

    if root.tag != "package":
        problems.append(f"root element is <{root.tag}>, not <package>")
    if root.get("format") != "3":
        problems.append(f'<package format="{root.get("format")}">: format must be "3"')
    if SCHEMA not in text:
        problems.append(f"no <?xml-model?> reference to {SCHEMA}")

    setup = read_setup_kwargs(repo)
    for tag in ("name", "version"):
        if _text(root.find(tag)) != str(setup.get(tag)):
            problems.append(f"<{tag}> is {_text(root.find(tag))!r}, setup.py says "
                            f"{setup.get(tag)!r}")
    for tag in ("description", "license"):
        if not _text(root.find(tag)):
            problems.append(f"<{tag}> is missing or empty")
    maintainers = root.findall("maintainer")
    if not maintainers:
        problems.append("no <maintainer>")
    for maintainer in maintainers:
        email = maintainer.get("email", "")
        if not EMAIL.match(email):
            problems.append(f"maintainer {_text(maintainer)!r} has an invalid e-mail {email!r}")
    build_type = _text(root.find("export/build_type"))
    if build_type != "ament_python":
        problems.append(f"<export><build_type> is {build_type!r}, must be 'ament_python'")

    run_keys: Set[str] = set()
    for tag in DEPEND_TAGS:
        for element in root.findall(tag):
            key = _text(element)
            if key not in KNOWN_KEYS:
                problems.append(f"<{tag}>{key}</{tag}>: not a known rosdep key (see KNOWN_KEYS "
                                "in scripts/check_package_xml.py)")
            if tag in RUN_TAGS:
                run_keys.add(key)
    for module, where in sorted(imported_modules(package_sources(repo)).items()):
        key = IMPORT_KEYS.get(module)
        if key and key not in run_keys:
            problems.append(f"{where} imports {module}, but package.xml has no "
                            f"<exec_depend>{key}</exec_depend>")
    return problems


def main(argv: Optional[List[str]] = None) -> int:
    args = list(argv if argv is not None else sys.argv[1:])
    path = args[0] if args else os.path.join(REPO, "package.xml")
    problems = check(path)
    for problem in problems:
        print(f"{path}: {problem}")
    print(f"check_package_xml: {len(problems)} problems in {path}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
