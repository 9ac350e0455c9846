"""The onnxruntime engine (CPU; CUDA provider when present). No torch."""
from __future__ import annotations

import os
from typing import Dict, List, Optional

import numpy as np

from loftr_ros.deploy.quantization import QUANTIZATION_KEY
from loftr_ros.runtime.base import (
    CONF_MATRIX,
    FINE_FEAT0,
    FINE_FEAT1,
    INPUT0,
    INPUT1,
    BackendUnavailableError,
    InferenceRuntime,
    ModelLoadError,
)
from loftr_ros.runtime.onnx_info import model_config_of_onnx

# Graphs exported by other projects: which of their outputs holds what (model-spec §3.3).
FOREIGN_OUTPUT_NAMES = {"seed": {CONF_MATRIX: "1026"}}
FOREIGN_INPUT_NAMES = {"seed": ("img0", "img1")}


class OnnxRuntime(InferenceRuntime):
    """Runs an exported loftr_ros ONNX graph (or the seed's) with onnxruntime."""

    name = "onnxruntime"

    def __init__(self, onnx_path: str, preset: Optional[str] = None, threads: Optional[int] = None,
                 providers: Optional[List[str]] = None) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise BackendUnavailableError("onnxruntime is not installed "
                                          "(pip install onnxruntime)") from None
        if not os.path.isfile(onnx_path):
            what = "not a file" if os.path.exists(onnx_path) else "no such ONNX file"
            raise ModelLoadError(f"{onnx_path}: {what}")
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        # Idle intra-op threads spin after each run (onnxruntime's default), and that stays on.
        # On a 2-core VM, turning it off made the node far slower though a bare Matcher.match
        # loop got faster:
        # - "session.intra_op.allow_spinning" = "0": match post-processing 24 -> 17 ms, but
        #   bench_node latency p95 75-82 -> 500-870 ms;
        # - "session.force_spinning_stop" = "1" (spin within a run only): whole match about
        #   5 ms faster, but bench_node latency p50 65-70 -> 142-162 ms, p95 84 -> 629-1253 ms,
        #   nearly all of it outside the Matcher call.
        available = onnxruntime.get_available_providers()
        if providers is None:
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                         if p in available]
        try:
            self.session = onnxruntime.InferenceSession(onnx_path, sess_options=options,
                                                        providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadError(f"{onnx_path}: onnxruntime cannot load it: {exc}") from None
        super().__init__(model_config_of_onnx(self.session, onnx_path, preset))
        self.path = onnx_path
        outputs = {output.name for output in self.session.get_outputs()}
        inputs = [item.name for item in self.session.get_inputs()]
        mapping = {name: name for name in (CONF_MATRIX, FINE_FEAT0, FINE_FEAT1) if name in outputs}
        foreign = FOREIGN_OUTPUT_NAMES.get(self.config.name, {})
        mapping.update({ours: theirs for ours, theirs in foreign.items() if theirs in outputs})
        if CONF_MATRIX not in mapping:
            raise ModelLoadError(f"{onnx_path}: no output named {CONF_MATRIX!r} (outputs "
                                 f"{sorted(outputs)})")
        if self.config.fine is not None and FINE_FEAT0 not in mapping:
            raise ModelLoadError(f"{onnx_path}: the {self.config.name} model needs fine outputs")
        self._output_map = mapping
        self._input_names = (INPUT0, INPUT1) if INPUT0 in inputs else FOREIGN_INPUT_NAMES.get(
            self.config.name, tuple(inputs[:2]))
        self.providers = self.session.get_providers()
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.int8 = QUANTIZATION_KEY in metadata

    @property
    def description(self) -> str:
        return f"onnxruntime ({self.providers[0]}{', int8' if self.int8 else ''})"

    def run(self, image0: np.ndarray, image1: np.ndarray) -> Dict[str, np.ndarray]:
        self.check_inputs(image0, image1)
        ours = list(self._output_map)
        values = self.session.run([self._output_map[name] for name in ours],
                                  {self._input_names[0]: image0, self._input_names[1]: image1})
        return {name: value[0] for name, value in zip(ours, values)}
