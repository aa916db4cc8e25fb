"""Latency statistics in bounded memory: a ring buffer of the latest durations.

Percentiles, the maximum and an EWMA are computed from the buffer when asked for, so
that :meth:`LatencyStats.record`, which sits on the inference hot path, only stores a
number.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """A snapshot of latency figures over the retained window, all in milliseconds."""

    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    ewma_ms: float
    max_ms: float

    def as_dict(self) -> dict[str, float | int]:
        """The summary as a plain dict (for JSON)."""
        return {
            "count": self.count,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "ewma_ms": self.ewma_ms,
            "max_ms": self.max_ms,
        }


class LatencyStats:
    """Records durations (seconds) and summarises the last ``window`` of them.

    Memory is fixed at ``window`` floats however long the process runs. ``count`` is
    the number recorded since the start (or :meth:`reset`); percentiles, maximum and
    EWMA (smoothing ``ewma_alpha``, oldest to newest) cover the retained window only.
    With the default window of 1024 and alpha 0.1, the EWMA equals the all-time one to
    within 1e-40 relative.
    """

    __slots__ = ("_alpha", "_buf", "_lock", "_next", "_size", "count")

    def __init__(self, window: int = 1024, ewma_alpha: float = 0.1) -> None:
        if window < 1:
            raise ValueError("window must be at least 1 sample")
        if not 0.0 < ewma_alpha <= 1.0:
            raise ValueError("ewma_alpha must be in (0, 1]")
        self._buf: list[float] = [0.0] * window
        self._size = window
        self._next = 0
        self._alpha = ewma_alpha
        self.count = 0
        # Several threads record at once (a pipeline's lanes): keep index and count whole.
        self._lock = threading.Lock()

    def record(self, duration_s: float) -> None:
        """Add one duration in seconds (from any thread)."""
        with self._lock:
            i = self._next
            self._buf[i] = duration_s
            self._next = i + 1 if i + 1 < self._size else 0
            self.count += 1

    def reset(self) -> None:
        """Forget every recorded duration."""
        self._next = 0
        self.count = 0

    def _window(self) -> list[float]:
        """Retained durations, oldest first."""
        if self.count < self._size:
            return self._buf[: self.count]
        return self._buf[self._next :] + self._buf[: self._next]

    def summary(self) -> LatencySummary:
        """Nearest-rank percentiles, maximum and EWMA of the retained window, in ms."""
        recent = self._window()
        n = len(recent)
        if n == 0:
            nan = math.nan
            return LatencySummary(0, nan, nan, nan, nan, nan)
        ordered = sorted(recent)

        def pct(p: float) -> float:
            rank = max(1, math.ceil(p / 100.0 * n))
            return ordered[rank - 1] * 1e3

        ewma = recent[0]
        for value in recent[1:]:
            ewma += self._alpha * (value - ewma)
        return LatencySummary(
            count=self.count,
            p50_ms=pct(50),
            p95_ms=pct(95),
            p99_ms=pct(99),
            ewma_ms=ewma * 1e3,
            max_ms=ordered[-1] * 1e3,
        )
