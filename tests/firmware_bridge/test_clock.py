"""Device-to-host time mapping: offset, drift and 32-bit wrap."""

from __future__ import annotations

import random

import pytest

from firmware_bridge.clock import DeviceClock


def simulate(
    clock: DeviceClock, *, drift_ppm: float, start_us: int, seconds: float, seed: int = 1
) -> list[tuple[int, float]]:
    """Feed observations of a device clock running ``drift_ppm`` fast; return truth pairs."""
    rng = random.Random(seed)
    host0 = 1000.0
    truth = []
    t = 0.0
    while t < seconds:
        device_us = int(start_us + t * (1 + drift_ppm * 1e-6) * 1e6) % (1 << 32)
        latency_s = 0.0004 + rng.expovariate(1 / 0.003)  # 0.4 ms floor, 3 ms mean queueing
        clock.observe(device_us, host0 + t + latency_s)
        truth.append((device_us, host0 + t))
        t += 0.05
    return truth


@pytest.mark.parametrize("drift_ppm", [-5000.0, -100.0, 0.0, 250.0, 5000.0])
def test_maps_within_a_millisecond_after_a_minute(drift_ppm: float) -> None:
    clock = DeviceClock()
    truth = simulate(clock, drift_ppm=drift_ppm, start_us=5_000_000, seconds=60.0)
    fit = clock.fit
    assert fit is not None
    assert fit.skew_ppm == pytest.approx(-drift_ppm, abs=60)
    for device_us, host_s in truth[-200:]:
        assert abs(clock.to_host(device_us) - host_s) < 0.001


def test_survives_the_32_bit_wrap() -> None:
    clock = DeviceClock()
    start = (1 << 32) - 10_000_000  # wraps 10 s into the run
    truth = simulate(clock, drift_ppm=100.0, start_us=start, seconds=30.0)
    device_us, host_s = truth[-1]
    assert device_us < 30_000_000  # the raw value did wrap
    assert abs(clock.to_host(device_us) - host_s) < 0.001
    # A sample from before the last observation maps backwards, not 71 minutes ahead.
    early_us, early_host = truth[-20]
    assert abs(clock.to_host(early_us) - early_host) < 0.001


def test_no_mapping_before_first_observation() -> None:
    with pytest.raises(LookupError):
        DeviceClock().to_host(0)


def test_reset_forgets_the_old_boot() -> None:
    clock = DeviceClock()
    simulate(clock, drift_ppm=0.0, start_us=50_000_000, seconds=10.0)
    clock.reset()
    clock.observe(1000, 2000.0)
    assert clock.to_host(1000) == pytest.approx(2000.0)
