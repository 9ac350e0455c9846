"""The network (PyTorch), its presets and checkpoint loading.

Importing this package does not import torch: only ``presets`` is pure Python. Import
``loftr_ros.model.network`` / ``loftr_ros.model.checkpoint`` for the torch parts.
"""
from loftr_ros.model.presets import DEFAULT_PRESET, PRESETS, FineConfig, ModelConfig, get_preset

__all__ = ["DEFAULT_PRESET", "PRESETS", "FineConfig", "ModelConfig", "get_preset"]
