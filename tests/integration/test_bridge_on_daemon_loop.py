"""Issue 9 point 3, "one event loop": the firmware bridge client runs on the daemon's own
loop, with no private loop and no thread per device, whether a worker thread reads it
(a pipeline with a detector), a task on the loop reads it (plain rules), or several
pipelines share it.

The daemon runs in-process (``asyncio.run``), so the test's loop *is* the daemon's loop:
the client's named tasks are found among that loop's tasks, and the threads alive while
it runs are listed. The device is the reference firmware on a pty (``SimDevice``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.pipelines.daemon import Daemon
from tests.firmware_bridge.conftest import FIRMWARE, SimDevice, compile_c

#: Threads the daemon may have besides the main one: executor threads (its read pool,
#: the loop's default executor) and pipeline workers. A bridge must add none.
#: The daemon's own threads: its read pool, the loop's executor, pipeline workers, and the
#: upstream outbox's writer and I/O pool (one per process, not per device).
DAEMON_THREAD_PREFIXES = ("read_", "asyncio_", "pipeline-", "upstream-")


@pytest.fixture(scope="module")
def sim_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fb_build") / "fb_sim"
    return compile_c(out, FIRMWARE / "host" / "sim_main.c")


@pytest.fixture
def device(sim_binary: Path, tmp_path: Path) -> Iterator[SimDevice]:
    sim = SimDevice(sim_binary, tmp_path / "ttyEDGE").start()
    yield sim
    sim.stop()


def _config(tmp_path: Path, port: Path, pipelines: str) -> Path:
    cfg = tmp_path / "bridge.toml"
    cfg.write_text(f"""
[node]
name = "one-loop"
state_dir = "{tmp_path / 'state'}"
control_socket = "{tmp_path / 'c.sock'}"
shutdown_timeout_s = 2.0

[budget]
enabled = false

[health]
interval_s = 0.5
check_throttling = false

[[sources]]
type = "bridge"
id = "imu"
channel = "accel"
port = "{port}"
min_rate_hz = 20.0
max_rate_hz = 50.0
{pipelines}
[[actions]]
type = "log"
id = "note"
message = "level"
""")
    return cfg


DETECTOR = """
[[pipelines]]
id = "vib"
source = "imu"
detector = "anomaly"
detector_params = { warmup_points = 20 }
"""

RULES = """
[[pipelines]]
id = "level"
source = "imu"
[[pipelines.rules]]
id = "high"
field = "value"
above = 50.0
actions = ["note"]
"""


def _run_and_watch(cfg: Path, pipelines: list[str]) -> dict[str, Any]:
    """Run the daemon until every pipeline has results; return what was seen meanwhile."""
    before = set(threading.enumerate())

    async def main() -> dict[str, Any]:
        daemon = await asyncio.to_thread(Daemon, cfg)  # reads the file
        run = asyncio.create_task(daemon.run())
        try:
            deadline = asyncio.get_running_loop().time() + 20.0
            while True:
                status = daemon.status() if daemon.runtime is not None else {}
                if all(status.get("pipelines", {}).get(p, {}).get("samples", 0) >= 20
                       for p in pipelines):
                    break
                assert asyncio.get_running_loop().time() < deadline, status
                await asyncio.sleep(0.05)
            seen = {
                "tasks": {t.get_name() for t in asyncio.all_tasks()},
                "threads": {t.name for t in set(threading.enumerate()) - before},
                "status": daemon.status(),
            }
        finally:
            daemon.request_stop()
        assert await asyncio.wait_for(run, 10.0) == 0
        return seen

    return asyncio.run(main())


def _assert_on_the_daemons_loop(seen: dict[str, Any]) -> None:
    # The client's task group and the source's pump are tasks of this very loop.
    assert {"firmware_bridge.client", "firmware_bridge.supervisor",
            "bridge-imu-pump"} <= seen["tasks"], seen["tasks"]
    # No private loop thread (the old "bridge-imu", the sync adapter's "imu-sync-loop").
    extra = {name for name in seen["threads"] if not name.startswith(DAEMON_THREAD_PREFIXES)}
    assert not extra, f"threads besides the daemon's own: {extra}"


def test_a_worker_reads_the_bridge_through_the_daemons_loop(
    device: SimDevice, tmp_path: Path
) -> None:
    seen = _run_and_watch(_config(tmp_path, device.link, DETECTOR), ["vib"])
    _assert_on_the_daemons_loop(seen)
    vib = seen["status"]["pipelines"]["vib"]
    assert "pipeline-vib" in seen["threads"]  # the detector's worker, fed from the loop
    assert vib["inferences"] >= 20 and vib["errors"] == 0, vib["last_error"]
    assert vib["source_stats"]["connected"] is True
    assert -1.0 <= vib["last_result"]["value"] <= 1.0  # the simulator's sin(t)


def test_rules_only_and_shared_bridge_pipelines_read_on_the_loop(
    device: SimDevice, tmp_path: Path
) -> None:
    seen = _run_and_watch(_config(tmp_path, device.link, DETECTOR + RULES), ["vib", "level"])
    _assert_on_the_daemons_loop(seen)
    status = seen["status"]
    # One reader for both, a task on the loop: no reader thread for the shared source.
    assert "source-imu" in seen["tasks"] and "source-imu" not in seen["threads"]
    assert "pipeline-level" not in seen["threads"]  # plain rules decide on the loop
    for name in ("vib", "level"):
        pipe = status["pipelines"][name]
        assert pipe["samples"] >= 20 and pipe["errors"] == 0, pipe["last_error"]
    assert status["sources"]["imu"]["connected"] is True
    assert status["sources"]["imu"]["read"] >= 20
