"""A 0..100 health score per monitored device, from its channels' signals.

Health falls with three things, each mapped to a 0..1 penalty:

- **anomaly activity**: an exponentially weighted mean of the anomaly scores
  (``half_life_s``), saturating at ``activity_full``;
- **forecast urgency**: ``1 - eta / horizon`` for the nearest predicted limit crossing
  (0 when none is expected within ``horizon_s``, 1 when crossed);
- **data quality**: the share of samples the cleaner had to fix or drop.

``health = 100 * (1 - activity) * (1 - urgency) * (1 - 0.5 * bad_share)``: a device with
a limit crossing imminent or a constant stream of anomalies scores near 0.
"""

from __future__ import annotations

import math

__all__ = ["HealthScore"]


class HealthScore:
    """Running health of one device (0 = failing, 100 = healthy)."""

    def __init__(
        self,
        *,
        half_life_s: float = 3600.0,
        activity_full: float = 0.2,
        horizon_s: float = 7 * 24 * 3600.0,
    ) -> None:
        if half_life_s <= 0 or activity_full <= 0 or horizon_s <= 0:
            raise ValueError("half_life_s, activity_full and horizon_s must be positive")
        self.tau_s = half_life_s / math.log(2.0)
        self.activity_full = activity_full
        self.horizon_s = horizon_s
        self._activity = 0.0
        self._last_t: float | None = None
        self._eta_s = math.inf
        self._bad_share = 0.0

    def observe_score(self, t_s: float, score: float) -> None:
        """Feed an anomaly score in [0, 1] at time ``t_s`` (s)."""
        if self._last_t is not None and t_s > self._last_t:
            f = math.exp(-(t_s - self._last_t) / self.tau_s)
        else:
            f = 0.9 if self._last_t is not None else 0.0
        self._activity = f * self._activity + (1.0 - f) * min(max(score, 0.0), 1.0)
        self._last_t = t_s

    def observe_forecast(self, eta_s: float) -> None:
        """Feed the current time-to-threshold of a channel (s; ``inf`` if none)."""
        self._eta_s = eta_s

    def observe_quality(self, bad: int, total: int) -> None:
        """Feed the cleaner's counts: samples fixed or dropped, out of ``total``."""
        self._bad_share = bad / total if total > 0 else 0.0

    @property
    def value(self) -> float:
        """Current health, 0..100."""
        activity = min(self._activity / self.activity_full, 1.0)
        urgency = 0.0
        if self._eta_s < self.horizon_s:
            urgency = 1.0 - max(self._eta_s, 0.0) / self.horizon_s
        return 100.0 * (1.0 - activity) * (1.0 - urgency) * (1.0 - 0.5 * self._bad_share)
