"""The daemon end to end: in a subprocess (SIGTERM, SIGHUP) and in-process with mock pins,
an MJPEG camera that drops out, and a replayed sensor recording."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_runtime import control
from edge_runtime.config import load_config
from edge_runtime.errors import DaemonError
from edge_runtime.pipelines.daemon import Daemon
from edge_runtime.sources.gpio import pin_factory
from tests.helpers.events import read_events
from tests.helpers.media import MJPEGServer, make_video, wait_for, write_csv

REPO = Path(__file__).resolve().parents[2]


def _spiky_series(n: int = 300, spike_at: int = 200) -> np.ndarray:
    rng = np.random.default_rng(3)
    values = 20.0 + rng.normal(0, 0.2, n)
    values[spike_at:spike_at + 40] = 35.0  # 0.4 s at 100x: longer than the calm period
    values[50] = np.nan  # a missing sample
    return values


def _config(tmp_path: Path, *, camera: str, extra: str = "", node: str = "e2e") -> Path:
    write_csv(tmp_path / "sensor.csv", _spiky_series(), period_s=1.0)
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f"""
[node]
name = "{node}"
state_dir = "state"
gpio_pin_factory = "mock"

[budget]
enabled = false

[health]
interval_s = 0.5
check_throttling = false

[[sources]]
type = "camera"
id = "cam"
{camera}
min_rate_hz = 2
max_rate_hz = 20

[[sources]]
type = "gpio"
id = "pir"
device = "digital_input"
pin = 17
min_rate_hz = 5
max_rate_hz = 20

[[sources]]
type = "replay"
id = "sensor"
path = "sensor.csv"
speed = 100
min_rate_hz = 5
max_rate_hz = 100

[[pipelines]]
id = "digits"
source = "cam"
model = "digits-int8-onnx"
[[pipelines.rules]]
id = "moving"
field = "motion"
above = 1.0
actions = ["event"]

[[pipelines]]
id = "presence"
source = "pir"
[[pipelines.rules]]
id = "someone"
field = "value"
above = 1.0
actions = ["led", "event"]

[[pipelines]]
id = "sensor"
source = "sensor"
[pipelines.sampling]
policy = "novelty"
hold_s = 0.5
decay_half_life_s = 0.2
[[pipelines.rules]]
id = "spike"
field = "value"
above = 30.0
clear_at = 25.0
actions = ["event", "log"]

[[actions]]
type = "gpio"
id = "led"
device = "led"
pin = 18

[[actions]]
type = "event"
id = "event"

