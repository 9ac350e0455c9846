"""The TensorRT engine (Jetson / NVIDIA GPU): a serialized engine run with pycuda buffers.

- One CUDA context per runtime (``Device(i).make_context()``), made current only inside
  :meth:`TensorRTRuntime.run`, so any thread may call it; released by :meth:`close`.
- Page-locked host buffers and device buffers allocated once; inputs copied, the engine run and
  outputs copied back asynchronously on one stream.
- Both TensorRT Python APIs, chosen by feature detection: the tensor-name API
  (``set_tensor_address`` + ``execute_async_v3``; TensorRT 8.5+, the only one in 10.x) and the
  binding API (``get_binding_index`` + ``execute_async_v2``; TensorRT 8.2 on JetPack 4.6).
- Outputs addressed by tensor NAME (``conf_matrix``, ``fine_feat0``, ``fine_feat1``; the seed's
  own ONNX names are mapped like the onnxruntime engine maps them), never by binding order.
- A two-stage model is two engines (encoder, matcher; their JSONs name each other's file, see
  :mod:`loftr_ros.runtime.tensorrt.builder`) sharing the runtime's CUDA context: the reference's
  encoding stays on the host and is copied in with each frame's.

Every failure is one clear exception from :mod:`loftr_ros.runtime.base`: TensorRT or pycuda not
installed / no GPU -> BackendUnavailableError; missing, empty, truncated or foreign engine file ->
ModelLoadError; engine input size different from the model config -> InputSizeError.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from loftr_ros.model.presets import DEFAULT_PRESET, ModelConfig, get_preset
from loftr_ros.runtime.base import (
    COARSE_FEAT,
    COARSE_FEAT0,
    COARSE_FEAT1,
    CONF_MATRIX,
    ENCODER_STAGE,
    FINE_FEAT,
    FINE_FEAT0,
    FINE_FEAT1,
    IMAGE,
    INPUT0,
    INPUT1,
    MATCHER_STAGE,
    Encoding,
    InferenceRuntime,
    InputSizeError,
    LoftrRuntimeError,
    ModelLoadError,
    match_outputs,
)
from loftr_ros.runtime.onnx_runtime import FOREIGN_INPUT_NAMES, FOREIGN_OUTPUT_NAMES
from loftr_ros.runtime.tensorrt.cache import engine_incompatibility, read_engine_metadata
from loftr_ros.runtime.tensorrt.platform import gpu_label, import_pycuda_driver, import_tensorrt

TENSOR_NAME_API = "tensor_name"  # TensorRT 8.5+: set_tensor_address + execute_async_v3
BINDING_API = "binding"  # TensorRT 8.2-8.6: bindings list + execute_async_v2
REBUILD_HINT = "rebuild it on this machine with `loftr-build-engine` (or delete it from the cache)"


@dataclass(frozen=True)
class TensorSpec:
    """One engine input or output: name, static shape and numpy dtype."""

    name: str
    shape: Tuple[int, ...]
    dtype: Any
    is_input: bool


def choose_api(engine: Any, context: Any) -> str:
    """Which TensorRT Python API the engine/context objects offer: :data:`TENSOR_NAME_API` where
    available (required by TensorRT 10), else :data:`BINDING_API` (TensorRT 8.2)."""
    if all(hasattr(engine, attr) for attr in ("num_io_tensors", "get_tensor_name")) and \
            all(hasattr(context, attr) for attr in ("set_tensor_address", "execute_async_v3")):
        return TENSOR_NAME_API
    if hasattr(engine, "num_bindings") and hasattr(context, "execute_async_v2"):
        return BINDING_API
    raise LoftrRuntimeError("this TensorRT Python API has neither execute_async_v3 nor "
                            "execute_async_v2; TensorRT 8.2 or newer is needed")


def describe_tensors(trt: Any, engine: Any, api: str) -> List[TensorSpec]:
    """Inputs and outputs of ``engine`` (in engine order) through the API ``api``."""
    specs = []
    if api == TENSOR_NAME_API:
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            specs.append(TensorSpec(
                name=name, shape=tuple(int(d) for d in engine.get_tensor_shape(name)),
                dtype=np.dtype(trt.nptype(engine.get_tensor_dtype(name))),
                is_input=engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT))
    else:
        for index in range(engine.num_bindings):
            specs.append(TensorSpec(
                name=engine.get_binding_name(index),
                shape=tuple(int(d) for d in engine.get_binding_shape(index)),
                dtype=np.dtype(trt.nptype(engine.get_binding_dtype(index))),
                is_input=bool(engine.binding_is_input(index))))
    return specs


def _check_static_shapes(specs: Sequence[TensorSpec], path: str) -> None:
    """ModelLoadError unless every tensor of the engine at ``path`` has a fixed shape."""
    for spec in specs:
        if any(dim <= 0 for dim in spec.shape):
            raise ModelLoadError(f"{path}: tensor {spec.name!r} has a dynamic shape {spec.shape}; "
                                 "build engines from a static ONNX (loftr-export)")


def _check_image_input(spec: TensorSpec, config: ModelConfig, path: str) -> None:
    """InputSizeError unless the image input ``spec`` is [1,1,H,W] of the config's input size."""
    width, height = config.input_size
    if spec.shape != (1, 1, height, width):
        shape = spec.shape
        built = f"{shape[-1]}x{shape[-2]}" if len(shape) == 4 else str(shape)
        raise InputSizeError(
            f"{path}: engine input {spec.name!r} has shape {shape} (built for {built}), but the "
            f"{config.name} model config says {width}x{height}: export an ONNX of that size "
            "and rebuild the engine, or use the engine's size")


