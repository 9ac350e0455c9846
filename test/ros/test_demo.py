"""The demo's --save-frames: a folder of frames for image_player (player_path:=...), no ROS."""
from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO_ROOT

from loftr_ros.ros.image_player import FrameSource


def test_save_frames_writes_a_folder_image_player_plays(tmp_path):
    folder = tmp_path / "frames"
    code = ("import sys; from loftr_ros.ros import demo; "
            f"status = demo.main(['--save-frames', {str(folder)!r}, '--frames', '4', "
            "'--size', '320x240']); "
            "assert 'rclpy' not in sys.modules, 'saving frames needs no ROS'; sys.exit(status)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 frames 320x240" in result.stdout
    source = FrameSource(str(folder))
    assert [os.path.basename(path) for path in source.files] == [
        f"frame_{index:04d}.png" for index in range(4)]
    frames = list(source.frames())
    assert len(frames) == 4 and frames[0].shape == (240, 320, 3)


def test_save_frames_into_an_unwritable_place_fails_clearly(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = subprocess.run([sys.executable, "-m", "loftr_ros.ros.demo", "--save-frames",
                             str(blocker / "frames"), "--frames", "2", "--size", "320x240"],
                            capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 2 and "cannot write the frames" in result.stderr
