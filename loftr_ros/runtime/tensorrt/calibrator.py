"""INT8 calibration data: the image folder, its fingerprint (INT8 engines depend on it) and
TensorRT's entropy calibrator fed with model-sized image pairs."""
from __future__ import annotations

import hashlib
import os
from typing import Any, List, Optional, Sequence, Tuple

from loftr_ros.image_files import image_files
from loftr_ros.runtime.base import LoftrRuntimeError


def calibration_images(calib_dir: str) -> List[str]:
    """Image files directly inside ``calib_dir``, sorted."""
    if not os.path.isdir(calib_dir):
        raise LoftrRuntimeError(f"calibration folder {calib_dir} does not exist")
    return image_files(calib_dir)


def calibration_fingerprint(calib_dir: str) -> str:
    """Short hash of a calibration folder's image names and sizes (int8 engines depend on it)."""
    digest = hashlib.sha256()
    for name in sorted(calibration_images(calib_dir)):
        digest.update(f"{os.path.basename(name)}:{os.path.getsize(name)}\n".encode())
    return digest.hexdigest()[:8]


def calibration_pairs(calib_dir: str, input_size: Tuple[int, int], max_pairs: int = 64
                      ) -> List[Tuple[Any, Any]]:
    """Model-sized float32 ``[1,1,H,W]`` image pairs for INT8 calibration: consecutive images of
    the folder (a robot's image sequence is the best calibration set), prepared exactly as the
    matcher prepares frames."""
    import cv2

    from loftr_ros.matching.preprocess import prepare

    paths = calibration_images(calib_dir)
    tensors = []
    for path in paths[:max_pairs + 1]:
        image = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        if image is not None:
            tensors.append(prepare(image, input_size)[0])
    if len(tensors) < 2:
        raise LoftrRuntimeError(f"INT8 calibration needs at least 2 readable images in "
                                f"{calib_dir} (found {len(tensors)}); 50+ frames of your scene "
                                "are recommended")
    return list(zip(tensors[:-1], tensors[1:]))


def make_entropy_calibrator(trt: Any, cuda: Any, batches: Sequence[Sequence[Any]],
                            input_names: Sequence[str], cache_path: str) -> Any:
    """A ``trt.IInt8EntropyCalibrator2`` that feeds ``batches`` (batch 1; one array per name of
    ``input_names``, in that order) and keeps its table in ``cache_path`` (reused by later builds
    of the same model)."""
    import numpy as np

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.index = 0
            self.device = [cuda.mem_alloc(array.nbytes) for array in batches[0]]

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: List[str]) -> Optional[List[int]]:
            if self.index >= len(batches):
                return None
            for k, array in enumerate(batches[self.index]):
                cuda.memcpy_htod(self.device[k], np.ascontiguousarray(array))
            self.index += 1
            order = {name: k for k, name in enumerate(input_names)}
            return [int(self.device[order.get(name, i)]) for i, name in enumerate(names)]

        def read_calibration_cache(self) -> Optional[bytes]:
            if os.path.isfile(cache_path):
                with open(cache_path, "rb") as handle:
                    return handle.read()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            with open(cache_path, "wb") as handle:
                handle.write(bytes(cache))

    return EntropyCalibrator()


__all__ = ["calibration_images", "calibration_fingerprint",
           "calibration_pairs", "make_entropy_calibrator"]
