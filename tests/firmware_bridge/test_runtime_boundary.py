"""edge-runtime's side of the boundary: the CLI probe and the source adapter."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from edge_runtime.cli import COMMAND_MODULES, main
from edge_runtime.errors import (
    BridgePortNotFoundError,
    BridgeTimeoutError,
    ConfigError,
    SourceUnavailableError,
)
from edge_runtime.sources.bridge import BridgeSource, translate_error
from firmware_bridge import errors as fb

from .conftest import SimDevice
from .test_pty_e2e import FAST


def test_bridge_is_a_registered_command() -> None:
    assert "bridge" in COMMAND_MODULES


def test_probe_prints_the_hello(sim: SimDevice, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bridge", "probe", str(sim.link), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["firmware"] == "edge-sim"
    assert doc["protocol_version"] == 1
    assert [c["name"] for c in doc["channels"]] == ["counter", "accel", "temperature"]

    assert main(["bridge", "probe", str(sim.link)]) == 0
    text = capsys.readouterr().out
    assert "firmware  edge-sim 1.0.0" in text
    assert "accel" in text and "m/s2 x3" in text


def test_probe_errors_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bridge", "probe", str(tmp_path / "ttyNONE"), "--timeout-s", "0.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not exist" in err and "by-id" in err

    master, slave = os.openpty()
    try:
        assert main(["bridge", "probe", os.ttyname(slave), "--timeout-s", "0.5"]) == 2
    finally:
        os.close(master)
        os.close(slave)
    err = capsys.readouterr().err.strip()
    assert "no HELLO" in err and err.count("\n") == 0


def test_errors_translate_to_runtime_families() -> None:
    assert isinstance(translate_error(fb.PortNotFoundError("x")), BridgePortNotFoundError)
    assert isinstance(translate_error(fb.HelloTimeoutError("x")), BridgeTimeoutError)
    assert isinstance(translate_error(fb.DeviceDisconnectedError("x")), SourceUnavailableError)
    assert isinstance(translate_error(fb.UnknownChannelError("x")), ConfigError)


def test_source_adapter_streams_and_drives_the_device_rate(sim: SimDevice) -> None:
    source = BridgeSource("vib", port=str(sim.link), channel="counter", timing=FAST)
    with source:
        source.set_rate(200.0)
        sim.wait_line("RATE 0 200")
        first = source.read(timeout_s=2.0)
        assert first is not None and first.value is not None
        time.sleep(0.3)
        second = source.read(timeout_s=2.0)
        assert second is not None and second.value is not None
        # Latest wins: the counter value jumped by about 0.3 s worth of samples.
        assert 30 <= second.value - first.value <= 120
        assert second.seq - first.seq == second.value - first.value
        assert abs(second.t_mono_s - time.monotonic()) < 0.5
        assert source.stats.rate_hz == 200.0
        assert source.stats.dropped > 0 and source.stats.connected
        source.set_rate(1e9)  # the controller may ask too much: clamped to the maximum
        sim.wait_line("RATE 0 20000")
    assert not source.stats.connected


def test_source_adapter_rejects_an_unknown_channel(sim: SimDevice) -> None:
    source = BridgeSource("x", port=str(sim.link), channel="humidity", timing=FAST)
    with pytest.raises(ConfigError, match="humidity"):
        source.open()


def test_source_adapter_open_fails_with_a_runtime_error(tmp_path: Path) -> None:
    timing = replace(FAST, connect_timeout_s=0.3)
    source = BridgeSource("x", port=str(tmp_path / "missing"), channel=0, timing=timing)
    with pytest.raises(BridgePortNotFoundError):
        source.open()


def test_set_rate_never_blocks_the_caller(sim: SimDevice) -> None:
    """The rate controller calls set_rate on the daemon's event loop: it must return at
    once even when the device does not answer; the failure is counted, not raised."""
    import signal

    source = BridgeSource("vib", port=str(sim.link), channel="counter", timing=FAST)
    with source:
        assert sim.proc is not None
        sim.proc.send_signal(signal.SIGSTOP)  # the device hangs: no ACK will come
        try:
            t0 = time.monotonic()
            source.set_rate(50.0)
            assert time.monotonic() - t0 < 0.05
            assert source.stats.rate_hz == 50.0
            deadline = time.monotonic() + 10.0
            while source.stats.errors == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert source.stats.errors == 1
            assert "SET_RATE" in str(source.stats.last_error) or "answer" in str(
                source.stats.last_error
            )
        finally:
            sim.proc.send_signal(signal.SIGCONT)


def test_record_runs_the_bridge_on_a_private_loop_that_ends_with_it(
    sim: SimDevice, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``edge-runtime record`` has no event loop: the source's blocking methods run the
    client on a private loop thread from open to close (the thin sync adapter)."""
    import threading

    cfg = tmp_path / "rec.toml"
    cfg.write_text(f"""
[node]
name = "rec"
state_dir = "{tmp_path / 'state'}"
control_socket = "{tmp_path / 'c.sock'}"

[[sources]]
type = "bridge"
id = "count"
channel = "counter"
port = "{sim.link}"
max_rate_hz = 50.0
""")
    out = tmp_path / "count.csv"
    assert main(["record", str(cfg), "count", str(out), "--duration-s", "1.0"]) == 0
    assert "recorded" in capsys.readouterr().out
    rows = out.read_text().splitlines()[1:]
    values = [float(row.split(",")[1]) for row in rows]
    assert len(values) >= 5 and values == sorted(values)  # the device's counter
    assert not [t for t in threading.enumerate() if t.name.endswith("-sync-loop")]


def test_blocking_and_async_faces_of_the_source_agree(sim: SimDevice) -> None:
    """The daemon's way (aopen/aread/aset_rate/aclose on its loop) gives the same
    samples as the blocking way, and starts no thread for the device."""
    import asyncio
    import threading

    async def body() -> tuple[float, float, set[str]]:
        source = BridgeSource("vib", port=str(sim.link), channel="counter", timing=FAST)
        before = {t.name for t in threading.enumerate()}
        await source.aopen()
        try:
            await source.aset_rate(200.0)
            await asyncio.to_thread(sim.wait_line, "RATE 0 200")
            first = await source.aread(2.0)
            await asyncio.sleep(0.3)
            second = await source.aread(2.0)
            threads = {t.name for t in threading.enumerate()} - before
        finally:
            await source.aclose()
        assert first is not None and second is not None
        assert first.value is not None and second.value is not None
        return first.value, second.value, threads

    first, second, threads = asyncio.run(body())
    assert 30 <= second - first <= 120  # latest wins, as with the blocking read
    assert not [name for name in threads if not name.startswith("asyncio_")], threads
