"""One bad input never takes down more than its own pipeline: a read or a step that
raises on the loop (any exception, not only the runtime's own) is counted against that
pipeline, logged rate-limited, and the pipeline goes on with the next sample.

Before, an exception other than EdgeRuntimeError in a loop-side read, or any
exception while inferring or deciding on the loop, ended the generation's task group:
every pipeline of the node stopped.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from edge_runtime.config import decode_config
from edge_runtime.pipelines.build import build_runtime
from edge_runtime.pipelines.daemon import Daemon
from edge_runtime.sources.base import Sample, Source

CONFIG = """
[node]
state_dir = "st"
gpio_pin_factory = "mock"
[budget]
enabled = false
[[sources]]
type = "gpio"
id = "pin"
pin = 17
max_rate_hz = 200.0
min_rate_hz = 200.0
[[pipelines]]
id = "door"
source = "pin"
[[pipelines.rules]]
id = "open"
field = "value"
above = 0.5
actions = ["log"]
[[actions]]
type = "log"
id = "log"
"""


class FlakySource(Source):
    """Reads like a sensor, but every third read raises what a driver might: a
    ValueError, an OSError, a ZeroDivisionError (none of them the runtime's own)."""

    blocking_read = False

    def __init__(self) -> None:
        super().__init__("pin")
        self.reads = 0

    def _open(self) -> None:
        self.stats.connected = True

    def _read(self, timeout_s: float) -> Sample | None:
        self.reads += 1
        kind = self.reads % 9
        if kind == 3:
            raise ValueError("driver returned garbage")
        if kind == 6:
            raise OSError(5, "Input/output error")
        if kind == 0:
            raise ZeroDivisionError("division by zero in a driver")
        return Sample("pin", time.monotonic(), self._next_seq(), value=float(self.reads % 2))

    def _close(self) -> None:
        self.stats.connected = False


class ExplodingValue(Source):
    """Delivers values fine, but the pipeline's step raises on one of them (a result a
    rule cannot compare: here, the value is a string)."""

    blocking_read = False

    def __init__(self) -> None:
        super().__init__("pin")
        self.reads = 0

    def _open(self) -> None:
        pass

    def _read(self, timeout_s: float) -> Sample | None:
        self.reads += 1
        value: object = "not a number" if self.reads == 2 else 1.0
        return Sample("pin", time.monotonic(), self._next_seq(), value=value)  # type: ignore[arg-type]

    def _close(self) -> None:
        pass


def _run_on_loop_for(daemon: Daemon, source: Source, seconds: float, tmp_path: Path) -> None:
    runtime = build_runtime(daemon.config)
    pipe = runtime.pipelines[0]
    pipe.source = source

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(seconds, daemon._gen_stop.set)
        await daemon._run_on_loop(pipe)

    try:
        asyncio.run(main())
    finally:
        runtime.close()
        daemon._read_pool.shutdown(wait=True)
    daemon.runtime = runtime


def test_a_read_that_raises_anything_is_counted_and_the_pipeline_goes_on(
        tmp_path: Path) -> None:
    config = decode_config(CONFIG, base_dir=tmp_path)
    daemon = Daemon(None, config=config)
    source = FlakySource()
    source.open()
    _run_on_loop_for(daemon, source, 0.3, tmp_path)
    assert daemon.runtime is not None
    pipe = daemon.runtime.pipelines[0]
    assert source.reads >= 9
    # Every failed read counted (errors of three kinds), every good one decided.
    assert pipe.stats.errors == source.reads // 3
    assert pipe.stats.samples == source.reads - source.reads // 3
    assert source.stats.errors == pipe.stats.errors


def test_a_step_that_raises_is_counted_and_the_pipeline_goes_on(tmp_path: Path) -> None:
    config = decode_config(CONFIG, base_dir=tmp_path)
    daemon = Daemon(None, config=config)
    source = ExplodingValue()
    _run_on_loop_for(daemon, source, 0.3, tmp_path)
    assert daemon.runtime is not None
    pipe = daemon.runtime.pipelines[0]
    assert pipe.stats.errors == 1 and "TypeError" in (pipe.stats.last_error or "")
    assert source.reads > 5 and pipe.stats.samples >= source.reads - 1
