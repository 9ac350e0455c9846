"""The public facade: ``Matcher.create(...).match(image0, image1) -> Matches``.

Example::

    from loftr_ros import Matcher
    m = Matcher.create(backend="onnxruntime", weights=None)   # None = bundled default model
    res = m.match(img0, img1)          # uint8 gray or BGR, any size from 32x32
    res.keypoints0, res.keypoints1     # float32 [N,2], pixels of the ORIGINAL images
    res.scores                         # float32 [N]
    ref = m.encode(img0)               # EncodedImage: computed once, reused for every frame
    res = m.match(ref, frame)          # same matches as m.match(img0, frame)
"""
from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple, Union

import numpy as np

from loftr_ros.matching.encoded import EncodedImage
from loftr_ros.matching.photometric import photometric_image
from loftr_ros.matching.postprocess import MatchingOptions, cell_to_pixel, match_confidence
from loftr_ros.matching.preprocess import InputTransform, prepare
from loftr_ros.model.presets import ModelConfig
from loftr_ros.runtime import create_runtime
from loftr_ros.runtime.base import CONF_MATRIX, FINE_FEAT0, FINE_FEAT1, InferenceRuntime


@dataclass
class Matches:
    """Matches between two images, in the original images' pixel coordinates.

    Attributes:
        keypoints0, keypoints1: float32 [N,2] (x, y) in image 0 / image 1.
        scores: float32 [N] dual-softmax confidence in [0, 1].
        input_size: model input (width, height) both images were resized to.
        image0_size, image1_size: original (width, height).
        refinement: sub-cell refinement applied (``none``, ``expectation``, ``fine``,
            ``fine+photometric``, ``expectation+photometric``).
        timings: milliseconds per stage: ``preprocess`` (images -> model inputs), ``encode``
            (the encoder stage of the sides given as images), ``match_stage`` (the matcher
            stage), ``inference`` (the two together), ``matching`` (``mutual_nearest`` +
            ``refinement``) and ``total``.
    """

    keypoints0: np.ndarray
    keypoints1: np.ndarray
    scores: np.ndarray
    input_size: Tuple[int, int]
    image0_size: Tuple[int, int]
    image1_size: Tuple[int, int]
    refinement: str = "none"
    timings: Dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.scores.shape[0])


