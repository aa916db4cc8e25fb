"""Cleaning, forecasting, health and the early warning on NAB machine temperature."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from edge_runtime.anomaly import AnomalyDetector
from edge_runtime.anomaly.cleaning import Cleaner
from edge_runtime.anomaly.csvio import parse_timestamp, read_series
from edge_runtime.anomaly.forecast import TrendForecaster
from edge_runtime.anomaly.health import HealthScore


def test_cleaner_policy_and_counters() -> None:
    c = Cleaner(valid_min=0.0, valid_max=100.0, interval_s=60.0, spike_mads=6.0)
    out = []
    for i in range(30):
        out += c.push(60.0 * i, 50.0 + (i % 3))
    out += c.push(60.0 * 30, math.nan)
    out += c.push(60.0 * 31, 500.0)  # out of range -> clipped to 100, then a spike
    out += c.push(60.0 * 35, 51.0)  # rows 30 (the NaN) and 32..34 filled
    out += c.push(60.0 * 34, 51.0)  # out of order
    k = c.counters
    assert (k.non_finite, k.clipped, k.spikes_replaced, k.filled, k.out_of_order) == (1, 1, 1, 4, 1)
    assert k.passed == len(out) == 30 + 2 + 4
    assert out[31][1] != 100.0  # spike replaced by the median


def test_forecaster_time_to_threshold_with_band() -> None:
    f = TrendForecaster(upper_limit=100.0, half_life_s=3600.0, warn_within_s=3600.0)
    fc = None
    for i in range(120):  # 1 unit per minute from 0, with small alternating noise
        fc = f.update(60.0 * i, i + (0.3 if i % 2 else -0.3))
    assert fc is not None
    assert fc.eta_s == 0.0 and fc.warning  # limit already crossed
    g = TrendForecaster(upper_limit=200.0, half_life_s=3600.0, warn_within_s=7200.0)
    for i in range(120):
        fc = g.update(60.0 * i, i + (0.3 if i % 2 else -0.3))
    assert fc is not None
    assert fc.eta_s == pytest.approx(81 * 60, rel=0.05)
    assert fc.eta_low_s <= fc.eta_s <= fc.eta_high_s
    assert fc.warning
    with pytest.raises(ValueError, match="exactly one"):
        TrendForecaster()


def test_health_score_falls_with_activity_and_urgency() -> None:
    h = HealthScore()
    assert h.value == 100.0
    for i in range(100):
        h.observe_score(60.0 * i, 1.0)
    assert h.value < 10.0
    h2 = HealthScore(horizon_s=1000.0)
    h2.observe_forecast(250.0)
    assert h2.value == pytest.approx(25.0)


def test_early_warning_before_machine_temperature_failure(nab_root: Path) -> None:
    name = "realKnownCause/machine_temperature_system_failure.csv"
    _, times, values = read_series(nab_root / "data" / name)
    failure_s = parse_timestamp(
        json.loads((nab_root / "combined_labels.json").read_text())[name][-1]
    )
    det = AnomalyDetector()
    fc = TrendForecaster(lower_limit=50.0, half_life_s=6 * 3600.0, warn_within_s=24 * 3600.0)
    warnings = []
    for t, v in zip(times, values, strict=True):
        alarm = det.update(t, v) >= det.config.alarm_level
        f = fc.update(t, v)
        if alarm or (f is not None and f.warning):
            warnings.append(t)
    lead = [failure_s - t for t in warnings if 0 < failure_s - t <= 48 * 3600]
    assert lead, "no early warning in the 48 h before the catastrophic failure"
    assert max(lead) >= 12 * 3600  # at least 12 h of warning


def test_cleaner_lets_an_envelope_through_only_when_spikes_are_kept() -> None:
    from edge_runtime.anomaly.cleaning import Cleaner

    keep = Cleaner(valid_min=0.0, valid_max=100.0, spike_policy="keep")
    assert keep.clean_envelope((-5.0, 250.0), 50.0) == (0.0, 100.0)  # clamped to the range
    assert keep.clean_envelope((1.0, float("nan")), 1.0) is None
    # With "drop", an out-of-range end (a sensor's error code) is no reading at all.
    drop = Cleaner(valid_min=0.0, valid_max=100.0, range_policy="drop", spike_policy="keep")
    assert drop.clean_envelope((-127.0, 60.0), 50.0) == (50.0, 60.0)
    assert drop.clean_envelope((20.0, 185.0), 50.0) == (20.0, 50.0)
    assert Cleaner(spike_policy="replace").clean_envelope((1.0, 9.0), 5.0) is None
    assert Cleaner(spike_policy="drop").clean_envelope((1.0, 9.0), 5.0) is None
