"""The node's drop rule and statistics, without ROS."""
import threading
import time

from loftr_ros.ros.frame_pipeline import FrameTiming, NewestFrameSlot, PipelineStats


def test_newest_frame_wins_and_drops_are_counted():
    slot = NewestFrameSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True and slot.put(3) is True
    assert slot.dropped == 2
    assert slot.take(timeout=0.1) == 3
    assert slot.take(timeout=0.05) is None


def test_take_blocks_until_put_and_close_wakes():
    slot = NewestFrameSlot()
    got = []
    worker = threading.Thread(target=lambda: got.append(slot.take(timeout=5)))
    worker.start()
    time.sleep(0.05)
    slot.put("frame")
    worker.join(timeout=2)
    assert got == ["frame"]
    waiter = threading.Thread(target=lambda: got.append(slot.take(timeout=5)))
    waiter.start()
    slot.close()
    waiter.join(timeout=2)
    assert got[-1] is None and not waiter.is_alive()


def test_stats_window():
    stats = PipelineStats(window_seconds=10)
    for k in range(11):
        t = 100.0 + k * 0.1
        stats.add_frame(FrameTiming(received=t - 0.03, published=t, inference=0.015,
                                    matcher=0.02), matches=k)
    window = stats.window(now=101.0)
    assert abs(window["rate"] - 10.0) < 1e-6
    assert abs(window["latency"] - 0.03) < 1e-9 and abs(window["inference"] - 0.015) < 1e-9
    assert abs(window["matcher"] - 0.02) < 1e-9
    assert stats.snapshot()["processed"] == 11 and stats.snapshot()["last_matches"] == 10
    assert set(stats.window(now=200.0).values()) == {0.0}
