"""The Python bridge against the C reference core over a real pseudo-terminal.

Covers the issue's list: HELLO, streaming at a set rate, SET_RATE taking effect,
GPIO_WRITE acknowledged, garbage injected mid-stream, the device killed and restarted.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from firmware_bridge.client import BridgeClient, Sample
from firmware_bridge.errors import (
    BridgeConfigError,
    CommandRejectedError,
    HelloTimeoutError,
    PortNotFoundError,
    UnknownChannelError,
)
from firmware_bridge.protocol import NackReason
from firmware_bridge.timing import DEFAULT_TIMING

from .conftest import Binaries, SimDevice

FAST = replace(
    DEFAULT_TIMING,
    hello_timeout_s=1.0,
    hello_retry_s=0.1,
    connect_timeout_s=5.0,
    command_timeout_s=0.3,
    heartbeat_interval_s=0.2,
    liveness_timeout_s=1.5,
    backoff_initial_s=0.02,
    backoff_max_s=0.2,
)


def run(coro_fn: Callable[[], Awaitable[None]], timeout_s: float = 30.0) -> None:
    """Run a test coroutine on a fresh loop that reports callbacks blocking > 50 ms."""

    async def main() -> None:
        asyncio.get_running_loop().slow_callback_duration = 0.05
        await asyncio.wait_for(coro_fn(), timeout_s)

    asyncio.run(main(), debug=True)


async def collect(
    dev: BridgeClient, channel: str, *, count: int | None = None, duration_s: float | None = None
) -> list[Sample]:
    """Collect samples of one channel until ``count`` or ``duration_s`` is reached."""
    out: list[Sample] = []
    deadline = time.monotonic() + (duration_s or 1e9)

    async def gather() -> None:
        async for sample in dev.samples(channel):
            out.append(sample)
            if count is not None and len(out) >= count:
                return
            if time.monotonic() >= deadline:
                return

    await asyncio.wait_for(gather(), (duration_s or 10.0) + 5.0)
    return out


def device_rate_hz(samples: list[Sample]) -> float:
    span_us = samples[-1].device_time_us - samples[0].device_time_us
    return (len(samples) - 1) / (span_us * 1e-6)


def assert_contiguous(samples: list[Sample]) -> None:
    """The counter channel's value is its index: no gaps, no duplicates."""
    for a, b in itertools.pairwise(samples):
        assert b.index == a.index + 1, f"gap between {a.index} and {b.index}"
        assert b.values == (float(b.index),)


@pytest.fixture(autouse=True)
def _no_slow_callbacks(caplog: pytest.LogCaptureFixture) -> object:
    caplog.set_level(logging.WARNING, logger="asyncio")
    yield
    slow = [r.getMessage() for r in caplog.records if "took" in r.getMessage()]
    assert not slow, f"the event loop was blocked: {slow}"


def test_hello_over_pty(sim: SimDevice) -> None:
    async def body() -> None:
        async with BridgeClient(port=str(sim.link), timing=FAST) as dev:
            hello = dev.hello
            assert hello.firmware == "edge-sim"
            assert hello.firmware_version == "1.0.0"
            assert [(c.name, c.unit, c.width) for c in hello.channels] == [
                ("counter", "count", 1),
                ("accel", "m/s2", 3),
                ("temperature", "degC", 1),
            ]
            assert hello.channel("counter") is not None
            assert dev.port_path == str(sim.link)

    run(body)


def test_streams_at_the_set_rate_and_follows_set_rate(sim: SimDevice) -> None:
    async def body() -> None:
        async with BridgeClient(port=str(sim.link), timing=FAST) as dev:
            await dev.set_rate("counter", 200.0)
            await asyncio.to_thread(sim.wait_line, "RATE 0 200")
            slow = await collect(dev, "counter", duration_s=1.0)
            await dev.set_rate("counter", 2000.0)
            await asyncio.to_thread(sim.wait_line, "RATE 0 2000")
            await collect(dev, "counter", count=50)  # let the old batches drain
            fast = await collect(dev, "counter", duration_s=1.0)
            assert device_rate_hz(slow) == pytest.approx(200.0, rel=0.02)
            assert device_rate_hz(fast) == pytest.approx(2000.0, rel=0.02)
            assert len(fast) > 1500
            assert_contiguous(slow)
            assert_contiguous(fast)
            # The mapped host time follows arrival: never in the future, lag well bounded.
            now = time.monotonic()
            assert all(s.host_time_s <= now for s in fast)
            lags = sorted(now - s.host_time_s for s in fast[-20:])
            assert lags[0] < 0.5
            assert dev.rate_hz("counter") == 2000.0
            stats = dev.stats
            assert stats.frames_lost == 0
            assert stats.channel(0).samples_lost == 0
            assert stats.decoder.crc_errors == 0
            # Stopping a channel: rate 0 means no more samples.
            await dev.set_rate("counter", 0.0)
            await asyncio.to_thread(sim.wait_line, "RATE 0 0")

    run(body)


