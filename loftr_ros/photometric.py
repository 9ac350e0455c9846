"""Photometric sub-pixel refinement of matches, in numpy and OpenCV (no network involved).

No BLAS call on purpose (sums of products and closed forms, no ``@``/``linalg``): OpenBLAS worker
threads spin after a call and slowed the next inference of the same process from about 50 to
about 85 ms on 2 cores.

The learned fine stage places most matches within a few pixels of the truth but few within one
(it works on stride-4 features). This step takes each match the rest of the way with the images
themselves:

1. **Local affine.** The matches around a match (its ``neighbours`` nearest in image 0) give a
   least-squares affine map of the neighbourhood, reweighted (Cauchy) and then gated on the
   residual so that wrong neighbours drop out. It carries an image-0 patch into image 1
   (rotation, zoom, shear).
2. **Gauss-Newton, coarse to fine.** Inverse-compositional Lucas-Kanade on the translation, on
   zero-mean, unit-variance patches under a Gaussian window (insensitive to brightness, contrast
   and mild gamma changes): first on both images at half resolution (which widens the reach to
   a few pixels), then at full resolution.

A match keeps its input position unless the step is trustworthy: the image-0 patch has contrast
and a well-conditioned Gauss-Newton matrix (``min_conditioning``), the final
zero-normalised cross-correlation (NCC) is above ``min_ncc`` and above the input position's, and
the match moved at most ``max_shift`` image-0 pixels. Shifts are computed in the image-0
frame and mapped into image 1 by the local affine.

All coordinates are (x, y) pixels of the two single-channel images given: float arrays with values
in [0, 1] (the model inputs), or uint8 / uint16 arrays (scaled to [0, 1]).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import cv2
import numpy as np

#: rows of the pairwise-distance matrix computed at once when finding neighbours
_NEIGHBOUR_CHUNK = 512
#: one grey level of an 8-bit image, in [0, 1] units
_GREY_LEVEL = 1.0 / 255.0
#: least-squares fits of a local affine: one unweighted, three Cauchy-reweighted, one on the
#: neighbours within the gate (whose final count decides whether the affine is usable)
_AFFINE_ROUNDS = 5


@dataclass(frozen=True)
class PhotometricSettings:
    """Parameters of :func:`refine_photometric`.

    Attributes:
        patch_radius: the patch is (2r+1)^2 pixels, at each of the two resolutions.
        iterations: Gauss-Newton iterations at each resolution.
        neighbours: matches (itself included) that fit each local affine.
        affine_gate: pixels; neighbours farther than this from the fit are left out.
        max_shift: the farthest a match may move (image-0 pixels).
        min_ncc: final windowed NCC a refined match needs.
        min_contrast: standard deviation (image units of [0, 1]) the image-0 patch needs.
        min_conditioning: smallest / largest eigenvalue of the Gauss-Newton matrix the image-0
            patch needs (a patch whose only texture is an edge can slide along it). Off by
            default: on the validation pairs 0.05 refined a third fewer matches and left fewer
            within 0.5 px (26% instead of 29%); the NCC tests already catch bad slides.
    """

    patch_radius: int = 7
    iterations: int = 3
    neighbours: int = 20
    affine_gate: float = 4.0
    max_shift: float = 6.0
    min_ncc: float = 0.3
    min_contrast: float = 2.0 / 255.0
    min_conditioning: float = 0.0

    def __post_init__(self) -> None:
        if self.patch_radius < 1 or self.iterations < 0 or self.max_shift < 0:
            raise ValueError("patch_radius must be >= 1, iterations and max_shift >= 0")
        if self.neighbours < 4:
            raise ValueError("a local affine needs at least 4 neighbours (3 to fit, 1 to check)")


def _apply(matrices: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """``matrices`` [N,2,2] applied to ``vectors`` [N,2] or [N,M,2] (broadcast over M)."""
    m = matrices if vectors.ndim == 2 else matrices[:, None]
    x, y = vectors[..., 0], vectors[..., 1]
    return np.stack([m[..., 0, 0] * x + m[..., 0, 1] * y, m[..., 1, 0] * x + m[..., 1, 1] * y],
                    axis=-1)


def _fit_affines(dx: np.ndarray, dy: np.ndarray, tx: np.ndarray, ty: np.ndarray,
                 weights: np.ndarray) -> np.ndarray:
    """Weighted least squares of ``t ~ A d + c`` per row of the [N,K] arrays; returns [N,2,3]
    (rows: x', y'; columns: dx, dy, 1), solved in closed form (3x3 normal equations)."""
    columns = (dx, dy, np.ones_like(dx))
    normal = np.empty(dx.shape[:1] + (3, 3))
    for i in range(3):
        for j in range(i, 3):
            normal[:, i, j] = normal[:, j, i] = (weights * columns[i] * columns[j]).sum(1)
    normal += 1e-6 * np.eye(3)
    right = np.stack([np.stack([(weights * column * target).sum(1) for column in columns], 1)
                      for target in (tx, ty)], 1)                             # [N,2,3]
    cofactor = np.stack([np.cross(normal[:, 1], normal[:, 2]),
                         np.cross(normal[:, 2], normal[:, 0]),
                         np.cross(normal[:, 0], normal[:, 1])], axis=1)      # symmetric matrix
    determinant = (cofactor[:, 0] * normal[:, 0]).sum(1)
    safe = np.where(np.abs(determinant) > 1e-12, determinant, 1e-12)
    # solution = normal^-1 @ right^T, transposed back: [N,2,3]
    return (right[:, :, None, :] * cofactor[:, None, :, :]).sum(3) / safe[:, None, None]


def local_affines(keypoints0: np.ndarray, keypoints1: np.ndarray, neighbours: int,
                  gate: float) -> Tuple[np.ndarray, np.ndarray]:
    """Per match, the linear part of the affine map image 0 -> image 1 fitted on its neighbours.

    Returns (float64 [N,2,2] with ``d1 = A @ d0``, bool [N] usable: enough neighbours within the
    gate and a determinant between 1/16 and 16).
    """
    count = len(keypoints0)
    if count < 3:
        return np.tile(np.eye(2), (count, 1, 1)), np.zeros(count, dtype=bool)
    k = min(neighbours, count)
    points0 = keypoints0.astype(np.float64)
    points1 = keypoints1.astype(np.float64)
    nearest = np.empty((count, k), dtype=np.int64)
    for start in range(0, count, _NEIGHBOUR_CHUNK):
        rows = points0[start:start + _NEIGHBOUR_CHUNK]
        distances = ((rows[:, None, 0] - points0[None, :, 0]) ** 2
                     + (rows[:, None, 1] - points0[None, :, 1]) ** 2)
        nearest[start:start + len(rows)] = (np.argpartition(distances, k - 1, axis=1)[:, :k]
                                            if k < count else np.arange(count))
    # neighbour offsets from the match itself in image 0 (d) and from its partner in image 1 (t)
    dx, dy = (points0[nearest] - points0[:, None, :]).transpose(2, 0, 1)
    tx, ty = (points1[nearest] - points1[:, None, :]).transpose(2, 0, 1)
    weights = np.ones((count, k))
    for round_index in range(_AFFINE_ROUNDS):
        solution = _fit_affines(dx, dy, tx, ty, weights)                      # [N,2,3]
        residual = np.hypot(solution[:, 0, :1] * dx + solution[:, 0, 1:2] * dy
                            + solution[:, 0, 2:] - tx,
                            solution[:, 1, :1] * dx + solution[:, 1, 1:2] * dy
                            + solution[:, 1, 2:] - ty)
        if round_index < _AFFINE_ROUNDS - 2:   # Cauchy reweighting, then hard gates
            weights = 1.0 / (1.0 + (2.0 * residual / gate) ** 2)
        else:
            weights = (residual < gate).astype(np.float64)
    linear = solution[:, :, :2]
    determinant = linear[:, 0, 0] * linear[:, 1, 1] - linear[:, 0, 1] * linear[:, 1, 0]
    usable = ((weights.sum(1) >= 4) & (determinant > 1 / 16) & (determinant < 16)
              & np.isfinite(linear).all(axis=(1, 2)))
    return linear, usable


def _sample(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``image`` at float points [N, ..., 2] -> float32 [N, ...]."""
    shape = points.shape[:-1]
    # one two-channel map, rows = matches (remap's size limit is per dimension)
    grid = np.ascontiguousarray(points.reshape(shape[0], -1, 2), dtype=np.float32)
    values = cv2.remap(image, grid, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return values.reshape(shape)


def _unit_gray(image: np.ndarray, name: str) -> np.ndarray:
    """A single-channel image as contiguous float32 in [0, 1] (uint8 / uint16 are scaled; float
    images are taken as already in [0, 1])."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"{name}: photometric refinement needs a single-channel [H,W] image, "
                         f"got shape {image.shape}")
    scale = {np.dtype(np.uint8): 1.0 / 255.0, np.dtype(np.uint16): 1.0 / 65535.0}.get(
        image.dtype, 1.0)
    return np.ascontiguousarray(image, dtype=np.float32) * np.float32(scale)


def _weighted_moments(patches: np.ndarray, window: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Window-weighted mean and standard deviation of patches [N,Q] (``window`` sums to 1)."""
    mean = (patches * window).sum(1)
    variance = (patches * patches * window).sum(1) - mean * mean
    return mean, np.sqrt(np.maximum(variance, 0.0))


def _patch_grid(radius: int) -> np.ndarray:
    """float32 [2r+1, 2r+1, 2] of (x, y) offsets."""
    steps = np.arange(-radius, radius + 1, dtype=np.float32)
    return np.stack(np.meshgrid(steps, steps), axis=-1)


class _Alignment:
    """Image-0 templates around ``points0`` and their image-1 partners under local affines, with
    everything inverse-compositional Gauss-Newton needs precomputed (the Jacobian is the
    template's own gradient). Shifts are [n,2] in image-0 pixels."""

    def __init__(self, image0: np.ndarray, image1: np.ndarray, points0: np.ndarray,
                 points1: np.ndarray, linear: np.ndarray, radius: int) -> None:
        count = len(points0)
        extended = _sample(image0, points0.astype(np.float32)[:, None, None, :]
                           + _patch_grid(radius + 1))
        flat = extended[:, 1:-1, 1:-1].reshape(count, -1)                     # the template
        gradient_x = 0.5 * (extended[:, 1:-1, 2:] - extended[:, 1:-1, :-2])
        gradient_y = 0.5 * (extended[:, 2:, 1:-1] - extended[:, :-2, 1:-1])
        offsets = _patch_grid(radius).reshape(-1, 2)
        window = np.exp(-(offsets ** 2).sum(-1) / (2.0 * (radius / 1.5) ** 2))
        self.window = (window / window.sum()).astype(np.float32)
        mean0, self.contrast = _weighted_moments(flat, self.window)
        normalised0 = (flat - mean0[:, None]) / (self.contrast[:, None] + 1e-6)
        scale = 1.0 / (self.contrast[:, None] + 1e-6)
        jacobian_x = gradient_x.reshape(count, -1) * scale                    # [n,Q]
        jacobian_y = gradient_y.reshape(count, -1) * scale
        self.weighted_x, self.weighted_y = jacobian_x * self.window, jacobian_y * self.window
        hxx = (self.weighted_x * jacobian_x).sum(1)
        hxy = (self.weighted_x * jacobian_y).sum(1)
        hyy = (self.weighted_y * jacobian_y).sum(1)
        self.determinant = hxx * hyy - hxy ** 2
        half_trace = 0.5 * (hxx + hyy)
        spread = np.sqrt(np.maximum(half_trace ** 2 - self.determinant, 0.0))
        self.conditioning = (half_trace - spread) / np.maximum(half_trace + spread, 1e-12)
        inverse = np.stack([np.stack([hyy, -hxy], 1), np.stack([-hxy, hxx], 1)], 1)
        self.inverse = inverse / np.where(self.determinant > 1e-6, self.determinant,
                                          1.0)[:, None, None]
        self.jacobian_sum = np.stack([self.weighted_x.sum(1), self.weighted_y.sum(1)], 1)
        self.jacobian_template = np.stack([(self.weighted_x * normalised0).sum(1),
                                           (self.weighted_y * normalised0).sum(1)], 1)
        self.weighted_template = normalised0 * self.window
        self.image1, self.points1, self.linear = image1, points1, linear
        self.mapped_offsets = _apply(linear.astype(np.float32), offsets[None])   # [n,Q,2]

    def textured(self, min_contrast: float, min_conditioning: float) -> np.ndarray:
        """bool [n]: templates with contrast and a well-conditioned Gauss-Newton matrix."""
        return ((self.contrast >= min_contrast) & (self.determinant > 1e-6)
                & (self.conditioning >= min_conditioning))

    def _patches(self, shift: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        centres = (self.points1 + _apply(self.linear, shift)).astype(np.float32)
        samples = _sample(self.image1, centres[:, None, :] + self.mapped_offsets)
        return (samples,) + _weighted_moments(samples, self.window)

    def ncc(self, shift: np.ndarray) -> np.ndarray:
        """Windowed NCC [n] of the templates and the image-1 patches moved by ``shift``. The
        image-1 spread is floored at one grey level, so a flat image-1 patch scores about 0
        instead of its amplified rounding noise."""
        samples, _, spread = self._patches(shift)
        return (samples * self.weighted_template).sum(1) / np.maximum(spread, _GREY_LEVEL)

    def gauss_newton(self, shift: np.ndarray, iterations: int) -> np.ndarray:
        """``iterations`` Gauss-Newton steps on the translation from ``shift``."""
        for _ in range(iterations):
            samples, mean, spread = self._patches(shift)
            # sum over the window of Jacobian * (normalised patch - normalised template)
            products = np.stack([(self.weighted_x * samples).sum(1),
                                 (self.weighted_y * samples).sum(1)], 1)
            gradient = ((products - mean[:, None] * self.jacobian_sum) / (spread[:, None] + 1e-6)
                        - self.jacobian_template)
            shift = shift - _apply(self.inverse, gradient)
        return shift


def refine_photometric(image0: np.ndarray, image1: np.ndarray, keypoints0: np.ndarray,
                       keypoints1: np.ndarray, settings: PhotometricSettings = PhotometricSettings()
                       ) -> Tuple[np.ndarray, np.ndarray]:
    """Refine ``keypoints1`` [N,2] so that image-1 patches agree with the image-0 patches at
    ``keypoints0`` (see the module docstring).

    Returns (float32 [N,2] refined keypoints1, bool [N] which matches moved).
    """
    image0, image1 = _unit_gray(image0, "image0"), _unit_gray(image1, "image1")
    keypoints0 = np.asarray(keypoints0, dtype=np.float64).reshape(-1, 2)
    keypoints1 = np.asarray(keypoints1, dtype=np.float64).reshape(-1, 2)
    if len(keypoints0) != len(keypoints1):
        raise ValueError(f"{len(keypoints0)} keypoints0 but {len(keypoints1)} keypoints1")
    refined = keypoints1.astype(np.float32)
    moved = np.zeros(len(keypoints0), dtype=bool)
    finite = np.flatnonzero(np.isfinite(keypoints0).all(1) & np.isfinite(keypoints1).all(1))
    if len(finite) < 4:   # a local affine needs 4 matches
        return refined, moved
    linear = np.tile(np.eye(2), (len(keypoints0), 1, 1))
    usable = np.zeros(len(keypoints0), dtype=bool)
    linear[finite], usable[finite] = local_affines(keypoints0[finite], keypoints1[finite],
                                                   settings.neighbours, settings.affine_gate)
    keypoints0 = np.where(usable[:, None], keypoints0, 0.0)   # no NaN into the checks below
    keypoints1 = np.where(usable[:, None], keypoints1, 0.0)
    radius = settings.patch_radius
    # the half-resolution template reaches 2(r+2) pixels (with pyrDown's border); image-1 patches
    # may travel max_shift further
    reach = 2 * (radius + 2)
    height0, width0 = image0.shape
    height1, width1 = image1.shape
    usable &= ((keypoints0 >= reach).all(1) & (keypoints0[:, 0] < width0 - reach)
               & (keypoints0[:, 1] < height0 - reach))
    corners = np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]], dtype=np.float64)
    corners1 = keypoints1[:, None, :] + _apply(linear, corners[None] * (reach + settings.max_shift))
    usable &= ((corners1 >= 0).all(axis=(1, 2)) & (corners1[..., 0] <= width1 - 1).all(1)
               & (corners1[..., 1] <= height1 - 1).all(1))
    index = np.flatnonzero(usable)
    if len(index) == 0:
        return refined, moved
    points0, points1, linear = keypoints0[index], keypoints1[index], linear[index]

    coarse = _Alignment(cv2.pyrDown(image0), cv2.pyrDown(image1), points0 / 2, points1 / 2,
                        linear, radius)
    shift = 2.0 * coarse.gauss_newton(np.zeros((len(index), 2)), settings.iterations)
    fine = _Alignment(image0, image1, points0, points1, linear, radius)
    shift = fine.gauss_newton(shift, settings.iterations)
    ncc_start = fine.ncc(np.zeros((len(index), 2)))
    ncc_final = fine.ncc(shift)
    textured = (fine.textured(settings.min_contrast, settings.min_conditioning)
                & coarse.textured(settings.min_contrast, settings.min_conditioning))
    accept = (textured & np.isfinite(shift).all(1) & (ncc_final >= settings.min_ncc)
              & (ncc_final >= ncc_start)
              & (np.linalg.norm(shift, axis=1) <= settings.max_shift))
    delta = _apply(linear, shift)
    refined[index[accept]] = (points1[accept] + delta[accept]).astype(np.float32)
    moved[index[accept]] = True
    return refined, moved
