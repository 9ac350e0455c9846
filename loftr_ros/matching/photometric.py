"""Photometric sub-pixel refinement of matches, in numpy and OpenCV (no network involved).

No BLAS call on purpose (``np.einsum`` without ``optimize`` and closed forms, no ``@`` or
``linalg`` solvers): OpenBLAS worker threads spin after a call and slowed the next inference of
the same process from about 50 to about 85 ms on 2 cores. For speed, per-match arrays keep their
long axis last (x and y apart, never a trailing axis of 2, which makes numpy loop over pairs), the
window sums of an iteration come from one ``einsum`` pass, the neighbours come from a k-d tree,
and large sets of matches are shared out among a few threads (numpy and OpenCV release the GIL):
about 16 ms for 640 matches on 2 cores.

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


def _apply(matrices: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """``matrices`` [N,2,2] applied to ``vectors`` [N,2] or [N,M,2] (broadcast over M)."""
    m = matrices if vectors.ndim == 2 else matrices[:, None]
    x, y = vectors[..., 0], vectors[..., 1]
    return np.stack([m[..., 0, 0] * x + m[..., 0, 1] * y, m[..., 1, 0] * x + m[..., 1, 1] * y],
                    axis=-1)


def _affine_products(dx: np.ndarray, dy: np.ndarray, tx: np.ndarray, ty: np.ndarray
                     ) -> np.ndarray:
    """[N,12,K] products whose weighted sums over K make the normal equations of ``t ~ A d + c``:
    1, dx, dy, dx^2, dx dy, dy^2, tx, tx dx, tx dy, ty, ty dx, ty dy."""
    return np.stack([np.ones_like(dx), dx, dy, dx * dx, dx * dy, dy * dy,
                     tx, tx * dx, tx * dy, ty, ty * dx, ty * dy], axis=1)


def _fit_affines(products: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted least squares of ``t ~ A d + c`` per row, from :func:`_affine_products` [N,12,K]
    and ``weights`` [N,K]; returns [N,2,3] (rows: x', y'; columns: dx, dy, 1), solved in closed
    form: the adjugate of the 3x3 normal matrix over (dx, dy, 1), with a tiny ridge."""
    sums = np.einsum("nk,npk->pn", weights, products)                          # [12,N]
    one, sx, sy, sxx, sxy, syy = sums[:6]
    one, sxx, syy = one + 1e-6, sxx + 1e-6, syy + 1e-6
    # adjugate (symmetric) of [[sxx, sxy, sx], [sxy, syy, sy], [sx, sy, one]]
    c00, c01, c02 = syy * one - sy * sy, sx * sy - sxy * one, sxy * sy - syy * sx
    c11, c12, c22 = sxx * one - sx * sx, sxy * sx - sxx * sy, sxx * syy - sxy * sxy
    determinant = sxx * c00 + sxy * c01 + sx * c02
    inverse_determinant = 1.0 / np.where(np.abs(determinant) > 1e-12, determinant, 1e-12)
    solution = np.empty((len(one), 2, 3))
    for row, (r_dx, r_dy, r_one) in enumerate((sums[[7, 8, 6]], sums[[10, 11, 9]])):
        solution[:, row, 0] = (c00 * r_dx + c01 * r_dy + c02 * r_one) * inverse_determinant
        solution[:, row, 1] = (c01 * r_dx + c11 * r_dy + c12 * r_one) * inverse_determinant
        solution[:, row, 2] = (c02 * r_dx + c12 * r_dy + c22 * r_one) * inverse_determinant
    return solution


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


def local_affines(keypoints0: np.ndarray, keypoints1: np.ndarray, neighbours: int,
                  gate: float, rows: slice = slice(None)) -> Tuple[np.ndarray, np.ndarray]:
    """Per match (of ``rows``, default all), the linear part of the affine map image 0 -> image 1
    fitted on its neighbours.

    Returns (float64 [R,2,2] with ``d1 = A @ d0``, bool [R] usable: enough neighbours within the
    gate and a determinant between 1/16 and 16).
    """
    points0 = np.asarray(keypoints0, dtype=np.float64)
    points1 = np.asarray(keypoints1, dtype=np.float64)
    selected = len(points0[rows])
    if len(points0) < 3:
        return np.tile(np.eye(2), (selected, 1, 1)), np.zeros(selected, dtype=bool)
    nearest = nearest_neighbours(points0, min(neighbours, len(points0)), rows)   # [R,K]
    # neighbour offsets from the match itself in image 0 (d) and from its partner in image 1 (t)
    dx, dy = (points0[nearest] - points0[rows][:, None, :]).transpose(2, 0, 1)
    tx, ty = (points1[nearest] - points1[rows][:, None, :]).transpose(2, 0, 1)
    products = _affine_products(dx, dy, tx, ty)
    weights = np.ones(nearest.shape)
    for round_index in range(_AFFINE_ROUNDS):
        solution = _fit_affines(products, weights)                            # [R,2,3]
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


