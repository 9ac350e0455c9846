"""Image pairs with a ground-truth homography, for ``loftr-eval``.

Two sources, both iterated lazily (one pair in memory at a time) and never cached to disk:

- :class:`HPatchesPairs`: the HPatches folder format, one folder per sequence holding images
  ``1`` to ``6`` (``.ppm``, ``.png`` or ``.jpg``) and text files ``H_1_k`` with the 3x3 homography
  from image 1 to image k. Pairs are (1, k) for k = 2..6. As in the LoFTR evaluation, both images
  are resized so that their shorter side is 480 px (``short_side``) and the homography is adjusted,
  so corner errors are in pixels of the resized images.
- :class:`SyntheticPairs`: the project's held-out photos (``data/heldout``, see
  :mod:`loftr_ros.training.data_sources`) warped by random homographies with photometric changes
  (:func:`loftr_ros.synthetic.homography.make_pair`) at 640x480. Each pair's random generator is
  seeded from (seed, file name, pair index), so a pair does not change when images are added.

A pair is a :class:`HomographyPair` of two grayscale uint8 images.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import cv2
import numpy as np

from loftr_ros.image_files import IMAGE_EXTENSIONS, image_files
from loftr_ros.synthetic.homography import make_pair

HPATCHES_SHORT_SIDE = 480
SYNTHETIC_SIZE = (640, 480)


class DatasetError(RuntimeError):
    """A data set folder is missing or malformed (the message names the file)."""


@dataclass
class HomographyPair:
    """Two grayscale uint8 images and the homography from image-0 pixels to image-1 pixels."""

    name: str
    image0: np.ndarray
    image1: np.ndarray
    H_0to1: np.ndarray


def read_gray(path: Path) -> np.ndarray:
    """Read an image file as grayscale uint8 (DatasetError if unreadable)."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise DatasetError(f"cannot read image {path}")
    return image


def resize_short_side(image: np.ndarray, short_side: int) -> Tuple[np.ndarray, np.ndarray]:
    """Resize so the shorter side is ``short_side``; returns (image, 3x3 scaling matrix that maps
    original pixel coordinates to resized ones)."""
    height, width = image.shape[:2]
    scale = short_side / min(height, width)
    size = (round(width * scale), round(height * scale))
    scaling = np.diag([size[0] / width, size[1] / height, 1.0])
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation), scaling


def _find_image(sequence: Path, index: int) -> Path:
    for extension in IMAGE_EXTENSIONS:
        path = sequence / f"{index}{extension}"
        if path.is_file():
            return path
    raise DatasetError(f"HPatches sequence {sequence} has no image {index} "
                       f"({', '.join(IMAGE_EXTENSIONS)})")


def read_homography(path: Path) -> np.ndarray:
    """A 3x3 homography from a whitespace-separated text file (DatasetError otherwise)."""
    try:
        H = np.loadtxt(path, dtype=np.float64)
    except (OSError, ValueError) as error:
        raise DatasetError(f"cannot read homography {path}: {error}") from error
    if H.shape != (3, 3) or not np.all(np.isfinite(H)):
        raise DatasetError(f"{path} does not hold a finite 3x3 matrix (shape {H.shape})")
    return H


class HPatchesPairs:
    """The (1, k) pairs of every sequence below ``root`` (sorted by sequence name)."""

    def __init__(self, root: Path, short_side: Optional[int] = HPATCHES_SHORT_SIDE) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"HPatches folder {self.root} does not exist")
        self.short_side = short_side
        self.items: List[Tuple[Path, int]] = []
        for sequence in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for k in range(2, 7):
                if (sequence / f"H_1_{k}").is_file():
                    self.items.append((sequence, k))
        if not self.items:
            raise DatasetError(f"no HPatches sequences (folders with H_1_k files) in {self.root}")

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[HomographyPair]:
        for sequence, k in self.items:
            image0 = read_gray(_find_image(sequence, 1))
            image1 = read_gray(_find_image(sequence, k))
            H = read_homography(sequence / f"H_1_{k}")
            if self.short_side:
                image0, scale0 = resize_short_side(image0, self.short_side)
                image1, scale1 = resize_short_side(image1, self.short_side)
                H = scale1 @ H @ np.linalg.inv(scale0)
            yield HomographyPair(f"{sequence.name}/1-{k}", image0, image1, H / H[2, 2])


def held_out_images(folder: Path) -> List[Path]:
    """The image files directly inside ``folder``, sorted by name; DatasetError when the folder
    is missing or holds none."""
    if not Path(folder).is_dir():
        raise DatasetError(
            f"held-out image folder {folder} does not exist (make it with "
            "./scripts/get_training_data.sh, or pass a folder of your own photos)")
    images = [Path(path) for path in image_files(str(folder))]
    if not images:
        raise DatasetError(f"no images in {folder}")
    return images


class SyntheticPairs:
    """``pairs_per_image`` random homography pairs of every image in ``folder`` (sorted)."""

    def __init__(self, folder: Path, pairs_per_image: int = 5, seed: int = 0,
                 size: Tuple[int, int] = SYNTHETIC_SIZE) -> None:
        self.folder = Path(folder)
        self.images = held_out_images(self.folder)
        if pairs_per_image < 1:
            raise ValueError("pairs_per_image must be >= 1")
        self.pairs_per_image = pairs_per_image
        self.seed = seed
        self.size = size

    def __len__(self) -> int:
        return len(self.images) * self.pairs_per_image

    def __iter__(self) -> Iterator[HomographyPair]:
        width, height = self.size
        for path in self.images:
            source = read_gray(path)
            name_key = zlib.crc32(path.name.encode("utf-8"))
            for index in range(self.pairs_per_image):
                rng = np.random.default_rng([self.seed, name_key, index])
                image0, image1, H = make_pair(rng, source, width, height, apply_photometric=True)
                yield HomographyPair(f"{path.stem}/{index}", image0, image1, H)
