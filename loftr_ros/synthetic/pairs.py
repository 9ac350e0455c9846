"""An image pair with its dense ground-truth correspondence, whatever produced it (numpy/OpenCV).

Producers: planar homographies (``homography.homography_pair``) and rendered 3D scenes
(``scenes3d.render_pair``, ``scenes3d.pair_from_sequence``). Training supervision and evaluation
read only this type.

Pixel convention: integer coordinates ``(u, v)`` are pixel centres; ``field[v, u]`` holds the
``(x, y)`` position in the other image of pixel ``(u, v)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np


@dataclass
class CorrespondencePair:
    """Two grayscale views and where each pixel of one lands in the other.

    Attributes:
        image0, image1: uint8 [H,W] grayscale views.
        field0to1: float32 [H,W,2]: pixel position (x, y) in image 1 of each image-0 pixel; NaN
            where the geometry gives none (no surface, or behind camera 1). Positions outside
            image 1 are kept (they are finite but not valid).
        valid0: bool [H,W]: the image-0 pixel is seen in image 1 (inside it and not occluded).
        field1to0, valid1: the same from image 1 to image 0.
        intrinsics0, intrinsics1: 3x3 float64 camera matrices (pixels), or None (planar pairs).
        rotation, translation: float64 [3,3] and [3]: camera-0 coordinates to camera-1
            coordinates, ``X1 = R @ X0 + t`` (scene units, metres for ``scenes3d``), or None.
        depth0, depth1: float32 [H,W] z-depth along each camera's optical axis; inf where
            nothing is seen; None for planar pairs.
        homography: 3x3 float64 map from image-0 to image-1 pixels (planar pairs), else None.
    """

    image0: np.ndarray
    image1: np.ndarray
    field0to1: np.ndarray
    valid0: np.ndarray
    field1to0: np.ndarray
    valid1: np.ndarray
    intrinsics0: Optional[np.ndarray] = None
    intrinsics1: Optional[np.ndarray] = None
    rotation: Optional[np.ndarray] = None
    translation: Optional[np.ndarray] = None
    depth0: Optional[np.ndarray] = None
    depth1: Optional[np.ndarray] = None
    homography: Optional[np.ndarray] = None

    @property
    def size(self) -> Tuple[int, int]:
        """``(width, height)`` of the views in pixels."""
        return self.image0.shape[1], self.image0.shape[0]


def pixel_rays(intrinsics: np.ndarray, width: int, height: int) -> np.ndarray:
    """float64 [3,H,W]: ``K^-1 [u, v, 1]`` for every pixel centre (a ray with z = 1)."""
    inverse = np.linalg.inv(intrinsics)
    u = np.arange(width, dtype=np.float64)[None, :]
    v = np.arange(height, dtype=np.float64)[:, None]
    return np.stack([inverse[i, 0] * u + inverse[i, 1] * v + inverse[i, 2] for i in range(3)])


def project_depth(depth0: np.ndarray, intrinsics0: np.ndarray, intrinsics1: np.ndarray,
                  rotation: np.ndarray, translation: np.ndarray
                  ) -> Tuple[np.ndarray, np.ndarray]:
    """Where each pixel of view 0, at its depth, lands in view 1 (float32 arithmetic).

    Args:
        depth0: float [H,W] z-depth of view 0 (inf or NaN where nothing is seen).
        intrinsics0, intrinsics1: 3x3 camera matrices.
        rotation, translation: ``X1 = R X0 + t``.

    Returns:
        ``(positions, depth_in_1)``: float32 [H,W,2] pixel positions in view 1 (NaN where there
        is no surface or the point is not in front of camera 1) and float32 [H,W] its z-depth in
        camera 1.
    """
    height, width = depth0.shape
    # K1 (R z K0^-1 p + t) = z (K1 R K0^-1) p + K1 t
    mapping = (np.asarray(intrinsics1, np.float64) @ np.asarray(rotation, np.float64)
               @ np.linalg.inv(intrinsics0)).astype(np.float32)
    offset = (np.asarray(intrinsics1, np.float64) @ np.asarray(translation, np.float64).reshape(3)
              ).astype(np.float32)
    depth = np.asarray(depth0, np.float32)
    u = np.arange(width, dtype=np.float32)[None, :]
    v = np.arange(height, dtype=np.float32)[:, None]
    rows = [(mapping[i, 0] * u + (mapping[i, 1] * v + mapping[i, 2])) * depth + offset[i]
            for i in range(3)]
    z1 = rows[2] / np.float32(intrinsics1[2, 2])
    with np.errstate(divide="ignore", invalid="ignore"):
        positions = np.stack([rows[0] / rows[2], rows[1] / rows[2]], axis=-1)
        behind = ~(z1 > 1e-6) | ~np.isfinite(depth)
    positions[behind] = np.nan
    return positions, z1


def inside(positions: np.ndarray, width: int, height: int) -> np.ndarray:
    """bool [...]: positions [...,2] that fall on a pixel of a width x height image."""
    x, y = positions[..., 0], positions[..., 1]
    with np.errstate(invalid="ignore"):
        return (x >= -0.5) & (x < width - 0.5) & (y >= -0.5) & (y < height - 0.5)


def sample_nearest(values: np.ndarray, positions: np.ndarray, fill: float) -> np.ndarray:
    """``values`` (int16 or float32 [H,W]) at the pixel nearest each position [...,2] (float32);
    ``fill`` outside the image or at NaN positions."""
    far = np.float32(-1e6)
    map_x = np.nan_to_num(positions[..., 0].astype(np.float32), nan=far, posinf=far, neginf=far)
    map_y = np.nan_to_num(positions[..., 1].astype(np.float32), nan=far, posinf=far, neginf=far)
    return cv2.remap(values, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=fill)


def depth_correspondence(depth0: np.ndarray, depth1: np.ndarray, intrinsics0: np.ndarray,
                         intrinsics1: np.ndarray, rotation: np.ndarray, translation: np.ndarray,
                         surface0: Optional[np.ndarray] = None,
                         surface1: Optional[np.ndarray] = None,
                         depth_tolerance: float = 0.02
                         ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Dense correspondence of two depth maps with known cameras, in both directions.

    A pixel is visible in the other view when it lands inside it and nothing hides it there:
    with surface labels (int [H,W] below 32767, e.g. the plane each pixel shows, -1 for none) the
    pixel it lands on must show the same surface; otherwise its depth there must agree within
    ``depth_tolerance`` (relative) with the other view's depth map at the nearest pixel.

    Returns:
        ``(field0to1, valid0, field1to0, valid1)``: float32 [H,W,2] and bool [H,W] each.
    """
    rotation = np.asarray(rotation, np.float64)
    translation = np.asarray(translation, np.float64).reshape(3)
    inverse_rotation = rotation.T
    inverse_translation = -inverse_rotation @ translation
    out = []
    for (d_a, d_b, k_a, k_b, rot, trans, s_a, s_b) in (
            (depth0, depth1, intrinsics0, intrinsics1, rotation, translation, surface0, surface1),
            (depth1, depth0, intrinsics1, intrinsics0, inverse_rotation, inverse_translation,
             surface1, surface0)):
        positions, z_other = project_depth(d_a, k_a, k_b, rot, trans)
        height, width = d_b.shape
        visible = inside(positions, width, height)
        if s_a is not None and s_b is not None:
            seen = sample_nearest(np.asarray(s_b, np.int16), positions, -2)
            visible &= (s_a >= 0) & (seen == s_a)
        else:
            seen = sample_nearest(np.asarray(d_b, np.float32), positions, np.nan)
            with np.errstate(invalid="ignore"):
                visible &= np.abs(seen - z_other) <= depth_tolerance * z_other
        out.extend([positions, visible])
    return out[0], out[1], out[2], out[3]


def relative_pose(rotation0: np.ndarray, translation0: np.ndarray, rotation1: np.ndarray,
                  translation1: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Camera-0 to camera-1 motion ``(R, t)`` from two world-to-camera poses ``X_c = R_c X + t_c``.
    """
    rotation = rotation1 @ rotation0.T
    return rotation, np.asarray(translation1, np.float64) - rotation @ translation0


def rotation_angle_deg(rotation: np.ndarray) -> float:
    """Angle of a rotation matrix in degrees."""
    cosine = (np.trace(rotation) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


__all__ = ["CorrespondencePair", "depth_correspondence", "inside", "pixel_rays", "project_depth",
           "relative_pose", "rotation_angle_deg", "sample_nearest"]
