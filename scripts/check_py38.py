"""Check that every .py file of the repository runs on Python 3.8 (JetPack 5 / ROS 2 Foxy era).

Three layers, because the venv's newer Python accepts code that 3.8 rejects:

1. ``ast.parse(..., feature_version=(3, 8))``: match statements, parenthesised context managers,
   ``except*`` and other grammar that the parser flags for older versions.
2. AST rules for what (1) lets through: ``X | Y`` and ``list[int]``-style annotations in a module
   without ``from __future__ import annotations``, the same in evaluated expressions, relaxed
   decorators (3.9), unparenthesised walrus in a subscript (3.10), and a short list of standard
   library names that appeared after 3.8.
3. Where a real Python 3.8 is installed (``LOFTR_PY38``, ``python3.8`` on PATH, or pyenv's), it
   compiles every file: the exact answer for syntax.

Usage: python scripts/check_py38.py [FILES...]   (default: every .py under the repository,
without .venv, build/, install/, log/). Exit status 1 with one line per problem.
"""
from __future__ import annotations

import ast
import glob
import os
import shutil
import subprocess
import sys
from typing import Iterable, List, Optional, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP_DIRS = {".venv", ".git", "build", "install", "log", "demo_out", "__pycache__",
             ".pytest_cache", ".ruff_cache", "node_modules"}
TARGET = (3, 8)

#: Built-in classes whose subscription (``list[int]``) needs Python 3.9 at run time.
BUILTIN_GENERICS = {"list", "dict", "tuple", "set", "frozenset", "type"}

#: ``module.name`` -> first Python version that has it.
NEW_MODULE_NAMES = {
    ("functools", "cache"): "3.9",
    ("ast", "unparse"): "3.9",
    ("math", "lcm"): "3.9",
    ("math", "nextafter"): "3.9",
    ("math", "ulp"): "3.9",
    ("asyncio", "to_thread"): "3.9",
    ("random", "randbytes"): "3.9",
    ("os", "waitstatus_to_exitcode"): "3.9",
    ("itertools", "pairwise"): "3.10",
    ("contextlib", "aclosing"): "3.10",
    ("contextlib", "chdir"): "3.11",
    ("typing", "Annotated"): "3.9",
    ("typing", "TypeAlias"): "3.10",
    ("typing", "ParamSpec"): "3.10",
    ("typing", "Concatenate"): "3.10",
    ("typing", "TypeGuard"): "3.10",
    ("typing", "Self"): "3.11",
    ("typing", "Never"): "3.11",
    ("typing", "LiteralString"): "3.11",
    ("typing", "Required"): "3.11",
    ("typing", "NotRequired"): "3.11",
    ("typing", "Unpack"): "3.11",
    ("typing", "TypeVarTuple"): "3.11",
    ("typing", "assert_never"): "3.11",
    ("typing", "override"): "3.12",
    ("importlib.resources", "files"): "3.9",
    ("zoneinfo", None): "3.9",
    ("graphlib", None): "3.9",
    ("tomllib", None): "3.11",
}

#: Method names that only exist on newer built-in types (``str.removeprefix``...).
NEW_METHODS = {
    "removeprefix": "3.9 (str/bytes)",
    "removesuffix": "3.9 (str/bytes)",
    "bit_count": "3.10 (int)",
    "is_relative_to": "3.9 (pathlib.Path)",
    "with_stem": "3.9 (pathlib.Path)",
}

#: Keyword arguments that appeared after 3.8: function name -> {keyword: version}.
NEW_KEYWORDS = {
    "zip": {"strict": "3.10"},
    "dataclass": {"slots": "3.10", "kw_only": "3.10", "match_args": "3.10"},
}

Problem = Tuple[str, int, str]


def python_files(root: str = REPO) -> List[str]:
    """Every .py file under ``root``, sorted, without virtualenvs and build output."""
    found = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs
                            if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        found.extend(os.path.join(directory, f) for f in files if f.endswith(".py"))
    return sorted(found)


def _has_future_annotations(tree: ast.Module) -> bool:
    return any(isinstance(node, ast.ImportFrom) and node.module == "__future__"
               and any(alias.name == "annotations" for alias in node.names)
               for node in tree.body)


