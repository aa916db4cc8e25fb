"""Data cleaning for scalar sensor streams, with a documented policy and counters.

Policy (in this order, per incoming sample ``(t_s, value)``):

1. **Non-finite** (NaN, inf): dropped, counted in ``non_finite``.
2. **Out of order** (time not after the last accepted sample): dropped,
   counted in ``out_of_order``.
3. **Out of range** (outside ``[valid_min, valid_max]``): ``range_policy="clip"``
   clamps it to the bound (``clipped``); ``"drop"`` drops it (``range_dropped``).
4. **Spike**: a value more than ``spike_mads`` scaled median absolute deviations from
   the median of the last ``spike_window`` accepted values is a spike;
   ``spike_policy="replace"`` replaces it by that median (``spikes_replaced``),
   ``"drop"`` drops it (``spikes_dropped``), ``"keep"`` only counts it
   (``spikes_kept``). Use ``"keep"`` in front of an anomaly detector: spikes are what
   it must see.
5. **Gap**: when the time since the last accepted sample exceeds
   ``gap_factor * interval_s``, the missing points are filled by linear interpolation
   at ``interval_s`` spacing (``filled``), up to ``max_fill`` points; a longer gap is
   left open and counted in ``gaps_open``.

``interval_s`` is learnt as the median of the first intervals when not given.
:meth:`Cleaner.push` returns the samples to pass on (zero, one or several).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Cleaner", "CleaningCounters"]


@dataclass
class CleaningCounters:
    """What the cleaner did, by rule; ``seen`` and ``passed`` count samples in and out."""

    seen: int = 0
    passed: int = 0
    non_finite: int = 0
    out_of_order: int = 0
    clipped: int = 0
    range_dropped: int = 0
    spikes_replaced: int = 0
    spikes_dropped: int = 0
    spikes_kept: int = 0
    filled: int = 0
    gaps_open: int = 0

    @property
    def fixed_or_dropped(self) -> int:
        """Samples changed or removed (what a health score calls bad data)."""
        return (
            self.non_finite
            + self.out_of_order
            + self.clipped
            + self.range_dropped
            + self.spikes_replaced
            + self.spikes_dropped
        )

    def as_dict(self) -> dict[str, int]:
        """Counters as a plain dict (for summaries and JSON)."""
        return dict(self.__dict__)


@dataclass
class Cleaner:
    """Streaming cleaner for one channel (policy in the module docstring)."""

    valid_min: float = -math.inf
    valid_max: float = math.inf
    range_policy: Literal["clip", "drop"] = "clip"
    spike_mads: float = 8.0
    spike_window: int = 15
    spike_policy: Literal["replace", "drop", "keep"] = "replace"
    interval_s: float | None = None
    gap_factor: float = 1.5
    max_fill: int = 12
    counters: CleaningCounters = field(default_factory=CleaningCounters)

    def __post_init__(self) -> None:
        if self.valid_min > self.valid_max:
            raise ValueError(f"valid_min {self.valid_min} is above valid_max {self.valid_max}")
        if self.range_policy not in ("clip", "drop"):
            raise ValueError("range_policy must be 'clip' or 'drop'")
        if self.spike_policy not in ("replace", "drop", "keep"):
            raise ValueError("spike_policy must be 'replace', 'drop' or 'keep'")
        if self.spike_window < 3 or self.spike_mads <= 0:
            raise ValueError("spike_window must be >= 3 and spike_mads > 0")
        if self.interval_s is not None and self.interval_s <= 0:
            raise ValueError("interval_s must be positive seconds")
        self._recent: deque[float] = deque(maxlen=self.spike_window)
        self._sorted: list[float] = []
        self._last: tuple[float, float] | None = None
        self._intervals: list[float] = []

    def push(self, t_s: float, value: float) -> list[tuple[float, float]]:
        """Take one sample; return the cleaned samples to pass on, in time order."""
        c = self.counters
        c.seen += 1
        if not (math.isfinite(value) and math.isfinite(t_s)):
            c.non_finite += 1
            return []
        if self._last is not None and t_s <= self._last[0]:
            c.out_of_order += 1
            return []
        if value < self.valid_min or value > self.valid_max:
            if self.range_policy == "drop":
                c.range_dropped += 1
                return []
            value = min(max(value, self.valid_min), self.valid_max)
            c.clipped += 1
        value_or_none = self._despike(value)
        if value_or_none is None:
            return []
        value = value_or_none
        out = self._fill_gap(t_s, value)
        out.append((t_s, value))
        self._last = (t_s, value)
        self._remember(value)
        c.passed += len(out)
        return out

    def clean_envelope(
        self, envelope: tuple[float, float], value: float
    ) -> tuple[float, float] | None:
        """The part of a sample's ``(min, max)`` envelope the policy lets through.

        ``value`` is the sample's cleaned value. An end outside ``[valid_min,
        valid_max]`` is clamped to the range with ``range_policy="clip"`` and replaced
        by ``value`` with ``"drop"`` (an out-of-range reading is garbage, such as a
        sensor's error code, and must not alarm from inside an envelope either). With
        ``spike_policy`` ``"replace"`` or ``"drop"`` the envelope is discarded
        (``None``): spikes between reads are what it carries, and the policy says not to
        pass spikes on. Not counted: the counters are per sample, and the sample itself
        went through :meth:`push`.
        """
        lo, hi = envelope
        if not (math.isfinite(lo) and math.isfinite(hi)) or self.spike_policy != "keep":
            return None
        if self.range_policy == "drop":
            if not self.valid_min <= lo <= self.valid_max:
                lo = value
            if not self.valid_min <= hi <= self.valid_max:
                hi = value
            return (min(lo, value), max(hi, value))
        lo = min(max(lo, self.valid_min), self.valid_max)
        hi = min(max(hi, self.valid_min), self.valid_max)
        return (lo, hi)

    def _despike(self, value: float) -> float | None:
        if len(self._sorted) < self.spike_window:
            return value
        s = self._sorted
        median = s[len(s) // 2]
        mad = sorted(abs(x - median) for x in s)[len(s) // 2] * 1.4826
        if mad <= 0.0 or abs(value - median) <= self.spike_mads * mad:
            return value
        if self.spike_policy == "replace":
            self.counters.spikes_replaced += 1
            return median
        if self.spike_policy == "drop":
            self.counters.spikes_dropped += 1
            return None
        self.counters.spikes_kept += 1
        return value

    def _remember(self, value: float) -> None:
        if len(self._recent) == self._recent.maxlen:
            old = self._recent[0]
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._recent.append(value)
        bisect.insort(self._sorted, value)

    def _fill_gap(self, t_s: float, value: float) -> list[tuple[float, float]]:
        if self._last is None:
            return []
        t0, v0 = self._last
        dt = t_s - t0
        interval = self.interval_s
        if interval is None:
            self._intervals.append(dt)
            if len(self._intervals) < 5:
                return []
            interval = self.interval_s = sorted(self._intervals)[len(self._intervals) // 2]
        if dt <= self.gap_factor * interval:
            return []
        missing = round(dt / interval) - 1
        if missing < 1:
            return []
        if missing > self.max_fill:
            self.counters.gaps_open += 1
            return []
        self.counters.filled += missing
        step = dt / (missing + 1)
        return [
            (t0 + k * step, v0 + (value - v0) * k / (missing + 1)) for k in range(1, missing + 1)
        ]
