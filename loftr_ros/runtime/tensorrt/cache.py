"""The engine cache: keys, file names, the folder, and the JSON beside each engine.

An engine only runs on the TensorRT version and the GPU it was built for, so cached engines are
named after everything that makes them incompatible::

    <onnx stem>-<sha256 of the ONNX, 12 hex>-<W>x<H>-<precision>-trt<version>-<gpu>.engine

e.g. ``lite-3fa2b1c4d5e6-640x480-fp16-trt8.5.2.2-orin-sm87.engine``. A JetPack upgrade or another
board gives another name, so a stale engine is never loaded. Beside each engine a JSON file
(``<engine>.json``) records how it was built and the model config from the ONNX metadata, so the
runtime can load an engine file alone.

Cache folder: the ``cache_dir`` argument, else ``$XDG_CACHE_HOME/loftr_ros/engines`` (default
``~/.cache/loftr_ros/engines``); if it is not writable, a folder under the system temp dir is used
and a warning says so.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from loftr_ros.runtime.base import LoftrRuntimeError
from loftr_ros.runtime.onnx_info import read_onnx_input_size
from loftr_ros.runtime.tensorrt.platform import PlatformInfo, sanitize

LOGGER = logging.getLogger("loftr_ros.runtime.tensorrt.cache")

ENGINE_SUFFIX = ".engine"
METADATA_SUFFIX = ".json"
PRECISIONS = ("fp32", "fp16", "int8")
HASH_LENGTH = 12

Log = Callable[[str], None]


def file_sha256(path: str) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on; :meth:`file_name` encodes all of it."""

    model_name: str
    model_hash: str
    width: int
    height: int
    precision: str
    trt_version: str
    gpu_name: str

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS and not self.precision.startswith("int8-"):
            raise ValueError(f"precision must be one of {PRECISIONS}, not {self.precision!r}")

    def file_name(self, suffix: str = "") -> str:
        """Engine file name (no folder); ``suffix`` names one stage of a two-stage model
        (``-encoder``, ``-matcher``), which shares the key of its pair."""
        return (f"{sanitize(self.model_name, 32)}-{self.model_hash[:HASH_LENGTH]}-"
                f"{self.width}x{self.height}-{self.precision}-trt{sanitize(self.trt_version, 24)}-"
                f"{sanitize(self.gpu_name)}{suffix}{ENGINE_SUFFIX}")


def engine_key(onnx_path: str, precision: str, platform: PlatformInfo,
               model_hash: Optional[str] = None) -> EngineKey:
    """The cache key of ``onnx_path`` built at ``precision`` on ``platform``."""
    width, height = read_onnx_input_size(onnx_path)
    stem = os.path.splitext(os.path.basename(onnx_path))[0]
    return EngineKey(model_name=stem, model_hash=model_hash or file_sha256(onnx_path),
                     width=width, height=height, precision=precision,
                     trt_version=platform.trt_version, gpu_name=platform.gpu_name)


def default_cache_dir() -> str:
    """``$XDG_CACHE_HOME/loftr_ros/engines``, ``~/.cache/loftr_ros/engines`` without it."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "loftr_ros", "engines")


def _writable(folder: str) -> Optional[str]:
    """None if files can be created in ``folder`` (made if needed), else the reason."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def resolve_cache_dir(cache_dir: Optional[str] = None, log: Optional[Log] = None) -> str:
    """A writable engine cache folder: ``cache_dir`` (default :func:`default_cache_dir`), or a
    per-user folder under the temp dir when that one is not writable (a warning says so)."""
    wanted = os.path.abspath(os.path.expanduser(cache_dir or default_cache_dir()))
    reason = _writable(wanted)
    if reason is None:
        return wanted
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    fallback = os.path.join(tempfile.gettempdir(), f"loftr_ros-engines-{uid}")
    fallback_reason = _writable(fallback)
    if fallback_reason is not None:
        raise LoftrRuntimeError(f"engine cache folder {wanted} is not writable ({reason}), nor is "
                                f"the fallback {fallback} ({fallback_reason}); pass --cache-dir")
    message = (f"engine cache folder {wanted} is not writable ({reason}); using {fallback} "
               "instead (engines there may not survive a reboot)")
    LOGGER.warning(message)
    if log is not None:
        log(f"warning: {message}")
    return fallback


def metadata_path(engine_path: str) -> str:
    """Path of the JSON that describes ``engine_path``."""
    return engine_path + METADATA_SUFFIX


def read_engine_metadata(engine_path: str) -> Optional[Dict[str, Any]]:
    """The JSON beside an engine, or None if absent or unreadable."""
    try:
        with open(metadata_path(engine_path), encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_engine_metadata(engine_path: str, data: Dict[str, Any]) -> None:
    """Write the JSON beside ``engine_path`` atomically (readers never see half of it)."""
    temporary = metadata_path(engine_path) + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
    os.replace(temporary, metadata_path(engine_path))


def engine_incompatibility(metadata: Optional[Dict[str, Any]], trt_version: str,
                           gpu_name: Optional[str]) -> Optional[str]:
    """Why an engine described by ``metadata`` cannot run here, or None if nothing says so.

    An engine runs only on the exact TensorRT version and the GPU model it was built with.
    """
    if not metadata:
        return None
    built_trt = str(metadata.get("trt_version") or "")
    built_gpu = str(metadata.get("gpu_name") or "")
    if built_trt and built_trt != trt_version:
        return (f"it was built with TensorRT {built_trt}, this is TensorRT {trt_version}")
    if built_gpu and gpu_name and built_gpu != gpu_name:
        return f"it was built for GPU {built_gpu}, this GPU is {gpu_name}"
    return None


__all__ = ["EngineKey", "engine_key", "file_sha256", "default_cache_dir", "resolve_cache_dir",
           "metadata_path", "read_engine_metadata", "write_engine_metadata",
           "engine_incompatibility", "HASH_LENGTH", "ENGINE_SUFFIX"]
