"""Checkpoint loading and saving for the three supported formats (docs/model.md, "Checkpoints").

- ``original``: a LoFTR PyTorch-Lightning file, ``state_dict`` with keys prefixed ``matcher.``; the
  fine-stage keys and the OT ``bin_score`` are ignored (and reported).
- ``seed``: a Coarse LoFTR TRT file, ``model_state_dict`` without prefix; its untrained FPN keys are
  ignored (and reported).
- ``loftr_ros``: our own format, one file holding the weights AND the model config, so the file
  alone rebuilds the model.

Every failure raises :class:`CheckpointError` naming the file and what is wrong; nothing is ever
loaded partially.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from loftr_ros.model.network import CoarseLoFTR
from loftr_ros.model.presets import ModelConfig, get_preset

FORMAT_NAME = "loftr_ros"
FORMAT_VERSION = 1

# Keys of parts a coarse-only model does not have: the FPN fine branch (original and seed), the fine
# transformer and matching, and the OT dustbin score.
_IGNORED_KEY_PATTERNS = [
    re.compile(r"^backbone\.layer\d_outconv2\."),
    re.compile(r"^backbone\.layer\d_outconv\.weight$"),  # only when the model has no such module
    re.compile(r"^fine_preprocess\."),
    re.compile(r"^loftr_fine\."),
    re.compile(r"^fine_matching\."),
    re.compile(r"^coarse_matching\.bin_score$"),
]


class CheckpointError(ValueError):
    """A weights file cannot be loaded; the message names the file and the problem."""


@dataclass
class LoadReport:
    """What a load did: the detected format, the config used and the keys that were ignored."""

    path: str
    format: str
    config: ModelConfig
    ignored_keys: List[str] = field(default_factory=list)
    metadata: Dict[str, Any] = field(default_factory=dict)


def _read_file(path: str) -> Any:
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such weights file")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for corrupt/truncated files
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (corrupt or truncated?): "
            f"{type(exc).__name__}: {exc}") from None


def detect_format(path: str, content: Any) -> Tuple[str, Mapping[str, torch.Tensor]]:
    """Return (format name, raw state dict) of a loaded checkpoint object."""
    if not isinstance(content, Mapping):
        raise CheckpointError(f"{path}: expected a dict checkpoint, found {type(content).__name__}")
    if content.get("format") == FORMAT_NAME:
        state = content.get("state_dict")
        if not isinstance(state, Mapping):
            raise CheckpointError(f"{path}: loftr_ros checkpoint without a state_dict")
        return FORMAT_NAME, state
    if isinstance(content.get("state_dict"), Mapping):
        state = content["state_dict"]
        if any(key.startswith("matcher.") for key in state):
            return "original", {key[len("matcher."):] if key.startswith("matcher.") else key: value
                                for key, value in state.items()}
        return "original", state
    if isinstance(content.get("model_state_dict"), Mapping):
        return "seed", content["model_state_dict"]
    if content and all(isinstance(value, torch.Tensor) for value in content.values()):
        return "state_dict", content
    raise CheckpointError(
        f"{path}: unknown checkpoint layout (top-level keys {sorted(map(str, content))[:8]}); "
        "expected 'state_dict' (LoFTR), 'model_state_dict' (Coarse LoFTR TRT) or a loftr_ros file")


def _is_ignorable(key: str, model_keys: Mapping[str, Any]) -> bool:
    return key not in model_keys and any(pattern.search(key) for pattern in _IGNORED_KEY_PATTERNS)


def load_state_strict(model: CoarseLoFTR, state: Mapping[str, torch.Tensor],
                      path: str) -> List[str]:
    """Copy ``state`` into ``model``; every model key must be present with the right shape.

    Returns the ignored (fine-stage) keys. ``num_batches_tracked`` may be absent.
    """
    model_state = model.state_dict()
    ignored = sorted(key for key in state if _is_ignorable(key, model_state))
    unexpected = sorted(key for key in state if key not in model_state and key not in ignored)
    missing = sorted(key for key in model_state if key not in state
                     and not key.endswith("num_batches_tracked"))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {missing[:4]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:4]})")
    mismatched = []
    for key, value in state.items():
        if key in model_state and tuple(value.shape) != tuple(model_state[key].shape):
            mismatched.append(f"{key}: file {tuple(value.shape)} vs model "
                              f"{tuple(model_state[key].shape)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches (e.g. {mismatched[:3]})")
    if problems:
        raise CheckpointError(f"{path}: does not fit preset {model.config.name!r}: "
                              + "; ".join(problems))
    filtered = {key: value for key, value in state.items() if key in model_state}
    model.load_state_dict(filtered, strict=False)
    return ignored


def _config_from_file(path: str, content: Mapping[str, Any]) -> ModelConfig:
    try:
        return ModelConfig.from_dict(dict(content["config"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: invalid model config in loftr_ros checkpoint: {exc}") from None


def load_model(path: str, preset: Optional[str] = None,
               input_size: Optional[Tuple[int, int]] = None) -> Tuple[CoarseLoFTR, LoadReport]:
    """Load weights from ``path`` into a new model (eval mode).

    Args:
        path: checkpoint file (.ckpt / .pt / .pth) in any supported format.
        preset: preset name for formats that carry no config (``original``: default ``outdoor``;
            ``seed``: default ``seed``). Ignored with a loftr_ros file unless it disagrees.
        input_size: optional ``(width, height)`` override of the default input size.
    """
    content = _read_file(path)
    fmt, state = detect_format(path, content)
    metadata: Dict[str, Any] = {}
    if fmt == FORMAT_NAME:
        config = _config_from_file(path, content)
        metadata = dict(content.get("metadata") or {})
        if preset is not None and preset != config.name:
            raise CheckpointError(f"{path}: holds preset {config.name!r}, not {preset!r}")
    else:
        default = {"original": "outdoor", "seed": "seed"}.get(fmt, None)
        name = preset or default
        if name is None:
            raise CheckpointError(f"{path}: a bare state dict carries no config; pass a preset")
        config = get_preset(name)
    if input_size is not None:
        config = config.with_input_size(*input_size)
    model = CoarseLoFTR(config)
    ignored = load_state_strict(model, state, path)
    model.eval()
    return model, LoadReport(path=path, format=fmt, config=config, ignored_keys=ignored,
                             metadata=metadata)


def save_model(model: CoarseLoFTR, path: str, metadata: Optional[Dict[str, Any]] = None) -> None:
    """Save ``model`` in the loftr_ros format (weights + config + metadata), atomically."""
    content = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": {key: value.detach().cpu().clone() for key, value in
                       model.state_dict().items()},
        "metadata": dict(metadata or {}),
    }
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = path + ".tmp"
    torch.save(content, temporary)
    os.replace(temporary, path)
