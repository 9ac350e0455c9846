"""Stop signals during clean-up.

A second Ctrl-C, or GNU ``timeout`` re-sending SIGINT, must not interrupt a node's clean-up:
a ``KeyboardInterrupt`` raised inside ``destroy_node`` or ``rclpy.shutdown`` leaves a traceback,
a non-zero exit, or (with DDS threads still running) an abort. Once a node has decided to stop,
further SIGINT / SIGTERM are ignored until the process exits.
"""
from __future__ import annotations

import signal
import threading


def ignore_stop_signals() -> None:
    """Ignore SIGINT and SIGTERM from now on (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)


__all__ = ["ignore_stop_signals"]
