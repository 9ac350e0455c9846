"""Named model presets: every architecture number of every supported network, in one place.

Pure Python (no torch), so the ROS node and the onnxruntime/TensorRT runtimes can read a preset
without importing PyTorch.

A preset is a :class:`ModelConfig`. ``ModelConfig.to_dict`` / ``from_dict`` give the JSON form that
our own checkpoint format and the exported ONNX metadata carry, so a weights file alone rebuilds
its model.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

SELF = "self"
CROSS = "cross"


@dataclass(frozen=True)
class FineConfig:
    """Optional learned fine stage: features at a finer stride, matched around each coarse match.

    Attributes:
        stride: pixel stride of the fine feature map (must divide the coarse stride).
        dim: channels of the fine feature map.
        window_radius: half-size, in fine cells, of the search window in image 1 (window is
            ``(2r+1)^2`` cells).
        temperature: softmax temperature of the correlation inside the window.
        min_peak_mass: matches whose window distribution holds less than this probability in the
            3x3 cells around its peak are dropped as ambiguous (flat texture, repeated patterns);
            0 keeps all. Calibrated per trained model on training-validation pairs.
        keep_sharpest: the ``min_peak_mass`` filter never leaves fewer matches than this while
            more exist (below it the sharpest are kept); 0 = the limit alone decides.
            Calibrated with ``min_peak_mass``.
    """

    stride: int = 4
    dim: int = 32
    window_radius: int = 4
    temperature: float = 0.1
    min_peak_mass: float = 0.0
    keep_sharpest: int = 64


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a coarse LoFTR network plus its default input size.

    Attributes:
        name: preset name.
        initial_dim: channels of the 7x7 stride-2 stem.
        block_dims: output channels of each ResNet layer (``layer1`` ... ``layerN``).
        block_strides: stride of the first BasicBlock of each layer. The coarse stride is
            ``2 * prod(block_strides)``.
        d_model: transformer width (= channels of the coarse feature map).
        nhead: attention heads.
        layer_names: transformer schedule, e.g. ``["self", "cross"] * 4``.
        pe_variant: ``"buggy"`` (all released LoFTR checkpoints and the seed) or ``"fixed"``.
        temperature: dual-softmax temperature (``tau``).
        ln_eps: LayerNorm epsilon.
        input_width, input_height: default model input size in pixels (multiples of the stride).
        fine: optional learned fine stage.
        match_threshold: default confidence threshold calibrated for these weights.
        border_margin: default border margin in coarse cells.
    """

    name: str
    initial_dim: int
    block_dims: Tuple[int, ...]
    block_strides: Tuple[int, ...]
    d_model: int
    nhead: int
    layer_names: Tuple[str, ...]
    pe_variant: str = "buggy"
    temperature: float = 0.1
    ln_eps: float = 1e-5
    input_width: int = 640
    input_height: int = 480
    fine: Optional[FineConfig] = None
    match_threshold: float = 0.2
    border_margin: int = 2

    def __post_init__(self) -> None:
        if len(self.block_dims) != len(self.block_strides):
            raise ValueError("block_dims and block_strides must have the same length")
        if self.d_model % self.nhead:
            raise ValueError(f"d_model {self.d_model} is not divisible by nhead {self.nhead}")
        if self.block_dims[-1] != self.d_model:
            raise ValueError(
                "the last block dim must equal d_model (coarse map = transformer input)")
        if self.pe_variant not in ("buggy", "fixed"):
            raise ValueError(f"pe_variant must be 'buggy' or 'fixed', not {self.pe_variant!r}")
        for name in self.layer_names:
            if name not in (SELF, CROSS):
                raise ValueError(f"unknown transformer layer type {name!r}")
        if self.fine is not None and self.coarse_stride % self.fine.stride:
            raise ValueError("the fine stride must divide the coarse stride")
        if self.fine is not None and self.fine.stride not in self.stage_strides:
            raise ValueError(
                f"fine stride {self.fine.stride} is not the output stride of any backbone layer "
                f"{self.stage_strides}")
        self.check_input_size(self.input_width, self.input_height)

    @property
    def coarse_stride(self) -> int:
        """Pixel stride of the coarse grid (8 for LoFTR, 16 for the seed)."""
        stride = 2
        for step in self.block_strides:
            stride *= step
        return stride

    @property
    def stage_strides(self) -> Tuple[int, ...]:
        """Output stride of each ResNet layer."""
        strides: List[int] = []
        stride = 2
        for step in self.block_strides:
            stride *= step
            strides.append(stride)
        return tuple(strides)

    @property
    def input_size(self) -> Tuple[int, int]:
        """Default model input ``(width, height)`` in pixels."""
        return (self.input_width, self.input_height)

    def check_input_size(self, width: int, height: int) -> None:
        """Raise ValueError unless ``width`` x ``height`` is a valid input for this network."""
        stride = self.coarse_stride
        if width <= 0 or height <= 0 or width % stride or height % stride:
            raise ValueError(
                f"input size {width}x{height} must be positive multiples of the coarse stride "
                f"{stride} for preset {self.name!r}")
        if width // stride > 256 or height // stride > 256:
            raise ValueError(f"input size {width}x{height} exceeds 256 coarse cells per side")

    def with_input_size(self, width: int, height: int) -> "ModelConfig":
        """Return a copy with another default input size (validated)."""
        return dataclasses.replace(self, input_width=int(width), input_height=int(height))

    def to_dict(self) -> Dict[str, Any]:
        """JSON-serialisable form (stored in checkpoints and ONNX metadata)."""
        data = dataclasses.asdict(self)
        data["block_dims"] = list(self.block_dims)
        data["block_strides"] = list(self.block_strides)
        data["layer_names"] = list(self.layer_names)
        return data

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ModelConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        values = dict(data)
        values["block_dims"] = tuple(values["block_dims"])
        values["block_strides"] = tuple(values["block_strides"])
        values["layer_names"] = tuple(values["layer_names"])
        if values.get("fine") is not None:
            values["fine"] = FineConfig(**values["fine"])
        return cls(**values)