def _sample(image: np.ndarray, points: np.ndarray, offsets_x: np.ndarray,
            offsets_y: np.ndarray) -> np.ndarray:
    """Bilinear samples [N,Q] of ``image`` at ``points`` [N,2] plus per-row offsets [N,Q] or
    [Q] (x and y apart: a two-channel map would make numpy loop over pairs)."""
    centres = points.astype(np.float32)
    map_x = np.ascontiguousarray(centres[:, :1] + offsets_x, dtype=np.float32)
    map_y = np.ascontiguousarray(centres[:, 1:] + offsets_y, dtype=np.float32)
    # rows = matches (remap's size limit is per dimension)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


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


def _patch_grid(radius: int) -> np.ndarray:
    """float32 [2r+1, 2r+1, 2] of (x, y) offsets."""
    steps = np.arange(-radius, radius + 1, dtype=np.float32)
    return np.stack(np.meshgrid(steps, steps), axis=-1)


def _gaussian_window(radius: int) -> np.ndarray:
    """float32 [(2r+1)^2] Gaussian weights (sigma r/1.5) that sum to 1, row-major."""
    offsets = _patch_grid(radius).reshape(-1, 2)
    window = np.exp(-(offsets ** 2).sum(-1) / (2.0 * (radius / 1.5) ** 2))
    return (window / window.sum()).astype(np.float32)


class _Templates:
    """Image-0 templates around ``points0`` with everything inverse-compositional Gauss-Newton
    needs of them (the Jacobian is the template's own gradient); image 0 alone decides them.

    The rows of ``self.weights`` [n,4,Q] are the window, the window-weighted normalised Jacobian
    (x, y) and the window-weighted normalised template.
    """

    def __init__(self, image0: np.ndarray, points0: np.ndarray, radius: int) -> None:
        count = len(points0)
        self.radius = radius
        side = 2 * radius + 3
        grid = _patch_grid(radius + 1).reshape(-1, 2)
        extended = _sample(image0, points0, grid[:, 0], grid[:, 1]).reshape(count, side, side)
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
        weights[:, 1] = jacobian_x * window
        weights[:, 2] = jacobian_y * window
        weights[:, 3] = normalised0 * window
        hxx = np.einsum("nq,nq->n", weights[:, 1], jacobian_x)
        hxy = np.einsum("nq,nq->n", weights[:, 1], jacobian_y)
        hyy = np.einsum("nq,nq->n", weights[:, 2], jacobian_y)
        self.determinant = hxx * hyy - hxy ** 2
        half_trace = 0.5 * (hxx + hyy)
        spread = np.sqrt(np.maximum(half_trace ** 2 - self.determinant, 0.0))
        self.conditioning = (half_trace - spread) / np.maximum(half_trace + spread, 1e-12)
        inverse = np.stack([np.stack([hyy, -hxy], 1), np.stack([-hxy, hxx], 1)], 1)
        self.inverse = inverse / np.where(self.determinant > 1e-6, self.determinant,
                                          1.0)[:, None, None]
        self.jacobian_sum = weights[:, 1:3].sum(2)                            # [n,2]
        self.jacobian_template = np.einsum("nkq,nq->nk", weights[:, 1:3], normalised0)

    def take(self, rows: np.ndarray) -> "_Templates":
        """The templates of ``rows`` (indices)."""
        subset = object.__new__(_Templates)
        subset.radius, subset.window = self.radius, self.window
        for name in ("contrast", "weights", "determinant", "conditioning", "inverse",
                     "jacobian_sum", "jacobian_template"):
            setattr(subset, name, getattr(self, name)[rows])
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
        self._rows = {(float(x), float(y)): row for row, (x, y) in enumerate(points)}
        self.full, self.half = full, half

    @classmethod
    def of(cls, full: np.ndarray, half: np.ndarray, points: np.ndarray, radius: int
           ) -> "TemplateBank":
        """Templates of the image levels ``full``/``half`` at ``points`` [M,2] (full pixels)."""
        return cls(points, _Templates(full, points, radius), _Templates(half, points / 2, radius))

    def rows(self, points: np.ndarray) -> Optional[np.ndarray]:
        """Row indices [n] of ``points`` [n,2], or None unless the bank holds every one."""
        found = [self._rows.get((float(x), float(y))) for x, y in points]
        if any(row is None for row in found):
            return None
        return np.asarray(found, dtype=np.int64)


