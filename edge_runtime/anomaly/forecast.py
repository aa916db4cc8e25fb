"""Time-to-threshold forecasting for trending channels (predictive maintenance).

:class:`TrendForecaster` fits an exponentially weighted straight line to the recent
samples (half of the weight within ``half_life_s`` seconds) and extrapolates it to a
configured limit. It reports the estimated time to cross (``eta_s``) with a band from
the slope's uncertainty (``eta_low_s`` .. ``eta_high_s``, about 95 %), and raises an
early warning when even the slow edge of the band crosses within ``warn_within_s``
(the crossing is both likely and near) and has done so without a break for ``hold_s``
seconds: a condition that lasts less (a dip that recovers, a band edge flickering
across the horizon) raises no warning. O(1) time and memory per sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Forecast", "TrendForecaster"]


@dataclass(frozen=True)
class Forecast:
    """Forecast after one sample; times in seconds, ``math.inf`` when not approaching."""

    #: Time of the sample this forecast follows (s).
    t_s: float
    #: Fitted level now, in the channel's unit.
    level: float
    #: Fitted slope, channel unit per second.
    slope_per_s: float
    #: Estimated seconds until the limit is crossed (0 if already crossed).
    eta_s: float
    #: Earliest plausible crossing (s from now), from the fast edge of the slope band.
    eta_low_s: float
    #: Latest plausible crossing (s from now); ``inf`` if the band includes no trend.
    eta_high_s: float
    #: True when the crossing has been expected within the warning horizon (the band's
    #: slow edge within it) for at least the forecaster's ``hold_s``.
    warning: bool


class TrendForecaster:
    """Online linear trend and time-to-threshold for one channel.

    Exactly one of ``upper_limit`` and ``lower_limit`` must be set: the forecaster
    watches for the value rising to the upper limit or falling to the lower one.
    ``hold_s`` is how long (s, sample time) the warning condition must hold without a
    break before ``warning`` turns on; it turns off at the first sample without it. The
    default 0 warns at once; ``[pipelines.forecast]`` defaults to 2 h (measured in
    ``docs/forecast-experiments.md``). It delays every warning by ``hold_s``.
    """

    def __init__(
        self,
        *,
        upper_limit: float | None = None,
        lower_limit: float | None = None,
        half_life_s: float = 6 * 3600.0,
        warn_within_s: float = 24 * 3600.0,
        min_points: int = 12,
        z: float = 2.0,
        hold_s: float = 0.0,
    ) -> None:
        if (upper_limit is None) == (lower_limit is None):
            raise ValueError("exactly one of upper_limit and lower_limit must be set")
        if half_life_s <= 0 or warn_within_s <= 0:
            raise ValueError("half_life_s and warn_within_s must be positive seconds")
        if min_points < 3:
            raise ValueError("min_points must be >= 3")
        if not (math.isfinite(hold_s) and hold_s >= 0):
            raise ValueError("hold_s must be a finite number of seconds >= 0")
        self.upper = upper_limit is not None
        self.limit = float(upper_limit if upper_limit is not None else lower_limit)  # type: ignore[arg-type]
        self.tau_s = half_life_s / math.log(2.0)
        self.warn_within_s = warn_within_s
        self.min_points = min_points
        self.z = z
        self.hold_s = hold_s
        #: Time the warning condition last started to hold (None while it does not).
        self._since: float | None = None
        self._origin: float | None = None
        self._last_t = 0.0
        self._n = 0
        # exponentially weighted sums of 1, t, v, t*t, t*v, v*v and of squared weights
        self._s0 = self._st = self._sv = self._stt = self._stv = self._svv = self._w2 = 0.0

    def update(self, t_s: float, value: float) -> Forecast | None:
        """Add a sample (time in s, value); return the forecast, or None while learning."""
        if not math.isfinite(value) or not math.isfinite(t_s):
            return None
        if self._origin is None:
            self._origin = t_s
            self._last_t = t_s
        dt = t_s - self._last_t
        if dt > 0:
            f = math.exp(-dt / self.tau_s)
            self._s0 *= f
            self._st *= f
            self._sv *= f
            self._stt *= f
            self._stv *= f
            self._svv *= f
            self._w2 *= f * f
            self._last_t = t_s
        if t_s - self._origin > 20.0 * self.tau_s:
            self._rebase(t_s)
        x = t_s - self._origin
        self._s0 += 1.0
        self._st += x
        self._sv += value
        self._stt += x * x
        self._stv += x * value
        self._svv += value * value
        self._w2 += 1.0
        self._n += 1
        if self._n < self.min_points:
            return None
        return self._forecast(t_s, x, value)

    def _rebase(self, t_s: float) -> None:
        """Move the time origin to ``t_s`` so that sums of t*t keep their precision."""
        assert self._origin is not None
        d = t_s - self._origin
        self._stt += -2.0 * d * self._st + self._s0 * d * d
        self._stv -= d * self._sv
        self._st -= self._s0 * d
        self._origin = t_s

    def _forecast(self, t_s: float, x: float, value: float) -> Forecast:
        s0 = self._s0
        mean_t = self._st / s0
        mean_v = self._sv / s0
        sxx = self._stt / s0 - mean_t * mean_t
        sxy = self._stv / s0 - mean_t * mean_v
        syy = self._svv / s0 - mean_v * mean_v
        if sxx <= 0.0:
            self._since = None
            return Forecast(t_s, value, 0.0, math.inf, math.inf, math.inf, False)
        slope = sxy / sxx
        level = mean_v + slope * (x - mean_t)
        n_eff = s0 * s0 / self._w2 if self._w2 > 0 else 1.0
        resid_var = max(syy - slope * sxy, 0.0) * n_eff / max(n_eff - 2.0, 1.0)
        slope_se = math.sqrt(resid_var / (sxx * max(n_eff, 1.0)))
        gap = self.limit - level
        toward = slope if self.upper else -slope
        distance = gap if self.upper else -gap
        if distance <= 0.0:
            return Forecast(t_s, level, slope, 0.0, 0.0, 0.0, self._held(t_s, True))
        fast = toward + self.z * slope_se
        slow = toward - self.z * slope_se
        eta = distance / toward if toward > 0 else math.inf
        eta_low = distance / fast if fast > 0 else math.inf
        eta_high = distance / slow if slow > 0 else math.inf
        warning = self._held(t_s, eta_high <= self.warn_within_s)
        return Forecast(t_s, level, slope, eta, eta_low, eta_high, warning)

    def _held(self, t_s: float, condition: bool) -> bool:
        """True once ``condition`` has held without a break for ``hold_s``."""
        if not condition:
            self._since = None
            return False
        if self._since is None:
            self._since = t_s
        return t_s - self._since >= self.hold_s
