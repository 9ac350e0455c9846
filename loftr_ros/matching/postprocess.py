"""Confidence matrix -> matches, in numpy (never inside the ONNX/TensorRT graph).

Steps: threshold, border margin, mutual nearest neighbour, optional top-k, cell index -> pixel
(cell k sits at pixel k * stride: docs/model.md, "Dual softmax and coarse matches"), then
optional sub-cell refinement:

- ``expectation``: confidence-weighted mean over the 3x3 neighbour cells of the match in image 1.
- ``fine``: the learned fine stage: correlate the image-0 fine feature with a window of image-1 fine
  features around the coarse match, softmax, and take the local soft-argmax around the peak (the
  window softmax is the twin of ``loftr_ros.training.losses.fine_expectation``).
- ``photometric``: ``fine`` (``expectation`` for models without a fine stage), then sub-pixel
  alignment of image patches around each match (:mod:`loftr_ros.matching.photometric`), on the
  model inputs.

All coordinates here are in MODEL-INPUT pixels; ``preprocess`` maps them back to the original frame.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from loftr_ros.matching.photometric import PhotometricImage, refine_photometric
from loftr_ros.model.presets import ModelConfig

REFINEMENTS = ("auto", "none", "expectation", "fine", "photometric")


@dataclass
class MatchingOptions:
    """Post-processing settings.

    Attributes:
        threshold: minimum confidence (exclusive), in [0, 1].
        border_margin: coarse cells ignored along each image border.
        max_matches: keep the most confident ones; 0 = all.
        refinement: one of ``REFINEMENTS``; ``auto`` = ``photometric`` (the most accurate
            measured, see docs/model_card.md) when the images are at hand, as they always
            are through :class:`loftr_ros.Matcher`; else the model's own step (``fine``,
            or ``expectation`` without a fine stage).
        min_peak_mass: with the fine stage, matches whose fine window holds less probability
            than this around its peak are dropped; None = the model's calibrated
            ``fine.min_peak_mass``, 0 = keep every mutual match.
        keep_sharpest: the ``min_peak_mass`` filter (and ``verify_alignment``) never leaves
            fewer than this many matches while more exist: below it, the sharpest (highest
            peak mass; confidence without a fine stage) are kept, so a low-texture pair still
            gets some; None = the model's calibrated ``fine.keep_sharpest`` (0 without a fine
            stage), 0 = the limit alone decides.
        verify_alignment: with the photometric refinement, also drop the matches whose image
            patches it could not align (no contrast, a correlation under 0.3 or not improved, a
            move over 6 px). Never leaves fewer than ``keep_sharpest`` matches while more exist
            (the sharpest are kept). Fewer, surer matches; off by default (docs/model.md has
            the measured trade-off).
    """

    threshold: float = 0.2
    border_margin: int = 2
    max_matches: int = 0
    refinement: str = "auto"
    min_peak_mass: Optional[float] = None
    keep_sharpest: Optional[int] = None
    verify_alignment: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if (self.border_margin < 0 or self.max_matches < 0
                or (self.keep_sharpest is not None and self.keep_sharpest < 0)):
            raise ValueError("border_margin, max_matches and keep_sharpest must be >= 0")
        if self.refinement not in REFINEMENTS:
            raise ValueError(f"refinement must be one of {REFINEMENTS}, got {self.refinement!r}")
        if self.min_peak_mass is not None and not 0.0 <= self.min_peak_mass <= 1.0:
            raise ValueError(f"min_peak_mass must be in [0, 1], got {self.min_peak_mass}")


@dataclass
class CellMatches:
    """Matches in model-input pixels plus the cell indices they came from."""

    indices0: np.ndarray    # int64 [N]
    indices1: np.ndarray    # int64 [N]
    keypoints0: np.ndarray  # float32 [N,2] (x, y)
    keypoints1: np.ndarray  # float32 [N,2]
    scores: np.ndarray      # float32 [N]
    refinement: str         # what was applied, e.g. "fine" or "fine+photometric"


def border_mask(grid_width: int, grid_height: int, margin: int) -> np.ndarray:
    """bool [grid_h*grid_w]: True for cells at least ``margin`` cells from every border."""
    cols, rows = np.meshgrid(np.arange(grid_width), np.arange(grid_height))
    inside = ((cols >= margin) & (cols < grid_width - margin) & (rows >= margin)
              & (rows < grid_height - margin))
    return inside.reshape(-1)


def mutual_nearest(conf: np.ndarray, threshold: float, valid0: np.ndarray, valid1: np.ndarray
                   ) -> np.ndarray:
    """Indices [N,2] (i, j) with conf[i,j] > threshold, maximal in its row and column, and both
    cells valid. Each row and column contributes at most one match. Ties: a row's maximum is its
    first one, and of the rows whose maximum ties for a column's, the lowest keeps it."""
    if conf.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    best_j = conf.argmax(axis=1)
    rows = np.arange(conf.shape[0])
    row_best = conf[rows, best_j]
    # a column maximum is one pass down the rows (argmax over axis 0 is ten times slower)
    mutual = row_best >= conf.max(axis=0)[best_j]
    keep = np.flatnonzero(mutual & (row_best > threshold) & valid0 & valid1[best_j])
    # rows tied for a column's maximum: the lowest row keeps it
    _, first = np.unique(best_j[keep], return_index=True)
    keep = keep[np.sort(first)]
    return np.stack([keep, best_j[keep]], axis=1).astype(np.int64)


