"""ONNX -> serialized TensorRT engine (TensorRT Python builder API), and the engine cache.

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

TensorRT and pycuda are imported inside the functions that need them: the naming and cache logic
works (and is tested) without them.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from loftr_ros.runtime.base import (
    CONFIG_METADATA_KEY,
    BackendUnavailableError,
    LoftrRuntimeError,
    ModelLoadError,
)

LOGGER = logging.getLogger("loftr_ros.runtime.tensorrt.engine")

DEFAULT_WORKSPACE_MB = 1024
ENGINE_SUFFIX = ".engine"
METADATA_SUFFIX = ".json"
PRECISIONS = ("fp32", "fp16", "int8")
HASH_LENGTH = 12
HEARTBEAT_SECONDS = 15.0

TRT_INSTALL_HINT = ("on a Jetson it comes with JetPack (sudo apt install python3-libnvinfer); "
                    "on a desktop GPU: pip install tensorrt")
PYCUDA_INSTALL_HINT = "sudo apt install python3-pycuda, or pip install pycuda"

Log = Callable[[str], None]


# ------------------------------------------------------------------------------------------------
# Platform (TensorRT version, GPU)


@dataclass(frozen=True)
class PlatformInfo:
    """What an engine is tied to: the TensorRT version and the GPU, plus fp16/int8 speed."""

    trt_version: str
    gpu_name: str
    fast_fp16: bool = True
    fast_int8: bool = False


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


# ------------------------------------------------------------------------------------------------
# Cache key and file names


def sanitize(text: str, max_length: int = 48) -> str:
    """Lower-case ``text`` with every run of characters other than ``[a-z0-9.]`` made one ``-``
    (file-name safe on every file system)."""
    cleaned = re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.")
    return cleaned[:max_length].rstrip("-.") or "unknown"


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

    def file_name(self) -> str:
        """Engine file name (no folder)."""
        return (f"{sanitize(self.model_name, 32)}-{self.model_hash[:HASH_LENGTH]}-"
                f"{self.width}x{self.height}-{self.precision}-trt{sanitize(self.trt_version, 24)}-"
                f"{sanitize(self.gpu_name)}{ENGINE_SUFFIX}")


def read_onnx_input_size(onnx_path: str) -> Tuple[int, int]:
    """``(width, height)`` of the first graph input ``[1, 1, H, W]`` of an ONNX file (with the
    ``onnx`` package, else onnxruntime). ModelLoadError if unreadable or not static."""
    shape: Optional[List[Any]] = None
    try:
        import onnx

        model = onnx.load(onnx_path, load_external_data=False)
        initializers = {tensor.name for tensor in model.graph.initializer}
        inputs = [value for value in model.graph.input if value.name not in initializers]
        if inputs:
            shape = [dim.dim_value if dim.HasField("dim_value") else None
                     for dim in inputs[0].type.tensor_type.shape.dim]
    except ImportError:
        try:
            import onnxruntime
        except ImportError:
            raise ModelLoadError(f"{onnx_path}: reading its input size needs the onnx or "
                                 "onnxruntime package") from None
        try:
            session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types
            raise ModelLoadError(f"{onnx_path}: not a readable ONNX file: {exc}") from None
        shape = list(session.get_inputs()[0].shape)
    except Exception as exc:  # onnx raises DecodeError and others for corrupt files
        raise ModelLoadError(f"{onnx_path}: not a readable ONNX file: {exc}") from None
    if not shape or len(shape) != 4 or not all(isinstance(d, int) and d > 0 for d in shape[2:]):
        raise ModelLoadError(f"{onnx_path}: first input has shape {shape}, expected a static "
                             "[1, 1, H, W] (export it with loftr-export)")
    return int(shape[3]), int(shape[2])


def read_onnx_config(onnx_path: str) -> Optional[Dict[str, Any]]:
    """The loftr_ros model config stored in an ONNX file's metadata, or None."""
    try:
        import onnx

        model = onnx.load(onnx_path, load_external_data=False)
        metadata = {entry.key: entry.value for entry in model.metadata_props}
    except ImportError:
        try:
            import onnxruntime
        except ImportError:
            return None
        session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        metadata = dict(session.get_modelmeta().custom_metadata_map)
    text = metadata.get(CONFIG_METADATA_KEY)
    return json.loads(text) if text else None


def resolve_precision(fp16: Optional[bool], int8: bool, platform: PlatformInfo) -> str:
    """``int8`` when asked, else ``fp16`` (default where the GPU has fast fp16), else ``fp32``."""
    if int8:
        return "int8"
    if fp16 is None:
        fp16 = platform.fast_fp16
    return "fp16" if fp16 else "fp32"


def calibration_fingerprint(calib_dir: str) -> str:
    """Short hash of a calibration folder's image names and sizes (int8 engines depend on it)."""
    digest = hashlib.sha256()
    for name in sorted(calibration_images(calib_dir)):
        digest.update(f"{os.path.basename(name)}:{os.path.getsize(name)}\n".encode())
    return digest.hexdigest()[:8]


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


# ------------------------------------------------------------------------------------------------
# Engine metadata (the JSON beside each engine)


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


def _write_metadata(engine_path: str, data: Dict[str, Any]) -> None:
    temporary = metadata_path(engine_path) + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
    os.replace(temporary, metadata_path(engine_path))


# ------------------------------------------------------------------------------------------------
# INT8 calibration

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff")


