"""Runtime factory: pick an inference engine by name; ``auto`` picks the best available.

Engines: ``tensorrt`` (Jetson/NVIDIA GPU, needs TensorRT + pycuda), ``onnxruntime`` (CPU, CUDA
provider when present), ``torch`` (CPU/CUDA). Only the torch engine imports torch.
"""
from __future__ import annotations

import importlib.util
import logging
import os
from typing import Optional, Tuple

from loftr_ros.model.presets import DEFAULT_PRESET
from loftr_ros.runtime.base import (
    BackendUnavailableError,
    InferenceRuntime,
    LoftrRuntimeError,
    ModelLoadError,
)

LOGGER = logging.getLogger("loftr_ros.runtime")
BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")
WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights")
TORCH_SUFFIXES = (".pt", ".pth", ".ckpt")
ENGINE_SUFFIXES = (".engine", ".trt", ".plan")


def default_weights(kind: str, input_size: Optional[Tuple[int, int]] = None) -> str:
    """Path of the bundled default model: ``kind`` is ``"pt"`` or ``"onnx"``.

    The ONNX model has two stages (``lite_encoder.onnx`` names its ``lite_matcher.onnx``); the
    path returned is the encoder's. ONNX graphs are static: for an ``input_size`` other than the
    default 640x480 the bundled ``lite_<W>x<H>_encoder.onnx`` is used (320x240 ships for small
    Jetsons; ``loftr-export`` makes others).
    """
    if kind != "onnx":
        return os.path.join(WEIGHTS_DIR, f"{DEFAULT_PRESET}.{kind}")
    stem = DEFAULT_PRESET
    if input_size is not None and tuple(input_size) != (640, 480):
        stem += f"_{input_size[0]}x{input_size[1]}"
    return os.path.join(WEIGHTS_DIR, f"{stem}_encoder.onnx")


def default_cpu_onnx(input_size: Optional[Tuple[int, int]] = None) -> str:
    """The bundled ONNX that onnxruntime loads on the CPU when no weights are given: the float
    two-stage model of :func:`default_weights` (``lite_encoder.onnx`` with ``lite_matcher.onnx``),
    the same graphs as on a GPU.

    The bundled INT8 encoder (:func:`int8_onnx`) is an option, passed as weights: on the AVX2 CPU
    without VNNI of ``docs/benchmarks.md`` it is slower than the float encoder and its confidences
    differ from the network's by up to ~0.1; on CPUs with int8 instructions (VNNI, AMX) it may be
    faster (not measured)."""
    return default_weights("onnx", input_size)


def int8_onnx(input_size: Optional[Tuple[int, int]] = None) -> Optional[str]:
    """Path of the bundled INT8 encoder for ``input_size`` (``lite_encoder_int8.onnx`` at
    640x480, :mod:`loftr_ros.deploy.quantization`; it runs with the float matcher it names), or
    None where none ships (320x240)."""
    float_path = default_weights("onnx", input_size)
    int8_path = float_path[:-len(".onnx")] + "_int8.onnx"
    return int8_path if os.path.exists(int8_path) else None


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _tensorrt_usable() -> bool:
    if not (_installed("tensorrt") and _installed("pycuda")):
        return False
    return os.path.exists("/dev/nvidia0") or os.path.exists("/dev/nvhost-ctrl")  # Jetson


def choose_backend(weights: Optional[str]) -> str:
    """The backend ``auto`` resolves to for these weights (see module doc)."""
    if weights and weights.endswith(ENGINE_SUFFIXES):
        return "tensorrt"
    if weights and weights.endswith(TORCH_SUFFIXES):
        return "torch"
    if _tensorrt_usable():
        return "tensorrt"
    if _installed("onnxruntime"):
        return "onnxruntime"
    return "torch"


