"""Adaptive sampling driven by the anomaly detector's activity signal.

:class:`AdaptiveSampler` decides, point by point, whether the next sample should be read.
While the channel is calm it reads every ``stride``-th point, doubling the stride after
``calm_reads`` calm reads up to ``max_stride``; as soon as the detector's raw score
reaches ``active_level``, or a read value jumps by more than ``jump_mads`` running mean
absolute steps from the previous read, it returns to full rate for ``hold_reads`` reads.
While the detector warms up (``observe(..., learning=True)``) it reads every point.
Skipped points are never seen by the detector; the detector's clock follows the
timestamps, so its horizons and rest periods keep their length in time.

Defaults (chosen on the NAB subset replay, see ``benchmarks/nab_bench.py``): about a
third of the points read for close to 90 % of the full-rate NAB score.
"""

from __future__ import annotations

__all__ = ["AdaptiveSampler"]


class AdaptiveSampler:
    """Decide which points of a regular stream to read (see the module docstring)."""

    def __init__(
        self,
        *,
        max_stride: int = 6,
        calm_reads: int = 12,
        hold_reads: int = 12,
        active_level: float = 0.3,
        jump_mads: float = 6.0,
    ) -> None:
        if max_stride < 1 or calm_reads < 1 or hold_reads < 0:
            raise ValueError("max_stride and calm_reads must be >= 1, hold_reads >= 0")
        self.max_stride = max_stride
        self.calm_reads = calm_reads
        self.hold_reads = hold_reads
        self.active_level = active_level
        self.jump_mads = jump_mads
        self.stride = 1
        self._countdown = 0
        self._calm = 0
        self._hold = 0
        self._prev: float | None = None
        self._mad = 0.0
        self.reads = 0
        self.offered = 0

    def should_read(self) -> bool:
        """Called once per available point; True if this point should be read."""
        self.offered += 1
        if self._countdown > 0:
            self._countdown -= 1
            return False
        self._countdown = self.stride - 1
        self.reads += 1
        return True

    def observe(self, value: float, raw_score: float, *, learning: bool = False) -> None:
        """Feed back a read value and the detector's raw (unsuppressed) score.

        ``learning=True`` (the detector is still warming up) keeps the full rate: the
        detector learns its nominal interval and value range from consecutive points.
        """
        jump = False
        if self._prev is not None:
            step = abs(value - self._prev)
            jump = self._mad > 0.0 and step > self.jump_mads * self._mad
            self._mad += 0.05 * (step - self._mad)
        self._prev = value
        if raw_score >= self.active_level or jump or learning:
            self.stride = 1
            self._countdown = 0
            self._hold = self.hold_reads
            self._calm = 0
            return
        if self._hold > 0:
            self._hold -= 1
            return
        self._calm += 1
        if self._calm >= self.calm_reads and self.stride < self.max_stride:
            self.stride = min(self.stride * 2, self.max_stride)
            self._calm = 0

    @property
    def fraction_read(self) -> float:
        """Share of offered points that were read, 0..1."""
        return self.reads / self.offered if self.offered else 0.0
