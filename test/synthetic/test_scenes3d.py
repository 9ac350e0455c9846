"""Synthetic 3D scenes: determinism, ground truth against depth and pose, occlusion, motion
ranges, sequences, and the homography producer of CorrespondencePair."""
from __future__ import annotations

import subprocess
import sys
from typing import List

import numpy as np
import pytest

from loftr_ros.synthetic.homography import homography_pair, make_pair, warp_points
from loftr_ros.synthetic.pairs import CorrespondencePair, project_depth, rotation_angle_deg
from loftr_ros.synthetic.scenes3d import (
    SceneParams,
    add_box,
    empty_room,
    intrinsics_for,
    look_at,
    pair_from_sequence,
    render_pair,
    render_scene_pair,
    render_sequence,
    sample_textures,
)

WIDTH, HEIGHT = 320, 240


@pytest.fixture(scope="module")
def textures() -> List[np.ndarray]:
    images = sample_textures()
    assert images, "no sample photos"
    return images


@pytest.fixture(scope="module")
def pairs(textures: List[np.ndarray]) -> List[CorrespondencePair]:
    rng = np.random.default_rng(3)
    return [render_pair(rng, textures, WIDTH, HEIGHT) for _ in range(12)]


def _bilinear(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``values`` [H,W,...] bilinearly interpolated at positions [N,2] (NaN outside)."""
    height, width = values.shape[:2]
    x, y = positions[:, 0].astype(np.float64), positions[:, 1].astype(np.float64)
    ok = (x >= 0) & (y >= 0) & (x <= width - 1) & (y <= height - 1)
    x, y = np.where(ok, x, 0), np.where(ok, y, 0)
    x0 = np.minimum(np.floor(x).astype(int), width - 2)
    y0 = np.minimum(np.floor(y).astype(int), height - 2)
    fx, fy = x - x0, y - y0
    if values.ndim == 3:
        fx, fy = fx[:, None], fy[:, None]
    out = ((1 - fy) * ((1 - fx) * values[y0, x0] + fx * values[y0, x0 + 1])
           + fy * ((1 - fx) * values[y0 + 1, x0] + fx * values[y0 + 1, x0 + 1]))
    out[~ok] = np.nan
    return out


def _same_plane_neighbourhood(pair: CorrespondencePair, positions: np.ndarray) -> np.ndarray:
    """Positions whose four surrounding image-1 pixels are valid and map back close together
    (one plane), so that bilinear interpolation there is exact up to rounding."""
    x0 = np.floor(positions[..., 0]).astype(int)
    y0 = np.floor(positions[..., 1]).astype(int)
    ok = (x0 >= 0) & (y0 >= 0) & (x0 + 1 < WIDTH) & (y0 + 1 < HEIGHT)
    x0, y0 = np.where(ok, x0, 0), np.where(ok, y0, 0)
    corners = [(y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1)]
    for rows, cols in corners:
        ok &= pair.valid1[rows, cols]
    back = np.stack([pair.field1to0[rows, cols] for rows, cols in corners])
    spread = np.nanmax(back, axis=0) - np.nanmin(back, axis=0)
    return ok & np.all(spread < 8.0, axis=-1)


def test_no_torch_import() -> None:
    code = ("import sys, loftr_ros.synthetic.scenes3d, loftr_ros.synthetic.pairs; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_deterministic(textures: List[np.ndarray]) -> None:
    first = render_pair(np.random.default_rng(7), textures, WIDTH, HEIGHT)
    second = render_pair(np.random.default_rng(7), textures, WIDTH, HEIGHT)
    other = render_pair(np.random.default_rng(8), textures, WIDTH, HEIGHT)
    for name in ("image0", "image1", "field0to1", "valid0", "field1to0", "valid1", "depth0",
                 "depth1", "rotation", "translation", "intrinsics0"):
        assert np.array_equal(getattr(first, name), getattr(second, name), equal_nan=True), name
    assert not np.array_equal(first.image0, other.image0)


def test_types_and_shapes(pairs: List[CorrespondencePair]) -> None:
    for pair in pairs:
        assert pair.image0.dtype == np.uint8 and pair.image0.shape == (HEIGHT, WIDTH)
        assert pair.field0to1.dtype == np.float32 and pair.field0to1.shape == (HEIGHT, WIDTH, 2)
        assert pair.valid0.dtype == bool and pair.valid1.shape == (HEIGHT, WIDTH)
        assert pair.depth0.dtype == np.float32 and np.all(pair.depth0 > 0)
        assert np.allclose(pair.rotation @ pair.rotation.T, np.eye(3), atol=1e-9)
        assert np.all(np.isfinite(pair.field0to1[pair.valid0]))
        assert pair.homography is None
    assert np.mean([p.valid0.mean() for p in pairs]) > 0.3


def test_field_round_trip(pairs: List[CorrespondencePair]) -> None:
    errors = []
    for pair in pairs:
        forward = pair.field0to1[pair.valid0]
        checkable = _same_plane_neighbourhood(pair, forward)
        assert checkable.sum() > 0.3 * pair.valid0.sum()
        back = _bilinear(pair.field1to0, forward[checkable])
        rows, cols = np.nonzero(pair.valid0)
        start = np.stack([cols, rows], axis=1)[checkable]
        errors.append(np.linalg.norm(back - start, axis=1))
    errors = np.concatenate(errors)
    assert np.percentile(errors, 99) < 0.5, np.percentile(errors, [50, 99, 100])


def test_depth_reprojection_agrees(pairs: List[CorrespondencePair]) -> None:
    """Each view's z-buffer was rendered on its own: a valid pixel moved by the pose must land
    where view 1's depth map says the same depth."""
    relative = []
    for pair in pairs:
        positions, z_in_1 = project_depth(pair.depth0, pair.intrinsics0, pair.intrinsics1,
                                          pair.rotation, pair.translation)
        assert np.allclose(positions[pair.valid0], pair.field0to1[pair.valid0], atol=1e-3)
        points = positions[pair.valid0]
        checkable = _same_plane_neighbourhood(pair, points)
        # Inverse depth is affine in the pixel position on a plane: interpolate that.
        seen = 1.0 / _bilinear(1.0 / pair.depth1, points[checkable])
        expected = z_in_1[pair.valid0][checkable]
        relative.append(np.abs(seen - expected) / expected)
    relative = np.concatenate(relative)
    assert np.percentile(relative, 99) < 2e-3, np.percentile(relative, [50, 99, 100])


def test_box_hides_the_wall_behind_it(textures: List[np.ndarray]) -> None:
    params = SceneParams(corridor_probability=0.0, room_width=(6.0, 6.0),
                         room_length=(8.0, 8.0), room_height=(3.0, 3.0),
                         low_texture_probability=0.0)
    rng = np.random.default_rng(0)
    scene = empty_room(rng, textures, params)
    low, high = np.array([2.6, 4.0, 0.9]), np.array([3.4, 4.8, 1.7])
    add_box(rng, scene, (low + high) / 2, (high - low) / 2, 0.0, params)
    k = intrinsics_for(WIDTH, HEIGHT, 70.0)
    wall_centre = np.array([3.0, 8.0, 1.5])
    camera0 = look_at(k, np.array([3.0, 1.0, 1.3]), wall_centre)
    camera1 = look_at(k, np.array([4.4, 1.2, 1.5]), wall_centre, roll_deg=5.0)
    pair = render_scene_pair(scene, camera0, camera1, WIDTH, HEIGHT)

    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    rays = np.stack([cols, rows, np.ones_like(cols)], axis=-1) @ np.linalg.inv(k).T
    points_cam = rays * pair.depth0[..., None]
    points = (points_cam - camera0.translation) @ camera0.rotation    # world
    on_wall = np.abs(points[..., 1] - 8.0) < 1e-3
    assert on_wall.mean() > 0.15

    def hits_box(margin: float) -> np.ndarray:
        """Whether the segment camera 1 -> point crosses the box grown by ``margin``."""
        start = camera1.position
        direction = points - start
        with np.errstate(divide="ignore", invalid="ignore"):
            t_low = (low - margin - start) / direction
            t_high = (high + margin - start) / direction
        enter = np.nanmax(np.minimum(t_low, t_high), axis=-1)
        leave = np.nanmin(np.maximum(t_low, t_high), axis=-1)
        return (enter <= leave) & (leave > 0) & (enter < 1)

    landing = pair.field0to1
    with np.errstate(invalid="ignore"):
        seen_by_1 = ((landing[..., 0] > 1) & (landing[..., 0] < WIDTH - 2)
                     & (landing[..., 1] > 1) & (landing[..., 1] < HEIGHT - 2))
    hidden = on_wall & seen_by_1 & hits_box(-0.03)
    clear = on_wall & seen_by_1 & ~hits_box(0.03)
    assert hidden.sum() > 1000
    assert not pair.valid0[hidden].any()
    assert pair.valid0[clear].mean() > 0.99


def test_motion_ranges(textures: List[np.ndarray], pairs: List[CorrespondencePair]) -> None:
    params = SceneParams(max_rotation_deg=30.0)
    rng = np.random.default_rng(11)
    limited = [render_pair(rng, textures, 160, 120, params) for _ in range(10)]
    assert max(rotation_angle_deg(p.rotation) for p in limited) <= 30.0 + 1e-6
    angles = np.array([rotation_angle_deg(p.rotation) for p in pairs])
    assert angles.max() <= SceneParams().max_rotation_deg + 1e-6
    assert angles.max() > 15.0
    ratios = []
    for pair in pairs:
        depth = pair.depth0[np.isfinite(pair.depth0)]
        baseline = np.linalg.norm(pair.translation)
        assert baseline <= SceneParams().baseline[1] * depth.max() + 1e-9
        ratios.append(baseline / np.median(depth))
    assert max(ratios) > 0.2          # parallax that no homography explains


def test_sequence_pairs(textures: List[np.ndarray]) -> None:
    sequence = render_sequence(np.random.default_rng(2), textures, 160, 120, frames=8)
    assert len(sequence.frames) == 8 and sequence.frames[0].shape == (120, 160)
    assert len(sequence.rotations) == len(sequence.translations) == len(sequence.depths) == 8
    pair = pair_from_sequence(sequence, 0, 1)
    assert pair.valid0.mean() > 0.2
    assert np.array_equal(pair.image1, sequence.frames[1])
    expected = sequence.rotations[1] @ sequence.rotations[0].T
    assert np.allclose(pair.rotation, expected)
    same = pair_from_sequence(sequence, 3, 3)
    rows, cols = np.nonzero(same.valid0)
    assert same.valid0.mean() > 0.99
    assert np.allclose(same.field0to1[rows, cols], np.stack([cols, rows], axis=1), atol=1e-3)


def test_homography_pair_wraps_make_pair(photo_gray: np.ndarray) -> None:
    image0, image1, homography = make_pair(np.random.default_rng(4), photo_gray, WIDTH, HEIGHT)
    pair = homography_pair(np.random.default_rng(4), photo_gray, WIDTH, HEIGHT)
    assert np.array_equal(pair.image0, image0) and np.array_equal(pair.image1, image1)
    assert np.array_equal(pair.homography, homography)
    points = np.array([[0.0, 0.0], [100.0, 50.0], [WIDTH - 1.0, HEIGHT - 1.0]])
    expected = warp_points(homography, points).astype(np.float32)
    assert np.array_equal(pair.field0to1[points[:, 1].astype(int), points[:, 0].astype(int)],
                          expected)
    landing = pair.field0to1
    inside = ((landing[..., 0] >= -0.5) & (landing[..., 0] < WIDTH - 0.5)
              & (landing[..., 1] >= -0.5) & (landing[..., 1] < HEIGHT - 0.5))
    assert np.array_equal(pair.valid0, inside)
    forward = landing[pair.valid0]
    returned = _bilinear(pair.field1to0, forward)
    rows, cols = np.nonzero(pair.valid0)
    ok = np.all(np.isfinite(returned), axis=1)
    assert np.percentile(np.linalg.norm(returned[ok] - np.stack([cols, rows], 1)[ok], axis=1),
                         99) < 0.05


def test_texture_follows_the_geometry(textures: List[np.ndarray]) -> None:
    """Without camera effects, a textured pixel of view 0 has the grey value of view 1 where
    the field sends it, and not 3 px beside it."""
    params = SceneParams(corridor_probability=0.0, room_width=(5.0, 5.0), room_length=(7.0, 7.0),
                         room_height=(3.0, 3.0), low_texture_probability=0.0)
    rng = np.random.default_rng(1)
    scene = empty_room(rng, textures, params)
    add_box(rng, scene, np.array([2.0, 4.0, 0.5]), np.array([0.5, 0.4, 0.5]), 0.4, params)
    k = intrinsics_for(WIDTH, HEIGHT, 70.0)
    camera0 = look_at(k, np.array([2.5, 0.8, 1.4]), np.array([2.3, 7.0, 1.0]))
    camera1 = look_at(k, np.array([3.4, 1.5, 1.1]), np.array([2.0, 6.0, 1.3]), roll_deg=-8.0)
    pair = render_scene_pair(scene, camera0, camera1, WIDTH, HEIGHT)
    image0 = pair.image0.astype(np.float64)
    gradient = np.hypot(*np.gradient(image0))
    check = pair.valid0 & (gradient > 20)
    assert check.sum() > 2000
    landing = pair.field0to1[check]
    diff = np.abs(_bilinear(pair.image1.astype(np.float64), landing) - image0[check])
    shifted = np.abs(_bilinear(pair.image1.astype(np.float64), landing + [3.0, 0.0])
                     - image0[check])
    assert np.nanmedian(diff) < 0.3 * np.nanmedian(shifted), (np.nanmedian(diff),
                                                              np.nanmedian(shifted))
