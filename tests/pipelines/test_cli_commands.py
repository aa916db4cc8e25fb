"""'record', 'status' (against a live daemon in this process) and 'demo --daemon'."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.cli import main
from edge_runtime.pipelines.daemon import Daemon
from edge_runtime.sources.gpio import pin_factory
from edge_runtime.sources.replay import load_recording
from tests.helpers.media import make_video, write_csv

CONFIG = """
[node]
state_dir = "state"
gpio_pin_factory = "mock"
[budget]
enabled = false
[[sources]]
type = "replay"
id = "temp"
path = "in.csv"
speed = 50
lossless = true
[[sources]]
type = "camera"
id = "cam"
path = "clip.avi"
realtime = false
lossless = true
[[pipelines]]
id = "temp"
source = "temp"
"""


def _setup(tmp_path: Path) -> Path:
    write_csv(tmp_path / "in.csv", [float(i) for i in range(20)], period_s=0.1)
    make_video(tmp_path / "clip.avi", 6)
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(CONFIG)
    return cfg


def test_record_command_writes_replayable_files(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _setup(tmp_path)
    out = tmp_path / "rec.csv"
    assert main(["record", str(cfg), "temp", str(out), "--duration-s", "5"]) == 0
    assert "recorded 20 samples" in capsys.readouterr().out
    assert list(load_recording(out)[1]) == [float(i) for i in range(20)]
    assert main(["record", str(cfg), "cam", str(tmp_path / "c.avi"), "--duration-s", "5"]) == 0
    assert "recorded 6 samples" in capsys.readouterr().out
    assert main(["record", str(cfg), "nope", str(out)]) == 2
    assert "known: temp, cam" in capsys.readouterr().err


def test_status_command_talks_to_running_daemon(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _setup(tmp_path)

    async def scenario() -> tuple[int, int]:
        daemon = await asyncio.to_thread(Daemon, cfg)  # reads the file
        task = asyncio.create_task(daemon.run())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        sock = await asyncio.to_thread(lambda: daemon.config.control_socket)
        while not await asyncio.to_thread(sock.exists) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        rc_text = await loop.run_in_executor(None, main, ["status", str(cfg)])
        rc_json = await loop.run_in_executor(None, main, ["status", "--json", str(cfg)])
        daemon.request_stop()
        await asyncio.wait_for(task, 5)
        return rc_text, rc_json

    try:
        assert asyncio.run(scenario()) == (0, 0)
    finally:
        pin_factory("mock").reset()
    out = capsys.readouterr().out
    assert "pipeline temp <- temp (no model)" in out
    reply = json.loads(out[out.index("{"):])
    assert reply["pipelines"]["temp"]["source"] == "temp"
    assert main(["status", "--socket", str(tmp_path / "none.sock")]) == 2
    assert "no daemon control socket" in capsys.readouterr().err
    assert main(["status"]) == 2


def test_demo_daemon_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        rc = main(["demo", "--daemon", "--duration-s", "6", "--dir", str(tmp_path)])
    finally:
        pin_factory("mock").reset()
    assert rc == 0
    out = capsys.readouterr().out
    assert "pipeline digits <- camera (digits-int8-onnx)" in out
    summary = json.loads((tmp_path / "state" / "summary.json").read_text())
    assert summary["pipelines"]["presence"]["rules"]["someone"]["activations"] == 1
    assert summary["actions"]["relay"] >= 1
    assert summary["pipelines"]["digits"]["inferences"] > 0


def test_status_printout_shows_shared_sources_and_device_health(
        capsys: pytest.CaptureFixture[str]) -> None:
    from edge_runtime.cli.status import print_status

    def pipeline(source_stats: dict[str, Any], health: float | None) -> dict[str, Any]:
        return {"source": "cam", "model": None, "samples": 10, "inferences": 4, "gated": 6,
                "errors": 0, "rules": {}, "health": health,
                "latency_ms": {"p50": 1.0, "p99": 2.0, "max": 3.0},
                "sampling": {"rate_hz": 5.0, "min_rate_hz": 1.0, "max_rate_hz": 10.0},
                "source_stats": {"dropped": 1, "reconnects": 0, **source_stats}}

    print_status({
        "node": "n", "pid": 1, "uptime_s": 2.0, "generation": 1, "reloads": 0,
        "reload_errors": 0, "health": {}, "health_rules": {},
        "pipelines": {
            "detect": pipeline({"shared": True, "delivered": 9, "skipped": 11}, 87.4),
            "plain": pipeline({}, None),
        },
        "sources": {"cam": {"pipelines": ["detect", "plain"], "read_rate_hz": 10.0,
                            "read": 20, "dropped": 0, "reconnects": 1}},
    })
    out = capsys.readouterr().out
    assert "shares its source: 9 taken, 11 skipped at its own rate" in out
    assert "device health 87/100" in out
    assert out.count("device health") == 1  # no health line without a detector/forecast
    assert ("source cam (shared by detect, plain): read at 10.00 Hz, 20 samples read, "
            "0 dropped, 1 reconnects") in out
