"""What a TensorRT engine is tied to: the TensorRT version and the GPU.

TensorRT and pycuda are imported inside the functions that need them, so everything that only
names engines works (and is tested) without them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional, Tuple

from loftr_ros.runtime.base import BackendUnavailableError

TRT_INSTALL_HINT = ("on a Jetson it comes with JetPack (sudo apt install python3-libnvinfer); "
                    "on a desktop GPU: pip install tensorrt")
PYCUDA_INSTALL_HINT = "sudo apt install python3-pycuda, or pip install pycuda"


@dataclass(frozen=True)
class PlatformInfo:
    """What an engine is tied to: the TensorRT version and the GPU, plus fp16/int8 speed."""

    trt_version: str
    gpu_name: str
    fast_fp16: bool = True
    fast_int8: bool = False


def sanitize(text: str, max_length: int = 48) -> str:
    """Lower-case ``text`` with every run of characters other than ``[a-z0-9.]`` made one ``-``
    (file-name safe on every file system)."""
    cleaned = re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.")
    return cleaned[:max_length].rstrip("-.") or "unknown"


def import_tensorrt() -> Any:
    """``import tensorrt`` or BackendUnavailableError with the install hint."""
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailableError(
            f"TensorRT is not installed (Python module 'tensorrt': {exc}); "
            f"{TRT_INSTALL_HINT}") from None
    return tensorrt


def import_pycuda_driver() -> Any:
    """``import pycuda.driver`` and ``cuda.init()``, or BackendUnavailableError saying what is
    missing: pycuda itself, or a CUDA GPU/driver."""
    try:
        import pycuda.driver as cuda
    except ImportError as exc:
        raise BackendUnavailableError(
            f"pycuda is not installed (Python module 'pycuda': {exc}); {PYCUDA_INSTALL_HINT}"
        ) from None
    try:
        cuda.init()
        count = cuda.Device.count()
    except Exception as exc:  # pycuda.driver.Error, RuntimeError: no driver / no device
        raise BackendUnavailableError(f"no usable CUDA GPU: {exc}") from None
    if count < 1:
        raise BackendUnavailableError("no CUDA GPU found (pycuda sees 0 devices)")
    return cuda


def gpu_label(name: str, compute_capability: Optional[Tuple[int, int]] = None) -> str:
    """GPU name (plus ``sm<major><minor>``) as it appears in engine file names."""
    label = name
    if compute_capability is not None:
        label += f" sm{compute_capability[0]}{compute_capability[1]}"
    return sanitize(label)


def has_fast_fp16(compute_capability: Tuple[int, int]) -> bool:
    """Native fp16 arithmetic at full rate: SM 5.3 (Jetson TX1/Nano), 6.0, 6.2 (TX2) and 7.0+
    (Xavier, Orin, every newer GPU); not SM 6.1 (GeForce 10) nor older (CUDA arithmetic
    throughput table)."""
    return tuple(compute_capability) in ((5, 3), (6, 0), (6, 2)) or \
        tuple(compute_capability) >= (7, 0)


def probe_platform(device_index: int = 0) -> PlatformInfo:
    """The installed TensorRT version and the name of CUDA device ``device_index`` (no TensorRT
    builder is created: cheap enough for every node start).

    Raises BackendUnavailableError when TensorRT, pycuda or a GPU is missing.
    """
    trt = import_tensorrt()
    cuda = import_pycuda_driver()
    device = cuda.Device(device_index)
    capability = tuple(device.compute_capability())
    return PlatformInfo(trt_version=str(trt.__version__),
                        gpu_name=gpu_label(device.name(), capability),
                        fast_fp16=has_fast_fp16(capability), fast_int8=capability >= (6, 1))


def resolve_precision(fp16: Optional[bool], int8: bool, platform: PlatformInfo) -> str:
    """``int8`` when asked, else ``fp16`` (default where the GPU has fast fp16), else ``fp32``."""
    if int8:
        return "int8"
    if fp16 is None:
        fp16 = platform.fast_fp16
    return "fp16" if fp16 else "fp32"


__all__ = ["PlatformInfo", "sanitize", "import_tensorrt", "import_pycuda_driver", "gpu_label",
           "has_fast_fp16", "probe_platform", "resolve_precision"]
