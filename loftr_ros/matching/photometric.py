"""Photometric sub-pixel refinement of matches, in numpy and OpenCV (no network involved).

No multi-threaded BLAS call on purpose: OpenBLAS worker threads spin after a call and slowed the
next inference of the same process from about 50 to about 85 ms on 2 cores. So no ``linalg``
solvers (closed forms instead) and no large products: the only BLAS calls are stacks of small
matrix-vector products (``np.matmul`` of [n,k,m] by [n,m,1], each under a few thousand
multiply-adds, which OpenBLAS runs on the calling thread), quicker than ``einsum`` here. For
speed, per-match arrays keep their long axis last (x and y apart, never a trailing axis of 2,
which makes numpy loop over pairs), the window sums of an iteration come from one such product,
the neighbours come from a k-d tree, and large sets of matches are shared out among a few
threads (numpy and OpenCV release the GIL).
For 640 matches of a 640x480 pair: about 13 ms of CPU time where image 0 brings its templates
(:class:`TemplateBank`), 16 ms where it does not (median process time of 120 calls, 2 threads, on
2 cores shared with other work).

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
in [0, 1] (the model inputs), or uint8 / uint16 arrays (scaled to [0, 1]), or
:class:`PhotometricImage` (what the step needs of one image, made once by
:func:`photometric_image` for an image that is matched many times, such as a reference).
"""
from __future__ import annotations

import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, Optional, Tuple, Union

import cv2
import numpy as np

#: FLANN's exact single k-d tree (cvflann::FLANN_INDEX_KDTREE_SINGLE) and its leaf size
_FLANN_KDTREE_SINGLE = 4
_FLANN_LEAF_SIZE = 10
#: one grey level of an 8-bit image, in [0, 1] units
_GREY_LEVEL = 1.0 / 255.0
#: least-squares fits of a local affine: one unweighted, three Cauchy-reweighted, one on the
#: neighbours within the gate (whose final count decides whether the affine is usable)
_AFFINE_ROUNDS = 5
#: each thread takes at least this many matches. In Matcher.match calls on 2 cores (where
#: onnxruntime's threads still spin after the inference) two threads were slower than one below
#: about 600 matches: numpy's per-call overhead holds the GIL
_MIN_ROWS_PER_WORKER = 300

#: rows of the normal-equation sums (1, dx, dy, dx^2, dx dy, dy^2) whose products a b - c d are
#: the adjugate entries 00, 01, 02, 11, 12, 22
_ADJUGATE_FACTORS = np.array([[5, 1, 4, 3, 4, 3], [0, 2, 2, 0, 1, 5],
                              [2, 4, 5, 1, 3, 4], [2, 0, 1, 1, 2, 4]])
#: the symmetric adjugate's rows (dx, dy, 1) as indices of those six entries
_ADJUGATE_COLUMNS = np.array([[0, 1, 2], [1, 3, 4], [2, 4, 5]])
#: sums of t dx, t dy and t (rows x', y') in the products of ``_affine_products``
_RIGHT_HAND_SIDES = np.array([[7, 10], [8, 11], [6, 9]])

