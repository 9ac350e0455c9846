"""Generate the reference tables of README.md and docs/model.md from the code, so that they
cannot drift.

Sources: ``loftr_ros/ros/interface.py`` (TOPICS, PARAMETERS, MATCHES_FIELDS; README.md) and
``loftr_ros/model/presets.py`` (PRESETS; docs/model.md). Each table sits between

    <!-- BEGIN GENERATED: NAME (scripts/readme_tables.py) -->
    <!-- END GENERATED: NAME -->

Usage:
    python scripts/readme_tables.py           rewrite the tables in README.md and docs/model.md
    python scripts/readme_tables.py --check   exit 1 (and show a diff) when a table differs
    python scripts/readme_tables.py --print   print the tables
"""
from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from typing import Callable, Dict, List, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
MODEL_DOC = os.path.join(REPO, "docs", "model.md")
sys.path.insert(0, REPO)

from loftr_ros.model.presets import DEFAULT_PRESET, PRESETS, ModelConfig  # noqa: E402
from loftr_ros.ros import interface as api  # noqa: E402

BEGIN = "<!-- BEGIN GENERATED: {name} (scripts/readme_tables.py) -->"
END = "<!-- END GENERATED: {name} -->"

KIND_TEXT = {api.SUB: "subscription", api.PUB: "publisher", api.SRV: "service"}
QOS_TEXT = {
    api.QOS_SENSOR_DATA: "sensor data (best effort, depth 1)",
    api.QOS_RELIABLE: "reliable",
    api.QOS_SYSTEM_DEFAULT: "system default",
    api.QOS_LATCHED: "reliable, transient local (latched)",
    api.QOS_FROM_PARAMETER: "parameter `image_qos`",
}


def _cell(text: object) -> str:
    """One markdown table cell: pipes escaped, newlines folded."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def _resolved(name: str) -> str:
    """The name with the node's default namespace applied (no namespace, no remapping)."""
    if name.startswith("~/"):
        return f"/{api.NODE_NAME}/{name[2:]}"
    return name if name.startswith("/") else f"/{name}"


def topics_table() -> str:
    """Topics and services of the node (ros/interface.py TOPICS)."""
    rows = []
    for spec in api.TOPICS:
        qos = QOS_TEXT.get(spec.qos, "") if spec.kind != api.SRV else ""
        name = f"`{spec.name}` (`{_resolved(spec.name)}`)"
        rows.append((KIND_TEXT.get(spec.kind, spec.kind), name, f"`{spec.msg_type}`", qos,
                     spec.notes))
    return _table(("kind", "name (resolved)", "type", "QoS", "notes"), rows)


def _allowed(spec: api.ParameterSpec) -> str:
    if spec.choices is not None:
        return ", ".join(f"`{choice}`" if choice else '`""`' for choice in spec.choices)
    if spec.range is not None:
        low, high, step = spec.range
        return f"[{low}, {high}]" + (f" step {step}" if step else "")
    return ""


def _changes(spec: api.ParameterSpec) -> str:
    if spec.dynamic:
        return "live"
    return "restart" if spec.read_only else "at start"


def parameters_table() -> str:
    """Node parameters (ros/interface.py PARAMETERS)."""
    rows = [(f"`{spec.name}`", spec.type, f"`{spec.default_text}`" if spec.default is not None
             else spec.default_text, _allowed(spec), _changes(spec), spec.description)
            for spec in api.PARAMETERS]
    return _table(("name", "type", "default", "allowed", "change", "description"), rows)


def matches_fields_table() -> str:
    """Fields of one ~/matches row (ros/interface.py MATCHES_FIELDS)."""
    rows = [(f"`{field.name}`", field.type_name, field.offset, field.meaning)
            for field in api.MATCHES_FIELDS]
    return _table(("field", "type", "byte offset", "meaning"), rows) + (
        f"\n\n`point_step` = {api.MATCHES_POINT_STEP} bytes, little endian "
        f"(`is_bigendian` = {str(api.MATCHES_IS_BIGENDIAN).lower()}), `height` = 1, "
        "`width` = number of matches (0 when nothing matched).")


def _transformer(config: ModelConfig) -> str:
    names = list(config.layer_names)
    pairs = len(names) // 2
    if names == ["self", "cross"] * pairs:
        schedule = f"{pairs} self/cross pairs"
    else:
        schedule = "layers " + ", ".join(names)
    return f"{config.d_model} wide, {config.nhead} heads, {schedule}"


def presets_table() -> str:
    """Model presets (model/presets.py PRESETS)."""
    rows = []
    for name, config in PRESETS.items():
        fine = (f"stride {config.fine.stride}, {config.fine.dim} ch, window "
                f"{2 * config.fine.window_radius + 1}²" if config.fine else "none")
        label = f"`{name}`" + (" (default)" if name == DEFAULT_PRESET else "")
        rows.append((label, config.coarse_stride, _transformer(config),
                     ", ".join(str(d) for d in config.block_dims), config.pe_variant, fine,
                     f"{config.input_width}×{config.input_height}", config.match_threshold))
    return _table(("preset", "coarse stride", "transformer", "backbone channels",
                   "pos. encoding", "fine stage", "default input", "default threshold"), rows)


TABLES: Dict[str, Callable[[], str]] = {
    "topics": topics_table,
    "parameters": parameters_table,
    "matches-fields": matches_fields_table,
    "presets": presets_table,
}
README_TABLES = ("topics", "matches-fields", "parameters")
MODEL_DOC_TABLES = ("presets",)


def render(text: str, names: Sequence[str] = README_TABLES) -> str:
    """``text`` with the generated sections ``names`` replaced by the current tables."""
    for name in names:
        begin, end = BEGIN.format(name=name), END.format(name=name)
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
        if not pattern.search(text):
            raise ValueError(f"no section {begin!r} ... {end!r}")
        text = pattern.sub(lambda _: f"{begin}\n{TABLES[name]()}\n{end}", text, count=1)
    return text


def _update(path: str, names: Sequence[str], check: bool) -> bool:
    """Rewrite (or with ``check`` compare) one document's tables; True when it was current."""
    label = os.path.relpath(path, REPO)
    with open(path, encoding="utf-8") as handle:
        current = handle.read()
    try:
        wanted = render(current, names)
    except ValueError as exc:
        print(f"readme_tables: {label}: {exc}", file=sys.stderr)
        return False
    if wanted == current:
        return True
    if check:
        sys.stdout.writelines(difflib.unified_diff(current.splitlines(True),
                                                   wanted.splitlines(True), label,
                                                   f"{label} (generated)"))
        print(f"readme_tables: {label} is out of date; run python scripts/readme_tables.py",
              file=sys.stderr)
        return False
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(wanted)
    print(f"readme_tables: {label} updated")
    return True


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="generated tables of README.md and docs/model.md")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if a table is not current")
    mode.add_argument("--print", action="store_true", help="print the tables")
    parser.add_argument("--readme", default=README, help=argparse.SUPPRESS)
    parser.add_argument("--model-doc", default=MODEL_DOC, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.print:
        for name, make in TABLES.items():
            print(f"{BEGIN.format(name=name)}\n{make()}\n{END.format(name=name)}\n")
        return 0
    current = [_update(path, names, args.check)
               for path, names in ((args.readme, README_TABLES),
                                   (args.model_doc, MODEL_DOC_TABLES))]
    if all(current) and args.check:
        print("readme_tables: README.md and docs/model.md tables are current")
    return 0 if all(current) else 1


if __name__ == "__main__":
    sys.exit(main())
