"""The daemon's loop never blocks, its budget caps the rate from readings taken off the
loop, and its shutdown is bounded even when inference outlasts the timeout.

The suite-wide guards in ``tests/conftest.py`` are on here as everywhere: any blocking
call on a running loop, and any thread left behind, fails these tests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import pytest
from blockbuster import BlockingError

from edge_runtime.pipelines.daemon import Daemon
from edge_runtime.sources.gpio import pin_factory
from tests.conftest import RecordedBlockingError
from tests.helpers.media import write_csv

BUDGET_CONFIG = """
[node]
state_dir = "state"
gpio_pin_factory = "mock"
[budget]
thermal_root = "thermal"
temp_soft_c = 70.0
temp_hard_c = 80.0
# Only heat caps the rate here: the shared test machine may well be busy.
cpu_high_percent = 100.0
interval_s = 0.1
[health]
check_throttling = false
[[sources]]
type = "gpio"
id = "door"
device = "digital_input"
pin = 5
min_rate_hz = 2.0
max_rate_hz = 40.0
[[pipelines]]
id = "door"
source = "door"
sampling = { policy = "change" }
"""


def _set_temperature(root: Path, celsius: float) -> None:
    zone = root / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True, exist_ok=True)
    (zone / "temp").write_text(f"{round(celsius * 1000)}\n")


def test_budget_caps_the_rate_when_hot_without_reading_on_the_loop(tmp_path: Path) -> None:
    _set_temperature(tmp_path, 85.0)  # past temp_hard_c: the minimum rate only
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(BUDGET_CONFIG)

    async def main() -> tuple[float, int, float, float]:
        daemon = await asyncio.to_thread(Daemon, cfg)  # reads the file
        run = asyncio.create_task(daemon.run())
        loop = asyncio.get_running_loop()
        try:
            deadline = loop.time() + 10.0
            while loop.time() < deadline and (
                    daemon.runtime is None or daemon.runtime.budget.temperature_c != 85.0
                    or daemon.status()["pipelines"]["door"]["sampling"]["rate_hz"] > 2.0):
                await asyncio.sleep(0.02)
            assert daemon.runtime is not None
            controller = daemon.runtime.pipelines[0].controller
            hot_rate_hz = controller.rate_hz
            # At the minimum rate a second holds about two samples, not forty.
            before = daemon.status()["pipelines"]["door"]["samples"]
            await asyncio.sleep(1.0)
            hot_samples = daemon.status()["pipelines"]["door"]["samples"] - before
            # Cooler: the next reading (in the read pool) lifts the cap.
            await asyncio.to_thread(_set_temperature, tmp_path, 75.0)
            while loop.time() < deadline and daemon.runtime.budget.temperature_c != 75.0:
                await asyncio.sleep(0.02)
            warm_cap_hz = controller.cap_hz(0.0)
            await asyncio.to_thread(_set_temperature, tmp_path, 40.0)
            while loop.time() < deadline and daemon.runtime.budget.temperature_c != 40.0:
                await asyncio.sleep(0.02)
            cool_cap_hz = controller.cap_hz(0.0)
        finally:
            daemon.request_stop()
        assert await asyncio.wait_for(run, 5.0) == 0
        return hot_rate_hz, hot_samples, warm_cap_hz, cool_cap_hz

    try:
        hot_rate_hz, hot_samples, warm_cap_hz, cool_cap_hz = asyncio.run(main())
    finally:
        pin_factory("mock").reset()
    assert hot_rate_hz == 2.0
    assert hot_samples <= 4
    assert warm_cap_hz == pytest.approx(2.0 + 0.5 * (40.0 - 2.0))  # halfway at 75 C
    assert cool_cap_hz == 40.0


def test_stop_is_bounded_when_inference_outlasts_the_timeout(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from tests.helpers import slow

    write_csv(tmp_path / "s.csv", [1.0] * 100, period_s=0.01)
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("""
[node]
state_dir = "state"
shutdown_timeout_s = 0.2
[budget]
enabled = false
[[sources]]
type = "replay"
id = "s"
path = "s.csv"
lossless = true
[[pipelines]]
id = "p"
source = "s"
detector = "tests.helpers.slow:SlowDetector"
detector_params = { delay_s = 1.2 }
""")
    slow.IN_UPDATE.clear()

    async def main() -> float:
        daemon = await asyncio.to_thread(Daemon, cfg)
        task = asyncio.create_task(daemon.run())
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, slow.IN_UPDATE.wait, 10.0)
        t0 = loop.time()
        daemon.request_stop()  # the detector sleeps for another second
        assert await asyncio.wait_for(task, 5.0) == 0
        return loop.time() - t0

    with caplog.at_level(logging.WARNING, logger="edge_runtime.pipelines.daemon"):
        stop_s = asyncio.run(main())
    # Work in flight (0.2 s), then the worker's join (one read timeout): not the 1.2 s
    # the detector still needs. The worker ends on its own within the thread guard's grace.
    assert stop_s < 1.0
    assert "work in flight did not finish in 0.2 s" in caplog.text
    assert "pipeline 'p': worker still busy" in caplog.text
    summary = json.loads((tmp_path / "state" / "summary.json").read_text())
    assert summary["stopped"] is True


def test_the_loop_guard_sees_a_blocking_call_even_when_it_is_caught() -> None:
    async def main() -> bool:
        try:
            time.sleep(0.001)
        except BlockingError:  # what a broad ``except Exception`` in the runtime would do
            return True
        return False

    assert asyncio.run(main())
    with RecordedBlockingError._lock:
        seen = list(RecordedBlockingError.raised)
        RecordedBlockingError.raised.clear()  # this one was on purpose
    assert len(seen) == 1 and "time.sleep" in seen[0]
