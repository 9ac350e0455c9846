"""A model made of a subset of another model's transformer layers, weights copied.

The start of a fine-tune towards a shorter transformer schedule: the backbone, the fine head and
the kept layers carry over unchanged, and the dropped layers' work is relearned by training
(``loftr-train --init-weights``). The bundled ``lite`` model was made this way from a
self/cross/self/cross model by keeping layers 0, 1 and 3 (docs/training.md).

    python -m loftr_ros.training.layer_subset runs/lite640/model.pt runs/lite3_init.pt --keep 0,1,3
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Dict, List, Optional, Sequence

import torch

from loftr_ros.model.checkpoint import CheckpointError, load_model, save_model
from loftr_ros.model.network import CoarseLoFTR
from loftr_ros.model.presets import CROSS

#: state_dict prefix of the transformer layers of :class:`CoarseLoFTR`
LAYER_PREFIX = "loftr_coarse.layers."


def keep_layers(model: CoarseLoFTR, keep: Sequence[int]) -> CoarseLoFTR:
    """A new model (eval mode) whose transformer is ``model``'s layers ``keep``, in that order,
    with every other weight copied. ValueError for an index out of range, a repeated or
    decreasing index, or a schedule without a cross layer."""
    names = model.config.layer_names
    indices = [int(index) for index in keep]
    if not indices or any(not 0 <= index < len(names) for index in indices):
        raise ValueError(f"layer indices must lie in [0, {len(names) - 1}], got {indices}")
    if any(later <= earlier for earlier, later in zip(indices, indices[1:])):
        raise ValueError(f"layer indices must be increasing, got {indices}")
    schedule = tuple(names[index] for index in indices)
    if CROSS not in schedule:
        raise ValueError(f"the schedule {schedule} has no cross layer: the images never meet")
    subset = CoarseLoFTR(dataclasses.replace(model.config, layer_names=schedule))
    source = model.state_dict()
    state: Dict[str, torch.Tensor] = {}
    for key in subset.state_dict():
        if key.startswith(LAYER_PREFIX):
            position, rest = key[len(LAYER_PREFIX):].split(".", 1)
            key_in_source = f"{LAYER_PREFIX}{indices[int(position)]}.{rest}"
        else:
            key_in_source = key
        state[key] = source[key_in_source].detach().clone()
    subset.load_state_dict(state)
    return subset.eval()


def _indices(text: str) -> List[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loftr_ros.training.layer_subset",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", help="trained weights (any format load_model reads)")
    parser.add_argument("out", help="weights file to write (loftr_ros format)")
    parser.add_argument("--keep", type=_indices, required=True,
                        help="comma-separated transformer layer indices to keep, e.g. 0,1,3")
    args = parser.parse_args(argv)
    try:
        model, report = load_model(args.weights)
        subset = keep_layers(model, args.keep)
    except (CheckpointError, ValueError, OSError) as exc:
        print(f"layer_subset: {exc}", file=sys.stderr)
        return 2
    metadata = dict(report.metadata)
    metadata["layer_subset"] = {"source": args.weights, "kept": list(args.keep),
                                "source_layers": list(model.config.layer_names)}
    save_model(subset, args.out, metadata)
    print(f"layer_subset: kept layers {args.keep} of {list(model.config.layer_names)} -> "
          f"{list(subset.config.layer_names)}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
