"""StampMonitor: frames lost before the node are told from the camera's stamps."""
import numpy as np

from loftr_ros.ros.stamp_monitor import MIN_SPACINGS, StampMonitor


def feed(stamps):
    monitor = StampMonitor(window_seconds=10.0)
    for stamp in stamps:
        monitor.add(float(stamp))
    return monitor.report()


def test_every_frame_arriving_is_no_loss():
    jitter = np.random.default_rng(0).normal(0, 0.004, 100)
    report = feed(100.0 + 0.1 * np.arange(100) + jitter)
    assert report.known and not report.frames_lost
    assert abs(report.stamp_rate - 10.0) < 1.5 and report.gaps == 0
    assert report.arrived_share > 0.9


def test_half_the_frames_lost_is_reported():
    """What stock Fast DDS did to 640x480 bgr8 frames at 10 Hz: about half arrived, gaps."""
    rng = np.random.default_rng(1)
    stamps = 100.0 + 0.1 * np.arange(100)
    kept = stamps[rng.random(100) < 0.5]
    kept = np.concatenate([kept[kept < 104], kept[kept > 106.3]])  # and one 2.3 s gap
    report = feed(kept)
    assert report.frames_lost
    assert abs(report.stamp_rate - 10.0) < 0.5
    assert 0.3 < report.arrived_share < 0.6 and report.gaps >= 1
    assert report.largest_gap > 2.0
    assert "frames lost before the node" in report.describe()


def test_too_few_or_repeated_or_rewound_stamps_say_nothing():
    assert not feed(100.0 + np.arange(MIN_SPACINGS - 1)).known
    assert not feed([5.0] * 50).known, "a republished frame is one stamp"
    rewound = list(100.0 + 0.1 * np.arange(30)) + list(50.0 + 0.3 * np.arange(5))
    assert not feed(rewound).known, "a stamp going back starts over"


def test_slow_irregular_stamps_are_not_a_loss():
    report = feed(np.cumsum(np.full(30, 1.0)))
    assert report.known and not report.frames_lost
