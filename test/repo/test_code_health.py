"""Code health as tests: Python 3.8 syntax, package.xml validity, ruff (scripts/test.sh runs them
too, with their own output). Each checker is also shown to catch what it is for."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import REPO_ROOT as REPO

sys.path.insert(0, os.path.join(REPO, "scripts"))

import check_package_xml  # noqa: E402
import check_py38  # noqa: E402


def test_every_file_is_python38(capsys):
    status = check_py38.main([])
    assert status == 0, capsys.readouterr().out


@pytest.mark.parametrize("source, expected", [
    ("match x:\n    case 1:\n        pass\n", "not Python 3.8 syntax"),
    ("with (open('a') as f, open('b') as g):\n    pass\n", "not Python 3.8 syntax"),
    ("def f(x: int | None): pass\n", "`X | Y` type union"),
    ("def f() -> list[int]: pass\n", "`list[...]` generic"),
    ("Alias = dict[str, int]\n", "evaluated at run time"),
    ("Alias = int | None\n", "evaluated at run time"),
    ("@buttons[0].clicked\ndef h(): pass\n", "decorator"),
    ("a[b := 1]\n", "unparenthesised `:=`"),
    ("'abc'.removeprefix('a')\n", ".removeprefix()"),
    ("import functools\n@functools.cache\ndef g(): pass\n", "functools.cache"),
    ("from typing import TypeAlias\n", "typing.TypeAlias"),
    ("zip(a, b, strict=True)\n", "zip(strict=...)"),
])
def test_py38_check_catches(source, expected):
    problems = check_py38.check_source(source, "example.py")
    assert any(expected in text for _, _, text in problems), problems


@pytest.mark.parametrize("source", [
    "from __future__ import annotations\ndef f(x: int | None) -> list[int]: pass\n",
    "from typing import List, Optional\nAlias = Optional[List[int]]\nflags = 1 | 2\n",
    "@functools.lru_cache(maxsize=None)\ndef g(): pass\n",
    "a[(b := 1)]\n",
])
def test_py38_check_accepts(source):
    assert check_py38.check_source(source, "example.py") == []


def test_package_xml_is_valid():
    problems = check_package_xml.check(os.path.join(REPO, "package.xml"))
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("old, new, expected", [
    ('email="[^"]*"', 'email="nobody@nowhere"', "invalid e-mail"),
    ('format="3"', 'format="2"', 'format must be "3"'),
    ("<build_type>ament_python</build_type>", "<build_type>ament_cmake</build_type>",
     "must be 'ament_python'"),
    ("<exec_depend>rclpy</exec_depend>", "<exec_depend>rclpyy</exec_depend>",
     "not a known rosdep key"),
    ("<exec_depend>python3-numpy</exec_depend>", "", "imports numpy"),
    ("<version>", "<version>9", "<version>"),
])
def test_package_xml_check_catches(tmp_path, old, new, expected):
    with open(os.path.join(REPO, "package.xml"), encoding="utf-8") as handle:
        text = handle.read()
    changed = re.sub(old, new, text, count=1)
    assert changed != text
    path = tmp_path / "package.xml"
    path.write_text(changed, encoding="utf-8")
    problems = check_package_xml.check(str(path))
    assert any(expected in problem for problem in problems), problems


def _ruff_command():
    executable = shutil.which("ruff") or os.path.join(os.path.dirname(sys.executable), "ruff")
    return [executable] if os.access(executable, os.X_OK) else None


def test_ruff():
    command = _ruff_command()
    if command is None:
        pytest.skip("ruff is not installed (requirements/test.txt has it)")
    result = subprocess.run(command + ["check", "--no-cache", REPO], capture_output=True,
                            text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
