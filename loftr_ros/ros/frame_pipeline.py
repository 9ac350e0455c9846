"""The node's frame hand-over and statistics, free of ROS so that they are unit-testable.

:class:`NewestFrameSlot` is the drop rule: one pending frame at most; a frame that arrives while
another is still pending replaces it and is counted as dropped. Inference therefore never works on
a stale frame and latency stays bounded whatever the camera rate.

:class:`PipelineStats` keeps the counters and sliding windows that ``/diagnostics`` and the debug
overlay report.
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Any, Deque, Dict, Generic, Optional, Tuple, TypeVar

T = TypeVar("T")


class NewestFrameSlot(Generic[T]):
    """Holds at most one pending item; ``put`` replaces, ``take`` blocks until one is there."""

    def __init__(self) -> None:
        self._item: Optional[T] = None
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0

    def put(self, item: T) -> bool:
        """Store ``item``; returns True when it replaced a pending one (counted in ``dropped``)."""
        with self._cond:
            replaced = self._item is not None
            if replaced:
                self.dropped += 1
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout: Optional[float] = None) -> Optional[T]:
        """The pending item (and empty the slot), or None on timeout / after :meth:`close`."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._item is not None or self._closed, timeout):
                return None
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        """Wake every waiting :meth:`take` (it returns None from now on)."""
        with self._cond:
            self._closed = True
            self._item = None
            self._cond.notify_all()


@dataclass
class FrameTiming:
    """Timing of one processed frame, seconds.

    Attributes:
        received: ``time.monotonic()`` when the image callback got the frame.
        published: ``time.monotonic()`` when its matches were published.
        inference: time the inference engine ran on the pair (``Matches.timings``).
        matcher: time of the whole ``Matcher`` call (pre-processing, engine, matching).
    """

    received: float
    published: float
    inference: float
    matcher: float = 0.0

    @property
    def latency(self) -> float:
        """Receive -> matches published."""
        return self.published - self.received


class PipelineStats:
    """Counters plus a sliding window of recent frames (thread-safe)."""

    def __init__(self, window_seconds: float = 5.0) -> None:
        self.window_seconds = window_seconds
        self._lock = threading.Lock()
        self._recent: Deque[FrameTiming] = collections.deque()
        self.received = 0
        self.processed = 0
        self.rejected = 0
        self.errors = 0
        self.last_matches = 0
        self.last_latency = 0.0

    def count_received(self) -> None:
        with self._lock:
            self.received += 1

    def count_rejected(self) -> None:
        with self._lock:
            self.rejected += 1

    def count_error(self) -> None:
        with self._lock:
            self.errors += 1

    def add_frame(self, timing: FrameTiming, matches: int) -> None:
        """Record one processed frame."""
        with self._lock:
            self.processed += 1
            self.last_matches = matches
            self.last_latency = timing.latency
            self._recent.append(timing)
            self._trim(timing.published)

    def _trim(self, now: float) -> None:
        while self._recent and now - self._recent[0].published > self.window_seconds:
            self._recent.popleft()

    def window(self, now: Optional[float] = None) -> Dict[str, float]:
        """Means over the recent window: ``rate`` (Hz), ``latency``, ``inference`` and
        ``matcher`` (seconds); all 0 when no frame is in the window."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._trim(now)
            frames = list(self._recent)
        result = {"rate": 0.0, "latency": 0.0, "inference": 0.0, "matcher": 0.0}
        if not frames:
            return result
        for key in ("latency", "inference", "matcher"):
            result[key] = sum(getattr(f, key) for f in frames) / len(frames)
        span = frames[-1].published - frames[0].published
        if len(frames) > 1 and span > 0:
            result["rate"] = (len(frames) - 1) / span
        return result

    def snapshot(self) -> dict:
        """Counters as a dict (for diagnostics)."""
        with self._lock:
            return {"received": self.received, "processed": self.processed,
                    "rejected": self.rejected, "errors": self.errors,
                    "last_matches": self.last_matches, "last_latency": self.last_latency}


@dataclass
class Reference:
    """The reference frame: decoded image, its ``EncodedImage`` (``Matcher.encode``: computed
    once, reused for every frame), stamp, message."""

    image: Any
    encoded: Any
    stamp: Tuple[int, int]
    msg: Any
    set_at: float


__all__ = ["FrameTiming", "NewestFrameSlot", "PipelineStats", "Reference"]
