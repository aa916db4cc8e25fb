"""Reference detectors for comparison on NAB: windowed Gaussian, null and random.

They share the streaming interface of :class:`~edge_runtime.anomaly.detector.AnomalyDetector`
(``update(t_s, value) -> score in [0, 1]`` and ``state_bytes()``) so the benchmark runs
every detector through the same loop, and they are
:class:`~edge_runtime.anomaly.protocols.Detector` s (through
:class:`~edge_runtime.anomaly.protocols.DetectorBase`), so a pipeline can run them too
(``detector = "edge_runtime.anomaly.baselines:WindowedGaussianDetector"``).
"""

from __future__ import annotations

import math
import random
import sys
from collections import deque

from edge_runtime.anomaly.protocols import DetectorBase

__all__ = ["NullDetector", "RandomDetector", "WindowedGaussianDetector"]


class WindowedGaussianDetector(DetectorBase):
    """NAB's windowed Gaussian: mean and standard deviation of the last ``window`` points.

    The statistics are refreshed every ``step`` points; the score of a value is
    ``1 - P(|Z| >= |z|)`` (two-sided tail probability of its z-score), or its one-sided
    upper-tail version when ``two_sided`` is False (NAB's own code).
    """

    def __init__(self, *, window: int = 6400, step: int = 100, two_sided: bool = True) -> None:
        if window < 2 or step < 1:
            raise ValueError("window must be >= 2 points and step >= 1 point")
        self.window = window
        self.step = step
        self.two_sided = two_sided
        self._data: deque[float] = deque(maxlen=window)
        self._pending = 0
        self._mean = 0.0
        self._std = 1.0
        self._m2 = 0.0

    def _refresh(self) -> None:
        n = len(self._data)
        mean = math.fsum(self._data) / n
        var = math.fsum((x - mean) ** 2 for x in self._data) / n
        self._mean = mean
        self._std = math.sqrt(var) if var > 0.0 else 1e-6

    def update(self, t_s: float, value: float,
               envelope: tuple[float, float] | None = None) -> float:
        """Score ``value`` against the current window, then add it (``t_s`` and
        ``envelope`` unused)."""
        score = 0.0
        if self._data:
            z = (value - self._mean) / self._std
            if self.two_sided:
                score = 1.0 - math.erfc(abs(z) / math.sqrt(2.0))
            else:
                score = 1.0 - 0.5 * math.erfc(z / math.sqrt(2.0))
        if len(self._data) < self.window:
            # while the window fills NAB refreshes every point: Welford's update is O(1)
            self._data.append(value)
            k = len(self._data)
            delta = value - self._mean if k > 1 else 0.0
            if k == 1:
                self._mean, self._m2 = value, 0.0
            else:
                self._mean += delta / k
                self._m2 += delta * (value - self._mean)
            var = self._m2 / k
            self._std = math.sqrt(var) if var > 0.0 else 1e-6
        else:
            self._data.append(value)
            self._pending += 1
            if self._pending == self.step:
                self._pending = 0
                self._refresh()
        return score

    def state_bytes(self) -> int:
        """Approximate memory held by the detector, in bytes."""
        return sys.getsizeof(self._data) + len(self._data) * 24


class NullDetector(DetectorBase):
    """Never fires: every score is 0. NAB's lower reference (normalised score 0)."""

    def update(self, t_s: float, value: float,
               envelope: tuple[float, float] | None = None) -> float:
        """Return 0.0 for every point."""
        return 0.0

    def state_bytes(self) -> int:
        """No state."""
        return 0


class RandomDetector(DetectorBase):
    """Uniform random scores in [0, 1) from a seeded generator (NAB's random baseline)."""

    def __init__(self, *, seed: int = 42) -> None:
        self._rng = random.Random(seed)

    def update(self, t_s: float, value: float,
               envelope: tuple[float, float] | None = None) -> float:
        """Return a random score, independent of the data."""
        return self._rng.random()

    def state_bytes(self) -> int:
        """Size of the generator state, in bytes."""
        return 2500