def cell_to_pixel(indices: np.ndarray, grid_width: int, stride: int) -> np.ndarray:
    """float32 [N,2] pixel positions (x, y) of flat cell indices."""
    cells = np.stack([indices % grid_width, indices // grid_width], axis=1)
    return cells.astype(np.float32) * stride


def refine_by_expectation(conf: np.ndarray, indices0: np.ndarray, indices1: np.ndarray,
                          grid_width: int, grid_height: int, stride: int) -> np.ndarray:
    """Image-1 positions [N,2]: confidence-weighted mean of the 3x3 cells around each match j
    (weights = conf[i, j'] for the neighbours j' of j)."""
    cols = indices1 % grid_width
    rows = indices1 // grid_width
    weighted = np.zeros((len(indices1), 2), dtype=np.float64)
    total = np.zeros(len(indices1), dtype=np.float64)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            c, r = cols + dx, rows + dy
            ok = (c >= 0) & (c < grid_width) & (r >= 0) & (r < grid_height)
            neighbour = np.where(ok, r * grid_width + c, 0)
            weight = np.where(ok, conf[indices0, neighbour], 0.0)
            weighted[:, 0] += weight * c * stride
            weighted[:, 1] += weight * r * stride
            total += weight
    return (weighted / np.maximum(total, 1e-12)[:, None]).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _window_steps(radius: int) -> Tuple[np.ndarray, np.ndarray]:
    """int64 [(2r+1)^2] x and y offsets of a fine window, row-major over dy then dx
    (read-only, made once per radius)."""
    steps = np.arange(-radius, radius + 1)
    offset_x, offset_y = np.tile(steps, len(steps)), np.repeat(steps, len(steps))
    offset_x.setflags(write=False)
    offset_y.setflags(write=False)
    return offset_x, offset_y


def _window_cells(indices1: np.ndarray, grid_width: int, ratio: int, radius: int,
                  fine_width: int, fine_height: int) -> Tuple[np.ndarray, np.ndarray]:
    """Fine-map columns and rows [N,W] of the window around each coarse cell of image 1
    (clamped to the map)."""
    offset_x, offset_y = _window_steps(radius)
    column1 = (indices1 % grid_width * ratio)[:, None] + offset_x
    row1 = (indices1 // grid_width * ratio)[:, None] + offset_y
    np.minimum(np.maximum(column1, 0, out=column1), fine_width - 1, out=column1)
    np.minimum(np.maximum(row1, 0, out=row1), fine_height - 1, out=row1)
    return column1, row1


def _channels_last(features: np.ndarray) -> np.ndarray:
    """Contiguous transpose of a [C,M] map (OpenCV's blocked transpose for float32: a quarter of
    numpy's time for a 640x480 fine map)."""
    if features.dtype == np.float32:
        return cv2.transpose(features)
    return np.ascontiguousarray(features.T)


def _window_probabilities(fine0: np.ndarray, fine1: np.ndarray, indices0: np.ndarray,
                          indices1: np.ndarray, grid_width: int, config: ModelConfig
                          ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`fine_window_probabilities` as (prob float32 [N,W], fine-map columns [N,W], rows
    [N,W])."""
    fine = config.fine
    if fine is None:
        raise ValueError(f"preset {config.name!r} has no fine stage")
    channels, fine_h, fine_w = fine0.shape
    ratio = config.coarse_stride // fine.stride
    column1, row1 = _window_cells(indices1, grid_width, ratio, fine.window_radius, fine_w,
                                  fine_h)
    # whole feature vectors are gathered (rows of the [Hf*Wf, C] map, np.take: a quarter of the
    # time of fancy indexing), not one channel at a time
    rows1 = _channels_last(fine1.reshape(channels, -1))                      # [Hf*Wf,C]
    centre0 = (indices0 // grid_width * ratio) * fine_w + indices0 % grid_width * ratio
    feat0 = np.take(fine0.reshape(channels, -1), centre0, axis=1).T          # [N,C]
    # a stack of matrix-vector products: numpy's matmul, single-threaded at this size, takes
    # half the time of einsum
    window1 = np.take(rows1, row1 * fine_w + column1, axis=0)                 # [N,W,C]
    logits = np.matmul(window1, feat0[:, :, None])[:, :, 0]                   # [N,W]
    logits *= np.float32(1.0 / (np.sqrt(channels) * fine.temperature))
    logits -= logits.max(axis=1, keepdims=True)
    prob = np.exp(logits, out=logits)
    prob /= prob.sum(axis=1, keepdims=True)
    return prob, column1, row1


def fine_window_probabilities(fine0: np.ndarray, fine1: np.ndarray, indices0: np.ndarray,
                              indices1: np.ndarray, grid_width: int, config: ModelConfig
                              ) -> Tuple[np.ndarray, np.ndarray]:
    """Softmax over the fine window of each match: (prob float32 [N,W], positions [N,W,2] in fine
    cells).

    fine0, fine1: [C, Hf, Wf] fine feature maps. The image-0 fine feature at the cell centre is
    correlated with a (2r+1)^2 window of image-1 features around the coarse match (positions
    clamped to the map, row-major over dy then dx). Twin of ``training.losses.fine_expectation``.
    """
    prob, column1, row1 = _window_probabilities(fine0, fine1, indices0, indices1, grid_width,
                                                config)
    return prob, np.stack([column1, row1], axis=-1)


def refine_with_fine_features(fine0: np.ndarray, fine1: np.ndarray, indices0: np.ndarray,
                              indices1: np.ndarray, grid_width: int, config: ModelConfig
                              ) -> Tuple[np.ndarray, np.ndarray]:
    """Image-1 positions [N,2] (pixels) from the learned fine stage, and each one's peak mass [N].

    The position is a LOCAL soft-argmax: the probability-weighted mean of the 3x3 window cells
    around the most probable one. (The whole-window expectation is pulled towards the window
    centre by the mass spread over far cells; measured on held-out pairs the local estimate gives
    the better homographies.) The peak mass, the probability inside those 3x3 cells, says how
    unambiguous the match is.
    """
    fine = config.fine
    if fine is None:
        raise ValueError(f"preset {config.name!r} has no fine stage")
    if len(indices0) == 0:
        return np.zeros((0, 2), np.float32), np.zeros(0, np.float32)
    prob, column1, row1 = _window_probabilities(fine0, fine1, indices0, indices1, grid_width,
                                                config)
    size = 2 * fine.window_radius + 1
    peak = prob.argmax(axis=1)
    # the 3x3 window cells around each peak; those outside the window weigh nothing
    step_x, step_y = _window_steps(1)
    around_x = (peak % size)[:, None] + step_x                                 # [N,9]
    around_y = (peak // size)[:, None] + step_y
    inside = (around_x >= 0) & (around_x < size) & (around_y >= 0) & (around_y < size)
    cell = (np.minimum(np.maximum(around_y, 0), size - 1) * size
            + np.minimum(np.maximum(around_x, 0), size - 1))
    weight = np.take_along_axis(prob, cell, axis=1)
    weight *= inside
    mass = weight.sum(axis=1)
    scale = np.float32(fine.stride) / np.maximum(mass, np.float32(1e-12))
    refined = np.stack([
        np.einsum("nk,nk->n", weight, np.take_along_axis(column1, cell, axis=1).astype(
            np.float32)),
        np.einsum("nk,nk->n", weight, np.take_along_axis(row1, cell, axis=1).astype(
            np.float32))], axis=1) * scale[:, None]
    return refined.astype(np.float32), mass.astype(np.float32)


def _with_floor(keep: np.ndarray, sharpness: np.ndarray, floor: int) -> np.ndarray:
    """``keep`` (bool [N]) plus, while it keeps fewer than ``floor``, the ``floor`` sharpest."""
    if np.count_nonzero(keep) < floor:
        keep = keep.copy()
        keep[np.argsort(-sharpness, kind="stable")[:floor]] = True
    return keep


def match_confidence(conf: np.ndarray, config: ModelConfig, options: MatchingOptions,
                     fine_feat0: Optional[np.ndarray] = None,
                     fine_feat1: Optional[np.ndarray] = None,
                     input_size: Optional[tuple] = None,
                     images: Optional[Sequence[Union[np.ndarray, PhotometricImage]]] = None,
                     timings: Optional[Dict[str, float]] = None) -> CellMatches:
    """Full post-processing of one confidence matrix ``conf`` [L,S] (model-input pixels).

    ``input_size`` (width, height) defaults to the config's; it fixes the grid shape. ``images``
    are the two model inputs as [H,W] arrays (or their
    :class:`~loftr_ros.matching.photometric.PhotometricImage`), needed by the ``photometric``
    refinement. ``timings``, where given, receives milliseconds per step: ``mutual_nearest``
    (threshold, border, mutual nearest, top-k) and ``refinement``.
    """
    started = time.perf_counter()
    width, height = input_size or config.input_size
    stride = config.coarse_stride
    grid_w, grid_h = width // stride, height // stride
    if conf.shape != (grid_w * grid_h, grid_w * grid_h):
        raise ValueError(f"confidence matrix {conf.shape} does not fit a {grid_w}x{grid_h} grid")
    valid = border_mask(grid_w, grid_h, options.border_margin)
    pairs = mutual_nearest(conf, options.threshold, valid, valid)
    scores = conf[pairs[:, 0], pairs[:, 1]].astype(np.float32)
    if options.max_matches and len(scores) > options.max_matches:
        keep = np.argsort(-scores, kind="stable")[:options.max_matches]
        keep.sort()
        pairs, scores = pairs[keep], scores[keep]
    indices0, indices1 = pairs[:, 0], pairs[:, 1]
    keypoints0 = cell_to_pixel(indices0, grid_w, stride)
    selected = time.perf_counter()
    refinement = options.refinement
    sharpness = scores   # what the floors rank by: the peak mass with the fine stage
    floor = options.keep_sharpest
    if floor is None:
        floor = config.fine.keep_sharpest if config.fine is not None else 0
    if refinement == "auto":
        refinement = "photometric" if images is not None else "model"
    photometric = refinement == "photometric"
    if photometric and images is None:
        raise ValueError("refinement 'photometric' needs the two model input images")
    if refinement in ("photometric", "model"):
        has_fine = config.fine is not None and fine_feat0 is not None
        refinement = "fine" if has_fine else "expectation"
    if refinement == "fine":
        if fine_feat0 is None or fine_feat1 is None or config.fine is None:
            raise ValueError("refinement 'fine' needs a model with a fine stage")
        keypoints1, peak_mass = refine_with_fine_features(fine_feat0, fine_feat1, indices0,
                                                          indices1, grid_w, config)
        limit = (config.fine.min_peak_mass if options.min_peak_mass is None
                 else options.min_peak_mass)
        sharpness = peak_mass
        if limit > 0:
            sharp = _with_floor(peak_mass >= limit, sharpness, floor)
            indices0, indices1, keypoints0 = indices0[sharp], indices1[sharp], keypoints0[sharp]
            keypoints1, scores = keypoints1[sharp], scores[sharp]
            sharpness = sharpness[sharp]
    elif refinement == "expectation":
        keypoints1 = refine_by_expectation(conf, indices0, indices1, grid_w, grid_h, stride)
    else:
        keypoints1 = cell_to_pixel(indices1, grid_w, stride)
    if photometric:
        keypoints1, aligned = refine_photometric(images[0], images[1], keypoints0,
                                                 keypoints1.reshape(-1, 2))
        refinement += "+photometric"
        if options.verify_alignment:
            keep = _with_floor(aligned, sharpness, floor)
            indices0, indices1, keypoints0 = indices0[keep], indices1[keep], keypoints0[keep]
            keypoints1, scores = keypoints1[keep], scores[keep]
    if timings is not None:
        timings["mutual_nearest"] = (selected - started) * 1e3
        timings["refinement"] = (time.perf_counter() - selected) * 1e3
    return CellMatches(indices0=indices0, indices1=indices1, keypoints0=keypoints0,
                       keypoints1=keypoints1.reshape(-1, 2), scores=scores, refinement=refinement)