_POOLS: Dict[int, ThreadPoolExecutor] = {}
_POOL_LOCK = threading.Lock()


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
        workers: threads that share out the matches (numpy and OpenCV release the GIL for
            most of the work), each taking at least 300; on 2 cores, 2 threads cut the time
            for 800 matches by about a fifth.
    """

    patch_radius: int = 7
    iterations: int = 3
    neighbours: int = 20
    affine_gate: float = 4.0
    max_shift: float = 6.0
    min_ncc: float = 0.3
    min_contrast: float = 2.0 / 255.0
    min_conditioning: float = 0.0
    workers: int = 2

    def __post_init__(self) -> None:
        if self.patch_radius < 1 or self.iterations < 0 or self.max_shift < 0:
            raise ValueError("patch_radius must be >= 1, iterations and max_shift >= 0")
        if self.workers < 1:
            raise ValueError("workers must be >= 1")
        if self.neighbours < 4:
            raise ValueError("a local affine needs at least 4 neighbours (3 to fit, 1 to check)")


def _affine_products(dx: np.ndarray, dy: np.ndarray, tx: np.ndarray, ty: np.ndarray
                     ) -> np.ndarray:
    """[N,12,K] products whose weighted sums over K make the normal equations of ``t ~ A d + c``:
    1, dx, dy, dx^2, dx dy, dy^2, tx, tx dx, tx dy, ty, ty dx, ty dy."""
    return np.stack([np.ones_like(dx), dx, dy, dx * dx, dx * dy, dy * dy,
                     tx, tx * dx, tx * dy, ty, ty * dx, ty * dy], axis=1)


def _fit_affines(products: np.ndarray, weights: np.ndarray
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted least squares of ``t ~ A d + c`` per row, from :func:`_affine_products` [N,12,K]
    and ``weights`` [N,K]; returns the coefficients of dx, of dy and of 1, each [2,N] (rows: x',
    y'), solved in closed form: the adjugate of the 3x3 normal matrix over (dx, dy, 1), with a
    tiny ridge."""
    sums = np.matmul(products, weights[:, :, None])[:, :, 0].T                 # [12,N]
    normal = sums[:6].copy()                       # 1, dx, dy, dx^2, dx dy, dy^2
    normal[[0, 3, 5]] += 1e-6
    one, sx, sy, sxx, sxy, syy = normal
    # adjugate (symmetric) of [[sxx, sxy, sx], [sxy, syy, sy], [sx, sy, one]]: its entries 00,
    # 01, 02, 11, 12, 22 as a b - c d, all six at once
    a, b, c, d = normal[_ADJUGATE_FACTORS]
    adjugate = a * b - c * d                                                    # [6,N]
    determinant = sxx * adjugate[0] + sxy * adjugate[1] + sx * adjugate[2]
    inverse_determinant = 1.0 / np.where(np.abs(determinant) > 1e-12, determinant, 1e-12)
    # the three columns (dx, dy, 1) of the inverse times the right-hand sides (sums of t dx,
    # t dy and t) of both rows (x', y')
    inverse = adjugate[_ADJUGATE_COLUMNS][:, :, None]                          # [3,3,1,N]
    right = sums[_RIGHT_HAND_SIDES]                                            # [3,2,N]
    along_x, along_y, constant = ((inverse[:, 0] * right[0] + inverse[:, 1] * right[1]
                                   + inverse[:, 2] * right[2]) * inverse_determinant)
    return along_x, along_y, constant


def nearest_neighbours(points: np.ndarray, count: int, rows: slice = slice(None)) -> np.ndarray:
    """Indices [R,count] of the ``count`` points nearest to each of ``points[rows]`` (itself
    included; ``points`` [N,2], ``count`` <= N), in no particular order (ties: any of them).

    An exact k-d tree search (OpenCV's FLANN single k-d tree): about 0.3 ms for 400 points, where
    the pairwise-distance matrix and ``argpartition`` took about 1.6 ms.
    """
    points = np.ascontiguousarray(points, dtype=np.float32)
    queries = np.ascontiguousarray(points[rows])
    if count >= len(points):
        return np.tile(np.arange(len(points)), (len(queries), 1))
    if len(queries) == 0:
        return np.zeros((0, count), dtype=np.int64)
    tree = cv2.flann_Index(points, {"algorithm": _FLANN_KDTREE_SINGLE,
                                    "leaf_max_size": _FLANN_LEAF_SIZE})
    nearest, _ = tree.knnSearch(queries, count, params={})
    return nearest.astype(np.int64)


