"""Latency statistics in bounded memory: percentiles over a ring buffer plus an EWMA."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """A snapshot of latency figures, all in milliseconds."""

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
    """Records durations (seconds) and reports percentiles of the last ``window`` ones.

    Memory is fixed at ``window`` floats however long the process runs. ``record`` is
    on the inference hot path, so it does only list assignment and arithmetic.
    """

    __slots__ = ("_alpha", "_buf", "_next", "count", "ewma_s", "max_s")

    def __init__(self, window: int = 1024, ewma_alpha: float = 0.1) -> None:
        if window < 1:
            raise ValueError("window must be at least 1 sample")
        if not 0.0 < ewma_alpha <= 1.0:
            raise ValueError("ewma_alpha must be in (0, 1]")
        self._buf: list[float] = [0.0] * window
        self._next = 0
        self._alpha = ewma_alpha
        self.count = 0
        self.ewma_s = math.nan
        self.max_s = 0.0

    def record(self, duration_s: float) -> None:
        """Add one duration in seconds."""
        buf = self._buf
        buf[self._next] = duration_s
        self._next = (self._next + 1) % len(buf)
        self.count += 1
        if self.count == 1:
            self.ewma_s = duration_s
        else:
            self.ewma_s += self._alpha * (duration_s - self.ewma_s)
        self.max_s = max(self.max_s, duration_s)

    def reset(self) -> None:
        """Forget every recorded duration."""
        self._next = 0
        self.count = 0
        self.ewma_s = math.nan
        self.max_s = 0.0

    def summary(self) -> LatencySummary:
        """Percentiles (nearest-rank) over the retained window, in milliseconds."""
        n = min(self.count, len(self._buf))
        if n == 0:
            nan = math.nan
            return LatencySummary(0, nan, nan, nan, nan, nan)
        ordered = sorted(self._buf[:n])

        def pct(p: float) -> float:
            rank = max(1, math.ceil(p / 100.0 * n))
            return ordered[rank - 1] * 1e3

        return LatencySummary(
            count=self.count,
            p50_ms=pct(50),
            p95_ms=pct(95),
            p99_ms=pct(99),
            ewma_ms=self.ewma_s * 1e3,
            max_ms=self.max_s * 1e3,
        )
