"""ONNX -> serialized TensorRT engine (TensorRT Python builder API), and the cached
get-or-build around it (file names and folder: :mod:`loftr_ros.runtime.tensorrt.cache`).

TensorRT and pycuda are imported inside the functions that need them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Optional, Tuple

from loftr_ros.runtime.base import (
    ENCODER_STAGE,
    MATCHER_STAGE,
    LoftrRuntimeError,
    ModelLoadError,
)
from loftr_ros.runtime.onnx_info import read_onnx_config, read_onnx_metadata, two_stage_files
from loftr_ros.runtime.tensorrt.cache import (
    engine_incompatibility,
    engine_key,
    file_sha256,
    read_engine_metadata,
    resolve_cache_dir,
    write_engine_metadata,
)
from loftr_ros.runtime.tensorrt.calibrator import (
    calibration_fingerprint,
    calibration_pairs,
    make_entropy_calibrator,
)
from loftr_ros.runtime.tensorrt.platform import (
    PlatformInfo,
    import_pycuda_driver,
    import_tensorrt,
    probe_platform,
    resolve_precision,
)

LOGGER = logging.getLogger("loftr_ros.runtime.tensorrt.builder")

DEFAULT_WORKSPACE_MB = 1024
HEARTBEAT_SECONDS = 15.0

Log = Callable[[str], None]


@dataclass
class BuildResult:
    """What :func:`build_engine` made."""

    engine_path: str
    precision: str
    seconds: float
    size_bytes: int
    input_size: Tuple[int, int]
    trt_version: str
    gpu_name: str


class _Heartbeat:
    """Prints the elapsed time every ``period`` seconds while a build runs (TensorRT's builder
    is silent for minutes on a Jetson Nano)."""

    def __init__(self, log: Log, started: float, period: float = HEARTBEAT_SECONDS) -> None:
        self._log, self._started, self._period = log, started, period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            self._log(f"  ... still building, {time.monotonic() - self._started:.0f} s elapsed")

    def __enter__(self) -> "_Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def _trt_major(trt: Any) -> int:
    try:
        return int(str(trt.__version__).split(".")[0])
    except ValueError:
        return 0


def _set_workspace(trt: Any, config: Any, workspace_mb: int) -> None:
    size = int(workspace_mb) << 20
    if hasattr(config, "set_memory_pool_limit"):  # TensorRT 8.4+
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, size)
    else:  # TensorRT 8.2
        config.max_workspace_size = size


def build_engine(onnx_path: str, engine_path: str, fp16: Optional[bool] = None, int8: bool = False,
                 calib_dir: Optional[str] = None, workspace_mb: int = DEFAULT_WORKSPACE_MB,
                 verbose: bool = False, log: Optional[Log] = None,
                 platform: Optional[PlatformInfo] = None) -> BuildResult:
    """Build a TensorRT engine from ``onnx_path`` and write it to ``engine_path`` (+ its JSON).

    Args:
        fp16: allow fp16 kernels; None = where the GPU has fast fp16. Without fp16 the engine is
            strict fp32 (TF32 off), so it can be compared with onnxruntime to 1e-4.
        int8: INT8 kernels (with fp16 fallback) calibrated on ``calib_dir`` (entropy calibrator);
            never enabled unless asked.
        workspace_mb: builder scratch memory limit (lower it on a Jetson Nano: 256-512).
        log: progress lines (default: the module logger).
    Raises:
        BackendUnavailableError (no TensorRT/pycuda/GPU), ModelLoadError (the ONNX parser refuses
        the file), LoftrRuntimeError (the build fails).
    """
    log = log or LOGGER.info
    if not os.path.isfile(onnx_path):
        raise ModelLoadError(f"{onnx_path}: no such ONNX file")
    if int8 and not calib_dir:
        raise LoftrRuntimeError("INT8 needs calibration images: pass --calib-dir FOLDER (frames "
                                "of your scene); without them use fp16")
    trt = import_tensorrt()
    cuda = import_pycuda_driver()
    platform = platform or probe_platform()
    precision = resolve_precision(fp16, int8, platform)
    started = time.monotonic()
    context = cuda.Device(0).make_context()  # the builder and the calibrator need one
    try:
        logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
        builder = trt.Builder(logger)
        flags = 0
        if _trt_major(trt) < 10 and hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):
            flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        log(f"parsing {onnx_path} (TensorRT {trt.__version__}, GPU {platform.gpu_name})")
        parsed = parser.parse(_onnx_bytes_for(trt, onnx_path, precision, log))
        if not parsed:
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise ModelLoadError(f"{onnx_path}: TensorRT's ONNX parser refused it: "
                                 + "; ".join(errors[:5]) + " (python -m "
                                 f"loftr_ros.deploy.onnx_audit {onnx_path} lists unsupported ops)")
        inputs = [network.get_input(i) for i in range(network.num_inputs)]
        shapes = {tensor.name: tuple(tensor.shape) for tensor in inputs}
        if any(dim < 0 for shape in shapes.values() for dim in shape):
            raise ModelLoadError(f"{onnx_path}: dynamic input shapes {shapes}; export a static "
                                 "ONNX with loftr-export")
        first = tuple(inputs[0].shape)
        input_size = (int(first[-1]), int(first[-2]))
        config = builder.create_builder_config()
        _set_workspace(trt, config, workspace_mb)
        if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
            config.clear_flag(trt.BuilderFlag.TF32)
        if precision in ("fp16", "int8") and _weakly_typed(trt):
            if not platform.fast_fp16:
                log("warning: this GPU has no fast fp16; building fp16 anyway as asked")
            config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            if not platform.fast_int8:
                log("warning: this GPU has no fast INT8; the engine may be slower than fp16")
            config.set_flag(trt.BuilderFlag.INT8)
            pairs = calibration_pairs(str(calib_dir), input_size)
            names = [tensor.name for tensor in inputs[:2]]
            batches = [pair[:len(names)] for pair in pairs]
            config.int8_calibrator = make_entropy_calibrator(
                trt, cuda, batches, names, engine_path + ".calib")
            log(f"INT8 calibration on {len(pairs)} image pairs from {calib_dir}")
        log(f"building {precision} engine for {input_size[0]}x{input_size[1]} input, workspace "
            f"{workspace_mb} MB (minutes on a Jetson; progress every {HEARTBEAT_SECONDS:.0f} s)")
        with _Heartbeat(log, started):
            serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise LoftrRuntimeError(f"TensorRT failed to build an engine from {onnx_path} (run "
                                    "with --verbose for the builder log; a larger --workspace "
                                    "may help)")
        data = bytes(serialized)
    finally:
        context.pop()
        context.detach()
    folder = os.path.dirname(os.path.abspath(engine_path))
    os.makedirs(folder, exist_ok=True)
    temporary = engine_path + ".tmp"
    with open(temporary, "wb") as handle:
        handle.write(data)
    os.replace(temporary, engine_path)  # readers never see half an engine
    seconds = time.monotonic() - started
    result = BuildResult(engine_path=engine_path, precision=precision, seconds=seconds,
                         size_bytes=len(data), input_size=input_size,
                         trt_version=platform.trt_version, gpu_name=platform.gpu_name)
    metadata: Dict[str, Any] = asdict(result)
    metadata.update(onnx_path=os.path.abspath(onnx_path), onnx_sha256=file_sha256(onnx_path),
                    workspace_mb=workspace_mb, built_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    model_config=_safe_onnx_config(onnx_path))
    write_engine_metadata(engine_path, metadata)
    log(f"engine written to {engine_path} ({len(data) / 1e6:.1f} MB) in {seconds:.1f} s")
    return result


def _weakly_typed(trt: Any) -> bool:
    """True where fp16/int8 are builder flags (TensorRT <= 10); TensorRT 11 removed them: its
    networks are strongly typed, the precision comes from the ONNX graph itself."""
    return hasattr(trt.BuilderFlag, "FP16")


def _onnx_bytes_for(trt: Any, onnx_path: str, precision: str, log: Log) -> bytes:
    """The ONNX bytes to parse: the file, or on strongly typed TensorRT (11+) an fp16 version
    made with :func:`loftr_ros.deploy.fp16.convert_to_fp16` (inputs/outputs stay float32)."""
    with open(onnx_path, "rb") as handle:
        data = handle.read()
    if _weakly_typed(trt) or precision == "fp32":
        return data
    if precision.startswith("int8"):
        raise LoftrRuntimeError(f"TensorRT {trt.__version__} has no calibrated INT8 (it needs "
                                "explicitly quantized Q/DQ graphs); build fp16 instead")
    try:
        from loftr_ros.deploy.fp16 import convert_to_fp16

        converted = convert_to_fp16(data)
    except ImportError as exc:
        raise LoftrRuntimeError(f"TensorRT {trt.__version__} builds fp16 only from an fp16 ONNX "
                                f"graph; converting needs onnx and onnxconverter-common ({exc}); "
                                "or build with --no-fp16") from None
    log(f"TensorRT {trt.__version__} is strongly typed: building from an fp16 conversion of the "
        "ONNX graph")
    return converted.SerializeToString()


def _safe_onnx_config(onnx_path: str) -> Optional[Dict[str, Any]]:
    try:
        return read_onnx_config(onnx_path)
    except Exception:  # metadata is optional (e.g. the seed's own ONNX has none)
        return None


def get_or_build_engine(onnx_path: str, cache_dir: Optional[str] = None,
                        fp16: Optional[bool] = None, workspace_mb: int = DEFAULT_WORKSPACE_MB,
                        int8: bool = False, calib_dir: Optional[str] = None,
                        verbose: bool = False, rebuild: bool = False, log: Optional[Log] = None,
                        platform: Optional[PlatformInfo] = None,
                        builder: Optional[Callable[..., BuildResult]] = None) -> str:
    """Path of a cached engine for ``onnx_path`` on this TensorRT + GPU, building it if needed.

    For a two-stage model (``onnx_path`` is its encoder or its matcher graph) both engines are
    built under one key (``<key>-encoder.engine``, ``<key>-matcher.engine``; their JSONs name each
    other) and the encoder's path is returned; with ``int8`` only the encoder is INT8 (the
    matcher is fp16: calibration images cannot feed it).

    Args:
        onnx_path: static-shape ONNX (from loftr-export).
        cache_dir: engine cache folder (default :func:`default_cache_dir`; falls back to a temp
            folder, with a warning, if not writable).
        fp16: None = fp16 where the GPU has fast fp16; True/False force it.
        workspace_mb, int8, calib_dir, verbose: as :func:`build_engine`.
        rebuild: build even if a cached engine exists.
        log: progress lines (default: the module logger).
        platform: TensorRT version and GPU (default: probed; pass one to test the cache logic).
        builder: the build function (default :func:`build_engine`).
    Returns:
        the engine path.
    """
    log = log or LOGGER.info
    if not os.path.isfile(onnx_path):
        raise ModelLoadError(f"{onnx_path}: no such ONNX file (export one with loftr-export)")
    platform = platform or probe_platform()
    precision = resolve_precision(fp16, int8, platform)
    if precision == "int8":
        if not calib_dir:
            raise LoftrRuntimeError("INT8 needs calibration images (calib_dir)")
        precision = f"int8-{calibration_fingerprint(calib_dir)}"
    build = builder or build_engine
    folder = resolve_cache_dir(cache_dir, log)
    stages = two_stage_files(onnx_path, read_onnx_metadata(onnx_path))
    if stages is None:
        key = engine_key(onnx_path, precision, platform)
        path = os.path.join(folder, key.file_name())
        if not _usable_cached(path, platform, rebuild, log):
            build(onnx_path, path, fp16=precision == "fp16", int8=precision.startswith("int8"),
                  calib_dir=calib_dir, workspace_mb=workspace_mb, verbose=verbose, log=log,
                  platform=platform)
        return path
    # Two stages, one key: the hash covers both graphs; the file names differ by the stage.
    model_hash = hashlib.sha256((file_sha256(stages[0]) + file_sha256(stages[1])).encode()
                                ).hexdigest()
    key = engine_key(stages[0], precision, platform, model_hash=model_hash)
    suffix = f"_{ENCODER_STAGE}"
    if key.model_name.endswith(suffix):   # lite_encoder.onnx -> lite-<hash>-...-encoder.engine
        key = dataclasses.replace(key, model_name=key.model_name[:-len(suffix)])
    paths = [os.path.join(folder, key.file_name(f"-{stage}"))
             for stage in (ENCODER_STAGE, MATCHER_STAGE)]
    usable = [_usable_cached(path, platform, rebuild, log) for path in paths]
    for index, (stage_onnx, path) in enumerate(zip(stages, paths)):
        if usable[index] and all(usable):
            continue
        # the matcher reads features, not images: INT8 calibration images cannot feed it
        int8_stage = precision.startswith("int8") and index == 0
        build(stage_onnx, path, fp16=precision == "fp16" or (precision.startswith("int8") and
                                                             not int8_stage),
              int8=int8_stage, calib_dir=calib_dir if int8_stage else None,
              workspace_mb=workspace_mb, verbose=verbose, log=log, platform=platform)
    link_stage_engines(paths[0], paths[1])
    return paths[0]


def link_stage_engines(encoder_engine: str, matcher_engine: str) -> None:
    """Record in each engine's JSON its stage and its partner's file name, so that either file
    loads the two-stage model (:class:`loftr_ros.runtime.tensorrt.runtime.TensorRTRuntime`)."""
    for path, stage, partner in ((encoder_engine, ENCODER_STAGE, matcher_engine),
                                 (matcher_engine, MATCHER_STAGE, encoder_engine)):
        metadata = read_engine_metadata(path) or {}
        metadata.update(stage=stage, partner=os.path.basename(partner))
        write_engine_metadata(path, metadata)


def _usable_cached(path: str, platform: PlatformInfo, rebuild: bool, log: Log) -> bool:
    """True where ``path`` is a cached engine for this TensorRT and GPU (it is logged)."""
    if not os.path.isfile(path) or rebuild:
        return False
    reason = engine_incompatibility(read_engine_metadata(path), platform.trt_version,
                                    platform.gpu_name)
    if reason is None and os.path.getsize(path) > 0:
        log(f"using cached engine {path}")
        return True
    log(f"cached engine {path} is unusable ({reason or 'empty file'}); rebuilding")
    return False


__all__ = ["BuildResult", "DEFAULT_WORKSPACE_MB", "build_engine", "get_or_build_engine",
           "link_stage_engines"]