def _local_affines(keypoints0: np.ndarray, keypoints1: np.ndarray, neighbours: int,
                   gate: float, rows: slice) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`local_affines` as float64 [4,R] (the entries 00, 01, 10, 11 of each ``A``) and
    bool [R] usable."""
    points0 = np.asarray(keypoints0, dtype=np.float64)
    points1 = np.asarray(keypoints1, dtype=np.float64)
    centre = np.arange(len(points0))[rows]
    selected = len(centre)
    if len(points0) < 3:
        identity = np.zeros((4, selected))
        identity[[0, 3]] = 1.0
        return identity, np.zeros(selected, dtype=bool)
    nearest = nearest_neighbours(points0, min(neighbours, len(points0)), rows)   # [R,K]
    # neighbour offsets from the match itself in image 0 (d) and from its partner in image 1 (t),
    # x and y apart (contiguous)
    x0, y0 = points0.T.copy()
    x1, y1 = points1.T.copy()
    dx = x0[nearest] - x0[centre][:, None]
    dy = y0[nearest] - y0[centre][:, None]
    targets = np.stack([x1[nearest] - x1[centre][:, None],
                        y1[nearest] - y1[centre][:, None]])                  # [2,R,K]
    products = _affine_products(dx, dy, targets[0], targets[1])
    weights = np.ones(nearest.shape)
    for round_index in range(_AFFINE_ROUNDS):
        along_x, along_y, constant = _fit_affines(products, weights)         # [2,R] each
        errors = along_x[:, :, None] * dx
        errors += along_y[:, :, None] * dy
        errors += constant[:, :, None]
        errors -= targets
        np.square(errors, out=errors)
        residual = np.sqrt(errors[0] + errors[1])   # np.hypot takes 9 times longer
        if round_index < _AFFINE_ROUNDS - 2:   # Cauchy reweighting, then hard gates
            weights = 1.0 / (1.0 + (2.0 * residual / gate) ** 2)
        else:
            weights = (residual < gate).astype(np.float64)
    linear = np.stack([along_x[0], along_y[0], along_x[1], along_y[1]])       # [4,R]
    determinant = linear[0] * linear[3] - linear[1] * linear[2]
    usable = ((weights.sum(1) >= 4) & (determinant > 1 / 16) & (determinant < 16)
              & np.isfinite(linear).all(axis=0))
    return linear, usable


def local_affines(keypoints0: np.ndarray, keypoints1: np.ndarray, neighbours: int,
                  gate: float, rows: slice = slice(None)) -> Tuple[np.ndarray, np.ndarray]:
    """Per match (of ``rows``, default all), the linear part of the affine map image 0 -> image 1
    fitted on its neighbours.

    Returns (float64 [R,2,2] with ``d1 = A @ d0``, bool [R] usable: enough neighbours within the
    gate and a determinant between 1/16 and 16).
    """
    linear, usable = _local_affines(keypoints0, keypoints1, neighbours, gate, rows)
    return linear.T.reshape(-1, 2, 2).copy(), usable


def _remap(image: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``image`` at float32 ``map_x``, ``map_y`` (any 2-D shape; rows =
    matches, as remap's size limit is per dimension)."""
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _patches(image: np.ndarray, points: np.ndarray, radius: int) -> np.ndarray:
    """float32 [N,2r+1,2r+1] bilinear patches of ``image`` centred on ``points`` [N,2]. Where
    every point is a whole pixel with its patch inside the image (the matcher's coarse grid),
    the patches are the pixels themselves, which bilinear sampling at whole pixels gives
    exactly, so they are copied instead of sampled."""
    side = 2 * radius + 1
    height, width = image.shape
    corner = points - radius
    if (len(points) and np.array_equal(corner, np.floor(corner)) and corner.min() >= 0
            and (corner[:, 0] <= width - side).all() and (corner[:, 1] <= height - side).all()):
        windows = np.lib.stride_tricks.sliding_window_view(image, (side, side))
        return windows[corner[:, 1].astype(np.intp), corner[:, 0].astype(np.intp)]
    offset_x, offset_y = _patch_offsets(radius)
    centres = points.astype(np.float32)
    return _remap(image, centres[:, :1] + offset_x, centres[:, 1:] + offset_y).reshape(
        -1, side, side)


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


