"""A SIGHUP that changes ``[upstream]`` restarts the upstream with the new settings: the
reports go where the new config says, from the next window on, and nothing stored
before the reload is lost."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from edge_runtime.pipelines.daemon import Daemon
from tests.helpers.media import write_csv


def _config(path: Path, sink_file: str) -> None:
    path.write_text(f"""
[node]
name = "reloader"
state_dir = "state"
[budget]
enabled = false
[[sources]]
type = "replay"
id = "sensor"
path = "sensor.csv"
speed = 20
loop = true
min_rate_hz = 5
max_rate_hz = 20
[[pipelines]]
id = "sensor"
source = "sensor"
[upstream]
summary_interval_s = 0.5
[upstream.file]
path = "{sink_file}"
""")


def _summaries(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [m for m in (json.loads(x) for x in path.read_text().splitlines())
            if m["kind"] == "summary"]


def test_a_reload_that_changes_upstream_restarts_it(tmp_path: Path) -> None:
    import numpy as np

    write_csv(tmp_path / "sensor.csv", 20.0 + np.sin(np.arange(400) / 10.0), period_s=1.0)
    cfg = tmp_path / "cfg.toml"
    _config(cfg, "before.jsonl")
    before, after = tmp_path / "state" / "before.jsonl", tmp_path / "state" / "after.jsonl"

    async def main() -> None:
        daemon = await asyncio.to_thread(Daemon, cfg)
        run = asyncio.create_task(daemon.run())

        async def until(pred: object, timeout_s: float = 20.0) -> None:
            async with asyncio.timeout(timeout_s):
                while not await asyncio.to_thread(pred):  # type: ignore[arg-type]
                    await asyncio.sleep(0.05)

        await until(lambda: len(_summaries(before)) >= 2)
        await asyncio.to_thread(_config, cfg, "after.jsonl")
        daemon.request_reload()
        await until(lambda: len(_summaries(after)) >= 2)
        assert daemon.reloads == 1 and daemon.reload_errors == 0
        daemon.request_stop()
        assert await asyncio.wait_for(run, 20.0) == 0

    asyncio.run(main())
    old, new = _summaries(before), _summaries(after)
    assert old and new
    # One outbox, one sequence: the new sink carries on where the old one stopped (the
    # outbox is the node's, not the sink's), and no summary is in both files.
    old_ids = {m["id"] for m in old}
    assert not old_ids & {m["id"] for m in new}
    assert max(int(str(m["seq"])) for m in old) < max(int(str(m["seq"])) for m in new)