class Matcher:
    """Thread-safe matcher around one inference runtime. Create with :meth:`create`.

    ``threshold``, ``max_matches``, ``border_margin``, ``refinement``, ``min_peak_mass``,
    ``keep_sharpest`` and ``verify_alignment`` may be changed at any time (the ROS node does so
    from its parameter callback); a change applies to the next ``match``.
    """

    def __init__(self, runtime: InferenceRuntime, threshold: Optional[float] = None,
                 max_matches: int = 0, border_margin: Optional[int] = None,
                 refinement: str = "auto", policy: str = "resize",
                 min_peak_mass: Optional[float] = None,
                 keep_sharpest: Optional[int] = None, verify_alignment: bool = False) -> None:
        self.runtime = runtime
        config = runtime.config
        self.options = MatchingOptions(
            threshold=config.match_threshold if threshold is None else float(threshold),
            border_margin=config.border_margin if border_margin is None else int(border_margin),
            max_matches=int(max_matches), refinement=refinement,
            min_peak_mass=None if min_peak_mass is None else float(min_peak_mass),
            keep_sharpest=None if keep_sharpest is None else int(keep_sharpest),
            verify_alignment=bool(verify_alignment))
        self.policy = policy
        self._lock = threading.Lock()

    @classmethod
    def create(cls, backend: str = "auto", weights: Optional[str] = None,
               preset: Optional[str] = None, input_size: Optional[Tuple[int, int]] = None,
               threshold: Optional[float] = None, max_matches: int = 0,
               border_margin: Optional[int] = None, refinement: str = "auto",
               policy: str = "resize", min_peak_mass: Optional[float] = None,
               keep_sharpest: Optional[int] = None, verify_alignment: bool = False,
               **backend_options: object) -> "Matcher":
        """Build a matcher; see :func:`loftr_ros.runtime.create_runtime` for backend options."""
        runtime = create_runtime(backend=backend, weights=weights, preset=preset,
                                 input_size=input_size, **backend_options)  # type: ignore[arg-type]
        return cls(runtime, threshold=threshold, max_matches=max_matches,
                   border_margin=border_margin, refinement=refinement, policy=policy,
                   min_peak_mass=min_peak_mass, keep_sharpest=keep_sharpest,
                   verify_alignment=verify_alignment)

    # ---------------------------------------------------------------- live-tunable settings
    @property
    def config(self) -> ModelConfig:
        return self.runtime.config

    @property
    def backend_name(self) -> str:
        return self.runtime.name

    @property
    def threshold(self) -> float:
        return self.options.threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self._set_options(threshold=float(value))

    @property
    def max_matches(self) -> int:
        return self.options.max_matches

    @max_matches.setter
    def max_matches(self, value: int) -> None:
        self._set_options(max_matches=int(value))

    @property
    def border_margin(self) -> int:
        return self.options.border_margin

    @border_margin.setter
    def border_margin(self, value: int) -> None:
        self._set_options(border_margin=int(value))

    @property
    def refinement(self) -> str:
        return self.options.refinement

    @refinement.setter
    def refinement(self, value: str) -> None:
        self._set_options(refinement=str(value))

    @property
    def min_peak_mass(self) -> float:
        """The fine-window filter in force: the model's calibrated ``fine.min_peak_mass`` unless
        set here (0 = every mutual match; no effect on models without a fine stage)."""
        if self.options.min_peak_mass is not None:
            return self.options.min_peak_mass
        return self.config.fine.min_peak_mass if self.config.fine is not None else 0.0

    @min_peak_mass.setter
    def min_peak_mass(self, value: float) -> None:
        self._set_options(min_peak_mass=float(value))

    @property
    def keep_sharpest(self) -> int:
        """The ``min_peak_mass`` filter (and ``verify_alignment``) keeps at least this many (the
        sharpest) while more exist: the model's calibrated ``fine.keep_sharpest`` unless set here
        (0 = the limit alone decides; 0 for models without a fine stage)."""
        if self.options.keep_sharpest is not None:
            return self.options.keep_sharpest
        return self.config.fine.keep_sharpest if self.config.fine is not None else 0

    @keep_sharpest.setter
    def keep_sharpest(self, value: int) -> None:
        self._set_options(keep_sharpest=int(value))

    @property
    def verify_alignment(self) -> bool:
        """Drop the matches whose image patches the photometric refinement could not align
        (:class:`~loftr_ros.matching.postprocess.MatchingOptions`); off by default."""
        return self.options.verify_alignment

    @verify_alignment.setter
    def verify_alignment(self, value: bool) -> None:
        self._set_options(verify_alignment=bool(value))

    def _set_options(self, **changes: object) -> None:
        new_options = dataclasses.replace(self.options, **changes)  # validates (ValueError)
        if new_options.refinement == "fine" and self.config.fine is None:
            raise ValueError(f"preset {self.config.name!r} has no fine stage")
        self.options = new_options

    # ---------------------------------------------------------------- matching
    def prepare(self, image: np.ndarray) -> Tuple[np.ndarray, InputTransform]:
        """Frame -> (model input [1,1,H,W], transform back to the frame's pixels)."""
        return prepare(image, self.runtime.input_size, self.policy)

    def encode(self, image: np.ndarray) -> EncodedImage:
        """Everything about ``image`` (uint8 gray/BGR, each side at least 32 pixels) that does not
        depend on the image it will be matched with: the prepared input and its transform, the
        encoder stage's outputs and the photometric refinement's data. Pass it to :meth:`match`
        in place of the image, as often as wanted; only this matcher's model, file and input size
        accept it. ValueError for an unusable image."""
        model_input, transform = self.prepare(image)
        return self._encode_prepared(model_input, transform, templates=True)

    def _encode_prepared(self, model_input: np.ndarray, transform: InputTransform,
                         templates: bool = False) -> EncodedImage:
        """``templates``: also the photometric templates on the coarse grid, where the matches
        of an image 0 sit (worth it for an image matched many times)."""
        with self._lock:
            features = self.runtime.encode(model_input)
        grid = None
        if templates:
            width, height = self.runtime.input_size
            stride = self.config.coarse_stride
            grid_w = width // stride
            grid = cell_to_pixel(np.arange(grid_w * (height // stride)), grid_w, stride)
        return EncodedImage(model_identity=self.runtime.model_identity, policy=self.policy,
                            input=model_input, transform=transform, features=features,
                            photometric=photometric_image(model_input[0, 0],
                                                          template_points=grid))

    def check_encoded(self, encoded: EncodedImage) -> None:
        """ValueError unless this matcher made ``encoded`` (same model, file and input size)."""
        if encoded.input_size != tuple(self.runtime.input_size):
            raise ValueError(
                f"this EncodedImage was encoded at {encoded.input_size[0]}x"
                f"{encoded.input_size[1]}, this matcher takes {self.runtime.input_size[0]}x"
                f"{self.runtime.input_size[1]}: encode the image with this matcher")
        if encoded.model_identity != self.runtime.model_identity or \
                encoded.policy != self.policy:
            raise ValueError(
                f"this EncodedImage was encoded by another model ({encoded.model_identity}, "
                f"policy {encoded.policy}); this matcher runs {self.runtime.model_identity}, "
                f"policy {self.policy}: encode the image with this matcher")

    def match(self, image0: Union[np.ndarray, EncodedImage],
              image1: Union[np.ndarray, EncodedImage]) -> Matches:
        """Match two images: uint8 gray/BGR of any size from ``MIN_IMAGE_SIDE`` (32) pixels a
        side, or :class:`EncodedImage` from :meth:`encode` (either side; the result is the same
        as with the image). See :class:`Matches`; ValueError for a smaller image or an
        EncodedImage of another matcher."""
        started = time.perf_counter()
        for image in (image0, image1):
            if isinstance(image, EncodedImage):
                self.check_encoded(image)
        prepared = [image if isinstance(image, EncodedImage) else self.prepare(image)
                    for image in (image0, image1)]
        inferred = time.perf_counter()
        encoded = [item if isinstance(item, EncodedImage) else self._encode_prepared(*item)
                   for item in prepared]
        return self._match_encoded(encoded[0], encoded[1], started, inferred)

    def _match_encoded(self, encoded0: EncodedImage, encoded1: EncodedImage, started: float,
                       inferred: float) -> Matches:
        options = self.options
        encoded_at = time.perf_counter()
        with self._lock:
            outputs = self.runtime.match(dict(encoded0.features), dict(encoded1.features))
        done = time.perf_counter()
        steps: Dict[str, float] = {}
        cells = match_confidence(outputs[CONF_MATRIX], self.config, options,
                                 fine_feat0=outputs.get(FINE_FEAT0),
                                 fine_feat1=outputs.get(FINE_FEAT1),
                                 input_size=self.runtime.input_size,
                                 images=(encoded0.photometric, encoded1.photometric),
                                 timings=steps)
        transform0, transform1 = encoded0.transform, encoded1.transform
        keep = transform0.inside_content(cells.keypoints0) & transform1.inside_content(
            cells.keypoints1)
        keypoints0 = transform0.to_original(cells.keypoints0[keep])
        keypoints1 = transform1.to_original(cells.keypoints1[keep])
        finished = time.perf_counter()
        timings = {"preprocess": (inferred - started) * 1e3,
                   "encode": (encoded_at - inferred) * 1e3,
                   "match_stage": (done - encoded_at) * 1e3,
                   "inference": (done - inferred) * 1e3,
                   "matching": (finished - done) * 1e3, "total": (finished - started) * 1e3}
        timings.update(steps)
        return Matches(keypoints0=keypoints0, keypoints1=keypoints1, scores=cells.scores[keep],
                       input_size=self.runtime.input_size,
                       image0_size=transform0.original_size, image1_size=transform1.original_size,
                       refinement=cells.refinement, timings=timings)

    def close(self) -> None:
        """Release the runtime's resources."""
        with self._lock:
            self.runtime.close()