@dataclass(frozen=True)
class PhotometricImage:
    """What the refinement needs of one image, independent of the other image: the image as
    float32 [H,W] in [0, 1] and its half-resolution level (``cv2.pyrDown``), both read-only, and
    optionally its templates at fixed points (:class:`TemplateBank`), used where it is image 0."""

    full: np.ndarray
    half: np.ndarray
    templates: Optional["TemplateBank"] = None


def photometric_image(image: Union[np.ndarray, PhotometricImage], name: str = "image",
                      template_points: Optional[np.ndarray] = None,
                      radius: int = PhotometricSettings.patch_radius) -> PhotometricImage:
    """The :class:`PhotometricImage` of a single-channel image (see the module doc for types);
    with ``template_points`` [M,2] (pixels, e.g. the model's coarse grid, where image-0 matches
    sit) also its templates there, so matching it as image 0 skips making them."""
    if isinstance(image, PhotometricImage):
        return image
    full = _unit_gray(image, name)
    half = cv2.pyrDown(full)
    full.setflags(write=False)
    half.setflags(write=False)
    bank = None
    if template_points is not None:
        bank = TemplateBank.of(full, half, np.asarray(template_points, np.float64), radius)
    return PhotometricImage(full=full, half=half, templates=bank)


@functools.lru_cache(maxsize=None)
def _patch_offsets(radius: int) -> Tuple[np.ndarray, np.ndarray]:
    """float32 [(2r+1)^2] x and y offsets of a patch, row-major (read-only, made once)."""
    steps = np.arange(-radius, radius + 1, dtype=np.float32)
    offset_x, offset_y = (np.ascontiguousarray(grid.ravel()) for grid in np.meshgrid(steps, steps))
    offset_x.setflags(write=False)
    offset_y.setflags(write=False)
    return offset_x, offset_y


@functools.lru_cache(maxsize=None)
def _gaussian_window(radius: int) -> np.ndarray:
    """float32 [(2r+1)^2] Gaussian weights (sigma r/1.5) that sum to 1, row-major (read-only)."""
    offsets = np.stack(_patch_offsets(radius), axis=-1)
    window = np.exp(-(offsets ** 2).sum(-1) / (2.0 * (radius / 1.5) ** 2))
    window = (window / window.sum()).astype(np.float32)
    window.setflags(write=False)
    return window


