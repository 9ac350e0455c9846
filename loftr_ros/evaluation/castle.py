"""ViSP's ``Castle-simu`` sequence (Debian package ``visp-images-data``) as pose pairs.

40 rendered 640x480 frames of a castle model seen by a moving camera, with a depth map and the
camera pose of every frame. :func:`fetch_castle` gets it the way the training corpus gets its
photos (:mod:`loftr_ros.training.data_sources`): ``apt-get download`` of the package into a cache
folder and ``dpkg -x`` there, nothing installed system-wide.

File formats, as the package holds them below ``mbt-depth/Castle-simu/``:

- ``Images/Image_%04d.pgm``: the grayscale frames, numbered from 1;
- ``CameraPose/Camera_%03d.txt``: a 4x4 homogeneous matrix ``cMo`` (object/world -> camera
  coordinates, metres), so the motion from frame i to frame j is ``cjMo ciMo^-1``;
- ``Config/chateau.xml``: the pinhole intrinsics (``px``, ``py``, ``u0``, ``v0``) of the frames;
- ``Depth/Depth_%04d.bin``: little-endian uint32 height and width, then height x width uint16
  z-depths in units of :data:`DEPTH_UNIT_M` (0 = nothing). The depth camera has the frames'
  intrinsics but sits :data:`DEPTH_TO_COLOR_M` away: ``X_colour = X_depth + DEPTH_TO_COLOR_M``.

The pose convention, the depth unit and the depth camera's offset were found by reprojection and
are checked in ``test/evaluation/test_pose_evaluation.py``: frame 1's depth points, moved by
``c21Mo c1Mo^-1``, land on frame 21's depth map and intensities, and their true correspondences
give back that pose; read as camera-to-world poses they do not.

Pairs are (i, i + gap) for each gap of :data:`DEFAULT_GAPS` (growing baseline and viewpoint
change) and up to ``starts_per_gap`` start frames spread evenly over the sequence.
"""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from loftr_ros.evaluation.datasets import DatasetError, read_gray
from loftr_ros.evaluation.pose_datasets import PosePair

PACKAGE = "visp-images-data"
#: the sequence's folder below the extracted package's ``usr/share``
SEQUENCE_SUBDIR = "visp-images-data/ViSP-images/mbt-depth/Castle-simu"
DEFAULT_CACHE = Path("data/cache")
FRAMES = 40
DEPTH_UNIT_M = 2.0 ** -15
DEPTH_TO_COLOR_M = np.array([0.05, 0.0, 0.0])
DEFAULT_GAPS: Tuple[int, ...] = (5, 10, 15, 20, 25, 30, 35)
DEFAULT_STARTS_PER_GAP = 4


def fetch_castle(cache: Path = DEFAULT_CACHE) -> Path:
    """Download and extract ``visp-images-data`` into ``cache`` (once); returns the sequence
    folder. DatasetError with the reason where apt or dpkg cannot do it."""
    from loftr_ros.training import data_sources

    try:
        deb = data_sources.download_package(PACKAGE, Path(cache) / "debs")
        share = data_sources.extract_package(deb, Path(cache) / "extracted" / PACKAGE)
    except data_sources.DataSourceError as error:
        raise DatasetError(f"cannot fetch Castle-simu: {error}") from error
    return share / SEQUENCE_SUBDIR


def cached_castle(cache: Path = DEFAULT_CACHE) -> Optional[Path]:
    """The sequence folder if a previous :func:`fetch_castle` left it in ``cache``, else None."""
    folder = Path(cache) / "extracted" / PACKAGE / "usr" / "share" / SEQUENCE_SUBDIR
    return folder if (folder / "CameraPose").is_dir() else None


