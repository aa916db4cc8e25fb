"""TrendForecaster's warning hold (``hold_s``) and its wiring into the forecast stage."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_runtime.anomaly.forecast import TrendForecaster
from edge_runtime.config import ForecastConfig, make_forecaster
from edge_runtime.errors import ConfigError
from edge_runtime.pipelines.forecast import ForecastStage

STEP_S = 300.0


def _falling(n_flat: int, n_fall: int) -> list[tuple[float, float]]:
    """Flat at 100 with a little noise, then falling 1 unit per sample toward 0."""
    out = [(STEP_S * i, 100.0 + (0.2 if i % 2 else -0.2)) for i in range(n_flat)]
    out += [(STEP_S * (n_flat + i), 100.0 - i) for i in range(n_fall)]
    return out


def _warnings(f: TrendForecaster, series: list[tuple[float, float]]) -> list[bool]:
    return [bool(fc is not None and fc.warning) for fc in (f.update(t, v) for t, v in series)]


def test_hold_delays_the_first_warning_by_hold_s_and_leaves_the_forecast_alone() -> None:
    series = _falling(50, 100)
    make = {"lower_limit": 0.0, "half_life_s": 3600.0, "warn_within_s": 6 * 3600.0}
    at_once, held = TrendForecaster(**make), TrendForecaster(**make, hold_s=3600.0)
    raw = []
    for t, v in series:
        a, b = at_once.update(t, v), held.update(t, v)
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            assert (a.eta_s, a.eta_low_s, a.eta_high_s) == (b.eta_s, b.eta_low_s, b.eta_high_s)
            raw.append((t, a.warning, b.warning))
    first_raw = next(t for t, w, _ in raw if w)
    first_held = next(t for t, _, w in raw if w)
    assert first_held - first_raw == 3600.0  # 12 samples of 5 min, to the sample
    assert all(w for t, w, _ in raw if t >= first_raw)  # the fall keeps the condition on


def test_conditions_shorter_than_the_hold_raise_nothing() -> None:
    # Two 50-minute dips toward the limit, separated by a recovery: each would warn at
    # once (for a quarter of an hour), neither for the hour the hold asks for.
    series = _falling(60, 0)
    t = series[-1][0]
    for _ in range(2):
        level = 100.0
        for _ in range(10):  # 50 min of falling 3 units per 5 min
            t += STEP_S
            level -= 3.0
            series.append((t, level))
        for _ in range(60):  # back at 100, quiet
            t += STEP_S
            series.append((t, 100.0 + (0.2 if len(series) % 2 else -0.2)))
    make = {"lower_limit": 0.0, "half_life_s": 1800.0, "warn_within_s": 24 * 3600.0}
    at_once = _warnings(TrendForecaster(**make), series)
    assert sum(1 for a, b in pairwise(at_once) if b and not a) == 2
    assert not any(_warnings(TrendForecaster(**make, hold_s=3600.0), series))


def test_a_crossed_limit_is_held_too() -> None:
    f = TrendForecaster(upper_limit=10.0, half_life_s=3600.0, hold_s=1200.0)
    fcs = [f.update(STEP_S * i, 20.0 + (0.1 if i % 2 else -0.1)) for i in range(20)]
    done = [fc for fc in fcs if fc is not None]
    assert all(fc.eta_s == 0.0 for fc in done)  # already above the limit
    on = [fc.t_s for fc in done if fc.warning]
    assert on and on[0] - done[0].t_s == 1200.0


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.floats(-3.0, 3.0), min_size=20, max_size=300),
       gaps=st.lists(st.sampled_from([60.0, 300.0, 900.0]), min_size=300, max_size=300),
       hold_s=st.sampled_from([0.0, 600.0, 3600.0]))
def test_warning_is_the_condition_held_without_a_break(
        steps: list[float], gaps: list[float], hold_s: float) -> None:
    """Against the definition: on iff the hold-free warning has been on for >= hold_s."""
    make = {"lower_limit": 0.0, "half_life_s": 3600.0, "warn_within_s": 3 * 3600.0,
            "min_points": 5}
    at_once, held = TrendForecaster(**make), TrendForecaster(**make, hold_s=hold_s)
    t, v = 0.0, 20.0
    since: float | None = None
    for step, gap in zip(steps, gaps, strict=False):
        t += gap
        v += step
        a, b = at_once.update(t, v), held.update(t, v)
        if a is None or b is None:
            assert a is None and b is None
            continue
        since = (since if since is not None else t) if a.warning else None
        assert b.warning == (since is not None and t - since >= hold_s)


def test_hold_s_is_checked() -> None:
    with pytest.raises(ValueError, match="hold_s"):
        TrendForecaster(upper_limit=1.0, hold_s=-1.0)
    with pytest.raises(ValueError, match="hold_s"):
        TrendForecaster(upper_limit=1.0, hold_s=math.nan)
    with pytest.raises(ValueError, match="hold_s"):
        TrendForecaster(upper_limit=1.0, hold_s=math.inf)
    with pytest.raises(ConfigError, match=r"^p\.hold_s"):
        make_forecaster(ForecastConfig(limit=1.0, hold_s=-5.0), "p")


def test_the_pipeline_default_holds_two_hours_and_the_stage_counts_held_onsets() -> None:
    assert TrendForecaster(upper_limit=1.0).hold_s == 0.0  # the primitive warns at once
    fc = make_forecaster(ForecastConfig(limit=0.0, direction="below"), "p")
    assert fc.hold_s == 7200.0
    stage = ForecastStage(fc, time_scale=1.0)
    flags = [stage.update(t, v)["early_warning"] for t, v in _falling(50, 90)]
    first = flags.index(1.0)
    assert stage.warnings == 1 and stage.state()["hold_s"] == 7200.0
    at_once = ForecastStage(make_forecaster(
        ForecastConfig(limit=0.0, direction="below", hold_s=0.0), "p"))
    raw = [at_once.update(t, v)["early_warning"] for t, v in _falling(50, 90)]
    assert first - raw.index(1.0) == 24  # 2 h of 5-minute samples
