"""The demo's scenes: frames for image_player and the error of matches against the truth."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from loftr_ros.ros import demo, demo_scenes


def test_field_errors_score_only_visible_reference_pixels():
    height, width = 6, 8
    field = np.zeros((height, width, 2), np.float32)
    columns, rows = np.meshgrid(np.arange(width), np.arange(height))
    field[..., 0], field[..., 1] = columns + 2.0, rows - 1.0   # everything moves by (2, -1)
    valid = np.ones((height, width), bool)
    valid[:, 5:] = False                                       # occluded on the right
    points_ref = np.array([[1.2, 2.9], [3.0, 4.0], [6.0, 1.0], [20.0, 1.0]])
    points_cur = np.array([[3.0, 2.0], [5.0, 6.0], [0.0, 0.0], [0.0, 0.0]])
    errors = demo_scenes.field_errors(field, valid, points_ref, points_cur)
    # (1.2, 2.9) rounds to pixel (1, 3) -> (3, 2); (3, 4) -> (5, 3), 3 px off; the others are
    # occluded or outside the frame.
    np.testing.assert_allclose(errors, [0.0, 3.0])


def _project(sequence, frame, points_world):
    camera = points_world @ sequence.rotations[frame].T + sequence.translations[frame]
    pixels = camera @ sequence.intrinsics.T
    return pixels[:, :2] / pixels[:, 2:], camera[:, 2]


def test_room_scene_errors_follow_the_depth_and_poses():
    scene = demo_scenes.RoomScene(frames=4, size=(160, 120), step=20.0, seed=1)
    sequence = scene.sequence
    assert len(scene.frames) == 4 and scene.frames[0].shape == (120, 160)
    # Reference pixels on a grid, lifted to 3D with frame 0's depth, seen from frame 3.
    columns, rows = np.meshgrid(np.arange(8, 160, 16), np.arange(8, 120, 16))
    pixels0 = np.stack([columns.ravel(), rows.ravel()], axis=1).astype(np.float64)
    depth = sequence.depths[0][rows.ravel(), columns.ravel()].astype(np.float64)
    rays = np.concatenate([pixels0, np.ones((len(pixels0), 1))], 1) @ np.linalg.inv(
        sequence.intrinsics).T
    camera0 = rays * depth[:, None]
    world = (camera0 - sequence.translations[0]) @ sequence.rotations[0]
    pixels3, z3 = _project(sequence, 3, world)
    seen = np.isfinite(depth) & (z3 > 0)
    errors = scene.errors(0, 3, pixels0[seen], pixels3[seen])
    assert len(errors) > 10 and np.median(errors) < 0.01
    shifted = scene.errors(0, 3, pixels0[seen], pixels3[seen] + [3.0, 4.0])
    np.testing.assert_allclose(np.median(shifted), 5.0, atol=0.01)


def test_planar_scene_errors_follow_the_homography():
    scene = demo_scenes.PlanarScene(frames=3, size=(160, 120), step=5.0)
    assert len(scene.frames) == 3
    points = np.array([[10.0, 20.0], [80.0, 60.0], [150.0, 100.0]])
    truth = np.linalg.inv(scene.homographies[0])
    mapped = cv2.perspectiveTransform(points[None], scene.homographies[2] @ truth)[0]
    np.testing.assert_allclose(scene.errors(0, 2, points, mapped), 0.0, atol=1e-6)


def test_scene_choice(tmp_path):
    assert demo.parse_args([]).scene == "room"
    assert demo.parse_args(["--scene", "planar"]).scene == "planar"
    with pytest.raises(ValueError, match="unknown scene"):
        demo_scenes.make_scene("forest", 2, (64, 48), 1.0)
    scene = demo_scenes.make_scene("planar", 2, (64, 48), 1.0)
    demo_scenes.write_frames(scene.frames, str(tmp_path / "frames"))
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["frame_0000.png",
                                                                         "frame_0001.png"]
