"""Peak-hold envelope end to end: the C core on a pty, the Python client, the source.

The simulator's counter channel reads its reported sample index, so with the envelope
on every window's min, max and value are that index, except where a spike (SIGWINCH,
value 1e6) went into a measurement that was *not* reported: only the envelope can show
it. An "old device" is the same simulator built without the mode (``FB_ENVELOPE=0``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_runtime.config import BridgeSourceConfig, decode_config
from edge_runtime.sources.base import Sample as RuntimeSample
from edge_runtime.sources.base import SourceStats
from edge_runtime.sources.bridge import BridgeSource, EnvelopeSlot
from firmware_bridge.client import BridgeClient, Sample

from .conftest import Binaries, SimDevice
from .test_pty_e2e import FAST, run

SPIKE = 1e6
#: A 1 kHz measurement grid: at 20 Hz reported, k = 50 measurements per sample.
SIM_ARGS = ["--counter-max-hz", "1000"]


@pytest.fixture
def env_sim(binaries: Binaries, tmp_path: Path) -> Iterator[SimDevice]:
    device = SimDevice(binaries.sim, tmp_path / "ttyENV", SIM_ARGS).start()
    yield device
    device.stop()


@pytest.fixture
def old_sim(binaries: Binaries, tmp_path: Path) -> Iterator[SimDevice]:
    device = SimDevice(binaries.old_sim, tmp_path / "ttyOLD", SIM_ARGS).start()
    yield device
    device.stop()


def envelope_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("firmware_bridge") and "peak-hold" in r.getMessage()
    ]


async def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


# --- the library against the C core ------------------------------------------------


def test_a_spike_between_two_reports_shows_in_the_envelope(env_sim: SimDevice) -> None:
    async def body() -> None:
        async with BridgeClient(port=str(env_sim.link), timing=FAST) as dev:
            assert await dev.set_envelope("counter", True) is True
            await asyncio.to_thread(env_sim.wait_line, "ENVELOPE 0 1")  # it polls: off the loop
            await dev.set_rate("counter", 20.0)
            assert dev.envelope_on("counter") and dev.envelope_supported is True
            samples: list[Sample] = []

            async def until_spike() -> None:
                async for sample in dev.samples("counter"):
                    samples.append(sample)
                    if len(samples) == 3:
                        env_sim.spike()
                    if sample.maxs == (SPIKE,):
                        return

            await asyncio.wait_for(until_spike(), 10.0)
            spiked = samples[-1]
            assert await asyncio.to_thread(env_sim.wait_line, "SPIKE 0") == (
                f"SPIKE 0 {spiked.index}")
            # The spike was measured between two reports: never a reported value.
            assert all(s.values != (SPIKE,) for s in samples)
            assert spiked.mins == spiked.values == (float(spiked.index),)
            for s in samples[:-1]:
                assert s.mins == s.values == s.maxs == (float(s.index),)
            # Reports are k * 1 ms apart on the device clock; indices count reports.
            for a, b in itertools.pairwise(samples):
                assert b.index == a.index + 1
                assert b.device_time_us - a.device_time_us == 50 * 1000
            assert dev.stats.channel(0).samples_lost == 0

    run(body)


def test_the_envelope_is_re_applied_after_a_device_reboot(env_sim: SimDevice) -> None:
    async def body() -> None:
        async with BridgeClient(port=str(env_sim.link), timing=FAST) as dev:
            await dev.set_rate("counter", 100.0)
            assert await dev.set_envelope("counter", True)
            env_sim.reboot()  # boots with the envelope off and 10 Hz
            await wait_until(lambda: dev.stats.device_restarts == 1, "the unasked HELLO")
            await wait_until(
                lambda: env_sim.lines.count("ENVELOPE 0 1") == 2, "SET_ENVELOPE re-applied"
            )
            await wait_until(lambda: dev.envelope_on("counter"), "the ACK")
            after: list[Sample] = []
            async for sample in dev.samples("counter"):
                after.append(sample)
                if len(after) == 5:
                    break
            assert all(s.mins is not None and s.maxs is not None for s in after)
            assert env_sim.lines.count("RATE 0 100") == 2

    run(body)


def test_an_old_device_falls_back_to_plain_samples_and_logs_once(
    old_sim: SimDevice, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="firmware_bridge")

    async def body() -> None:
        async with BridgeClient(port=str(old_sim.link), timing=FAST) as dev:
            assert await dev.set_envelope("counter", True) is False
            assert dev.envelope_supported is False
            assert dev.envelope_unavailable("counter") and not dev.envelope_on("counter")
            sent = dev.stats.commands_sent
            # Asked again: known unsupported, nothing sent, nothing logged again.
            assert await dev.set_envelope("counter", True) is False
            assert dev.stats.commands_sent == sent
            await dev.set_rate("counter", 200.0)
            samples: list[Sample] = []
            async for sample in dev.samples("counter"):
                samples.append(sample)
                if len(samples) == 20:
                    break
            assert all(s.mins is None and s.maxs is None for s in samples)
            assert all(s.values == (float(s.index),) for s in samples)
            # A reboot re-applies the wish; the same firmware refuses it again, quietly.
            old_sim.reboot()
            await wait_until(lambda: dev.stats.device_restarts == 1, "the unasked HELLO")
            await wait_until(lambda: dev.envelope_supported is False, "SET_ENVELOPE re-sent")
            assert dev.stats.commands_sent > sent + 1
            assert dev.connected

    run(body)
    warnings = envelope_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "edge-sim 1.0.0" in warnings[0] and "plain samples" in warnings[0]


# --- edge-runtime's source ----------------------------------------------------------


def read_after(source: BridgeSource, produced_more: int, timeout_s: float = 5.0) -> RuntimeSample:
    """Let the device produce ``produced_more`` samples the consumer does not take (they
    supersede each other), then read the newest."""
    target = source.stats.produced + produced_more
    deadline = time.monotonic() + timeout_s
    while source.stats.produced < target:
        assert time.monotonic() < deadline, "the device stopped producing"
        time.sleep(0.005)
    sample = source.read(timeout_s=2.0)
    assert sample is not None
    return sample


def first_read(source: BridgeSource) -> RuntimeSample:
    sample = source.read(timeout_s=2.0)
    assert sample is not None and sample.value is not None
    return sample


def test_source_envelope_holds_the_device_spike_and_what_it_skipped(env_sim: SimDevice) -> None:
    source = BridgeSource("vib", port=str(env_sim.link), channel="counter", timing=FAST)
    with source:
        assert source.stats.envelope == "on"
        assert source.stats.as_dict()["envelope"] == "on"
        source.set_rate(100.0)  # k = 10 on the 1 ms grid
        env_sim.wait_line("RATE 0 100")
        a = first_read(source)
        b = read_after(source, 5)
        assert a.value is not None and b.value is not None
        # Counter values are report indices: the envelope spans every skipped one.
        assert b.seq - a.seq == b.value - a.value >= 5
        assert b.envelope == (a.value + 1, b.value)
        # A spike the device measured but never reported, in a sample we skip.
        env_sim.spike()
        deadline = time.monotonic() + 5.0
        while True:
            c = read_after(source, 3)
            assert c.value is not None and c.envelope is not None
            assert c.value != SPIKE
            if c.envelope[1] == SPIKE:
                break
            assert time.monotonic() < deadline, "the spike never showed"
        assert c.envelope[0] <= c.value
        spike_index = int(env_sim.wait_line("SPIKE 0").split()[2])
        assert c.value >= spike_index


def test_source_on_an_old_device_says_unsupported_and_still_merges(
    old_sim: SimDevice, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    source = BridgeSource("vib", port=str(old_sim.link), channel="counter", timing=FAST)
    with source:
        assert source.stats.envelope == "unsupported"
        assert source.stats.errors == 0
        source.set_rate(200.0)
        old_sim.wait_line("RATE 0 200")
        a = first_read(source)
        b = read_after(source, 10)
        assert a.value is not None and b.value is not None
        # Plain samples only, but the slot keeps the min/max of those it replaced.
        assert b.envelope == (a.value + 1, b.value)
    assert len(envelope_warnings(caplog)) == 1


def test_source_with_the_envelope_off_leaves_the_device_alone(env_sim: SimDevice) -> None:
    source = BridgeSource(
        "vib", port=str(env_sim.link), channel="counter", timing=FAST, envelope=False
    )
    with source:
        assert source.stats.envelope == "off"
        source.set_rate(200.0)
        env_sim.wait_line("RATE 0 200")
        a = first_read(source)
        b = read_after(source, 10)
        assert a.value is not None and b.value is not None
        assert b.envelope == (a.value + 1, b.value)
    assert not any(line.startswith("ENVELOPE") for line in env_sim.lines)


def test_envelope_slot_folds_what_it_replaces() -> None:
    stats = SourceStats()
    slot = EnvelopeSlot(stats)
    slot.put(RuntimeSample("s", 0.0, 1, value=1.0, envelope=(1.0, 9.0)))
    slot.put(RuntimeSample("s", 0.1, 2, value=2.0, envelope=(-3.0, 2.0)))
    slot.put(RuntimeSample("s", 0.2, 3, value=4.0, envelope=(math.nan, math.nan)))
    got = slot.get(0.0)
    assert got is not None and got.seq == 3 and got.value == 4.0
    assert got.envelope == (-3.0, 9.0)  # a NaN reading never hides the rest
    assert (stats.produced, stats.dropped) == (3, 2)
    # What the consumer took is not folded into the next one.
    slot.put(RuntimeSample("s", 0.3, 4, value=5.0, envelope=(5.0, 5.0)))
    again = slot.get(0.0)
    assert again is not None and again.envelope == (5.0, 5.0)
    # A sample without an envelope counts as its own value.
    slot.put(RuntimeSample("s", 0.4, 5, value=6.0, envelope=(0.0, 7.0)))
    slot.put(RuntimeSample("s", 0.5, 6, value=8.0))
    last = slot.get(0.0)
    assert last is not None and last.envelope == (0.0, 8.0)


def test_bridge_config_envelope_defaults_on() -> None:
    base = """
[node]
name = "n"
[[sources]]
type = "bridge"
id = "imu"
port = "/dev/ttyACM0"
"""
    config = decode_config(base)
    src = config.sources[0]
    assert isinstance(src, BridgeSourceConfig) and src.envelope is True
    off_config = decode_config(base + "envelope = false\n")
    off = off_config.sources[0]
    assert isinstance(off, BridgeSourceConfig) and off.envelope is False
    # The pipelines build the source with the configured choice.
    from edge_runtime.pipelines.build import make_source

    assert make_source(src, config).envelope_requested is True  # type: ignore[attr-defined]
    assert make_source(off, off_config).envelope_requested is False  # type: ignore[attr-defined]