class _Templates:
    """Image-0 templates around ``points0`` with everything inverse-compositional Gauss-Newton
    needs of them (the Jacobian is the template's own gradient); image 0 alone decides them.

    The rows of ``self.weights`` [n,4,Q] are the window, the window-weighted normalised Jacobian
    (x, y) and the window-weighted normalised template; ``self.inverse`` [4,n] holds the entries
    00, 01, 10, 11 of the inverse Gauss-Newton matrix, ``self.jacobian_sum`` and
    ``self.jacobian_template`` [2,n] their x and y rows.
    """

    def __init__(self, image0: np.ndarray, points0: np.ndarray, radius: int) -> None:
        count = len(points0)
        self.radius = radius
        extended = _patches(image0, points0, radius + 1)                       # [n,Q+,Q+]
        template = extended[:, 1:-1, 1:-1].reshape(count, -1)
        self.window = window = _gaussian_window(radius)
        mean0 = np.einsum("nq,q->n", template, window)
        variance0 = np.einsum("nq,nq,q->n", template, template, window) - mean0 * mean0
        self.contrast = np.sqrt(np.maximum(variance0, 0.0))
        scale = 1.0 / (self.contrast + 1e-6)
        self.weights = weights = np.empty((count, 4, template.shape[1]), dtype=np.float32)
        weights[:, 0] = window
        normalised0 = (template - mean0[:, None]) * scale[:, None]
        jacobian_x = (0.5 * (extended[:, 1:-1, 2:] - extended[:, 1:-1, :-2])).reshape(
            count, -1) * scale[:, None]
        jacobian_y = (0.5 * (extended[:, 2:, 1:-1] - extended[:, :-2, 1:-1])).reshape(
            count, -1) * scale[:, None]
        np.multiply(jacobian_x, window, out=weights[:, 1])
        np.multiply(jacobian_y, window, out=weights[:, 2])
        np.multiply(normalised0, window, out=weights[:, 3])
        hxx = np.einsum("nq,nq->n", weights[:, 1], jacobian_x)
        hxy = np.einsum("nq,nq->n", weights[:, 1], jacobian_y)
        hyy = np.einsum("nq,nq->n", weights[:, 2], jacobian_y)
        self.determinant = hxx * hyy - hxy ** 2
        half_trace = 0.5 * (hxx + hyy)
        spread = np.sqrt(np.maximum(half_trace ** 2 - self.determinant, 0.0))
        self.conditioning = (half_trace - spread) / np.maximum(half_trace + spread, 1e-12)
        self.inverse = np.stack([hyy, -hxy, -hxy, hxx]) / np.where(self.determinant > 1e-6,
                                                                   self.determinant, 1.0)
        self.jacobian_sum = weights[:, 1:3].sum(2).T.copy()                     # [2,n]
        self.jacobian_template = np.einsum("nkq,nq->nk", weights[:, 1:3], normalised0).T.copy()

    def take(self, rows: np.ndarray) -> "_Templates":
        """The templates of ``rows`` (indices)."""
        subset = object.__new__(_Templates)
        subset.radius, subset.window = self.radius, self.window
        for name in ("contrast", "weights", "determinant", "conditioning"):
            setattr(subset, name, getattr(self, name)[rows])
        for name in ("inverse", "jacobian_sum", "jacobian_template"):
            setattr(subset, name, getattr(self, name)[:, rows])
        return subset

    def textured(self, min_contrast: float, min_conditioning: float) -> np.ndarray:
        """bool [n]: templates with contrast and a well-conditioned Gauss-Newton matrix."""
        return ((self.contrast >= min_contrast) & (self.determinant > 1e-6)
                & (self.conditioning >= min_conditioning))


