"""Selection rules of the training corpus on fake package trees (no apt, no network)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from loftr_ros.training import data_sources as ds

# Paths below usr/share, laid out like the three Debian packages.
PLASMA = [
    "wallpapers/Altai/contents/images/1080x1920.png",      # portrait duplicate
    "wallpapers/Altai/contents/images/5120x2880.png",
    "wallpapers/Altai/contents/screenshot.png",             # preview
    "wallpapers/Flow/contents/images/5120x2880.jpg",
    "wallpapers/Flow/contents/images/720x1440.jpg",         # portrait duplicate
    "wallpapers/Flow/contents/images_dark/5120x2880.jpg",   # dark duplicate
    "wallpapers/SafeLanding/contents/images/1622x2880.jpg",  # portrait duplicate
    "wallpapers/SafeLanding/contents/images/5120x2880.jpg",
    "wallpapers/Path/contents/images/2560x1600.jpg",        # held out
    "wallpapers/Path/contents/screenshot.jpg",
    "wallpapers/ColorfulCups/contents/images/2560x1600.jpg",  # held out
    "wallpapers/Flow/metadata.json",                        # not an image
]
MATE = [
    "backgrounds/mate/abstract/Elephants.jpg",
    "backgrounds/mate/abstract/Elephants_3840x2160.jpg",
    "backgrounds/mate/abstract/Elephants_5640x3172.jpg",
    "backgrounds/mate/nature/Storm.jpg",                    # held out
    "backgrounds/mate/nature/LadyBird.jpg",                 # held out
    "backgrounds/mate/nature/Wood.jpg",
    "mate-background-properties/mate-nature.xml",
]
UKUI = ["backgrounds/calla.png", "backgrounds/city.png"]


def _fake_tree(root: Path, relpaths, seed: int) -> Path:
    """Write small, distinct image files (or text) at the given paths; return root."""
    rng = np.random.default_rng(seed)
    for relpath in relpaths:
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix in (".jpg", ".png"):
            cv2.imwrite(str(path), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
        else:
            path.write_text("not an image")
    return root


def _by_name(images):
    return {image.name: image for image in images}


def test_plasma_rules(tmp_path):
    images = _by_name(ds.select_images("plasma", _fake_tree(tmp_path, PLASMA, 0)))
    assert sorted(images) == ["plasma_Altai.jpg", "plasma_ColorfulCups.jpg", "plasma_Flow.jpg",
                              "plasma_Path.jpg", "plasma_SafeLanding.jpg"]
    assert images["plasma_Altai.jpg"].relpath == "wallpapers/Altai/contents/images/5120x2880.png"
    assert images["plasma_Flow.jpg"].relpath == "wallpapers/Flow/contents/images/5120x2880.jpg"
    assert images["plasma_SafeLanding.jpg"].relpath.endswith("images/5120x2880.jpg")
    assert {n for n, i in images.items() if i.split == ds.HELDOUT} == {
        "plasma_Path.jpg", "plasma_ColorfulCups.jpg"}


def test_mate_keeps_one_elephants_and_holds_out_storm_and_ladybird(tmp_path):
    images = _by_name(ds.select_images("mate", _fake_tree(tmp_path, MATE, 1)))
    assert sorted(images) == ["mate_abstract_Elephants.jpg", "mate_nature_LadyBird.jpg",
                              "mate_nature_Storm.jpg", "mate_nature_Wood.jpg"]
    assert images["mate_abstract_Elephants.jpg"].relpath.endswith("Elephants_5640x3172.jpg")
    assert images["mate_nature_Storm.jpg"].split == ds.HELDOUT
    assert images["mate_nature_LadyBird.jpg"].split == ds.HELDOUT
    assert images["mate_nature_Wood.jpg"].split == ds.TRAIN


def test_declared_size():
    assert ds.declared_size("5120x2880") == ("", 5120, 2880)
    assert ds.declared_size("Elephants_3840x2160") == ("Elephants", 3840, 2160)
    assert ds.declared_size("2004default") is None
    assert ds.declared_size("Storm") is None


def test_extra_folder_goes_to_train(tmp_path):
    extra = _fake_tree(tmp_path / "robot", ["a.png", "run1/b.jpg", "notes.txt"], 2)
    images = ds.select_extra(extra)
    assert [(i.name, i.split) for i in images] == [("extra_a.jpg", ds.TRAIN),
                                                   ("extra_run1_b.jpg", ds.TRAIN)]
    with pytest.raises(ds.DataSourceError, match="not a directory"):
        ds.select_extra(tmp_path / "missing")


def test_skimage_heldout_photos_ship_in_the_wheel():
    pytest.importorskip("skimage")
    images = ds.select_skimage(ds.skimage_data_dir())
    assert len(images) == len(ds.SKIMAGE_HELDOUT)
    assert all(image.split == ds.HELDOUT and image.path.is_file() for image in images)


def test_missing_skimage_sample_is_an_error(tmp_path):
    with pytest.raises(ds.DataSourceError, match="not found"):
        ds.select_skimage(tmp_path)


def test_disjointness_is_checked(tmp_path):
    images = (ds.select_images("plasma", _fake_tree(tmp_path / "p", PLASMA, 3))
              + ds.select_images("mate", _fake_tree(tmp_path / "m", MATE, 4)))
    ds.check_disjoint(images)  # distinct content: fine
    train = {i.name for i in images if i.split == ds.TRAIN}
    heldout = {i.name for i in images if i.split == ds.HELDOUT}
    assert train and heldout and not train & heldout
    # The same bytes in both splits (a copy of a held-out photo in a user's folder) are refused.
    storm = next(i for i in images if i.name == "mate_nature_Storm.jpg")
    copy = tmp_path / "robot" / "storm_copy.jpg"
    copy.parent.mkdir()
    copy.write_bytes(storm.path.read_bytes())
    with pytest.raises(ds.DataSourceError, match="also in train"):
        ds.check_disjoint(images + ds.select_extra(copy.parent))


def test_load_for_corpus_resizes_and_flattens_alpha_and_gray(tmp_path):
    rgba = np.zeros((400, 2000, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:, :1000, 3] = 255          # left half opaque, right half transparent
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    image = ds.load_for_corpus(tmp_path / "a.png", max_side=1000)
    assert image.shape == (200, 1000)  # equal channels -> gray; longer side 1000
    assert image[:, :400].min() == 200 and image[:, 600:].max() == 0
    colour = np.random.default_rng(0).integers(0, 256, (50, 60, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "c.png"), colour)
    assert np.array_equal(ds.load_for_corpus(tmp_path / "c.png"), colour)  # small: unchanged


def test_write_corpus_and_manifest_records(tmp_path):
    tree = _fake_tree(tmp_path / "m", MATE, 5)
    images = ds.select_images("mate", tree)
    records = ds.write_corpus(images, tmp_path / "out", progress=False)
    assert sorted(p.name for p in (tmp_path / "out" / "heldout").iterdir()) == [
        "mate_nature_LadyBird.jpg", "mate_nature_Storm.jpg"]
    assert len(list((tmp_path / "out" / "train").iterdir())) == 2
    assert {r["file"] for r in records} >= {"heldout/mate_nature_Storm.jpg"}
    json.dumps(records)  # serialisable
    table = ds.summary_table(images).splitlines()
    assert table[1].split() == ["mate", "2", "2"] and table[-1].split() == ["total", "2", "2"]


def test_low_texture_training_images_are_skipped(tmp_path) -> None:
    """Flat graphics are left out of train (not of held-out), and the manifest says why."""
    import cv2
    import numpy as np

    from loftr_ros.training.data_sources import SourceImage, texture_fraction, write_corpus

    rng = np.random.default_rng(0)
    textured = (rng.random((400, 600)) * 255).astype(np.uint8)
    flat = np.tile(np.linspace(0, 255, 600, dtype=np.uint8), (400, 1))  # a smooth gradient
    paths = {}
    for name, pixels in (("textured", textured), ("flat", flat)):
        paths[name] = tmp_path / f"{name}.png"
        cv2.imwrite(str(paths[name]), pixels)
    assert texture_fraction(textured) > 0.5 and texture_fraction(flat) < 0.03
    images = [SourceImage("mate", "a/textured.png", paths["textured"], "t.jpg", "train"),
              SourceImage("mate", "a/flat.png", paths["flat"], "f.jpg", "train"),
              SourceImage("mate", "a/flat.png", paths["flat"], "f.jpg", "heldout")]
    records = write_corpus(images, tmp_path / "out", progress=False)
    assert [record.get("skipped") for record in records] == [None, "low texture", None]
    assert (tmp_path / "out" / "train" / "t.jpg").is_file()
    assert not (tmp_path / "out" / "train" / "f.jpg").exists()
    assert (tmp_path / "out" / "heldout" / "f.jpg").is_file()