def _new_style_hint(node: ast.AST) -> Optional[str]:
    """Describe the first 3.9+/3.10+ typing construct inside ``node``, or None."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.BitOr):
            return "`X | Y` type union (3.10)"
        if (isinstance(sub, ast.Subscript) and isinstance(sub.value, ast.Name)
                and sub.value.id in BUILTIN_GENERICS):
            return f"`{sub.value.id}[...]` generic (3.9)"
    return None


def _annotations(tree: ast.AST) -> Iterable[ast.AST]:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args
            for arg in (arguments.posonlyargs + arguments.args + arguments.kwonlyargs
                        + [a for a in (arguments.vararg, arguments.kwarg) if a]):
                if arg.annotation is not None:
                    yield arg.annotation
            if node.returns is not None:
                yield node.returns
        elif isinstance(node, ast.AnnAssign):
            yield node.annotation


def _is_dotted(node: ast.AST) -> bool:
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name)


def _parenthesised(source: str, node: ast.expr) -> bool:
    """Whether ``node`` is directly inside parentheses (the node's span excludes them)."""
    lines = source.splitlines()
    before = lines[node.lineno - 1][:node.col_offset].rstrip() if node.lineno <= len(lines) else ""
    return before.endswith("(")


def _call_name(node: ast.Call) -> Optional[str]:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def check_tree(tree: ast.Module, source: str, path: str) -> List[Problem]:
    """AST rules of layer 2 for one parsed module."""
    problems: List[Problem] = []
    future = _has_future_annotations(tree)
    annotation_ids = set()
    for annotation in _annotations(tree):
        for sub in ast.walk(annotation):
            annotation_ids.add(id(sub))
        hint = _new_style_hint(annotation)
        if hint and not future:
            problems.append((path, annotation.lineno,
                             f"{hint} in an annotation without `from __future__ import "
                             "annotations`"))

    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if id(node) in annotation_ids:
            continue
        # Evaluated expressions: `int | None`, `list[int]` outside annotations.
        if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr)
                and any(isinstance(side, ast.Constant) and side.value is None
                        for side in (node.left, node.right))):
            problems.append((path, line, "`X | None` evaluated at run time needs Python 3.10"))
        if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)
                and node.value.id in BUILTIN_GENERICS):
            problems.append((path, line, f"`{node.value.id}[...]` evaluated at run time needs "
                                         "Python 3.9 (use typing.List etc.)"))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if not _is_dotted(target):
                    problems.append((path, decorator.lineno,
                                     "decorator that is not a dotted name (call) needs Python 3.9"))
        if isinstance(node, ast.Subscript):
            index = node.slice
            if isinstance(index, ast.NamedExpr) and not _parenthesised(source, index):
                problems.append((path, line, "unparenthesised `:=` in a subscript needs "
                                             "Python 3.10"))
        if isinstance(node, ast.Attribute) and node.attr in NEW_METHODS:
            problems.append((path, line, f".{node.attr}() needs Python {NEW_METHODS[node.attr]}"))
        if isinstance(node, ast.Attribute) and isinstance(node.value, (ast.Name, ast.Attribute)):
            module = ast.get_source_segment(source, node.value)
            version = NEW_MODULE_NAMES.get((module, node.attr))
            if version:
                problems.append((path, line, f"{module}.{node.attr} needs Python {version}"))
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                version = NEW_MODULE_NAMES.get((node.module, alias.name))
                if version:
                    problems.append((path, line, f"{node.module}.{alias.name} needs Python "
                                                 f"{version}"))
            version = NEW_MODULE_NAMES.get((node.module.split(".")[0], None))
            if version:
                problems.append((path, line, f"module {node.module} needs Python {version}"))
        if isinstance(node, ast.Import):
            for alias in node.names:
                version = NEW_MODULE_NAMES.get((alias.name.split(".")[0], None))
                if version:
                    problems.append((path, line, f"module {alias.name} needs Python {version}"))
        if isinstance(node, ast.Call):
            new_keywords = NEW_KEYWORDS.get(_call_name(node) or "", {})
            for keyword in node.keywords:
                if keyword.arg in new_keywords:
                    problems.append((path, line, f"{_call_name(node)}({keyword.arg}=...) needs "
                                                 f"Python {new_keywords[keyword.arg]}"))
    return problems


def check_source(source: str, path: str) -> List[Problem]:
    """Layers 1 and 2 for one file's text."""
    try:
        tree = ast.parse(source, filename=path, feature_version=TARGET)
    except SyntaxError as exc:
        return [(path, exc.lineno or 0, f"not Python 3.8 syntax: {exc.msg}")]
    return check_tree(tree, source, path)


_COMPILE_ALL = """
import sys
bad = 0
for path in sys.argv[1:]:
    try:
        with open(path, "rb") as handle:
            compile(handle.read(), path, "exec", dont_inherit=True)
    except SyntaxError as exc:
        bad += 1
        print("%s:%s: Python %d.%d rejects it: %s"
              % (path, exc.lineno, sys.version_info[0], sys.version_info[1], exc.msg))
sys.exit(1 if bad else 0)
"""


def find_python38() -> Optional[str]:
    """A working Python 3.8 interpreter, or None."""
    candidates = [os.environ.get("LOFTR_PY38", ""), shutil.which("python3.8") or ""]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")))
    for candidate in candidates:
        if not candidate:
            continue
        try:
            out = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        if out.returncode == 0 and out.stdout.strip() == "(3, 8)":
            return candidate
    return None


def compile_with(python: str, paths: List[str]) -> List[str]:
    """Compile ``paths`` with ``python``; return its complaints (one line each)."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME", "_ROS_WHEELS_BOOTSTRAP_COMPLETE")}
    out = subprocess.run([python, "-I", "-c", _COMPILE_ALL] + paths, capture_output=True,
                         text=True, env=env, timeout=300)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]


def _shown(path: str) -> str:
    full = os.path.abspath(path)
    return os.path.relpath(full, REPO) if full.startswith(REPO + os.sep) else path


def main(argv: Optional[List[str]] = None) -> int:
    paths = list(argv if argv is not None else sys.argv[1:]) or python_files()
    problems: List[Problem] = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            problems.extend(check_source(handle.read(), path))
    messages = [f"{_shown(path)}:{line}: {text}" for path, line, text in sorted(problems)]
    python38 = find_python38()
    if python38:
        messages.extend(compile_with(python38, paths))
    for message in messages:
        print(message)
    real = f"; compiled with {python38}" if python38 else "; no Python 3.8 found to compile with"
    print(f"check_py38: {len(paths)} files, {len(messages)} problems{real}")
    return 1 if messages else 0


if __name__ == "__main__":
    sys.exit(main())
