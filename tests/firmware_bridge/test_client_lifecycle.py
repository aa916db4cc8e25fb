"""The client's lifecycle: one task group, errors that keep their cause, cancellation.

Issue 9 point 3: an error that is not a link error ends the client at once and keeps
pyserial's (or the bug's) error as its cause instead of turning into a HELLO timeout;
a background task that dies takes the client down loudly (start, iterators, commands
and ``closed`` all see it); ``close()`` re-raises its caller's own cancellation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import replace

import pytest

from firmware_bridge.client import BridgeClient
from firmware_bridge.errors import BackgroundTaskError, BridgeConfigError, PortOpenError
from firmware_bridge.transport import PortInfo

from .conftest import SimDevice
from .test_pty_e2e import FAST, run


class FakePort:
    """What ``serial.tools.list_ports`` reports for one port."""

    def __init__(self, device: str, vid: int, pid: int, serial_number: str) -> None:
        self.device = device
        self.vid: int | None = vid
        self.pid: int | None = pid
        self.serial_number: str | None = serial_number


class FailingPortList:
    """A port list that works ``good_calls`` times, then fails like a broken sysfs."""

    def __init__(self, sim: SimDevice, good_calls: int) -> None:
        self.sim = sim
        self.good_calls = good_calls
        self.calls = 0

    def __call__(self) -> Sequence[PortInfo]:
        self.calls += 1
        if self.calls > self.good_calls:
            raise RuntimeError("sysfs went away")
        return [FakePort(self.sim.pty_path, 0x2E8A, 0x000A, "E661")]


def _tasks_named(prefix: str) -> set[str]:
    return {t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith(prefix)}


def test_a_bad_baudrate_reports_pyserials_error_at_once() -> None:
    async def body() -> None:
        client = BridgeClient(port="/dev/null", baudrate=-5, timing=FAST)
        t0 = time.monotonic()
        with pytest.raises(BridgeConfigError, match="Not a valid baudrate: -5") as info:
            await client.start()
        # Not retried until connect_timeout_s (5 s) and not a HELLO timeout.
        assert time.monotonic() - t0 < 1.0
        assert isinstance(info.value.__cause__, ValueError)
        assert "Not a valid baudrate" in str(info.value.__cause__)
        assert client.closed.done() and client.closed.exception() is info.value
        assert not _tasks_named("firmware_bridge.")

    run(body)


def test_a_file_that_is_no_tty_reports_the_os_error() -> None:
    async def body() -> None:
        client = BridgeClient(port="/dev/null", timing=replace(FAST, connect_timeout_s=0.3))
        with pytest.raises(PortOpenError, match="Inappropriate ioctl") as info:
            await client.start()
        assert isinstance(info.value.__cause__, OSError)

    run(body)


def test_background_tasks_are_named_and_end_with_the_client(sim: SimDevice) -> None:
    async def body() -> None:
        async with BridgeClient(port=str(sim.link), timing=FAST) as dev:
            assert _tasks_named("firmware_bridge.") == {
                "firmware_bridge.client",
                "firmware_bridge.supervisor",
            }
            assert not dev.closed.done()
        assert dev.closed.done() and dev.closed.result() is None
        assert not _tasks_named("firmware_bridge.")

    run(body)


def test_a_crash_before_the_first_hello_is_raised_by_start(sim: SimDevice) -> None:
    async def body() -> None:
        ports = FailingPortList(sim, good_calls=0)
        client = BridgeClient(usb_id="2e8a:000a", timing=FAST, comports=ports)
        t0 = time.monotonic()
        with pytest.raises(BackgroundTaskError, match="sysfs went away") as info:
            await client.start()
        assert time.monotonic() - t0 < 1.0
        assert info.value.task == "firmware_bridge.supervisor"
        assert isinstance(info.value.__cause__, RuntimeError)

    run(body)


def test_a_background_task_that_dies_takes_the_client_down_loudly(
    sim: SimDevice, caplog: pytest.LogCaptureFixture
) -> None:
    async def body() -> None:
        # The port list works for the first connection and breaks for the reconnect.
        ports = FailingPortList(sim, good_calls=1)
        client = BridgeClient(usb_id="2e8a:000a", timing=FAST, comports=ports)
        async with client as dev:
            await dev.set_rate("counter", 200.0)
            got = 0

            async def consume() -> None:
                nonlocal got
                async for _batch in dev.sample_batches("counter"):
                    got += 1

            consumer = asyncio.create_task(consume())
            while got < 3:
                await asyncio.sleep(0.01)
            await asyncio.to_thread(sim.unplug)  # the reconnect asks the port list again
            with pytest.raises(BackgroundTaskError, match="sysfs went away") as info:
                await asyncio.wait_for(consumer, 5.0)
            failure = info.value
            assert isinstance(failure.__cause__, RuntimeError)
            assert failure.task == "firmware_bridge.supervisor"
            # The whole client is down, not half: closed, disconnected, commands refused.
            with pytest.raises(BackgroundTaskError):
                await dev.closed
            assert not dev.connected and dev.port_path is None
            with pytest.raises(BackgroundTaskError):
                await dev.set_rate("counter", 100.0)
            assert not _tasks_named("firmware_bridge.")
        assert any("sysfs went away" in r.getMessage() and r.levelname == "ERROR"
                   for r in caplog.records)

    run(body)


def test_close_re_raises_the_callers_cancellation(sim: SimDevice) -> None:
    async def body() -> None:
        client = BridgeClient(port=str(sim.link), timing=FAST)
        await client.start()
        ended = asyncio.Event()

        async def consume() -> None:
            async for _batch in client.sample_batches():
                pass
            ended.set()

        consumer = asyncio.create_task(consume())
        closing = asyncio.create_task(client.close())
        await asyncio.sleep(0)  # close() is now waiting for the task group to end
        assert not closing.done()
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
        assert closing.cancelled()
        # Shut down all the same: the port is closed and the iterators end.
        assert client.port_path is None and not client.connected
        await asyncio.wait_for(ended.wait(), 1.0)
        await asyncio.wait_for(client.closed, 1.0)
        assert client.closed.result() is None
        await consumer
        await client.close()  # a second close is harmless

    run(body)