def test_commands_are_acked_or_refused(sim: SimDevice) -> None:
    async def body() -> None:
        async with BridgeClient(port=str(sim.link), timing=FAST) as dev:
            await dev.gpio_write(13, True)
            assert await asyncio.to_thread(sim.wait_line, "GPIO 13") == "GPIO 13 1"
            await dev.gpio_write(13, 0)
            await asyncio.to_thread(sim.wait_line, "GPIO 13 0")
            with pytest.raises(CommandRejectedError) as info:
                await dev.gpio_write(40, 1)  # the simulator has 32 pins
            assert info.value.reason == NackReason.BAD_PIN
            with pytest.raises(BridgeConfigError, match=r"from 0\.0005 Hz .* to 10 Hz"):
                await dev.set_rate("temperature", 50.0)
            with pytest.raises(UnknownChannelError, match="counter"):
                await dev.set_rate("humidity", 1.0)

    run(body)


def test_garbage_mid_stream_costs_only_the_torn_frames(sim: SimDevice) -> None:
    async def body() -> None:
        async with BridgeClient(port=str(sim.link), timing=FAST) as dev:
            await dev.set_rate("counter", 1000.0)
            await collect(dev, "counter", count=100)
            glitches = 5
            samples: list[Sample] = []

            async def glitch_while_streaming() -> None:
                for _ in range(glitches):
                    await asyncio.sleep(0.1)
                    sim.glitch()
                await asyncio.sleep(0.2)

            task = asyncio.create_task(glitch_while_streaming())
            async for sample in dev.samples("counter"):
                samples.append(sample)
                if task.done():
                    break
            stats = dev.stats
            # Each glitch tears exactly one frame (of any channel) and adds garbage.
            assert 1 <= stats.frames_lost <= glitches
            assert stats.decoder.resyncs >= glitches
            lost = stats.channel(0).samples_lost
            assert lost <= glitches * 32  # at most one batch per glitch
            gaps = sum(b.index - a.index - 1 for a, b in itertools.pairwise(samples))
            assert gaps == lost
            # Values stay consistent with indices: nothing was mis-decoded.
            assert all(s.values == (float(s.index),) for s in samples)

            # Garbage in the other direction: the C decoder resyncs too.
            def write_garbage() -> None:
                fd = os.open(sim.pty_path, os.O_WRONLY | os.O_NOCTTY)
                try:
                    os.write(fd, b"\x05\x11\x22\x00\xff" * 20 + b"\x01" * 100 + b"\x00")
                finally:
                    os.close(fd)

            await asyncio.to_thread(write_garbage)
            await dev.gpio_write(3, 1)
            await asyncio.to_thread(sim.wait_line, "GPIO 3 1")

    run(body)


def test_unplug_and_replug_resumes_at_the_desired_rate(sim: SimDevice) -> None:
    async def body() -> None:
        async with BridgeClient(port=str(sim.link), timing=FAST) as dev:
            await dev.set_rate("counter", 500.0)
            before = await collect(dev, "counter", count=200)
            samples: list[Sample] = []

            async def consume() -> None:
                async for sample in dev.samples("counter"):  # survives the reconnect
                    samples.append(sample)

            consumer = asyncio.create_task(consume())
            await asyncio.sleep(0.05)
            await asyncio.to_thread(sim.unplug)
            old_path = sim.pty_path
            await asyncio.sleep(0.3)
            assert not dev.connected
            # A new pty, maybe a new /dev/pts number; the link follows.
            await asyncio.to_thread(sim.start)
            await dev.wait_connected(5.0)
            # The host re-applied its rate: the new boot defaulted to 10 Hz.
            await asyncio.to_thread(sim.wait_line, "RATE 0 500")

            def new_boot() -> list[Sample]:
                # The counter index restarts at the reboot; everything after is new.
                for i in range(1, len(samples)):
                    if samples[i].index < samples[i - 1].index:
                        return samples[i:]
                return []

            deadline = time.monotonic() + 5
            while len(new_boot()) < 300:
                await asyncio.sleep(0.05)
                assert time.monotonic() < deadline, f"no stream after replug ({old_path})"
            consumer.cancel()
            after = new_boot()
            assert dev.stats.reconnects == 1
            assert dev.rate_hz("counter") == 500.0
            # Skip the samples taken at the boot default (10 Hz) before the host's rate.
            assert device_rate_hz(after[-200:]) == pytest.approx(500.0, rel=0.03)
            assert_contiguous(after[-200:])
            assert len(before) == 200

    run(body)


