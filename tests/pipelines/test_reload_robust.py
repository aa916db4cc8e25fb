"""Issue #10: a reload that fails for any reason, not only an EdgeRuntimeError, leaves
the old generation running, and the status says why.

In-process daemons on a replay; the reload is ``request_reload()`` (what SIGHUP does).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.config import Config
from edge_runtime.pipelines.build import Runtime, build_runtime
from edge_runtime.pipelines.daemon import Daemon
from tests.helpers.media import write_csv

#: A user detector module whose class cannot be built (the constructor divides by zero).
MODULE = "reload_robust_detectors"
MODULE_TEXT = """
from edge_runtime.anomaly.protocols import DetectorBase


class Broken(DetectorBase):
    def __init__(self) -> None:
        self.scale = 1 / 0

    def update(self, t_s, value):
        return 0.0
"""

CONFIG = """
[node]
name = "{name}"
state_dir = "state"
shutdown_timeout_s = 1.0
[budget]
enabled = false
[health]
interval_s = 0.2
check_throttling = false
[[sources]]
type = "replay"
id = "s"
path = "s.csv"
loop = true
speed = 1.0
min_rate_hz = 50
max_rate_hz = 50
[[pipelines]]
id = "p"
source = "s"
{pipeline}
"""


@pytest.fixture
def user_module(tmp_path: Path) -> Iterator[str]:
    (tmp_path / f"{MODULE}.py").write_text(MODULE_TEXT)
    sys.path.insert(0, str(tmp_path))
    try:
        yield MODULE
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(MODULE, None)


def _write(path: Path, name: str, pipeline: str = "") -> None:
    path.write_text(CONFIG.format(name=name, pipeline=pipeline))


async def _samples(daemon: Daemon) -> int:
    runtime = daemon.runtime
    return runtime.pipelines[0].stats.samples if runtime is not None else 0


async def _reload_and_watch(daemon: Daemon, cfg: Path, new_text: str) -> dict[str, Any]:
    """Run ``daemon``, reload to ``new_text``, check the old pipeline goes on; the status."""
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(daemon.run())
    try:
        deadline = loop.time() + 10.0
        while await _samples(daemon) < 5 and loop.time() < deadline:
            await asyncio.sleep(0.02)
        assert await _samples(daemon) >= 5, "the first generation never produced samples"
        await asyncio.to_thread(cfg.write_text, new_text)
        daemon.request_reload()
        while daemon.reload_errors == 0 and loop.time() < deadline and not task.done():
            await asyncio.sleep(0.02)
        assert not task.done(), f"the daemon died on the reload: {task.exception()!r}"
        assert daemon.reload_errors == 1
        # The old config runs again and keeps producing samples.
        before = await _samples(daemon)
        while await _samples(daemon) < before + 10 and loop.time() < deadline:
            await asyncio.sleep(0.02)
        assert await _samples(daemon) >= before + 10, "the old pipeline stopped"
        return daemon.status()
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(task, 10.0) == 0


def test_a_detector_whose_constructor_raises_leaves_the_old_generation(
        tmp_path: Path, user_module: str) -> None:
    write_csv(tmp_path / "s.csv", [20.0, 21.0, 20.5, 35.0] * 50, period_s=0.02)
    cfg = tmp_path / "cfg.toml"
    _write(cfg, "old")
    broken = CONFIG.format(name="new", pipeline=f'detector = "{user_module}:Broken"')

    async def main() -> dict[str, Any]:
        daemon = await asyncio.to_thread(Daemon, cfg)
        return await _reload_and_watch(daemon, cfg, broken)

    status = asyncio.run(main())
    assert status["node"] == "old"
    assert status["reloads"] == 0
    error = status["last_reload_error"]
    assert error.startswith(f"pipelines[0].detector: '{user_module}:Broken' failed to build: "
                            "ZeroDivisionError: division by zero")
    assert "\n" not in error


class BuildBugError(RuntimeError):
    """Not an EdgeRuntimeError: a bug in the builder itself."""


def _builder_that_fails_for(name: str) -> Any:
    """``build_runtime``, except that a config whose node is called ``name`` raises a
    plain RuntimeError (a bug in building, not a config problem)."""

    def build(config: Config) -> Runtime:
        if config.node.name == name:
            raise BuildBugError("the builder broke\nover two lines")
        return build_runtime(config)

    return build


def test_any_exception_from_the_build_leaves_the_old_generation(tmp_path: Path) -> None:
    write_csv(tmp_path / "s.csv", [20.0, 21.0, 20.5, 35.0] * 50, period_s=0.02)
    cfg = tmp_path / "cfg.toml"
    _write(cfg, "old")

    async def main() -> dict[str, Any]:
        daemon = await asyncio.to_thread(
            lambda: Daemon(cfg, builder=_builder_that_fails_for("new")))
        return await _reload_and_watch(daemon, cfg, CONFIG.format(name="new", pipeline=""))

    status = asyncio.run(main())
    assert status["node"] == "old" and status["reloads"] == 0
    assert status["last_reload_error"] == "BuildBugError: the builder broke over two lines"


def test_the_old_config_is_retried_until_it_builds_again(tmp_path: Path) -> None:
    """The new config fails and so does the first rebuild of the old one (a pin not yet
    released, say): the old one is retried, and runs again."""
    write_csv(tmp_path / "s.csv", [20.0, 21.0, 20.5, 35.0] * 50, period_s=0.02)
    cfg = tmp_path / "cfg.toml"
    _write(cfg, "old")
    calls: list[str] = []

    def build(config: Config) -> Runtime:
        calls.append(config.node.name)
        if config.node.name == "new" or calls.count("old") == 2:
            raise OSError("device busy")
        return build_runtime(config)

    async def main() -> dict[str, Any]:
        daemon = await asyncio.to_thread(lambda: Daemon(cfg, builder=build))
        return await _reload_and_watch(daemon, cfg, CONFIG.format(name="new", pipeline=""))

    status = asyncio.run(main())
    assert calls[:4] == ["old", "new", "old", "old"]
    assert status["node"] == "old" and status["last_reload_error"] == "OSError: device busy"
