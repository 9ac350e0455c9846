"""Image files on disk: the one list of extensions that every folder reader of the package uses
(image_player, INT8 calibration, training, evaluation)."""
from __future__ import annotations

import os
from typing import List

#: extensions (lower case) read as images; OpenCV's ``imread`` decodes all of them
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp")


def has_image_extension(name: str) -> bool:
    """Whether a file name ends with one of ``IMAGE_EXTENSIONS`` (any case)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def image_files(folder: str, recursive: bool = False) -> List[str]:
    """Paths of the image files in ``folder``, sorted; with ``recursive`` also in its sub-folders
    (hidden files and folders left out). An empty list when there are none."""
    if not recursive:
        return sorted(os.path.join(folder, name) for name in os.listdir(folder)
                      if has_image_extension(name)
                      and os.path.isfile(os.path.join(folder, name)))
    paths = []
    for parent, subfolders, names in os.walk(folder, followlinks=True):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        paths += [os.path.join(parent, name) for name in names
                  if not name.startswith(".") and has_image_extension(name)]
    return sorted(paths)