def test_reboot_behind_an_open_port_is_noticed(sim: SimDevice) -> None:
    async def body() -> None:
        async with BridgeClient(port=str(sim.link), timing=FAST) as dev:
            await dev.set_rate("counter", 400.0)
            await collect(dev, "counter", count=100)
            sim.reboot()
            deadline = time.monotonic() + 5
            while dev.stats.device_restarts == 0:
                await asyncio.sleep(0.02)
                assert time.monotonic() < deadline, "the unasked HELLO was not noticed"
            # The host put its rate back; the new boot counts from index 0 again.
            deadline = time.monotonic() + 5
            while sum(line == "RATE 0 400" for line in sim.lines) < 2:
                await asyncio.sleep(0.02)
                assert time.monotonic() < deadline, sim.lines[-5:]
            after = await collect(dev, "counter", count=200)
            assert after[0].index < 300
            assert_contiguous(after[-150:])
            assert device_rate_hz(after[-150:]) == pytest.approx(400.0, rel=0.03)
            assert dev.stats.reconnects == 0
            # The restart reset the sequence tracking: no phantom losses.
            assert dev.stats.frames_lost <= 1

    run(body)


def test_reconnect_finds_the_device_by_usb_id(sim: SimDevice, tmp_path: Path) -> None:
    class FakePort:
        def __init__(self, device: str, vid: int, pid: int, serial_number: str) -> None:
            self.device, self.vid, self.pid, self.serial_number = device, vid, pid, serial_number

    def comports() -> list[FakePort]:
        # What serial.tools.list_ports would report: the tty of the current boot.
        return [
            FakePort("/dev/ttyS0", 0, 0, ""),
            FakePort(sim.pty_path, 0x2E8A, 0x000A, "E661"),
        ]

    async def body() -> None:
        client = BridgeClient(usb_id="2e8a:000a:E661", timing=FAST, comports=comports)
        async with client as dev:
            first = dev.port_path
            assert first == sim.pty_path
            await asyncio.to_thread(sim.unplug)
            await asyncio.to_thread(sim.start)
            await asyncio.sleep(0.3)
            await dev.wait_connected(5.0)
            assert dev.port_path == sim.pty_path
            assert dev.stats.reconnects == 1

    run(body)


def test_clock_mapping_across_wrap_and_drift(binaries: Binaries, tmp_path: Path) -> None:
    # The device clock starts 1.5 s before its 32-bit wrap and runs 3000 ppm fast.
    device = SimDevice(
        binaries.sim,
        tmp_path / "ttyDRIFT",
        ["--clock-offset-us", str((1 << 32) - 1_500_000), "--drift-ppm", "3000"],
    ).start()

    async def body() -> None:
        async with BridgeClient(port=str(device.link), timing=FAST) as dev:
            await dev.set_rate("counter", 500.0)
            samples = await collect(dev, "counter", duration_s=3.0)
            times = [s.device_time_us for s in samples]
            assert times == sorted(times)
            assert times[-1] > 1 << 32  # unwrapped past the wrap
            host = [s.host_time_s for s in samples]
            assert host == sorted(host)
            # Host intervals are device intervals corrected for the fast device clock.
            host_rate = (len(host) - 1) / (host[-1] - host[0])
            assert host_rate == pytest.approx(500.0, rel=0.01)

    try:
        run(body)
    finally:
        device.stop()


def test_missing_port_and_silent_port_fail_fast(tmp_path: Path) -> None:
    async def missing() -> None:
        timing = replace(FAST, connect_timeout_s=0.3)
        with pytest.raises(PortNotFoundError, match="does not exist"):
            async with BridgeClient(port=str(tmp_path / "nope"), timing=timing):
                pass

    async def silent() -> None:
        # A pty with nobody behind it: opens fine, never says HELLO.
        master, slave = os.openpty()
        try:
            timing = replace(FAST, connect_timeout_s=0.6, hello_timeout_s=0.4)
            with pytest.raises(HelloTimeoutError, match="no HELLO"):
                async with BridgeClient(port=os.ttyname(slave), timing=timing):
                    pass
        finally:
            os.close(master)
            os.close(slave)

    run(missing)
    run(silent)