def map_engine_tensors(specs: Sequence[TensorSpec], config: ModelConfig, path: str
                       ) -> Tuple[Tuple[str, str], Dict[str, str]]:
    """Check the engine's tensors against the model config and name them.

    Returns:
        ``((input0 name, input1 name), {our output name: engine tensor name})``.
    Raises:
        ModelLoadError: dynamic shapes, wrong number of inputs, missing outputs.
        InputSizeError: the engine's input size is not the config's.
    """
    _check_static_shapes(specs, path)
    inputs = [spec for spec in specs if spec.is_input]
    outputs = {spec.name: spec for spec in specs if not spec.is_input}
    if len(inputs) != 2:
        raise ModelLoadError(f"{path}: expected 2 image inputs, the engine has "
                             f"{[spec.name for spec in inputs]}")
    by_name = {spec.name: spec for spec in inputs}
    foreign = FOREIGN_INPUT_NAMES.get(config.name)
    if INPUT0 in by_name and INPUT1 in by_name:
        input_names = (INPUT0, INPUT1)
    elif foreign and all(name in by_name for name in foreign):
        input_names = (foreign[0], foreign[1])
    else:
        input_names = (inputs[0].name, inputs[1].name)
    for name in input_names:
        _check_image_input(by_name[name], config, path)
    mapping = {name: name for name in (CONF_MATRIX, FINE_FEAT0, FINE_FEAT1) if name in outputs}
    for ours, theirs in FOREIGN_OUTPUT_NAMES.get(config.name, {}).items():
        if ours not in mapping and theirs in outputs:
            mapping[ours] = theirs
    if CONF_MATRIX not in mapping:
        raise ModelLoadError(f"{path}: no output named {CONF_MATRIX!r} (outputs "
                             f"{sorted(outputs)})")
    if config.fine is not None and not (FINE_FEAT0 in mapping and FINE_FEAT1 in mapping):
        raise ModelLoadError(f"{path}: the {config.name} model needs outputs {FINE_FEAT0!r} and "
                             f"{FINE_FEAT1!r} (outputs {sorted(outputs)})")
    return input_names, mapping


