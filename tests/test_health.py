"""Health readings from /proc and /sys (real files of this machine, and fake trees)."""

from __future__ import annotations

import time
from pathlib import Path

from edge_runtime import health


def test_snapshot_on_this_machine() -> None:
    mon = health.HealthMonitor(check_throttling=False)
    first = mon.snapshot()
    time.sleep(0.05)  # let the jiffy counters move
    second = mon.snapshot()
    assert first["cpu_percent"] is None  # needs two reads
    assert second["cpu_percent"] is not None and 0.0 <= second["cpu_percent"] <= 100.0
    assert first["memory_percent"] is not None and 0 < first["memory_percent"] < 100
    assert first["disk_percent"] is not None
    assert first["rss_mb"] is not None and first["rss_mb"] > 1


def test_temperature_from_fake_thermal_tree(tmp_path: Path) -> None:
    assert health.read_temperature_c(tmp_path) is None
    for i, milli in enumerate(("45000", "51500", "garbage")):
        zone = tmp_path / f"thermal_zone{i}"
        zone.mkdir()
        (zone / "temp").write_text(milli)
    assert health.read_temperature_c(tmp_path) == 51.5


def test_process_readings() -> None:
    assert (health.read_process_cpu_s() or 0.0) > 0.0
    assert health.read_loadavg() is not None