class _Alignment:
    """Image-0 templates (:class:`_Templates`) and their image-1 partners under local affines.
    Shifts are [n,2] in image-0 pixels. Every window sum an iteration needs comes from one pass
    over the image-1 samples (against the rows of the templates' ``weights``)."""

    def __init__(self, templates: _Templates, image1: np.ndarray, points1: np.ndarray,
                 linear: np.ndarray) -> None:
        self.templates = templates
        self.window, self.weights = templates.window, templates.weights
        self.inverse = templates.inverse
        self.jacobian_sum = templates.jacobian_sum
        self.jacobian_template = templates.jacobian_template
        self.image1, self.points1, self.linear = image1, points1, linear
        offset_x, offset_y = _patch_grid(templates.radius).reshape(-1, 2).T      # [Q] each
        matrices = linear.astype(np.float32)
        self.offsets_x = matrices[:, 0, :1] * offset_x + matrices[:, 0, 1:] * offset_y  # [n,Q]
        self.offsets_y = matrices[:, 1, :1] * offset_x + matrices[:, 1, 1:] * offset_y

    def textured(self, min_contrast: float, min_conditioning: float) -> np.ndarray:
        """bool [n]: see :meth:`_Templates.textured`."""
        return self.templates.textured(min_contrast, min_conditioning)

    def _sums(self, shift: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Window sums over the image-1 patches moved by ``shift``: ([n,4] of samples times
        each row of ``self.weights``, [n] windowed standard deviation of the samples)."""
        samples = _sample(self.image1, self.points1 + _apply(self.linear, shift), self.offsets_x,
                          self.offsets_y)
        sums = np.einsum("nkq,nq->nk", self.weights, samples)
        second = np.einsum("nq,nq,q->n", samples, samples, self.window)
        return sums, np.sqrt(np.maximum(second - sums[:, 0] ** 2, 0.0))

    def ncc(self, shift: np.ndarray) -> np.ndarray:
        """Windowed NCC [n] of the templates and the image-1 patches moved by ``shift``. The
        image-1 spread is floored at one grey level, so a flat image-1 patch scores about 0
        instead of its amplified rounding noise."""
        sums, spread = self._sums(shift)
        return sums[:, 3] / np.maximum(spread, _GREY_LEVEL)

    def gauss_newton(self, shift: np.ndarray, iterations: int) -> np.ndarray:
        """``iterations`` Gauss-Newton steps on the translation from ``shift``."""
        for _ in range(iterations):
            sums, spread = self._sums(shift)
            # sum over the window of Jacobian * (normalised patch - normalised template)
            gradient = ((sums[:, 1:3] - sums[:, :1] * self.jacobian_sum) / (spread[:, None] + 1e-6)
                        - self.jacobian_template)
            shift = shift - _apply(self.inverse, gradient)
        return shift


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
    linear, usable = local_affines(keypoints0, keypoints1, settings.neighbours,
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
    corners = np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]], dtype=np.float64)
    corners1 = points1[:, None, :] + _apply(linear, corners[None] * (reach + settings.max_shift))
    usable &= ((corners1 >= 0).all(axis=(1, 2)) & (corners1[..., 0] <= width1 - 1).all(1)
               & (corners1[..., 1] <= height1 - 1).all(1))
    index = np.flatnonzero(usable)
    if len(index) == 0:
        return refined, moved
    points0, points1, linear = points0[index], points1[index], linear[index]

    bank_rows = bank.rows(points0) if bank is not None and bank.radius == radius else None
    if bank_rows is None:
        coarse_templates = _Templates(half0, points0 / 2, radius)
        fine_templates = _Templates(image0, points0, radius)
    else:
        coarse_templates, fine_templates = bank.half.take(bank_rows), bank.full.take(bank_rows)
    coarse = _Alignment(coarse_templates, half1, points1 / 2, linear)
    shift = 2.0 * coarse.gauss_newton(np.zeros((len(index), 2)), settings.iterations)
    fine = _Alignment(fine_templates, image1, points1, linear)
    shift = fine.gauss_newton(shift, settings.iterations)
    ncc_start = fine.ncc(np.zeros((len(index), 2)))
    ncc_final = fine.ncc(shift)
    textured = (fine.textured(settings.min_contrast, settings.min_conditioning)
                & coarse.textured(settings.min_contrast, settings.min_conditioning))
    accept = (textured & np.isfinite(shift).all(1) & (ncc_final >= settings.min_ncc)
              & (ncc_final >= ncc_start)
              & (np.linalg.norm(shift, axis=1) <= settings.max_shift))
    refined[index[accept]] = points1[accept] + _apply(linear[accept], shift[accept])
    moved[index[accept]] = True
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
