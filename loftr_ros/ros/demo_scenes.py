"""The demo's frames and their ground truth: a camera flying through a rendered room, or a photo
under a moving planar homography.

Both scenes write their frames as ``frame_0000.png``... into a folder for ``image_player`` and
answer one question: how far each match's current-frame point lies from where the reference
point truly went (pixels).

- ``room`` (default): :func:`loftr_ros.synthetic.scenes3d.render_sequence`, a room with boxes seen
  by a camera on a smooth loop; the truth is the dense correspondence field from the frames'
  depth and poses (:func:`loftr_ros.synthetic.scenes3d.pair_from_sequence`), and only matches
  whose reference pixel is visible in the current frame are scored (not occluded, not outside).
- ``planar``: :mod:`loftr_ros.synthetic.virtual_camera`, the bundled photo under a homography.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

SCENES = ("room", "planar")
#: path time per full loop through the room, in units of ``step`` (step 1.5: 480 frames a loop,
#: so a 60-frame demo turns about 55 degrees and ends with a small overlap with its first frame)
ROOM_LOOP_TIME = 720.0


def field_errors(field0to1: np.ndarray, valid0: np.ndarray, points_ref: np.ndarray,
                 points_cur: np.ndarray) -> np.ndarray:
    """Distances (pixels) between matched current-frame points ``[N,2]`` and the true positions
    of their reference points ``[N,2]`` in the field ``[H,W,2]``; matches whose reference pixel
    (rounded) is not ``valid0`` are left out."""
    points_ref = np.asarray(points_ref, np.float64).reshape(-1, 2)
    points_cur = np.asarray(points_cur, np.float64).reshape(-1, 2)
    height, width = valid0.shape
    cols = np.rint(points_ref[:, 0]).astype(np.int64)
    rows = np.rint(points_ref[:, 1]).astype(np.int64)
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    keep = np.zeros(len(points_ref), bool)
    keep[inside] = valid0[rows[inside], cols[inside]]
    truth = field0to1[rows[keep], cols[keep]].astype(np.float64)
    return np.linalg.norm(truth - points_cur[keep], axis=1)


class RoomScene:
    """Frames of a camera flying through a rendered room (seeded), with their depth and poses."""

    def __init__(self, frames: int, size: Tuple[int, int], step: float, seed: int = 0,
                 textures: Optional[List[np.ndarray]] = None) -> None:
        from loftr_ros.synthetic import scenes3d

        width, height = size
        loop_frames = max(frames, int(round(ROOM_LOOP_TIME / max(step, 1e-6))))
        self.sequence = scenes3d.render_sequence(
            np.random.default_rng(seed), textures or scenes3d.sample_textures(), width, height,
            frames, loop_frames=loop_frames)
        self._fields: Dict[Tuple[int, int], Tuple[np.ndarray, np.ndarray]] = {}

    @property
    def frames(self) -> List[np.ndarray]:
        return self.sequence.frames

    def errors(self, ref_index: int, cur_index: int, points_ref: np.ndarray,
               points_cur: np.ndarray) -> np.ndarray:
        """Match errors (pixels) against the true field from frame ``ref_index`` to
        ``cur_index``, for the matches whose reference pixel is visible in the current frame."""
        from loftr_ros.synthetic import scenes3d

        key = (ref_index, cur_index)
        if key not in self._fields:
            pair = scenes3d.pair_from_sequence(self.sequence, ref_index, cur_index)
            self._fields[key] = (pair.field0to1, pair.valid0)
        field, valid = self._fields[key]
        return field_errors(field, valid, points_ref, points_cur)


class PlanarScene:
    """Frames of the bundled photo under a smoothly moving homography."""

    def __init__(self, frames: int, size: Tuple[int, int], step: float) -> None:
        from loftr_ros.synthetic.virtual_camera import make_sequence

        self._frames, self.homographies = make_sequence(frames, size, step=step)

    @property
    def frames(self) -> List[np.ndarray]:
        return self._frames

    def errors(self, ref_index: int, cur_index: int, points_ref: np.ndarray,
               points_cur: np.ndarray) -> np.ndarray:
        """Transfer errors (pixels) of the matches under the true homography."""
        from loftr_ros.synthetic.virtual_camera import relative_homography, transfer_error

        truth = relative_homography(self.homographies[ref_index], self.homographies[cur_index])
        return transfer_error(truth, points_ref, points_cur)


def make_scene(name: str, frames: int, size: Tuple[int, int], step: float, seed: int = 0):
    """The scene called ``name`` (one of :data:`SCENES`)."""
    if name == "room":
        return RoomScene(frames, size, step, seed)
    if name == "planar":
        return PlanarScene(frames, size, step)
    raise ValueError(f"unknown scene {name!r}; choose from {', '.join(SCENES)}")


def write_frames(frames: List[np.ndarray], folder: str) -> None:
    """``frame_0000.png``... into ``folder`` (fast PNG compression)."""
    os.makedirs(folder, exist_ok=True)
    for index, frame in enumerate(frames):
        cv2.imwrite(os.path.join(folder, f"frame_{index:04d}.png"), frame,
                    [cv2.IMWRITE_PNG_COMPRESSION, 1])
