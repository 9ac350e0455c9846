"""Frames lost before the node, told from the camera's stamps (no ROS; unit-testable).

A camera stamps its frames at a steady spacing. When the transport loses frames (for instance
Fast DDS's default transports with 640x480 bgr8 frames over best-effort QoS), the stamps that do
arrive show it: their spacing is mostly the camera's period, with gaps of several periods. The
node's own drops (newest frame wins) happen after the subscription and do not count here.

:class:`StampMonitor` keeps the recent stamps and estimates the camera's period (a low
percentile of the positive spacings, so lost frames do not stretch it), the share of the
camera's frames that arrived, and the gaps.
"""
from __future__ import annotations

import collections
import threading
from dataclasses import dataclass
from typing import Deque, Optional, Tuple

import numpy as np

#: the spacing percentile taken as the camera's period: with up to 75 % of frames lost, a
#: quarter of the spacings are still one period
PERIOD_PERCENTILE = 25.0
#: a spacing above this many periods is a gap
GAP_PERIODS = 2.5
#: fewest positive spacings in the window before anything is concluded
MIN_SPACINGS = 10
#: report a loss when fewer than this share of the camera's frames arrived
MIN_ARRIVED_SHARE = 0.75


@dataclass(frozen=True)
class StampReport:
    """What the recent stamps say.

    Attributes:
        stamp_rate: the camera's rate from its stamps' spacing, Hz (0 when unknown).
        arrival_rate: frames that arrived per second of stamps, Hz (0 when unknown).
        arrived_share: arrived / expected frames over the window's stamps, 0..1 (1 when unknown).
        gaps: spacings longer than ``GAP_PERIODS`` periods in the window.
        largest_gap: the longest spacing in the window, seconds.
        known: enough spacings for the numbers to mean something.
    """

    stamp_rate: float
    arrival_rate: float
    arrived_share: float
    gaps: int
    largest_gap: float
    known: bool

    @property
    def frames_lost(self) -> bool:
        """Whether frames are being lost before the node."""
        return self.known and (self.arrived_share < MIN_ARRIVED_SHARE)

    def describe(self) -> str:
        """One line for /diagnostics."""
        return (f"frames lost before the node: stamps every {1e3 / self.stamp_rate:.0f} ms "
                f"({self.stamp_rate:.1f} Hz) but {self.arrival_rate:.1f} Hz arrive "
                f"({100 * self.arrived_share:.0f} %), {self.gaps} gaps up to "
                f"{self.largest_gap:.2f} s; see docs/troubleshooting.md")


UNKNOWN = StampReport(0.0, 0.0, 1.0, 0, 0.0, False)


class StampMonitor:
    """Recent camera stamps (thread-safe).

    Args:
        window_seconds: stamps older than this (in stamp time, from the newest) are forgotten.
    """

    def __init__(self, window_seconds: float = 10.0) -> None:
        self.window_seconds = window_seconds
        self._lock = threading.Lock()
        self._spacings: Deque[Tuple[float, float]] = collections.deque()  # (stamp, spacing)
        self._last: Optional[float] = None

    def add(self, stamp_seconds: float) -> None:
        """Record one received frame's stamp. Repeated stamps are ignored; a stamp going back
        (a restarted player, a bag looping) starts over."""
        with self._lock:
            if self._last is not None and stamp_seconds < self._last:
                self._spacings.clear()
            elif self._last is not None and stamp_seconds > self._last:
                self._spacings.append((stamp_seconds, stamp_seconds - self._last))
            self._last = stamp_seconds
            while self._spacings and stamp_seconds - self._spacings[0][0] > self.window_seconds:
                self._spacings.popleft()

    def report(self) -> StampReport:
        """The camera's rate, the share of its frames that arrived, and the gaps."""
        with self._lock:
            spacings = np.array([spacing for _, spacing in self._spacings], dtype=np.float64)
        if len(spacings) < MIN_SPACINGS:
            return UNKNOWN
        period = float(np.percentile(spacings, PERIOD_PERCENTILE))
        if period <= 0:
            return UNKNOWN
        span = float(spacings.sum())
        expected = span / period
        arrived_share = min(1.0, len(spacings) / expected)
        return StampReport(stamp_rate=1.0 / period, arrival_rate=len(spacings) / span,
                           arrived_share=arrived_share,
                           gaps=int(np.count_nonzero(spacings > GAP_PERIODS * period)),
                           largest_gap=float(spacings.max()), known=True)


__all__ = ["StampMonitor", "StampReport", "UNKNOWN"]