def map_stage_tensors(specs: Sequence[TensorSpec], config: ModelConfig, path: str, stage: str
                      ) -> List[str]:
    """Check one stage engine's tensors against the model config; returns its output names.

    Encoder: input ``image`` [1,1,H,W], outputs ``coarse_feat`` [1,L,C] (+ ``fine_feat``).
    Matcher: inputs ``coarse_feat0`` / ``coarse_feat1`` [1,L,C], output ``conf_matrix`` [1,L,L].

    Raises:
        ModelLoadError: dynamic shapes, other tensor names or token shapes.
        InputSizeError: an encoder built for another input size than the config's.
    """
    _check_static_shapes(specs, path)
    inputs = {spec.name: spec for spec in specs if spec.is_input}
    outputs = {spec.name: spec for spec in specs if not spec.is_input}
    width, height = config.input_size
    tokens = (width // config.coarse_stride) * (height // config.coarse_stride)
    if stage == ENCODER_STAGE:
        wanted_inputs = [IMAGE]
        wanted_outputs = [COARSE_FEAT] + ([FINE_FEAT] if config.fine is not None else [])
    else:
        wanted_inputs = [COARSE_FEAT0, COARSE_FEAT1]
        wanted_outputs = [CONF_MATRIX]
    if sorted(inputs) != sorted(wanted_inputs) or any(name not in outputs
                                                      for name in wanted_outputs):
        raise ModelLoadError(f"{path}: a {stage} engine needs inputs {wanted_inputs} and outputs "
                             f"{wanted_outputs}; it has {sorted(inputs)} -> {sorted(outputs)}")
    if stage == ENCODER_STAGE:
        _check_image_input(inputs[IMAGE], config, path)
    token_shape = (1, tokens, config.d_model)
    for spec in ([outputs[COARSE_FEAT]] if stage == ENCODER_STAGE else list(inputs.values())):
        if spec.shape != token_shape:
            raise ModelLoadError(f"{path}: {spec.name!r} has shape {spec.shape}, the "
                                 f"{config.name} model at {width}x{height} needs {token_shape}")
    return wanted_outputs


def config_from_engine_metadata(metadata: Optional[Dict[str, Any]], path: str,
                                preset: Optional[str]) -> Optional[ModelConfig]:
    """The model config recorded beside an engine (by loftr_ros.runtime.tensorrt), or None."""
    data = (metadata or {}).get("model_config")
    if not data:
        return None
    try:
        config = ModelConfig.from_dict(data)
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelLoadError(f"{path}: invalid model config in its JSON: {exc}") from None
    if preset and preset != config.name:
        raise ModelLoadError(f"{path}: holds preset {config.name!r}, not {preset!r}")
    return config


def read_engine_bytes(path: str) -> bytes:
    """The engine file's bytes; ModelLoadError if missing or empty."""
    if not os.path.isfile(path):
        raise ModelLoadError(f"{path}: no such TensorRT engine file")
    with open(path, "rb") as handle:
        data = handle.read()
    if not data:
        raise ModelLoadError(f"{path}: the engine file is empty (an interrupted build?); "
                             f"{REBUILD_HINT}")
    return data


class _EngineRunner:
    """One deserialized engine: its execution context, tensors and page-locked/device buffers.
    Every method but the constructor runs with the owner's CUDA context current."""

    def __init__(self, trt: Any, cuda: Any, trt_runtime: Any, data: bytes, path: str,
                 forced_api: Optional[str]) -> None:
        self.path = path
        self._cuda = cuda
        self._device_buffers: List[Any] = []
        try:
            engine = trt_runtime.deserialize_cuda_engine(data)
        except Exception as exc:  # some versions raise instead of returning None
            engine, error = None, f" ({exc})"
        else:
            error = ""
        if engine is None:
            raise ModelLoadError(
                f"{path}: TensorRT {trt.__version__} cannot deserialize this engine{error}: it is "
                "truncated or corrupt, or was built with another TensorRT version or for another "
                f"GPU; {REBUILD_HINT}")
        self.engine = engine
        self.context = engine.create_execution_context()
        if self.context is None:
            raise LoftrRuntimeError(f"{path}: TensorRT could not create an execution context "
                                    "(out of GPU memory?)")
        self.api = choose_api(engine, self.context)
        if forced_api is not None and forced_api != self.api:
            needed = "execute_async_v2" if forced_api == BINDING_API else "execute_async_v3"
            if not hasattr(self.context, needed):
                raise LoftrRuntimeError(f"TensorRT {trt.__version__} has no {needed}")
            self.api = forced_api
        self.specs = describe_tensors(trt, engine, self.api)
        self.by_name = {spec.name: spec for spec in self.specs}

    def allocate(self) -> None:
        """Host and device buffers for every tensor, bound to the context (after the checks)."""
        cuda = self._cuda
        self.host: Dict[str, np.ndarray] = {}
        self.device: Dict[str, Any] = {}
        for spec in self.specs:
            host = cuda.pagelocked_empty(int(np.prod(spec.shape)), spec.dtype)
            self.host[spec.name] = host
            self.device[spec.name] = cuda.mem_alloc(host.nbytes)
            self._device_buffers.append(self.device[spec.name])
        self.stream = cuda.Stream()
        if self.api == TENSOR_NAME_API:
            for spec in self.specs:
                self.context.set_tensor_address(spec.name, int(self.device[spec.name]))
            self.bindings: List[int] = []
        else:
            self.bindings = [0] * len(self.specs)
            for spec in self.specs:
                self.bindings[self.engine.get_binding_index(spec.name)] = int(
                    self.device[spec.name])

    def execute(self, feeds: Dict[str, np.ndarray], outputs: Sequence[str]
                ) -> Dict[str, np.ndarray]:
        """Copy ``feeds`` in, run, copy ``outputs`` (engine tensor names) back: {name: array
        in the engine's shape, float32, batch axis removed}."""
        cuda = self._cuda
        for name, value in feeds.items():
            host = self.host[name]
            np.copyto(host, np.ascontiguousarray(value, dtype=host.dtype).ravel())
            cuda.memcpy_htod_async(self.device[name], host, self.stream)
        if self.api == TENSOR_NAME_API:
            ok = self.context.execute_async_v3(stream_handle=self.stream.handle)
        else:
            ok = self.context.execute_async_v2(bindings=self.bindings,
                                               stream_handle=self.stream.handle)
        for name in outputs:
            cuda.memcpy_dtoh_async(self.host[name], self.device[name], self.stream)
        self.stream.synchronize()
        if not ok:
            raise LoftrRuntimeError(f"{self.path}: TensorRT execution failed")
        return {name: self.host[name].reshape(self.by_name[name].shape)[0].astype(
            np.float32, copy=True) for name in outputs}

    def free(self) -> None:
        for buffer in self._device_buffers:
            buffer.free()
        self._device_buffers = []
        for host in getattr(self, "host", {}).values():
            allocation = getattr(host, "base", None)
            if hasattr(allocation, "free"):
                allocation.free()
        self.host = {}
        for attr in ("context", "engine", "stream"):
            if hasattr(self, attr):
                delattr(self, attr)


def stage_engine_files(engine_path: str, metadata: Optional[Dict[str, Any]]
                       ) -> Optional[Tuple[str, str]]:
    """``(encoder engine, matcher engine)`` of a two-stage model given either engine and its JSON
    (which names the other file, in the same folder); None for a single engine."""
    stage = (metadata or {}).get("stage")
    if stage not in (ENCODER_STAGE, MATCHER_STAGE):
        return None
    partner_name = str((metadata or {}).get("partner") or "")
    partner = os.path.join(os.path.dirname(os.path.abspath(engine_path)),
                           os.path.basename(partner_name))
    if not partner_name or not os.path.isfile(partner):
        other = MATCHER_STAGE if stage == ENCODER_STAGE else ENCODER_STAGE
        raise ModelLoadError(f"{engine_path}: the {stage} engine of a two-stage model; its "
                             f"{other} engine {partner if partner_name else '(unnamed)'} is "
                             f"missing; {REBUILD_HINT}")
    path = os.path.abspath(engine_path)
    return (path, partner) if stage == ENCODER_STAGE else (partner, path)


class TensorRTRuntime(InferenceRuntime):
    """Runs serialized TensorRT engines built by :mod:`loftr_ros.runtime.tensorrt.builder`: one
    engine (a single-graph model) or an encoder and a matcher engine (a two-stage model).

    Args:
        config: the model config (from the ONNX metadata); None = the one recorded beside the
            engine, else ``preset`` with the engine's input size.
        engine_path: serialized engine file (for a two-stage model: either of the two).
        preset: preset name for engines without recorded config (e.g. built from the seed ONNX).
        device_index: CUDA device.
        api: force :data:`TENSOR_NAME_API` or :data:`BINDING_API` (tests on TensorRT 8.5/8.6,
            which has both); default: feature detection.
    """

    name = "tensorrt"

    def __init__(self, config: Optional[ModelConfig], engine_path: str,
                 preset: Optional[str] = None, device_index: int = 0,
                 api: Optional[str] = None) -> None:
        self.engine_path = engine_path
        self._forced_api = api
        self._cuda_context: Any = None
        self._runners: List[_EngineRunner] = []
        self._closed = False
        data = read_engine_bytes(engine_path)
        metadata = read_engine_metadata(engine_path)
        files = stage_engine_files(engine_path, metadata)
        stage_files = [engine_path] if files is None else list(files)
        if files is not None:
            self.engine_path = files[0]
            metadata = read_engine_metadata(files[0])
        self.path = self.engine_path
        blobs = [data if path == engine_path else read_engine_bytes(path)
                 for path in stage_files]
        trt = import_tensorrt()
        cuda = import_pycuda_driver()
        self._trt, self._cuda = trt, cuda
        device = cuda.Device(device_index)
        self.gpu_name = gpu_label(device.name(), device.compute_capability())
        for path in stage_files:
            reason = engine_incompatibility(read_engine_metadata(path), str(trt.__version__),
                                            self.gpu_name)
            if reason:
                raise ModelLoadError(f"{path}: cannot use this engine: {reason}; {REBUILD_HINT}")
        self._cuda_context = device.make_context()  # current until the pop below
        try:
            self._load(blobs, stage_files, config, metadata, preset)
        except BaseException:
            self._cuda_context.pop()
            self.close()
            raise
        self._cuda_context.pop()

    @classmethod
    def from_engine_file(cls, path: str, preset: Optional[str] = None) -> "TensorRTRuntime":
        """Load an engine file alone (config from its JSON, else ``preset``)."""
        return cls(None, path, preset=preset)

    def _load(self, blobs: List[bytes], paths: List[str], config: Optional[ModelConfig],
              metadata: Optional[Dict[str, Any]], preset: Optional[str]) -> None:
        trt = self._trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._trt_runtime = trt.Runtime(self._logger)
        for data, path in zip(blobs, paths):
            self._runners.append(_EngineRunner(trt, self._cuda, self._trt_runtime, data, path,
                                               self._forced_api))
        first = self._runners[0]
        self.api = first.api
        if config is None:
            config = config_from_engine_metadata(metadata, paths[0], preset)
        if config is None:
            inputs = [spec for spec in first.specs if spec.is_input]
            if not inputs or len(inputs[0].shape) != 4:
                raise ModelLoadError(f"{paths[0]}: cannot tell the input size of this engine")
            height, width = inputs[0].shape[2], inputs[0].shape[3]
            config = get_preset(preset or DEFAULT_PRESET).with_input_size(width, height)
        super().__init__(config)
        if len(self._runners) == 1:
            self._input_names, self._output_map = map_engine_tensors(first.specs, config,
                                                                      paths[0])
        else:
            self.two_stage = True
            self._encoder_outputs = map_stage_tensors(first.specs, config, paths[0],
                                                      ENCODER_STAGE)
            map_stage_tensors(self._runners[1].specs, config, paths[1], MATCHER_STAGE)
        for runner in self._runners:
            runner.allocate()
        self.precision = str((metadata or {}).get("precision") or "unknown")

    @property
    def description(self) -> str:
        stages = ", two-stage" if self.two_stage else ""
        return f"tensorrt {self._trt.__version__} ({self.gpu_name}, {self.precision}{stages})"

    def _execute(self, runner: _EngineRunner, feeds: Dict[str, np.ndarray],
                 outputs: Sequence[str]) -> Dict[str, np.ndarray]:
        if self._closed:
            raise LoftrRuntimeError("the TensorRT runtime is closed")
        self._cuda_context.push()
        try:
            return runner.execute(feeds, outputs)
        finally:
            self._cuda_context.pop()

    def encode(self, image: np.ndarray) -> Encoding:
        if not self.two_stage:
            return super().encode(image)
        self.check_image(image)
        return self._execute(self._runners[0], {IMAGE: image}, self._encoder_outputs)

    def match(self, encoding0: Encoding, encoding1: Encoding) -> Dict[str, np.ndarray]:
        if not self.two_stage:
            return super().match(encoding0, encoding1)
        outputs = self._execute(self._runners[1], {COARSE_FEAT0: encoding0[COARSE_FEAT],
                                                   COARSE_FEAT1: encoding1[COARSE_FEAT]},
                                [CONF_MATRIX])
        return match_outputs(outputs[CONF_MATRIX], encoding0, encoding1)

    def run(self, image0: np.ndarray, image1: np.ndarray) -> Dict[str, np.ndarray]:
        self.check_inputs(image0, image1)
        if self.two_stage:
            return self.match(self.encode(image0), self.encode(image1))
        values = self._execute(self._runners[0], dict(zip(self._input_names, (image0, image1))),
                               list(self._output_map.values()))
        return {ours: values[theirs] for ours, theirs in self._output_map.items()}

    def close(self) -> None:
        """Free GPU buffers, the engines and the CUDA context. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        context = self._cuda_context
        if context is None:
            return
        try:
            context.push()
        except Exception:  # context already gone (interpreter shutdown)
            return
        try:
            for runner in self._runners:
                runner.free()
            self._runners = []
            for attr in ("_trt_runtime",):
                if hasattr(self, attr):
                    delattr(self, attr)
        finally:
            context.pop()
            context.detach()
            self._cuda_context = None


__all__ = ["TensorRTRuntime", "TensorSpec", "choose_api", "describe_tensors",
           "map_engine_tensors", "map_stage_tensors", "stage_engine_files", "read_engine_bytes",
           "TENSOR_NAME_API", "BINDING_API"]