class TemplateBank:
    """An image's templates (both levels) at fixed points, made once: the reference's on the
    model's coarse grid. Its rows are bitwise those :class:`_Templates` makes for any subset."""

    def __init__(self, points: np.ndarray, full: _Templates, half: _Templates) -> None:
        self.radius = full.radius
        self.full, self.half = full, half
        self._points = np.array(points, dtype=np.float64).reshape(-1, 2)
        self._grid = self._regular_grid(self._points)
        self._rows: Optional[Dict[Tuple[float, float], int]] = None

    @staticmethod
    def _regular_grid(points: np.ndarray) -> Optional[Tuple[float, float, float, int, int]]:
        """(x0, y0, step, columns, rows) where ``points`` are a row-major grid (point k at
        ``(x0 + (k % columns) step, y0 + (k // columns) step)``, as the coarse grid), else None."""
        if len(points) < 2 or points[1, 0] <= points[0, 0]:
            return None
        x0, y0 = points[0]
        step = points[1, 0] - x0
        columns = int(np.count_nonzero(points[:, 1] == y0))
        if columns < 2 or len(points) % columns:
            return None
        index = np.arange(len(points))
        if not (np.array_equal(points[:, 0], x0 + (index % columns) * step)
                and np.array_equal(points[:, 1], y0 + (index // columns) * step)):
            return None
        return float(x0), float(y0), float(step), columns, len(points) // columns

    @classmethod
    def of(cls, full: np.ndarray, half: np.ndarray, points: np.ndarray, radius: int
           ) -> "TemplateBank":
        """Templates of the image levels ``full``/``half`` at ``points`` [M,2] (full pixels)."""
        return cls(points, _Templates(full, points, radius), _Templates(half, points / 2, radius))

    def rows(self, points: np.ndarray) -> Optional[np.ndarray]:
        """Row indices [n] of ``points`` [n,2], or None unless the bank holds every one. On a
        grid bank the rows come from grid arithmetic, checked against the bank's points."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if self._grid is not None:
            x0, y0, step, columns, grid_rows = self._grid
            column = np.rint((points[:, 0] - x0) / step)
            row = np.rint((points[:, 1] - y0) / step)
            inside = (column >= 0) & (column < columns) & (row >= 0) & (row < grid_rows)
            if not inside.all():
                return None
            found = (row * columns + column).astype(np.int64)
            return found if np.array_equal(self._points[found], points) else None
        if self._rows is None:
            self._rows = {(float(x), float(y)): row for row, (x, y) in enumerate(self._points)}
        listed = [self._rows.get((float(x), float(y))) for x, y in points]
        if any(row is None for row in listed):
            return None
        return np.asarray(listed, dtype=np.int64)


class _Alignment:
    """Image-0 templates (:class:`_Templates`) and their image-1 partners under local affines
    (``linear`` [4,n], see :func:`_local_affines`). Shifts are x and y [n] in image-0 pixels.
    Every window sum an iteration needs comes from one pass over the image-1 samples (against
    the rows of the templates' ``weights``)."""

    def __init__(self, templates: _Templates, image1: np.ndarray, points1: np.ndarray,
                 linear: np.ndarray, offsets: Tuple[np.ndarray, np.ndarray]) -> None:
        """``offsets``: float32 [n,Q] x and y patch offsets in image 1 (the patch grid under
        ``linear``, from :func:`_warped_offsets`)."""
        self.templates = templates
        self.window, self.weights = templates.window, templates.weights
        self.inverse = templates.inverse
        self.jacobian_sum = templates.jacobian_sum
        self.jacobian_template = templates.jacobian_template
        self.image1, self.linear = image1, linear
        self.points_x, self.points_y = points1.T.copy()
        self.offsets_x, self.offsets_y = offsets

    def textured(self, min_contrast: float, min_conditioning: float) -> np.ndarray:
        """bool [n]: see :meth:`_Templates.textured`."""
        return self.templates.textured(min_contrast, min_conditioning)

    def _sums(self, shift_x: np.ndarray, shift_y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Window sums over the image-1 patches moved by the shift: ([n,4] of samples times
        each row of ``self.weights``, [n] windowed standard deviation of the samples)."""
        a00, a01, a10, a11 = self.linear
        centre_x = (self.points_x + (a00 * shift_x + a01 * shift_y)).astype(np.float32)
        centre_y = (self.points_y + (a10 * shift_x + a11 * shift_y)).astype(np.float32)
        samples = _remap(self.image1, centre_x[:, None] + self.offsets_x,
                         centre_y[:, None] + self.offsets_y)
        sums = np.matmul(self.weights, samples[:, :, None])[:, :, 0]
        second = np.einsum("nq,nq->n", samples * self.window, samples)
        return sums, np.sqrt(np.maximum(second - sums[:, 0] ** 2, 0.0))

    def ncc(self, shift_x: np.ndarray, shift_y: np.ndarray) -> np.ndarray:
        """Windowed NCC [n] of the templates and the image-1 patches moved by the shift. The
        image-1 spread is floored at one grey level, so a flat image-1 patch scores about 0
        instead of its amplified rounding noise."""
        sums, spread = self._sums(shift_x, shift_y)
        return sums[:, 3] / np.maximum(spread, _GREY_LEVEL)

    def gauss_newton(self, shift_x: np.ndarray, shift_y: np.ndarray, iterations: int
                     ) -> Tuple[np.ndarray, np.ndarray]:
        """``iterations`` Gauss-Newton steps on the translation from the shift."""
        b00, b01, b10, b11 = self.inverse
        jacobian_sum_x, jacobian_sum_y = self.jacobian_sum
        jacobian_template_x, jacobian_template_y = self.jacobian_template
        for _ in range(iterations):
            sums, spread = self._sums(shift_x, shift_y)
            # sum over the window of Jacobian * (normalised patch - normalised template)
            denominator = spread + 1e-6
            gradient_x = (sums[:, 1] - sums[:, 0] * jacobian_sum_x) / denominator \
                - jacobian_template_x
            gradient_y = (sums[:, 2] - sums[:, 0] * jacobian_sum_y) / denominator \
                - jacobian_template_y
            shift_x = shift_x - (b00 * gradient_x + b01 * gradient_y)
            shift_y = shift_y - (b10 * gradient_x + b11 * gradient_y)
        return shift_x, shift_y


def _warped_offsets(linear: np.ndarray, radius: int) -> Tuple[np.ndarray, np.ndarray]:
    """float32 [n,Q] x and y offsets of the patch grid mapped by ``linear`` [4,n]."""
    offset_x, offset_y = _patch_offsets(radius)
    a00, a01, a10, a11 = linear.astype(np.float32)[:, :, None]
    return a00 * offset_x + a01 * offset_y, a10 * offset_x + a11 * offset_y


def _worker_pool(workers: int) -> ThreadPoolExecutor:
    """The module's thread pool with ``workers`` threads, made on first use and kept (one per
    thread count, so a caller never meets a pool another one shut down)."""
    with _POOL_LOCK:
        if workers not in _POOLS:
            _POOLS[workers] = ThreadPoolExecutor(max_workers=workers,
                                                 thread_name_prefix="photometric")
        return _POOLS[workers]


def _refine_rows(images: Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                 keypoints0: np.ndarray, keypoints1: np.ndarray, rows: slice,
                 settings: PhotometricSettings, bank: Optional[TemplateBank] = None
                 ) -> Tuple[np.ndarray, np.ndarray]:
    """The refinement of the matches ``rows`` of the finite [N,2] keypoints (the local affines
    use all of them). ``images``: image 0, image 1 and their half-resolution versions; ``bank``:
    image 0's templates, where it has them.

    Returns (float64 [R,2] image-1 positions, bool [R] which moved).
    """
    image0, image1, half0, half1 = images
    linear, usable = _local_affines(keypoints0, keypoints1, settings.neighbours,
                                    settings.affine_gate, rows)
    points0, points1 = keypoints0[rows], keypoints1[rows]
    refined = points1.copy()
    moved = np.zeros(len(points0), dtype=bool)
    radius = settings.patch_radius
    # the half-resolution template reaches 2(r+2) pixels (with pyrDown's border); image-1 patches
    # may travel max_shift further
    reach = 2 * (radius + 2)
    height0, width0 = image0.shape
    height1, width1 = image1.shape
    usable &= ((points0 >= reach).all(1) & (points0[:, 0] < width0 - reach)
               & (points0[:, 1] < height0 - reach))
    corner = float(reach + settings.max_shift)
    a00, a01, a10, a11 = linear
    for sign_x, sign_y in ((-1, -1), (1, -1), (-1, 1), (1, 1)):
        corner_x = points1[:, 0] + (a00 * (sign_x * corner) + a01 * (sign_y * corner))
        corner_y = points1[:, 1] + (a10 * (sign_x * corner) + a11 * (sign_y * corner))
        usable &= ((corner_x >= 0) & (corner_y >= 0) & (corner_x <= width1 - 1)
                   & (corner_y <= height1 - 1))
    index = np.flatnonzero(usable)
    if len(index) == 0:
        return refined, moved
    points0, points1, linear = points0[index], points1[index], linear[:, index]

    bank_rows = bank.rows(points0) if bank is not None and bank.radius == radius else None
    if bank_rows is None:
        coarse_templates = _Templates(half0, points0 / 2, radius)
        fine_templates = _Templates(image0, points0, radius)
    else:
        coarse_templates, fine_templates = bank.half.take(bank_rows), bank.full.take(bank_rows)
    offsets = _warped_offsets(linear, radius)   # the same at both resolutions
    zero = np.zeros(len(index))
    coarse = _Alignment(coarse_templates, half1, points1 / 2, linear, offsets)
    shift_x, shift_y = coarse.gauss_newton(zero, zero, settings.iterations)
    fine = _Alignment(fine_templates, image1, points1, linear, offsets)
    shift_x, shift_y = fine.gauss_newton(2.0 * shift_x, 2.0 * shift_y, settings.iterations)
    ncc_start = fine.ncc(zero, zero)
    ncc_final = fine.ncc(shift_x, shift_y)
    textured = (fine.textured(settings.min_contrast, settings.min_conditioning)
                & coarse.textured(settings.min_contrast, settings.min_conditioning))
    accept = (textured & np.isfinite(shift_x) & np.isfinite(shift_y)
              & (ncc_final >= settings.min_ncc) & (ncc_final >= ncc_start)
              & (np.sqrt(shift_x * shift_x + shift_y * shift_y) <= settings.max_shift))
    a00, a01, a10, a11 = linear[:, accept]
    shift_x, shift_y = shift_x[accept], shift_y[accept]
    rows_accepted = index[accept]
    refined[rows_accepted, 0] = points1[accept, 0] + (a00 * shift_x + a01 * shift_y)
    refined[rows_accepted, 1] = points1[accept, 1] + (a10 * shift_x + a11 * shift_y)
    moved[rows_accepted] = True
    return refined, moved


def refine_photometric(image0: Union[np.ndarray, PhotometricImage],
                       image1: Union[np.ndarray, PhotometricImage], keypoints0: np.ndarray,
                       keypoints1: np.ndarray, settings: PhotometricSettings = PhotometricSettings()
                       ) -> Tuple[np.ndarray, np.ndarray]:
    """Refine ``keypoints1`` [N,2] so that image-1 patches agree with the image-0 patches at
    ``keypoints0`` (see the module docstring). The matches are shared out among
    ``settings.workers`` threads; the result does not depend on how many.

    Returns (float32 [N,2] refined keypoints1, bool [N] which matches moved).
    """
    level0, level1 = photometric_image(image0, "image0"), photometric_image(image1, "image1")
    keypoints0 = np.asarray(keypoints0, dtype=np.float64).reshape(-1, 2)
    keypoints1 = np.asarray(keypoints1, dtype=np.float64).reshape(-1, 2)
    if len(keypoints0) != len(keypoints1):
        raise ValueError(f"{len(keypoints0)} keypoints0 but {len(keypoints1)} keypoints1")
    refined = keypoints1.astype(np.float32)
    moved = np.zeros(len(keypoints0), dtype=bool)
    finite = np.flatnonzero(np.isfinite(keypoints0).all(1) & np.isfinite(keypoints1).all(1))
    if len(finite) < 4:   # a local affine needs 4 matches
        return refined, moved
    images = (level0.full, level1.full, level0.half, level1.half)
    points0, points1 = keypoints0[finite], keypoints1[finite]
    parts = max(1, min(settings.workers, len(finite) // _MIN_ROWS_PER_WORKER))
    bounds = np.linspace(0, len(finite), parts + 1).astype(int)
    chunks = [slice(bounds[i], bounds[i + 1]) for i in range(parts)]
    bank = level0.templates
    if parts == 1:
        results = [_refine_rows(images, points0, points1, chunks[0], settings, bank)]
    else:
        results = list(_worker_pool(settings.workers).map(
            lambda rows: _refine_rows(images, points0, points1, rows, settings, bank), chunks))
    for rows, (positions, shifted) in zip(chunks, results):
        refined[finite[rows]] = positions.astype(np.float32)
        moved[finite[rows]] = shifted
    return refined, moved