class CastleSequence:
    """Frames, poses, intrinsics and depth of the sequence in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        for part in ("Images", "CameraPose", "Depth", "Config/chateau.xml"):
            if not (self.folder / part).exists():
                raise DatasetError(f"{self.folder} is not the Castle-simu sequence: no {part}")
        self.intrinsics = self._read_intrinsics(self.folder / "Config" / "chateau.xml")

    @staticmethod
    def _read_intrinsics(path: Path) -> np.ndarray:
        try:
            camera = ElementTree.parse(path).getroot().find("camera")
            values = {key: float(camera.find(key).text) for key in ("px", "py", "u0", "v0")}
        except (ElementTree.ParseError, AttributeError, TypeError, ValueError) as error:
            raise DatasetError(f"cannot read the camera of {path}: {error}") from error
        return np.array([[values["px"], 0.0, values["u0"]], [0.0, values["py"], values["v0"]],
                         [0.0, 0.0, 1.0]])

    def image(self, frame: int) -> np.ndarray:
        """Frame ``frame`` (1-based) as uint8 gray ``[480,640]``."""
        return read_gray(self.folder / "Images" / f"Image_{frame:04d}.pgm")

    def pose(self, frame: int) -> np.ndarray:
        """``cMo`` of frame ``frame``: float64 ``[4,4]``, world -> camera coordinates."""
        path = self.folder / "CameraPose" / f"Camera_{frame:03d}.txt"
        try:
            matrix = np.loadtxt(path, dtype=np.float64)
        except (OSError, ValueError) as error:
            raise DatasetError(f"cannot read pose {path}: {error}") from error
        if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
            raise DatasetError(f"{path} does not hold a finite 4x4 matrix")
        return matrix

    def motion(self, frame0: int, frame1: int) -> Tuple[np.ndarray, np.ndarray]:
        """``(R, t)`` with ``X1 = R X0 + t`` from frame0's camera to frame1's."""
        relative = self.pose(frame1) @ np.linalg.inv(self.pose(frame0))
        return relative[:3, :3], relative[:3, 3]

    def depth(self, frame: int) -> np.ndarray:
        """The depth camera's z-depth of frame ``frame`` in metres, float64 ``[H,W]``, 0 where
        nothing was rendered."""
        path = self.folder / "Depth" / f"Depth_{frame:04d}.bin"
        raw = path.read_bytes()
        height, width = np.frombuffer(raw[:8], "<u4")
        if len(raw) != 8 + 2 * int(height) * int(width):
            raise DatasetError(f"{path}: {len(raw)} bytes do not hold {height}x{width} uint16")
        values = np.frombuffer(raw[8:], "<u2").reshape(int(height), int(width))
        return values.astype(np.float64) * DEPTH_UNIT_M

    def points(self, frame: int) -> np.ndarray:
        """The rendered surface points of frame ``frame`` in its colour camera's coordinates,
        float64 ``[N,3]`` metres (one per depth pixel with a value)."""
        depth = self.depth(frame)
        rows, cols = np.nonzero(depth > 0)
        z = depth[rows, cols]
        K = self.intrinsics
        in_depth_camera = np.stack([(cols - K[0, 2]) / K[0, 0] * z,
                                    (rows - K[1, 2]) / K[1, 1] * z, z], axis=1)
        return in_depth_camera + DEPTH_TO_COLOR_M

    def pair(self, frame0: int, frame1: int) -> PosePair:
        rotation, translation = self.motion(frame0, frame1)
        return PosePair(f"castle/{frame0:02d}-{frame1:02d}", self.image(frame0),
                        self.image(frame1), self.intrinsics, self.intrinsics, rotation,
                        translation)


def frame_pairs(gaps: Sequence[int] = DEFAULT_GAPS,
                starts_per_gap: int = DEFAULT_STARTS_PER_GAP,
                frames: int = FRAMES) -> List[Tuple[int, int]]:
    """(i, i + gap) frame pairs: for each gap, ``starts_per_gap`` start frames spread evenly over
    the frames it allows (fewer where the gap allows fewer)."""
    pairs = []
    for gap in gaps:
        last_start = frames - gap
        if gap < 1 or last_start < 1:
            continue
        count = min(starts_per_gap, last_start)
        starts = np.unique(np.round(np.linspace(1, last_start, count)).astype(int))
        pairs.extend((int(start), int(start) + gap) for start in starts)
    return pairs


class CastlePairs:
    """The :func:`frame_pairs` of the sequence in ``folder`` as :class:`PosePair`."""

    def __init__(self, folder: Path, gaps: Sequence[int] = DEFAULT_GAPS,
                 starts_per_gap: int = DEFAULT_STARTS_PER_GAP) -> None:
        self.sequence = CastleSequence(folder)
        self.frame_pairs = frame_pairs(gaps, starts_per_gap)
        if not self.frame_pairs:
            raise DatasetError(f"no Castle-simu frame pairs for gaps {list(gaps)}")

    def __len__(self) -> int:
        return len(self.frame_pairs)

    def __iter__(self) -> Iterator[PosePair]:
        for frame0, frame1 in self.frame_pairs:
            yield self.sequence.pair(frame0, frame1)