def calibration_images(calib_dir: str) -> List[str]:
    """Image files directly inside ``calib_dir``, sorted."""
    if not os.path.isdir(calib_dir):
        raise LoftrRuntimeError(f"calibration folder {calib_dir} does not exist")
    return sorted(os.path.join(calib_dir, name) for name in os.listdir(calib_dir)
                  if name.lower().endswith(IMAGE_SUFFIXES))


def calibration_pairs(calib_dir: str, input_size: Tuple[int, int], max_pairs: int = 64
                      ) -> List[Tuple[Any, Any]]:
    """Model-sized float32 ``[1,1,H,W]`` image pairs for INT8 calibration: consecutive images of
    the folder (a robot's image sequence is the best calibration set), prepared exactly as the
    matcher prepares frames."""
    import cv2

    from loftr_ros.matching.preprocess import prepare

    paths = calibration_images(calib_dir)
    tensors = []
    for path in paths[:max_pairs + 1]:
        image = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        if image is not None:
            tensors.append(prepare(image, input_size)[0])
    if len(tensors) < 2:
        raise LoftrRuntimeError(f"INT8 calibration needs at least 2 readable images in "
                                f"{calib_dir} (found {len(tensors)}); 50+ frames of your scene "
                                "are recommended")
    return list(zip(tensors[:-1], tensors[1:]))


def make_entropy_calibrator(trt: Any, cuda: Any, pairs: List[Tuple[Any, Any]],
                            input_names: Tuple[str, str], cache_path: str) -> Any:
    """A ``trt.IInt8EntropyCalibrator2`` that feeds ``pairs`` (batch 1) and keeps its table in
    ``cache_path`` (reused by later builds of the same model)."""
    import numpy as np

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.index = 0
            self.device = [cuda.mem_alloc(pairs[0][k].nbytes) for k in range(2)]

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: List[str]) -> Optional[List[int]]:
            if self.index >= len(pairs):
                return None
            for k in range(2):
                cuda.memcpy_htod(self.device[k], np.ascontiguousarray(pairs[self.index][k]))
            self.index += 1
            order = {name: k for k, name in enumerate(input_names)}
            return [int(self.device[order.get(name, i)]) for i, name in enumerate(names)]

        def read_calibration_cache(self) -> Optional[bytes]:
            if os.path.isfile(cache_path):
                with open(cache_path, "rb") as handle:
                    return handle.read()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            with open(cache_path, "wb") as handle:
                handle.write(bytes(cache))

    return EntropyCalibrator()


# ------------------------------------------------------------------------------------------------
# Building


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
                                 + "; ".join(errors[:5]) + " (python -m loftr_ros.deploy.onnx_audit "
                                 f"{onnx_path} lists unsupported ops)")
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
            names = (inputs[0].name, inputs[1].name if len(inputs) > 1 else inputs[0].name)
            config.int8_calibrator = make_entropy_calibrator(
                trt, cuda, pairs, names, engine_path + ".calib")
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
    _write_metadata(engine_path, metadata)
    log(f"engine written to {engine_path} ({len(data) / 1e6:.1f} MB) in {seconds:.1f} s")
    return result


def _weakly_typed(trt: Any) -> bool:
    """True where fp16/int8 are builder flags (TensorRT <= 10); TensorRT 11 removed them: its
    networks are strongly typed, the precision comes from the ONNX graph itself."""
    return hasattr(trt.BuilderFlag, "FP16")


def _onnx_bytes_for(trt: Any, onnx_path: str, precision: str, log: Log) -> bytes:
    """The ONNX bytes to parse: the file, or on strongly typed TensorRT (11+) an fp16 version
    made with :func:`loftr_ros.deploy.onnx_audit.convert_to_fp16` (inputs/outputs stay float32)."""
    with open(onnx_path, "rb") as handle:
        data = handle.read()
    if _weakly_typed(trt) or precision == "fp32":
        return data
    if precision.startswith("int8"):
        raise LoftrRuntimeError(f"TensorRT {trt.__version__} has no calibrated INT8 (it needs "
                                "explicitly quantized Q/DQ graphs); build fp16 instead")
    try:
        from loftr_ros.deploy.onnx_audit import convert_to_fp16

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
    key = engine_key(onnx_path, precision, platform)
    path = os.path.join(resolve_cache_dir(cache_dir, log), key.file_name())
    if os.path.isfile(path) and not rebuild:
        reason = engine_incompatibility(read_engine_metadata(path), platform.trt_version,
                                        platform.gpu_name)
        if reason is None and os.path.getsize(path) > 0:
            log(f"using cached engine {path}")
            return path
        log(f"cached engine {path} is unusable ({reason or 'empty file'}); rebuilding")
    build = builder or build_engine
    build(onnx_path, path, fp16=precision == "fp16", int8=precision.startswith("int8"),
          calib_dir=calib_dir, workspace_mb=workspace_mb, verbose=verbose, log=log,
          platform=platform)
    return path


__all__ = ["PlatformInfo", "EngineKey", "BuildResult", "DEFAULT_WORKSPACE_MB", "build_engine",
           "get_or_build_engine", "engine_key", "default_cache_dir", "resolve_cache_dir",
           "probe_platform", "read_engine_metadata", "engine_incompatibility", "sanitize",
           "import_tensorrt", "import_pycuda_driver", "read_onnx_input_size"]
