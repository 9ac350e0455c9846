"""The default training corpus: real photographs from Debian wallpaper packages and scikit-image.

``python -m loftr_ros.training.data_sources --out data`` (or ``scripts/get_training_data.sh``):

1. ``apt-get download`` the packages in :data:`DEBIAN_PACKAGES` into a cache folder (nothing is
   installed system-wide; ``apt-get update`` must have been run once so that apt knows them);
2. ``dpkg -x`` each ``.deb`` into the cache;
3. select one image per distinct picture (rules in :func:`select_images`) and write it as a JPEG
   (longer side at most :data:`MAX_SIDE` px, quality :data:`JPEG_QUALITY`) into ``<out>/train/`` or
   ``<out>/heldout/``.

The held-out split is a fixed list (:data:`HELDOUT_WALLPAPERS` plus scikit-image's sample photos
in :data:`SKIMAGE_HELDOUT`), disjoint from train: the evaluation (``loftr-eval --synthetic``) never
sees a picture the model was trained on. ``--extra DIR`` adds a folder of your own images (e.g. your
robot's camera frames) to train. The output is deterministic for given package versions, which
``<out>/manifest.json`` records with every file's origin.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from loftr_ros.image_files import has_image_extension

DEBIAN_PACKAGES: Tuple[str, ...] = ("plasma-workspace-wallpapers", "mate-backgrounds",
                                    "ukui-wallpapers")
#: short source name of each package (prefix of the output file names)
SOURCE_NAMES: Dict[str, str] = {"plasma-workspace-wallpapers": "plasma",
                                "mate-backgrounds": "mate", "ukui-wallpapers": "ukui"}
#: held-out wallpapers, as prefixes of paths relative to the package's ``usr/share/``
HELDOUT_WALLPAPERS: Tuple[str, ...] = (
    "backgrounds/mate/nature/Storm.jpg",
    "backgrounds/mate/nature/LadyBird.jpg",
    "wallpapers/Path/",
    "wallpapers/ColorfulCups/",
)
#: real photographs that ship inside the scikit-image wheel (``skimage/data``), all held out
SKIMAGE_HELDOUT: Tuple[str, ...] = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png",
                                    "motorcycle_left.png", "rocket.jpg")
MAX_SIDE = 1600
JPEG_QUALITY = 92
MIN_TEXTURE = 0.03
DEFAULT_CACHE = Path.home() / ".cache" / "loftr_ros"

_SIZE_SUFFIX = re.compile(r"^(?P<base>.*?)[_-]?(?P<w>\d{3,5})x(?P<h>\d{3,5})$")
TRAIN = "train"
HELDOUT = "heldout"


class DataSourceError(RuntimeError):
    """A clear, user-facing failure (apt cannot find a package, a file is unreadable...)."""


@dataclass(frozen=True)
class SourceImage:
    """One selected picture.

    Attributes:
        source: short source name (``plasma``, ``mate``, ``ukui``, ``skimage``, ``extra``).
        relpath: path inside the source tree, ``/``-separated (for packages: below ``usr/share``).
        path: the file on disk.
        name: output file name (``<source>_<picture>.jpg``), unique within the corpus.
        split: ``train`` or ``heldout``.
    """

    source: str
    relpath: str
    path: Path
    name: str
    split: str


def declared_size(stem: str) -> Optional[Tuple[str, int, int]]:
    """``(base, width, height)`` if a file stem ends in a ``WxH`` size (``5120x2880``,
    ``Elephants_3840x2160``), else None."""
    match = _SIZE_SUFFIX.match(stem)
    if match is None:
        return None
    return match.group("base"), int(match.group("w")), int(match.group("h"))


def _is_image(path: Path) -> bool:
    return path.is_file() and has_image_extension(path.name)


def _picture_key(relpath: str) -> str:
    """The picture a file shows, for grouping size variants: ``wallpapers/Kay/contents/images/
    5120x2880.png`` -> ``wallpapers/Kay``; ``backgrounds/mate/abstract/Elephants_3840x2160.jpg`` ->
    ``backgrounds/mate/abstract/Elephants``."""
    parts = relpath.split("/")
    if "contents" in parts:  # KDE wallpaper package: <Name>/contents/images/<WxH>.<ext>
        return "/".join(parts[:parts.index("contents")])
    stem = parts[-1].rsplit(".", 1)[0]
    size = declared_size(stem)
    base = size[0] if size is not None and size[0] else stem
    return "/".join(parts[:-1] + [base])


def _excluded(relpath: str) -> bool:
    """Previews, dark-theme copies and portrait-format variants of a picture."""
    parts = relpath.split("/")
    stem = parts[-1].rsplit(".", 1)[0]
    if stem.lower() == "screenshot" or "images_dark" in parts:
        return True
    size = declared_size(stem)
    return size is not None and size[2] > size[1]


def _pixels(relpath: str) -> int:
    size = declared_size(relpath.split("/")[-1].rsplit(".", 1)[0])
    return 0 if size is None else size[1] * size[2]


def _output_name(source: str, picture_key: str) -> str:
    parts = picture_key.split("/")
    if parts[0] in ("wallpapers", "backgrounds"):
        parts = parts[1:]
    if parts and parts[0] == source:  # backgrounds/mate/nature/Storm -> mate_nature_Storm
        parts = parts[1:]
    name = "_".join([source] + parts)
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".jpg"


def is_heldout(relpath: str) -> bool:
    """Whether a package file (path below ``usr/share``) belongs to the held-out split."""
    return any(relpath.startswith(prefix) for prefix in HELDOUT_WALLPAPERS)


def select_images(source: str, share_dir: Path) -> List[SourceImage]:
    """Select one file per distinct picture of an extracted package's ``usr/share`` tree.

    Rules: image files only; ``screenshot.*`` previews, ``images_dark`` copies and portrait-format
    variants (declared ``WxH`` with H > W) are dropped; size variants of one picture (a KDE
    wallpaper's ``images/<WxH>`` files, ``Elephants.jpg`` / ``Elephants_3840x2160.jpg``) are grouped
    and the largest declared size kept. The split follows :func:`is_heldout`. Sorted by name.
    """
    groups: Dict[str, List[str]] = {}
    for path in sorted(share_dir.rglob("*")):
        if not _is_image(path):
            continue
        relpath = path.relative_to(share_dir).as_posix()
        if _excluded(relpath):
            continue
        groups.setdefault(_picture_key(relpath), []).append(relpath)
    selected = []
    for key in sorted(groups):
        # Largest declared size first; ties broken by path so the choice is deterministic.
        relpath = sorted(groups[key], key=lambda rel: (-_pixels(rel), rel))[0]
        split = HELDOUT if is_heldout(relpath) else TRAIN
        selected.append(SourceImage(source, relpath, share_dir / relpath,
                                    _output_name(source, key), split))
    return selected


def select_extra(folder: Path) -> List[SourceImage]:
    """Every image file below a user's folder, all for training, named ``extra_<relative path>``."""
    if not folder.is_dir():
        raise DataSourceError(f"--extra {folder}: not a directory")
    images = []
    for path in sorted(folder.rglob("*")):
        if _is_image(path):
            relpath = path.relative_to(folder).as_posix()
            images.append(SourceImage("extra", relpath, path,
                                      _output_name("extra", relpath.rsplit(".", 1)[0]), TRAIN))
    return images


def skimage_data_dir() -> Path:
    """The folder of sample images inside the installed scikit-image wheel (no download)."""
    try:
        import skimage
    except ImportError as error:
        raise DataSourceError("scikit-image is not installed (its sample photos are part of the "
                              "held-out set): pip install scikit-image") from error
    return Path(skimage.__file__).parent / "data"


def select_skimage(data_dir: Path) -> List[SourceImage]:
    """The held-out scikit-image photos of :data:`SKIMAGE_HELDOUT`; a missing one is an error."""
    images = []
    for file_name in SKIMAGE_HELDOUT:
        path = data_dir / file_name
        if not path.is_file():
            raise DataSourceError(f"scikit-image sample {file_name} not found in {data_dir}")
        images.append(SourceImage("skimage", file_name, path,
                                  _output_name("skimage", file_name.rsplit(".", 1)[0]), HELDOUT))
    return images


def check_disjoint(images: Sequence[SourceImage]) -> None:
    """Raise DataSourceError if an output name repeats or one file's bytes are in both splits."""
    names = [image.name for image in images]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DataSourceError(f"two pictures map to the same output name: {duplicates}")
    digests: Dict[str, Dict[str, str]] = {TRAIN: {}, HELDOUT: {}}
    for image in images:
        digest = hashlib.sha256(image.path.read_bytes()).hexdigest()
        digests[image.split][digest] = image.relpath
    shared = set(digests[TRAIN]) & set(digests[HELDOUT])
    if shared:
        raise DataSourceError("held-out pictures also in train: "
                              f"{sorted(digests[HELDOUT][d] for d in shared)}")


# --------------------------------------------------------------------------------------------
# apt / dpkg
# --------------------------------------------------------------------------------------------

def _run(command: List[str], cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as error:
        raise DataSourceError(f"{command[0]} not found: the default corpus comes from Debian "
                              "packages and needs apt-get and dpkg (a Debian/Ubuntu machine); "
                              "use --extra DIR with your own images elsewhere") from error


def download_package(package: str, deb_dir: Path) -> Path:
    """``apt-get download`` one package into ``deb_dir``, unless a ``.deb`` of it is there."""
    deb_dir.mkdir(parents=True, exist_ok=True)
    cached = sorted(deb_dir.glob(f"{package}_*.deb"))
    if cached:
        return cached[-1]
    result = _run(["apt-get", "download", package], cwd=deb_dir)
    cached = sorted(deb_dir.glob(f"{package}_*.deb"))
    if result.returncode != 0 or not cached:
        message = (result.stderr or result.stdout).strip()
        hint = ""
        if re.search(r"Unable to locate|no installation candidate|Can't select candidate",
                     message, re.IGNORECASE):
            hint = (" apt does not know this package yet: run `apt-get update` once (as root), "
                    "then try again.")
        raise DataSourceError(f"apt-get download {package} failed in {deb_dir}:{hint}\n{message}")
    return cached[-1]


def package_version(deb: Path) -> str:
    """The Debian version recorded in a ``.deb`` file."""
    result = _run(["dpkg-deb", "-f", str(deb), "Version"])
    if result.returncode != 0:
        raise DataSourceError(f"{deb} is not a readable .deb: {result.stderr.strip()}")
    return result.stdout.strip()


def extract_package(deb: Path, dest: Path) -> Path:
    """``dpkg -x`` a ``.deb`` into ``dest`` (once; a marker file records success); returns
    ``dest/usr/share``."""
    marker = dest / ".extracted"
    if not (marker.is_file() and marker.read_text() == deb.name):
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        result = _run(["dpkg", "-x", str(deb), str(dest)])
        if result.returncode != 0:
            raise DataSourceError(f"dpkg -x {deb} failed: {result.stderr.strip()}")
        marker.write_text(deb.name)
    return dest / "usr" / "share"


# --------------------------------------------------------------------------------------------
# image conversion
# --------------------------------------------------------------------------------------------

def load_for_corpus(path: Path, max_side: int = MAX_SIDE) -> np.ndarray:
    """Read an image as uint8 gray ``[H,W]`` or BGR ``[H,W,3]``, longer side at most ``max_side``.

    Transparent pixels are composited over black; colour images whose channels are all equal
    become gray; 16-bit images are scaled to 8 bits.
    """
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataSourceError(f"cannot read image {path}")
    if image.dtype == np.uint16:
        image = (image / 257.0).round().astype(np.uint8)
    elif image.dtype != np.uint8:
        raise DataSourceError(f"{path}: unsupported pixel type {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 4:
        alpha = image[:, :, 3:].astype(np.float32) / 255.0
        image = (image[:, :, :3].astype(np.float32) * alpha).round().astype(np.uint8)
    elif image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and np.array_equal(image[:, :, 0], image[:, :, 1]) and np.array_equal(
            image[:, :, 1], image[:, :, 2]):
        image = image[:, :, 0]
    height, width = image.shape[:2]
    scale = max_side / max(height, width)
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image)


def texture_fraction(pixels: np.ndarray) -> float:
    """Fraction of pixels with a strong gradient (|dx|+|dy| Sobel > 40) at 640 px width.

    Flat graphics (gradients, plain shapes) score below ~0.03; their ground-truth matches sit
    on featureless areas that no matcher can learn from.
    """
    gray = pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)
    height, width = gray.shape
    small = cv2.resize(gray, (640, max(1, round(height * 640 / width))),
                       interpolation=cv2.INTER_AREA)
    gradient = np.abs(cv2.Sobel(small, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(small, cv2.CV_32F,
                                                                              0, 1))
    return float((gradient > 40).mean())


def write_corpus(images: Sequence[SourceImage], out: Path, max_side: int = MAX_SIDE,
                 quality: int = JPEG_QUALITY, progress: bool = True,
                 min_texture: float = MIN_TEXTURE) -> List[Dict[str, object]]:
    """Write every image as ``<out>/<split>/<name>``; returns one manifest record per file.

    Training images whose :func:`texture_fraction` is below ``min_texture`` are skipped (their
    record says ``"skipped": "low texture"``); held-out and user images are always written.
    """
    records: List[Dict[str, object]] = []
    for index, image in enumerate(images):
        pixels = load_for_corpus(image.path, max_side)
        if image.split == TRAIN and image.source != "extra" and min_texture > 0:
            texture = texture_fraction(pixels)
            if texture < min_texture:
                records.append({"file": None, "source": image.source, "origin": image.relpath,
                                "skipped": "low texture", "texture": round(texture, 4)})
                continue
        target = out / image.split / image.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(target), pixels, [cv2.IMWRITE_JPEG_QUALITY, quality]):
            raise DataSourceError(f"cannot write {target}")
        records.append({"file": f"{image.split}/{image.name}", "source": image.source,
                        "origin": image.relpath, "width": int(pixels.shape[1]),
                        "height": int(pixels.shape[0]),
                        "channels": 1 if pixels.ndim == 2 else int(pixels.shape[2])})
        if progress:
            print(f"[{index + 1}/{len(images)}] {target}", file=sys.stderr)
    return records


def summary_table(images: Iterable[SourceImage]) -> str:
    """Counts per source and split, as a small text table."""
    counts: Dict[str, Dict[str, int]] = {}
    for image in images:
        counts.setdefault(image.source, {TRAIN: 0, HELDOUT: 0})[image.split] += 1
    lines = [f"{'source':<10} {'train':>6} {'heldout':>8}"]
    for source in sorted(counts):
        lines.append(f"{source:<10} {counts[source][TRAIN]:>6} {counts[source][HELDOUT]:>8}")
    total_train = sum(c[TRAIN] for c in counts.values())
    total_heldout = sum(c[HELDOUT] for c in counts.values())
    lines.append(f"{'total':<10} {total_train:>6} {total_heldout:>8}")
    return "\n".join(lines)


def gather(out: Path, cache: Path = DEFAULT_CACHE, extra: Sequence[Path] = (),
           packages: Sequence[str] = DEBIAN_PACKAGES, progress: bool = True) -> List[SourceImage]:
    """Download, extract, select and write the whole corpus; returns the selection."""
    images: List[SourceImage] = []
    versions = {}
    for package in packages:
        deb = download_package(package, cache / "debs")
        versions[package] = package_version(deb)
        share_dir = extract_package(deb, cache / "extracted" / package)
        images += select_images(SOURCE_NAMES.get(package, package), share_dir)
    images += select_skimage(skimage_data_dir())
    for folder in extra:
        images += select_extra(Path(folder))
    check_disjoint(images)
    records = write_corpus(images, out, progress=progress)
    skipped = [record for record in records if record.get("skipped")]
    if skipped:
        print(f"skipped {len(skipped)} low-texture training images (texture < {MIN_TEXTURE}): "
              + ", ".join(str(record["origin"]).rsplit("/", 1)[-1] for record in skipped),
              file=sys.stderr)
    manifest = {"packages": versions, "max_side": MAX_SIDE, "jpeg_quality": JPEG_QUALITY,
                "files": records}
    try:
        import skimage
        manifest["scikit-image"] = skimage.__version__
    except ImportError:  # select_skimage already failed clearly in that case
        pass
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return images


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loftr_ros.training.data_sources",
        description="Gather the default training corpus (Debian wallpaper photos + scikit-image "
                    "samples) into OUT/train and OUT/heldout.")
    parser.add_argument("--out", type=Path, default=Path("data"), help="output folder (data)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help=f"where .deb files are downloaded and extracted ({DEFAULT_CACHE})")
    parser.add_argument("--extra", type=Path, action="append", default=[], metavar="DIR",
                        help="a folder of your own images to add to train (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="no per-file progress")
    args = parser.parse_args(argv)
    try:
        images = gather(args.out, args.cache, args.extra, progress=not args.quiet)
    except DataSourceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(summary_table(images))
    print(f"written to {args.out}/{TRAIN} and {args.out}/{HELDOUT} "
          f"(manifest: {args.out}/manifest.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