def _pairs(count: int) -> Tuple[str, ...]:
    return (SELF, CROSS) * count


_ORIGINAL_COMMON: Dict[str, Any] = dict(
    initial_dim=128, block_dims=(128, 196, 256), block_strides=(1, 2, 2), d_model=256, nhead=8,
    layer_names=_pairs(4), pe_variant="buggy", temperature=0.1, ln_eps=1e-5,
    match_threshold=0.2, border_margin=2)

PRESETS: Dict[str, ModelConfig] = {
    # The original LoFTR coarse path (ResNetFPN 8/2, dual-softmax), MegaDepth weights.
    "outdoor": ModelConfig(name="outdoor", **_ORIGINAL_COMMON),
    # Same architecture, ScanNet weights.
    "indoor": ModelConfig(name="indoor", **_ORIGINAL_COMMON),
    # The Coarse LoFTR TRT distilled student (stride 16). Its confidences are low (max ~0.1-0.3),
    # hence the low default threshold.
    "seed": ModelConfig(
        name="seed", initial_dim=8, block_dims=(8, 16, 32, 32), block_strides=(1, 2, 2, 2),
        d_model=32, nhead=1, layer_names=_pairs(2), pe_variant="buggy", temperature=0.1,
        ln_eps=1e-7, match_threshold=0.01, border_margin=2),
    # loftr_ros's own default: stride-16 coarse matching (1200 tokens at 640x480) plus a learned
    # stride-4 fine stage for sub-cell accuracy. The stem is followed by a stride-2 layer1, so the
    # expensive half-resolution stage of the original is skipped. One self layer (the encoder's
    # last step) and two cross layers: the matcher stage, which runs per frame against a cached
    # reference, holds only the two cross layers and the dual softmax.
    "lite": ModelConfig(
        name="lite", initial_dim=16, block_dims=(24, 48, 96), block_strides=(2, 2, 2),
        d_model=96, nhead=4, layer_names=(SELF, CROSS, CROSS), pe_variant="fixed",
        temperature=0.1,
        ln_eps=1e-5, fine=FineConfig(stride=4, dim=32, window_radius=4, temperature=0.1),
        match_threshold=0.05, border_margin=1),
}

DEFAULT_PRESET = "lite"


def get_preset(name: str) -> ModelConfig:
    """Return the preset called ``name`` (KeyError with the list of names otherwise)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; known presets: {sorted(PRESETS)}") from None


def preset_names() -> List[str]:
    """All preset names, sorted."""
    return sorted(PRESETS)


__all__ = ["FineConfig", "ModelConfig", "PRESETS", "DEFAULT_PRESET", "get_preset",
           "preset_names", "SELF", "CROSS"]
