"""loftr_ros.image_files: one extension list, folder listing (flat and recursive)."""
import os

from loftr_ros.image_files import IMAGE_EXTENSIONS, has_image_extension, image_files


def _touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb"):
        pass


def test_extensions_are_lower_case_and_cover_the_common_formats():
    assert all(ext == ext.lower() and ext.startswith(".") for ext in IMAGE_EXTENSIONS)
    for name in ("a.png", "b.JPG", "c.jpeg", "d.webp", "e.TIFF", "f.pgm"):
        assert has_image_extension(name), name
    for name in ("notes.txt", "clip.mp4", "png", "image.png.json"):
        assert not has_image_extension(name), name


def test_flat_listing_is_sorted_and_skips_other_files(tmp_path):
    for name in ("b.png", "a.JPG", "c.webp", "readme.txt"):
        _touch(str(tmp_path / name))
    os.makedirs(tmp_path / "folder.png")  # a folder with an image-like name is not a file
    _touch(str(tmp_path / "sub" / "d.png"))
    assert [os.path.basename(p) for p in image_files(str(tmp_path))] == ["a.JPG", "b.png",
                                                                          "c.webp"]


def test_recursive_listing_leaves_hidden_entries_out(tmp_path):
    for name in ("a.png", "sub/b.jpg", "sub/deeper/c.bmp", ".hidden/d.png", "sub/.e.png"):
        _touch(str(tmp_path / name))
    found = [os.path.relpath(p, str(tmp_path)) for p in image_files(str(tmp_path), True)]
    assert found == ["a.png", os.path.join("sub", "b.jpg"),
                     os.path.join("sub", "deeper", "c.bmp")]


def test_empty_folder_gives_an_empty_list(tmp_path):
    assert image_files(str(tmp_path)) == [] == image_files(str(tmp_path), recursive=True)
