"""benchmarks/bench_training.py projects the training recipe that docs/training.md writes down."""
from __future__ import annotations

import importlib.util
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Dict, Tuple

from conftest import REPO_ROOT

from loftr_ros.cli.train import build_parser
from loftr_ros.model.presets import PRESETS

REPO = Path(REPO_ROOT)


def recipe_stages(bench: ModuleType) -> list:
    """The recipe block's ``loftr-train`` commands (parsed by loftr-train's own parser) as the
    bench's ``Stage``, each with the transformer schedule it trains: ``--layers``, else that of
    the ``--init-weights`` it starts from (a stage's ``<out>/model.pt`` or a ``layer_subset`` of
    one), else its preset's."""
    text = (REPO / "docs" / "training.md").read_text()
    blocks = [part.split("```", 1)[0] for part in text.split("```bash")[1:]]
    block = next(block for block in blocks if "stage 1" in block)
    schedules: Dict[str, Tuple[str, ...]] = {}
    stages = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words[:3] == ["python", "-m", "loftr_ros.training.layer_subset"]:
            source, target, keep = words[3], words[4], words[words.index("--keep") + 1]
            schedules[target] = tuple(schedules[source][int(i)] for i in keep.split(","))
        elif words[:1] == ["loftr-train"]:
            args = build_parser().parse_args(words[1:])
            if args.layers:
                layers = tuple(args.layers.split(","))
            elif args.init_weights:
                layers = schedules[args.init_weights]
            else:
                layers = tuple(PRESETS[args.preset].layer_names)
            schedules[f"{args.out}/model.pt"] = layers
            stages.append(bench.Stage(
                f"stage {len(stages) + 1}", args.width, args.height, args.batch_size,
                args.epochs, args.pairs_per_epoch, layers=layers, scene_mix=args.scene_mix,
                scene_baseline=args.scene_baseline,
                scene_max_rotation_deg=args.scene_max_rotation, val_pairs=args.val_pairs))
    return stages


def load_bench(monkeypatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("bench_training",
                                                  REPO / "benchmarks" / "bench_training.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_training", module)   # dataclasses look it up
    spec.loader.exec_module(module)
    return module


def test_bench_training_times_the_documented_recipe(monkeypatch):
    bench = load_bench(monkeypatch)
    documented = recipe_stages(bench)
    assert len(documented) == len(bench.RECIPE) == 3
    lite = tuple(PRESETS["lite"].layer_names)
    for stage, expected in zip(bench.RECIPE, documented):
        assert replace(stage, layers=stage.layers or lite) == expected, stage.name