[[actions]]
type = "log"
id = "log"
{extra}
""")
    return cfg


def _events(tmp_path: Path) -> list[dict[str, Any]]:
    """The events the daemon reported to its file sink (``state/upstream.jsonl``)."""
    return read_events(tmp_path / "state")


def _status(sock: Path) -> dict[str, Any] | None:
    try:
        return control.request(sock, timeout_s=2.0)
    except DaemonError:
        return None


def _start(cfg: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "edge_runtime", "-v", "run", str(cfg)],
                            cwd=cfg.parent, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _stop(proc: subprocess.Popen[bytes]) -> tuple[int, float, str]:
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate(timeout=5)
    return proc.returncode, time.monotonic() - t0, err.decode()


def test_daemon_subprocess_end_to_end_and_clean_sigterm(tmp_path: Path) -> None:
    make_video(tmp_path / "clip.avi", 60, fps=30.0)
    cfg = _config(tmp_path, camera='path = "clip.avi"\nloop = true')
    sock = load_config(cfg).control_socket
    proc = _start(cfg)
    try:
        def ready() -> bool:
            st = _status(sock)
            if st is None:
                return False
            p = st["pipelines"]
            return (p["digits"]["inferences"] >= 5 and p["sensor"]["source_stats"]["connected"]
                    is False and p["sensor"]["samples"] > 20)
        assert wait_for(ready, 30.0, 0.2), proc.stderr.read1().decode() if proc.stderr else ""
        status = _status(sock)
        assert status is not None
    finally:
        rc, stop_s, err = _stop(proc)
    assert rc == 0, err
    assert stop_s < 2.0, f"clean stop took {stop_s:.2f} s"
    digits = status["pipelines"]["digits"]
    assert digits["last_result"]["label"] in [str(i) for i in range(10)]
    assert digits["latency_ms"]["p99"] is not None
    sensor = status["pipelines"]["sensor"]
    # Adaptive sampling: the calm sensor was sampled far below its 100 Hz maximum, and
    # the missing sample and the rate changes were counted.
    assert sensor["sampling"]["rate_changes"] >= 2
    assert sensor["source_stats"]["dropped"] > 0
    events = _events(tmp_path)
    spikes = [e for e in events if e["name"] == "spike"]
    assert spikes and spikes[0]["state"] == "active" and spikes[0]["data"]["value"] >= 30.0
    assert spikes[0]["pipeline"] == "sensor" and spikes[0]["type"] == "rule"
    assert any(e["name"] == "moving" for e in events)
    summary = json.loads((tmp_path / "state" / "summary.json").read_text())
    assert summary["stopped"] is True
    assert summary["pipelines"]["digits"]["inferences"] >= digits["inferences"]
    assert not sock.exists()
    assert "summary digits" in err


def test_sighup_refuses_bad_config_and_applies_good_one(tmp_path: Path) -> None:
    make_video(tmp_path / "clip.avi", 30, fps=30.0)
    cfg = _config(tmp_path, camera='path = "clip.avi"\nloop = true')
    good = cfg.read_text()
    sock = load_config(cfg).control_socket
    proc = _start(cfg)
    try:
        assert wait_for(lambda: _status(sock) is not None, 20.0, 0.1)
        cfg.write_text(good.replace('model = "digits-int8-onnx"', 'model = "digitz"'))
        proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: (_status(sock) or {}).get("reload_errors") == 1, 10.0, 0.1)
        st = _status(sock)
        assert st is not None and st["generation"] == 1
        assert "pipelines[0].model: unknown model 'digitz'" in st["last_reload_error"]
        before = st["pipelines"]["digits"]["samples"]
        assert wait_for(lambda: (_status(sock) or {"pipelines": {"digits": {"samples": 0}}})
                        ["pipelines"]["digits"]["samples"] > before, 10.0, 0.1)
        cfg.write_text(good.replace('name = "e2e"', 'name = "renamed"'))
        proc.send_signal(signal.SIGHUP)
        # The new name shows once the config is switched; the generation once it runs
        # (the upstream of the renamed node is restarted in between).
        assert wait_for(lambda: (_status(sock) or {}).get("node") == "renamed"
                        and (_status(sock) or {}).get("generation") == 2, 15.0, 0.1)
        st = _status(sock)
        assert st is not None and st["generation"] == 2 and st["reloads"] == 1
    finally:
        rc, stop_s, err = _stop(proc)
    assert rc == 0, err
    assert stop_s < 2.0


def test_done_when_camera_drops_out_gpio_action_fires_and_exits_cleanly(tmp_path: Path) -> None:
    server = MJPEGServer(fps=25.0)
    server.start()
    cfg = _config(tmp_path, camera=f'url = "{server.url}"\nreconnect_min_s = 0.05\n'
                                   'reconnect_max_s = 0.2')
    factory = pin_factory("mock")

    async def scenario(daemon: Daemon) -> dict[str, Any]:
        loop = asyncio.get_running_loop()

        async def until(pred: Any, timeout_s: float) -> bool:
            deadline = loop.time() + timeout_s
            while loop.time() < deadline:
                if daemon.runtime is not None and pred(daemon.status()):
                    return True
                await asyncio.sleep(0.05)
            return False

        try:
            assert await until(lambda s: s["pipelines"]["digits"]["inferences"] >= 3, 20.0)
            # Someone walks by: the input goes high, the rule switches the LED on.
            factory.pin(17).drive_high()
            assert await until(lambda s: s["pipelines"]["presence"]["rules"]["someone"]
                               ["active"], 5.0)
            assert factory.pin(18).state == 1
            factory.pin(17).drive_low()
            assert await until(lambda s: not s["pipelines"]["presence"]["rules"]["someone"]
                               ["active"], 5.0)
            assert factory.pin(18).state == 0
            # The camera drops out and comes back.
            await loop.run_in_executor(None, server.stop)
            assert await until(lambda s: not s["pipelines"]["digits"]["source_stats"]
                               ["connected"], 10.0)
            await loop.run_in_executor(None, server.start)
            before = daemon.status()["pipelines"]["digits"]["inferences"]
            assert await until(lambda s: s["pipelines"]["digits"]["source_stats"]["reconnects"]
                               >= 1 and s["pipelines"]["digits"]["inferences"] > before + 2,
                               15.0)
            # Status over the control socket, from a client thread.
            reply = await loop.run_in_executor(
                None, lambda: control.request(daemon.config.control_socket))
            assert reply["node"] == "e2e"
            return daemon.status()
        finally:
            daemon.request_stop()

    async def main() -> tuple[int, dict[str, Any], float]:
        daemon = await asyncio.to_thread(Daemon, cfg)  # reads the file
        run = asyncio.create_task(daemon.run())
        status = await scenario(daemon)
        t0 = asyncio.get_running_loop().time()
        rc = await asyncio.wait_for(run, 5.0)
        return rc, status, asyncio.get_running_loop().time() - t0

    try:
        rc, status, stop_s = asyncio.run(main())
    finally:
        server.stop()
        factory.reset()
    assert rc == 0 and stop_s < 2.0
    # No worker or camera thread outlives the daemon.
    assert wait_for(lambda: not [t for t in threading.enumerate()
                                 if t.name.startswith(("pipeline-", "camera-"))], 3.0)
    assert status["actions"]["led"] >= 2  # on, then off
    assert status["pipelines"]["sensor"]["samples"] > 0
    rules = {e["name"] for e in _events(tmp_path)}
    assert {"someone", "moving"} <= rules


def test_control_socket_refuses_second_server_and_replaces_stale_file(tmp_path: Path) -> None:
    sock = tmp_path / "c.sock"

    async def handler(req: dict[str, Any]) -> dict[str, Any]:
        return {"echo": req.get("cmd")} if req.get("cmd") != "bad" else {"error": "nope"}

    async def main() -> None:
        server = await control.start_server(sock, handler)
        loop = asyncio.get_running_loop()
        try:
            with pytest.raises(DaemonError, match="already listening"):
                await control.start_server(sock, handler)
            reply = await loop.run_in_executor(None, control.request, sock, "status")
            assert reply == {"echo": "status"}
            with pytest.raises(DaemonError, match="refused 'bad': nope"):
                await loop.run_in_executor(None, control.request, sock, "bad")
        finally:
            server.close()
            await server.wait_closed()
        # The file stays behind like after a crash; a new server replaces it.
        assert await asyncio.to_thread(sock.exists)
        assert await asyncio.to_thread(lambda: sock.stat().st_mode & 0o777) == 0o600
        server = await control.start_server(sock, handler)
        server.close()
        await server.wait_closed()

    asyncio.run(main())
    with pytest.raises(DaemonError, match="no daemon control socket"):
        control.request(tmp_path / "missing.sock")


def test_stop_finishes_the_sample_in_flight(tmp_path: Path) -> None:
    from tests.helpers import slow

    write_csv(tmp_path / "s.csv", [1.0] * 100, period_s=0.01)
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("""
[node]
state_dir = "state"
[budget]
enabled = false
[[sources]]
type = "replay"
id = "s"
path = "s.csv"
lossless = true
min_rate_hz = 100
max_rate_hz = 100
[[pipelines]]
id = "p"
source = "s"
detector = "tests.helpers.slow:SlowDetector"
detector_params = { delay_s = 0.4 }
[[pipelines.rules]]
id = "seen"
field = "score"
above = 0.5
actions = ["event"]
[[actions]]
type = "event"
id = "event"
""")
    slow.IN_UPDATE.clear()

    async def main() -> float:
        daemon = await asyncio.to_thread(Daemon, cfg)  # reads the file
        task = asyncio.create_task(daemon.run())
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, slow.IN_UPDATE.wait, 10.0)
        t0 = loop.time()
        daemon.request_stop()  # mid-sample: the detector is still sleeping
        assert await asyncio.wait_for(task, 5.0) == 0
        return loop.time() - t0

    stop_s = asyncio.run(main())
    assert stop_s < 2.0
    events = _events(tmp_path)
    # the sample in flight was decided
    assert [e["name"] for e in events if e["type"] == "rule"] == ["seen"]
    summary = json.loads((tmp_path / "state" / "summary.json").read_text())
    assert summary["pipelines"]["p"]["inferences"] == 1


def test_health_alarms_go_through_rules_and_actions(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("""
[node]
state_dir = "state"
[health]
interval_s = 0.1
check_throttling = false
[[health.rules]]
id = "memory-used"
field = "memory_percent"
above = 0.0
actions = ["event"]
[[actions]]
type = "event"
id = "event"
""")

    async def main() -> dict[str, Any]:
        daemon = await asyncio.to_thread(Daemon, cfg)  # reads the file
        task = asyncio.create_task(daemon.run())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while loop.time() < deadline and not (
                daemon.runtime and daemon.status()["health_rules"].get("memory-used", {})
                .get("active")):
            await asyncio.sleep(0.05)
        status = daemon.status()
        from edge_runtime.cli.status import print_status

        print_status(status)
        daemon.request_stop()
        await asyncio.wait_for(task, 5.0)
        return status

    status = asyncio.run(main())
    assert status["health_rules"]["memory-used"]["activations"] == 1
    assert "health alarms: memory-used" in capsys.readouterr().out
    events = _events(tmp_path)
    assert events[0]["type"] == "health" and events[0]["pipeline"] is None
    assert events[0]["data"]["field"] == "memory_percent"
