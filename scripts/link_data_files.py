"""Link setup.py's data_files and console scripts into a prefix (as colcon --symlink-install).

An editable ``pip install -e .`` installs the code and the console scripts but not ``data_files``
(package.xml, launch/, config/, the ament index marker). This script reads them from setup.py
itself (one source of truth) and symlinks each file into ``<prefix>/<destination>``, so that
``AMENT_PREFIX_PATH=<prefix>`` makes ``get_package_share_directory("loftr_ros")`` work and edits
to launch/config files show at once. It also links ``<prefix>/lib/<package>/<script>`` to
``<prefix>/bin/<script>``: the place ``ros2 run`` and launch_ros look for executables.

Usage: python scripts/link_data_files.py --prefix .venv
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import Any, Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_setup_kwargs(repo: str = REPO) -> Dict[str, Any]:
    """Run setup.py with ``setuptools.setup`` replaced by a recorder; return its arguments."""
    import setuptools

    captured: Dict[str, Any] = {}
    original = setuptools.setup
    setuptools.setup = lambda **kwargs: captured.update(kwargs)
    cwd = os.getcwd()
    try:
        os.chdir(repo)
        path = os.path.join(repo, "setup.py")
        with open(path, encoding="utf-8") as handle:
            code = compile(handle.read(), path, "exec")
        exec(code, {"__name__": "__main__", "__file__": path})
    finally:
        setuptools.setup = original
        os.chdir(cwd)
    return captured


def _replace_link(target: str, link: str) -> None:
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if os.path.islink(link) or os.path.isfile(link):
        os.remove(link)
    os.symlink(target, link)


def link_all(prefix: str, repo: str = REPO) -> List[str]:
    """Create the links; return warnings (files named in setup.py that do not exist)."""
    kwargs = read_setup_kwargs(repo)
    package = kwargs["name"]
    warnings: List[str] = []
    # Our own directories: start clean so files removed from setup.py disappear.
    for own in (os.path.join(prefix, "share", package), os.path.join(prefix, "lib", package)):
        if os.path.islink(own):
            os.remove(own)
        elif os.path.isdir(own):
            shutil.rmtree(own)
    for destination, files in kwargs.get("data_files", []):
        for name in files:
            source = os.path.join(repo, name)
            if not os.path.exists(source):
                warnings.append(f"{name} (named in setup.py data_files) does not exist yet")
                continue
            _replace_link(source, os.path.join(prefix, destination, os.path.basename(name)))
    for entry in kwargs.get("entry_points", {}).get("console_scripts", []):
        script = entry.split("=", 1)[0].strip()
        _replace_link(os.path.join("..", "..", "bin", script),
                      os.path.join(prefix, "lib", package, script))
    return warnings


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", required=True, help="install prefix, e.g. .venv")
    args = parser.parse_args(argv)
    for warning in link_all(os.path.abspath(args.prefix)):
        print(f"[setup] warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
