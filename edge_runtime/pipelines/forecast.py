"""The forecast stage of a scalar pipeline: time-to-limit and early warning.

Wraps a :class:`~edge_runtime.anomaly.protocols.Forecaster` (the shipped one is
:class:`~edge_runtime.anomaly.forecast.TrendForecaster`, configured by
``[pipelines.forecast]``) and turns each forecast into result fields rules can test:

- ``time_to_limit_s``: estimated seconds until the limit is crossed (0 once crossed);
- ``time_to_limit_low_s`` / ``time_to_limit_high_s``: the band (about 95 %);
- ``early_warning``: 1.0 when even the latest plausible crossing has been within the
  horizon for the forecaster's ``hold_s`` without a break.

The times are None while the forecaster learns and when no crossing is forecast (the
event log is JSON, which has no infinity). The forecaster works on the source's clock:
sample times (monotonic seconds) multiplied by ``time_scale``, the replay ``speed``, so a
recording replayed 1000x faster still forecasts in the recording's seconds.
"""

from __future__ import annotations

import math
from typing import Any

from edge_runtime.anomaly.forecast import Forecast
from edge_runtime.anomaly.protocols import Forecaster

__all__ = ["ForecastStage"]


def _seconds(x: float) -> float | None:
    return round(x, 3) if math.isfinite(x) else None


class ForecastStage:
    """One pipeline's forecaster, with counters for status and summaries."""

    def __init__(self, forecaster: Forecaster, *, time_scale: float = 1.0) -> None:
        if not time_scale > 0:
            raise ValueError("time_scale must be > 0")
        self.forecaster = forecaster
        self.time_scale = time_scale
        self.last: Forecast | None = None
        self.forecasts = 0
        #: Times the early warning switched on (rising edges of ``early_warning``).
        self.warnings = 0
        self._warning = False

    def update(self, t_mono_s: float, value: float) -> dict[str, Any]:
        """Feed one cleaned sample; the result fields for this sample."""
        fc = self.forecaster.update(t_mono_s * self.time_scale, value)
        if fc is None:
            return {"time_to_limit_s": None, "time_to_limit_low_s": None,
                    "time_to_limit_high_s": None, "early_warning": 0.0}
        self.last = fc
        self.forecasts += 1
        if fc.warning and not self._warning:
            self.warnings += 1
        self._warning = fc.warning
        return {"time_to_limit_s": _seconds(fc.eta_s),
                "time_to_limit_low_s": _seconds(fc.eta_low_s),
                "time_to_limit_high_s": _seconds(fc.eta_high_s),
                "early_warning": 1.0 if fc.warning else 0.0}

    def state(self) -> dict[str, Any]:
        """The latest forecast and the counters (JSON-friendly)."""
        fc = self.last
        return {
            "limit": self.forecaster.limit,
            "direction": "above" if self.forecaster.upper else "below",
            "horizon_s": self.forecaster.warn_within_s,
            "hold_s": self.forecaster.hold_s,
            "forecasts": self.forecasts,
            "warnings": self.warnings,
            "early_warning": self._warning,
            "level": round(fc.level, 6) if fc is not None else None,
            "slope_per_s": fc.slope_per_s if fc is not None else None,
            "time_to_limit_s": _seconds(fc.eta_s) if fc is not None else None,
            "time_to_limit_low_s": _seconds(fc.eta_low_s) if fc is not None else None,
            "time_to_limit_high_s": _seconds(fc.eta_high_s) if fc is not None else None,
        }
