"""Slow rates on both sides of the link: the device schedules them without overflow and
refuses what its 32-bit microsecond clock cannot represent; the host refuses to send it.

Before this, a legal SET_RATE below about 0.000466 Hz (a period over 2^31 us) made the
core's "next due" time wrap: ``fb_sample_due`` returned 1 for ever and the device (and
the simulator, deaf to SIGTERM inside that loop) stopped answering.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import numpy as np
import pytest

from firmware_bridge.client import BridgeClient
from firmware_bridge.errors import BridgeConfigError
from firmware_bridge.framing import FrameDecoder
from firmware_bridge.protocol import (
    MIN_RATE_HZ,
    Ack,
    Message,
    MessageType,
    Nack,
    NackReason,
    SampleBatch,
    SetRate,
    check_rate,
)

from .conftest import Binaries, SimDevice
from .test_envelope_core import rx
from .test_pty_e2e import FAST, collect


def run_bounded(binary: Path, lines: list[str], timeout_s: float = 20.0) -> list[Message]:
    """The scripted core's frames (HELLO/HEARTBEAT left out); a wedged core times out."""
    result = subprocess.run([str(binary)], input="\n".join(lines) + "\n", capture_output=True,
                            text=True, check=True, timeout=timeout_s)
    decoder = FrameDecoder()
    out: list[Message] = []
    for line in result.stdout.splitlines():
        for frame in decoder.feed(bytes.fromhex(line.removeprefix("TX "))):
            if frame.message.TYPE not in (MessageType.HELLO, MessageType.HEARTBEAT):
                out.append(frame.message)
    return out


def sample_times(messages: list[Message]) -> list[int]:
    return [m.t_first_us + i * m.interval_us for m in messages if isinstance(m, SampleBatch)
            for i in range(m.count)]


def test_a_rate_the_clock_cannot_schedule_is_refused_and_the_core_keeps_running(
        binaries: Binaries) -> None:
    out = run_bounded(binaries.script, [
        # 0.0004 Hz passes the [0, max_rate_hz] range check: a 2.5e9 us period.
        "rx " + _set_rate_frame(0, 0.0004, 1).hex(),
        "run 5000",
        rx(SetRate(0, 1000.0), 2),
        "run 5000",
        "flush",
    ])
    assert out[0] == Nack(1, MessageType.SET_RATE, NackReason.RATE_OUT_OF_RANGE)
    assert out[1] == Ack(2, MessageType.SET_RATE)
    # Nothing was sampled at the refused rate; 1000 Hz for 5 ms gives 5 or 6 samples.
    assert 5 <= len(sample_times(out[2:])) <= 6


def test_the_slowest_rate_is_scheduled_exactly_across_the_clock_wrap(
        binaries: Binaries) -> None:
    # The device computes the period in f32, as period_for() in fb_device.c does.
    f32 = np.float32
    period_us = int(f32(1e6) / f32(MIN_RATE_HZ) + f32(0.5))
    assert abs(period_us - 2e9) < 1e3  # about 2000 s: the clock wraps every 2.15 samples
    out = run_bounded(binaries.script, [
        "run 10",
        rx(SetRate(0, MIN_RATE_HZ), 1),
        "run 1",  # due at once (t = 10, the moment the rate was set), taken at 11
        f"jump {period_us - 2}",  # 1 us early: nothing
        "jump 1",
        f"jump {period_us}",
        f"jump {period_us // 2}",
        f"jump {period_us - period_us // 2}",
        "flush",
    ])
    assert out[0] == Ack(1, MessageType.SET_RATE)
    times = sample_times(out)
    expected = [(10 + k * period_us) % 2**32 for k in range(4)]
    assert times == expected, times


def test_a_long_stall_skips_ahead_instead_of_bursting(binaries: Binaries) -> None:
    out = run_bounded(binaries.script, [
        rx(SetRate(0, 1000.0), 1),
        "run 3000",  # t = 0, 1, 2, 3 ms
        "jump 10000000",  # the loop was stalled for 10 s: one sample, not 10,000
        "run 2000",  # the grid resumes from the end of the stall
        "flush",
    ])
    assert sample_times(out) == [0, 1000, 2000, 3000, 10_003_000, 10_004_000, 10_005_000]


@pytest.mark.parametrize("rate_hz", [0.0004, MIN_RATE_HZ / 2, -1.0, float("nan"),
                                     float("inf"), 1e39, 1000.5])
def test_the_host_refuses_a_rate_no_device_can_schedule(rate_hz: float) -> None:
    with pytest.raises(BridgeConfigError, match=r"from 0\.0005 Hz .* to 1000 Hz"):
        check_rate(rate_hz, 1000.0, "a")


@pytest.mark.parametrize("rate_hz", [0.0, MIN_RATE_HZ, 1.0, 1000.0])
def test_the_host_accepts_every_rate_a_device_can_schedule(rate_hz: float) -> None:
    assert check_rate(rate_hz, 1000.0, "a") == np.float32(rate_hz)


def test_the_client_refuses_a_too_slow_rate_before_sending(binaries: Binaries,
                                                            tmp_path: Path) -> None:
    device = SimDevice(binaries.sim, tmp_path / "tty").start()

    async def body() -> None:
        async with BridgeClient(port=str(device.link), timing=FAST) as dev:
            with pytest.raises(BridgeConfigError, match="cannot be set on channel 'counter'"):
                await dev.set_rate("counter", 0.0004)
            await dev.set_rate("counter", 100.0)  # the link still works
            await collect(dev, "counter", count=5)

    try:
        asyncio.run(asyncio.wait_for(body(), 30))
    finally:
        device.stop()


def _set_rate_frame(channel: int, rate_hz: float, seq: int) -> bytes:
    """A SET_RATE frame built by hand: the codec refuses to encode this rate."""
    import struct

    from firmware_bridge import cobs
    from firmware_bridge.crc import crc16_ccitt_false

    body = bytes((1, MessageType.SET_RATE)) + struct.pack("<H", seq)
    body += struct.pack("<Bf", channel, rate_hz)
    return b"\x00" + cobs.encode(body + struct.pack("<H", crc16_ccitt_false(body))) + b"\x00"
