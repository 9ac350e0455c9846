"""Ground truth from a known homography: coarse matches and sub-cell targets (numpy).

Convention (docs/model.md, "Dual softmax and coarse matches"): coarse cell (row r, col c) of
image 0 sits at pixel (c*s, r*s).
A cell i of image 0 is a positive with cell j of image 1 when its centre, warped by H, rounds to
cell j AND cell j's centre, warped back by H^-1, rounds to cell i (a mutual round trip, as LoFTR's
ground truth). The sub-cell target is the warped pixel position itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from loftr_ros.synthetic.homography import warp_points
from loftr_ros.synthetic.pairs import CorrespondencePair, inside


@dataclass
class CoarseTruth:
    """Ground truth of one pair.

    Attributes:
        match_j: int64 [L]: index of the matching image-1 cell for each image-0 cell, -1 if none.
        target_xy: float32 [L,2]: image-1 pixel position of each image-0 cell centre (NaN where
            the cell has no match).
        unseen0: bool [L]: the image-0 cell centre is not seen in image 1 (it lands outside
            image 1, is hidden there, or shows no surface) and the cell has no match.
        unseen1: bool [S]: the same for the image-1 cells in image 0.
    """

    match_j: np.ndarray
    target_xy: np.ndarray
    unseen0: np.ndarray
    unseen1: np.ndarray

    @property
    def num_positives(self) -> int:
        return int((self.match_j >= 0).sum())


def grid_centres(grid_width: int, grid_height: int, stride: int) -> np.ndarray:
    """Pixel positions [L,2] (x, y) of all coarse cells, row-major."""
    cols, rows = np.meshgrid(np.arange(grid_width), np.arange(grid_height))
    return np.stack([cols.ravel(), rows.ravel()], axis=1).astype(np.float64) * stride


def coarse_truth(homography: np.ndarray, width: int, height: int, stride: int) -> CoarseTruth:
    """Mutual nearest-cell ground truth for images of ``width`` x ``height`` at ``stride``."""
    grid_w, grid_h = width // stride, height // stride
    centres = grid_centres(grid_w, grid_h, stride)
    warped = warp_points(homography, centres)
    cell = np.rint(warped / stride)
    finite = np.all(np.isfinite(cell), axis=1)
    cell = np.where(finite[:, None], cell, -1)
    in_grid = finite & (cell[:, 0] >= 0) & (cell[:, 0] < grid_w) & (cell[:, 1] >= 0) & (
        cell[:, 1] < grid_h)
    match_j = np.where(in_grid, cell[:, 1] * grid_w + cell[:, 0], -1).astype(np.int64)
    back = warp_points(np.linalg.inv(homography), centres)
    back_cell = np.rint(back / stride)
    back_ok = np.all(np.isfinite(back_cell), axis=1)
    back_index = np.where(back_ok, back_cell[:, 1] * grid_w + back_cell[:, 0], -2)
    back_index = np.where(back_ok & (back_cell[:, 0] >= 0) & (back_cell[:, 0] < grid_w)
                          & (back_cell[:, 1] >= 0) & (back_cell[:, 1] < grid_h), back_index, -2)
    return _mutual_truth(match_j, back_index, warped, ~inside(warped, width, height),
                         ~inside(back, width, height))


def _mutual_truth(match_j: np.ndarray, back_index: np.ndarray, target_xy: np.ndarray,
                  unseen0: np.ndarray, unseen1: np.ndarray) -> CoarseTruth:
    """Keep the matches that are mutual: image-0 cell i -> image-1 cell ``match_j[i]`` [L]
    (-1: none) counts only where that cell maps back to i (``back_index`` [S]); ``target_xy``
    [L,2] is kept (as float32) where the match is kept, NaN elsewhere. ``unseen0`` [L] and
    ``unseen1`` [S] are kept for the cells left without a match (a point just outside the other
    image can still round to a border cell and match it)."""
    own_index = np.arange(len(match_j))
    mutual = np.zeros(len(match_j), dtype=bool)
    valid = match_j >= 0
    mutual[valid] = back_index[match_j[valid]] == own_index[valid]
    match_j = np.where(mutual, match_j, -1)
    target = np.where(mutual[:, None], target_xy, np.nan).astype(np.float32)
    matched1 = np.zeros(len(unseen1), dtype=bool)
    matched1[match_j[mutual]] = True
    return CoarseTruth(match_j=match_j, target_xy=target,
                       unseen0=np.asarray(unseen0, bool) & ~mutual,
                       unseen1=np.asarray(unseen1, bool) & ~matched1)


def _cell_index(positions: np.ndarray, grid_w: int, grid_h: int, stride: int,
                missing: int) -> np.ndarray:
    """Row-major index of the cell each position [L,2] rounds to, ``missing`` if none."""
    with np.errstate(invalid="ignore"):
        cell = np.rint(positions.astype(np.float64) / stride)
        ok = (np.all(np.isfinite(cell), axis=1) & (cell[:, 0] >= 0) & (cell[:, 0] < grid_w)
              & (cell[:, 1] >= 0) & (cell[:, 1] < grid_h))
    cell = np.where(ok[:, None], cell, 0).astype(np.int64)
    return np.where(ok, cell[:, 1] * grid_w + cell[:, 0], missing)


def field_truth(pair: CorrespondencePair, stride: int) -> CoarseTruth:
    """Mutual nearest-cell ground truth from a pair's correspondence fields.

    A cell centre counts only where the field is finite and the point is not hidden in the other
    view: ``valid`` is required where the point lands inside the other image; a point that lands
    just outside still rounds to a border cell, exactly as :func:`coarse_truth` does. A cell
    without a match is unseen where ``valid`` is False at its centre (outside the other image,
    hidden, or no surface).
    """
    width, height = pair.size
    grid_w, grid_h = width // stride, height // stride
    centres = grid_centres(grid_w, grid_h, stride).astype(np.int64)
    cols, rows = centres[:, 0], centres[:, 1]
    forward = pair.field0to1[rows, cols]
    seen0 = pair.valid0[rows, cols] | ~inside(forward, width, height)
    match_j = np.where(seen0, _cell_index(forward, grid_w, grid_h, stride, -1), -1)
    backward = pair.field1to0[rows, cols]
    seen1 = pair.valid1[rows, cols] | ~inside(backward, width, height)
    back_index = np.where(seen1, _cell_index(backward, grid_w, grid_h, stride, -2), -2)
    return _mutual_truth(match_j, back_index, forward, ~pair.valid0[rows, cols],
                         ~pair.valid1[rows, cols])