def create_runtime(backend: str = "auto", weights: Optional[str] = None,
                   preset: Optional[str] = None, input_size: Optional[Tuple[int, int]] = None,
                   device: str = "auto", threads: Optional[int] = None,
                   engine_cache_dir: Optional[str] = None, fp16: Optional[bool] = None,
                   allow_fallback: bool = False, compile_model: bool = False) -> InferenceRuntime:
    """Create an inference engine.

    Args:
        backend: one of ``BACKENDS``.
        weights: checkpoint (.pt/.ckpt, torch), ONNX (.onnx: onnxruntime or TensorRT) or serialized
            TensorRT engine; None = the bundled default model in the form the backend needs
            (the float two-stage ONNX for onnxruntime, on the CPU too: :func:`default_cpu_onnx`;
            the bundled INT8 encoder, :func:`int8_onnx`, is loaded only when passed here).
        preset: preset name for files that do not carry their config (original LoFTR, seed).
        input_size: (width, height) override; only the torch backend can change it at load time
            (ONNX graphs and engines are static — export another one).
        device: torch device (``auto``, ``cpu``, ``cuda``).
        threads: CPU threads for onnxruntime / torch.
        engine_cache_dir, fp16: TensorRT engine cache folder and precision.
        allow_fallback: if TensorRT cannot be used, fall back to onnxruntime (logged) instead of
            raising.
    Raises:
        LoftrRuntimeError subclasses with a message that names the file and the problem.
    """
    if backend not in BACKENDS:
        raise LoftrRuntimeError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if weights is not None and not os.path.exists(weights):
        raise ModelLoadError(f"{weights}: no such weights file")
    chosen = choose_backend(weights) if backend == "auto" else backend
    if backend == "auto":
        LOGGER.info("backend auto -> %s", chosen)
    if chosen == "torch":
        from loftr_ros.runtime.torch_runtime import TorchRuntime

        path = weights or default_weights("pt")
        if path.endswith(".onnx"):
            raise ModelLoadError(f"{path}: the torch backend needs a checkpoint (.pt), not ONNX")
        return TorchRuntime.from_weights(path, preset=preset, input_size=input_size, device=device,
                                         threads=threads, compile_model=compile_model)
    onnx_path = weights or default_weights("onnx", input_size)
    if weights is None and not os.path.exists(onnx_path):
        raise ModelLoadError(
            f"{onnx_path}: no bundled ONNX for input {input_size[0]}x{input_size[1]}; make one "
            f"with `loftr-export {default_weights('pt')} "
            f"{onnx_path[:-len('_encoder.onnx')]}.onnx --width {input_size[0]} "
            f"--height {input_size[1]} --opset 13`" if input_size else
            f"{onnx_path}: the bundled default model is missing (reinstall the package)")
    if chosen == "tensorrt":
        try:
            return _create_tensorrt(onnx_path, preset, input_size, engine_cache_dir, fp16)
        except (BackendUnavailableError, ModelLoadError) as exc:
            if not allow_fallback or onnx_path.endswith(ENGINE_SUFFIXES):
                raise
            LOGGER.warning("TensorRT unusable (%s); falling back to onnxruntime", exc)
    if onnx_path.endswith(TORCH_SUFFIXES):
        raise ModelLoadError(f"{onnx_path}: onnxruntime needs an .onnx file; export it first with "
                             "`loftr-export`")
    from loftr_ros.runtime.onnx_runtime import OnnxRuntime

    runtime = OnnxRuntime(onnx_path, preset=preset, threads=threads)
    _check_static_size(runtime, input_size, onnx_path)
    return runtime


def _check_static_size(runtime: InferenceRuntime, input_size: Optional[Tuple[int, int]],
                       path: str) -> None:
    if input_size is not None and tuple(input_size) != tuple(runtime.input_size):
        raise ModelLoadError(
            f"{path}: built for input {runtime.input_size[0]}x{runtime.input_size[1]}, but "
            f"{input_size[0]}x{input_size[1]} was asked; export an ONNX of that size")


def _create_tensorrt(path: str, preset: Optional[str], input_size: Optional[Tuple[int, int]],
                     engine_cache_dir: Optional[str], fp16: Optional[bool]) -> InferenceRuntime:
    from loftr_ros.runtime.tensorrt.runtime import TensorRTRuntime

    engine_path = path
    if not path.endswith(ENGINE_SUFFIXES):
        from loftr_ros.runtime.tensorrt.builder import get_or_build_engine

        engine_path = get_or_build_engine(path, cache_dir=engine_cache_dir, fp16=fp16)
    # The engine's JSON carries the ONNX's model config (else: preset at the engine's input size),
    # so no second copy of the model is loaded just to read it - this is a 2 GB Jetson.
    runtime = TensorRTRuntime.from_engine_file(engine_path, preset=preset)
    _check_static_size(runtime, input_size, path)
    return runtime


__all__ = ["BACKENDS", "create_runtime", "choose_backend", "default_weights", "default_cpu_onnx",
           "int8_onnx", "InferenceRuntime",
           "LoftrRuntimeError", "BackendUnavailableError", "ModelLoadError"]
