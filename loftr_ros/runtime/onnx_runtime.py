"""The onnxruntime engine (CPU; CUDA provider when present). No torch.

Loads a two-stage model (``*_encoder.onnx`` + ``*_matcher.onnx``, either file names the other)
or a single graph (``image0``, ``image1`` -> ``conf_matrix``: older exports, the seed's own ONNX).
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

import numpy as np

from loftr_ros.deploy.quantization import QUANTIZATION_KEY
from loftr_ros.runtime.base import (
    COARSE_FEAT,
    COARSE_FEAT0,
    COARSE_FEAT1,
    CONF_MATRIX,
    FINE_FEAT,
    FINE_FEAT0,
    FINE_FEAT1,
    IMAGE,
    INPUT0,
    INPUT1,
    BackendUnavailableError,
    Encoding,
    InferenceRuntime,
    ModelLoadError,
    match_outputs,
)
from loftr_ros.runtime.onnx_info import model_config_of_onnx, read_onnx_metadata, two_stage_files

# Graphs exported by other projects: which of their outputs holds what (docs/model.md,
# "Exported graphs").
FOREIGN_OUTPUT_NAMES = {"seed": {CONF_MATRIX: "1026"}}
FOREIGN_INPUT_NAMES = {"seed": ("img0", "img1")}


class OnnxRuntime(InferenceRuntime):
    """Runs an exported loftr_ros ONNX model (two-stage or single graph, or the seed's) with
    onnxruntime.

    Args:
        onnx_path: a single graph, or either graph of a two-stage model.
        preset: for ONNX files without loftr_ros metadata (the seed's).
        threads: intra-op threads (None: onnxruntime's default).
        providers: onnxruntime execution providers (default: CUDA where present, CPU).
        idle_spinning: whether idle intra-op threads spin after a run; None = the default
            (a single graph: yes; a two-stage model's two sessions: no, see below).

    Attributes:
        path: the file given (for a two-stage model given by its matcher: its encoder).
        matcher_path: the matcher graph of a two-stage model, else None.
    """

    name = "onnxruntime"

    def __init__(self, onnx_path: str, preset: Optional[str] = None, threads: Optional[int] = None,
                 providers: Optional[List[str]] = None,
                 idle_spinning: Optional[bool] = None) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise BackendUnavailableError("onnxruntime is not installed "
                                          "(pip install onnxruntime)") from None
        if not os.path.isfile(onnx_path):
            what = "not a file" if os.path.exists(onnx_path) else "no such ONNX file"
            raise ModelLoadError(f"{onnx_path}: {what}")
        self._onnxruntime = onnxruntime
        self._options = onnxruntime.SessionOptions()
        if threads:
            self._options.intra_op_num_threads = int(threads)
            self._options.inter_op_num_threads = 1
        # Idle intra-op threads spin after each run (onnxruntime's default), and that stays on for
        # a single graph: on 2 cores, stopping them ("session.intra_op.allow_spinning" = "0") or
        # spinning only within a run ("session.force_spinning_stop") made a bare Matcher.match
        # loop a little faster but the node's frame latency several times higher, nearly all of
        # it outside the Matcher call.
        available = onnxruntime.get_available_providers()
        if providers is None:
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                         if p in available]
        self._providers = providers
        if idle_spinning is False:
            self._options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = self._open(onnx_path)
        config = model_config_of_onnx(session, onnx_path, preset)
        files = two_stage_files(onnx_path, read_onnx_metadata(session))
        if files is not None and idle_spinning is None:
            # Two sessions run one after the other, each with its own threads: the idle one's
            # spinning threads take the cores from the busy one, so neither spins. On 2 cores
            # this is the fastest of the three settings per frame against an encoded reference,
            # and spinning only within a run was no faster on an idle machine and slower on a
            # busy one (docs/benchmarks.md compares it with the seed's spinning graph).
            self._options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = self._open(onnx_path)
        self.matcher_path: Optional[str] = None
        if files is None:
            self.path = onnx_path
            self.session = session
            super().__init__(config)
            self._init_single_graph(onnx_path)
        else:
            encoder_path, self.matcher_path = files
            given_encoder = os.path.abspath(onnx_path) == encoder_path
            self.path = onnx_path if given_encoder else encoder_path
            self.session = session if given_encoder else self._open(encoder_path)
            self.matcher_session = session if not given_encoder else self._open(
                self.matcher_path)
            super().__init__(model_config_of_onnx(self.session, encoder_path, preset))
            matcher_config = model_config_of_onnx(self.matcher_session, self.matcher_path, preset)
            if matcher_config != self.config:
                raise ModelLoadError(f"{encoder_path} and {self.matcher_path} hold different "
                                     "models (export both again with loftr-export)")
            self._init_two_stage(encoder_path)
        self.providers = self.session.get_providers()
        self.int8 = QUANTIZATION_KEY in read_onnx_metadata(self.session)

    def _open(self, path: str) -> Any:
        try:
            return self._onnxruntime.InferenceSession(path, sess_options=self._options,
                                                      providers=self._providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadError(f"{path}: onnxruntime cannot load it: {exc}") from None

    def _init_single_graph(self, path: str) -> None:
        outputs = {output.name for output in self.session.get_outputs()}
        inputs = [item.name for item in self.session.get_inputs()]
        mapping = {name: name for name in (CONF_MATRIX, FINE_FEAT0, FINE_FEAT1) if name in outputs}
        foreign = FOREIGN_OUTPUT_NAMES.get(self.config.name, {})
        mapping.update({ours: theirs for ours, theirs in foreign.items() if theirs in outputs})
        if CONF_MATRIX not in mapping:
            raise ModelLoadError(f"{path}: no output named {CONF_MATRIX!r} (outputs "
                                 f"{sorted(outputs)})")
        if self.config.fine is not None and FINE_FEAT0 not in mapping:
            raise ModelLoadError(f"{path}: the {self.config.name} model needs fine outputs")
        self._output_map = mapping
        self._input_names = (INPUT0, INPUT1) if INPUT0 in inputs else FOREIGN_INPUT_NAMES.get(
            self.config.name, tuple(inputs[:2]))

    def _init_two_stage(self, encoder_path: str) -> None:
        self.two_stage = True
        encoder_outputs = {output.name for output in self.session.get_outputs()}
        needed = [COARSE_FEAT] + ([FINE_FEAT] if self.config.fine is not None else [])
        missing = [name for name in needed if name not in encoder_outputs]
        if missing or [item.name for item in self.session.get_inputs()] != [IMAGE]:
            raise ModelLoadError(f"{encoder_path}: an encoder graph needs input {IMAGE!r} and "
                                 f"outputs {needed} (outputs {sorted(encoder_outputs)})")
        self._encoder_outputs = needed
        matcher_inputs = {item.name for item in self.matcher_session.get_inputs()}
        if matcher_inputs != {COARSE_FEAT0, COARSE_FEAT1}:
            raise ModelLoadError(f"{self.matcher_path}: a matcher graph needs inputs "
                                 f"{COARSE_FEAT0!r}, {COARSE_FEAT1!r} (it has "
                                 f"{sorted(matcher_inputs)})")

    @property
    def description(self) -> str:
        stages = ", two-stage" if self.two_stage else ""
        return f"onnxruntime ({self.providers[0]}{', int8' if self.int8 else ''}{stages})"

    @property
    def model_identity(self) -> str:
        return f"{super().model_identity}+{self.matcher_path or ''}"

    def encode(self, image: np.ndarray) -> Encoding:
        if not self.two_stage:
            return super().encode(image)
        self.check_image(image)
        values = self.session.run(self._encoder_outputs, {IMAGE: image})
        return {name: value[0] for name, value in zip(self._encoder_outputs, values)}

    def match(self, encoding0: Encoding, encoding1: Encoding) -> Dict[str, np.ndarray]:
        if not self.two_stage:
            return super().match(encoding0, encoding1)
        conf = self.matcher_session.run([CONF_MATRIX], {
            COARSE_FEAT0: encoding0[COARSE_FEAT][None], COARSE_FEAT1: encoding1[COARSE_FEAT][None]
        })[0]
        return match_outputs(conf[0], encoding0, encoding1)

    def run(self, image0: np.ndarray, image1: np.ndarray) -> Dict[str, np.ndarray]:
        self.check_inputs(image0, image1)
        if self.two_stage:
            return self.match(self.encode(image0), self.encode(image1))
        ours = list(self._output_map)
        values = self.session.run([self._output_map[name] for name in ours],
                                  {self._input_names[0]: image0, self._input_names[1]: image1})
        return {name: value[0] for name, value in zip(ours, values)}
