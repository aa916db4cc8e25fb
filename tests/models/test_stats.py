"""Latency statistics: nearest-rank percentiles over a bounded window, EWMA."""

from __future__ import annotations

import math

import pytest

from edge_runtime.models.stats import LatencyStats


def test_percentiles_nearest_rank() -> None:
    stats = LatencyStats(window=100)
    for ms in range(1, 101):
        stats.record(ms / 1000)
    s = stats.summary()
    assert (s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms) == pytest.approx((50, 95, 99, 100))
    assert s.count == 100


def test_window_bounds_memory_and_forgets_old_samples() -> None:
    stats = LatencyStats(window=10)
    for _ in range(1000):
        stats.record(1.0)
    for _ in range(10):
        stats.record(0.001)
    s = stats.summary()
    assert s.count == 1010 and s.p99_ms == pytest.approx(1.0)
    assert len(stats._buf) == 10
    assert s.max_ms == pytest.approx(1.0)  # the window's maximum: old samples are gone
    assert s.ewma_ms == pytest.approx(1.0)


def test_partial_window_and_wrap_order() -> None:
    stats = LatencyStats(window=4, ewma_alpha=1.0)  # alpha 1: EWMA = newest value
    for ms in (5, 1, 2):
        stats.record(ms / 1000)
    assert stats.summary().ewma_ms == pytest.approx(2.0)
    assert stats.summary().max_ms == pytest.approx(5.0)
    for ms in (3, 4, 9):
        stats.record(ms / 1000)
    s = stats.summary()  # window now holds 2, 3, 4, 9 (oldest first)
    assert s.ewma_ms == pytest.approx(9.0) and s.max_ms == pytest.approx(9.0)
    assert s.p50_ms == pytest.approx(3.0)


def test_ewma_follows_recent_values() -> None:
    stats = LatencyStats(window=4, ewma_alpha=0.5)
    stats.record(0.010)
    stats.record(0.020)
    assert stats.summary().ewma_ms == pytest.approx(15.0)


def test_empty_and_invalid() -> None:
    assert math.isnan(LatencyStats().summary().p50_ms)
    with pytest.raises(ValueError, match="window"):
        LatencyStats(window=0)
    with pytest.raises(ValueError, match="ewma_alpha"):
        LatencyStats(ewma_alpha=0)
