"""Synthetic image pairs with a known homography (numpy/OpenCV, no torch).

Used by training (random pairs from any folder of photos) and by evaluation (held-out pairs with a
fixed seed). A pair is two grayscale uint8 images of the same size and the 3x3 homography ``H`` that
maps pixel coordinates of image 0 to image 1: ``[u1, v1, 1]^T ~ H [u0, v0, 1]^T``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import cv2
import numpy as np

from loftr_ros.synthetic.pairs import CorrespondencePair, inside


@dataclass(frozen=True)
class HomographyParams:
    """Ranges of the random geometric change between the two views.

    Attributes:
        max_rotation_deg: in-plane rotation, uniform in +-this.
        scale_range: zoom of view 1 relative to view 0 (log-uniform).
        max_perspective: corner jitter, as a fraction of the image size.
        max_translation: shift, as a fraction of the image size.
    """

    max_rotation_deg: float = 25.0
    scale_range: Tuple[float, float] = (0.75, 1.35)
    max_perspective: float = 0.12
    max_translation: float = 0.12


@dataclass(frozen=True)
class PhotometricParams:
    """Ranges of the random appearance change applied independently to each view."""

    brightness: float = 0.15       # additive, fraction of 255
    contrast: Tuple[float, float] = (0.7, 1.3)
    gamma: Tuple[float, float] = (0.7, 1.4)
    max_blur_sigma: float = 1.2
    blur_probability: float = 0.3
    max_noise_std: float = 6.0     # grey levels


def _corners(width: int, height: int) -> np.ndarray:
    return np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]],
                    dtype=np.float64)


def random_view(rng: np.random.Generator, width: int, height: int,
                params: HomographyParams) -> np.ndarray:
    """A random homography of a width x height view onto itself, perturbed around the centre."""
    corners = _corners(width, height)
    centre = corners.mean(axis=0)
    angle = np.deg2rad(rng.uniform(-params.max_rotation_deg, params.max_rotation_deg))
    scale = float(np.exp(rng.uniform(np.log(params.scale_range[0]), np.log(params.scale_range[1]))))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = (corners - centre) @ rotation.T * scale + centre
    size = np.array([width, height], dtype=np.float64)
    moved += rng.uniform(-params.max_perspective, params.max_perspective, size=(4, 2)) * size
    moved += rng.uniform(-params.max_translation, params.max_translation, size=(1, 2)) * size
    # H maps view pixels to the moved quadrilateral's pixels: the view sees that quadrilateral.
    return cv2.getPerspectiveTransform(corners.astype(np.float32), moved.astype(np.float32)).astype(
        np.float64)


def photometric(rng: np.random.Generator, image: np.ndarray,
                params: PhotometricParams) -> np.ndarray:
    """Random brightness, contrast, gamma, blur and noise on a grayscale uint8 image."""
    out = image.astype(np.float32) / 255.0
    out = np.clip(out, 0.0, 1.0) ** rng.uniform(*params.gamma)
    out = (out - 0.5) * rng.uniform(*params.contrast) + 0.5
    out = out + rng.uniform(-params.brightness, params.brightness)
    out = np.clip(out * 255.0, 0, 255)
    if rng.random() < params.blur_probability:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, params.max_blur_sigma))
    out = out + rng.normal(0.0, rng.uniform(0.0, params.max_noise_std), size=out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def make_pair(rng: np.random.Generator, source: np.ndarray, width: int, height: int,
              geometry: HomographyParams = HomographyParams(),
              appearance: PhotometricParams = PhotometricParams(),
              apply_photometric: bool = True) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut a random view of ``source`` (gray uint8) and a second, homography-warped view.

    Returns ``(image0, image1, H_0to1)``: two ``height x width`` uint8 images and the 3x3 float64
    homography from image-0 pixels to image-1 pixels.
    """
    src_h, src_w = source.shape[:2]
    # View 0: an axis-aligned crop at a random scale (the source is resized so the crop fits).
    zoom = max(width / src_w, height / src_h) * rng.uniform(1.0, 1.6)
    crop_w, crop_h = width / zoom, height / zoom
    x0 = rng.uniform(0, src_w - crop_w)
    y0 = rng.uniform(0, src_h - crop_h)
    view0_from_src = np.array([[zoom, 0, -x0 * zoom], [0, zoom, -y0 * zoom], [0, 0, 1]])
    # View 1: the same crop seen through a random homography of the view.
    view0_to_view1 = np.linalg.inv(random_view(rng, width, height, geometry))
    view1_from_src = view0_to_view1 @ view0_from_src
    flags = cv2.INTER_AREA if zoom < 1 else cv2.INTER_LINEAR
    image0 = cv2.warpPerspective(source, view0_from_src, (width, height), flags=flags,
                                 borderMode=cv2.BORDER_CONSTANT)
    image1 = cv2.warpPerspective(source, view1_from_src, (width, height), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT)
    if apply_photometric:
        image0 = photometric(rng, image0, appearance)
        image1 = photometric(rng, image1, appearance)
    homography = view0_to_view1 / view0_to_view1[2, 2]
    return image0, image1, homography


def homography_field(homography: np.ndarray, width: int, height: int) -> np.ndarray:
    """float32 [H,W,2]: ``homography`` applied to every pixel centre of a width x height image;
    NaN where the pixel maps behind the view (non-positive homogeneous scale)."""
    cols, rows = np.meshgrid(np.arange(width, dtype=np.float64),
                             np.arange(height, dtype=np.float64))
    points = np.stack([cols.ravel(), rows.ravel()], axis=1)
    warped = warp_points(homography, points)
    scale = points @ homography[2, :2] + homography[2, 2]
    warped[~(scale > 0)] = np.nan
    return warped.reshape(height, width, 2).astype(np.float32)


def homography_pair(rng: np.random.Generator, source: np.ndarray, width: int, height: int,
                    geometry: HomographyParams = HomographyParams(),
                    appearance: PhotometricParams = PhotometricParams(),
                    apply_photometric: bool = True) -> CorrespondencePair:
    """:func:`make_pair` (same random draws, same images) as a :class:`CorrespondencePair` whose
    fields are the homography and its inverse; a pixel is valid where it lands inside the other
    view."""
    image0, image1, homography = make_pair(rng, source, width, height, geometry, appearance,
                                           apply_photometric)
    field0to1 = homography_field(homography, width, height)
    field1to0 = homography_field(np.linalg.inv(homography), width, height)
    return CorrespondencePair(
        image0=image0, image1=image1,
        field0to1=field0to1, valid0=inside(field0to1, width, height),
        field1to0=field1to0, valid1=inside(field1to0, width, height),
        homography=homography)


def warp_points(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 3x3 homography to points [N,2] (float64); points at infinity come back as inf."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ homography.T
    with np.errstate(divide="ignore", invalid="ignore"):
        return homogeneous[:, :2] / homogeneous[:, 2:3]
