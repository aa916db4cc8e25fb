"""What a new user tripped over (issue #9): each against a real daemon.

The daemons run as ``edge-runtime run`` subprocesses (real signals, real stderr) or
in-process with a real MJPEG server; every test stops what it starts.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from edge_runtime import control
from edge_runtime.cli import main
from edge_runtime.config import load_config
from edge_runtime.errors import DaemonError
from edge_runtime.pipelines.daemon import SOURCE_WATCH_INTERVAL_S, Daemon
from edge_runtime.pipelines.pipeline import STALE_MIN_S, Pipeline
from edge_runtime.sampling.controller import RateController
from edge_runtime.sampling.policy import ActivityPolicy
from edge_runtime.sources.camera import OpenCVCamera
from tests.helpers.events import read_events
from tests.helpers.media import MJPEGServer, make_video, wait_for, write_csv

REPO = Path(__file__).resolve().parents[2]

STILL_CAMERA = """
[node]
name = "new-user"
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
path = "still.avi"
loop = true
min_rate_hz = 5
max_rate_hz = 20

[[pipelines]]
id = "watch"
source = "cam"
model = "digits-int8-onnx"
[pipelines.sampling]
policy = "motion"
[[pipelines.rules]]
id = "moving"
field = "motion"
above = 1.0
actions = ["relay", "event"]

[[actions]]
type = "gpio"
id = "relay"
device = "led"
pin = 18

[[actions]]
type = "event"
id = "event"
"""


def _start(cfg: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "edge_runtime", *args, "run", str(cfg)],
                            cwd=cfg.parent, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _stop(proc: subprocess.Popen[bytes]) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=5)
    return proc.returncode, out.decode(), err.decode()


def _status(sock: Path) -> dict[str, Any] | None:
    try:
        return control.request(sock, timeout_s=2.0)
    except DaemonError:
        return None


def _events(folder: Path) -> list[dict[str, Any]]:
    """The events the daemon reported to its file sink (``state/upstream.jsonl``)."""
    return read_events(folder / "state")


def _watch(sock: Path, generation: int) -> dict[str, Any] | None:
    """The 'watch' pipeline's status once generation ``generation`` has seen frames."""
    st = _status(sock)
    if st is None or st["generation"] != generation:
        return None
    watch: dict[str, Any] = st["pipelines"]["watch"]
    return watch if watch["inferences"] >= 1 and watch["samples"] >= 10 else None


def test_still_camera_fires_no_motion_rule_at_start_nor_after_reload(tmp_path: Path) -> None:
    """The first frame is inferred but is not motion: a relay on a motion rule used to
    switch at every boot and every SIGHUP."""
    make_video(tmp_path / "still.avi", 30, moving=False)
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(STILL_CAMERA)
    sock = load_config(cfg).control_socket
    proc = _start(cfg)
    try:
        assert wait_for(lambda: _watch(sock, 1) is not None, 30.0, 0.1)
        first = _watch(sock, 1)
        proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: _watch(sock, 2) is not None, 30.0, 0.1)
        second = _watch(sock, 2)
        st = _status(sock)
    finally:
        rc, _, err = _stop(proc)
    assert rc == 0, err
    assert st is not None and st["reloads"] == 1
    for watch in (first, second):
        assert watch is not None
        assert watch["inferences"] >= 1  # the first frame is still inferred
        assert watch["last_result"]["motion"] == 0.0
        assert watch["sampling"]["frames_with_motion"] == 0
        assert watch["rules"]["moving"]["activations"] == 0
    assert st["actions"]["relay"] == 0
    assert [e for e in _events(tmp_path) if e["name"] == "moving"] == []


# --- check: the state folder ---------------------------------------------------------------

CHECK_CONFIG = """
[node]
state_dir = "{state_dir}"
gpio_pin_factory = "mock"
[[sources]]
type = "gpio"
id = "pir"
pin = 17
[[pipelines]]
id = "presence"
source = "pir"
"""


def _check_config(folder: Path, state_dir: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    cfg = folder / "config.toml"
    cfg.write_text(CHECK_CONFIG.format(state_dir=state_dir))
    return cfg


@pytest.mark.parametrize(("state_dir", "relative"), [
    ("blocker/state", True),  # under a regular file: mkdir fails, even for root
    ("/proc/edge-runtime-state", False),  # /proc takes no new folders, even from root
])
def test_check_refuses_a_state_folder_it_cannot_create(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], state_dir: str,
        relative: bool) -> None:
    etc = tmp_path / "etc" / "edge-runtime"
    cfg = _check_config(etc, state_dir)
    (etc / "blocker").write_text("a file, not a folder\n")
    assert main(["check", str(cfg)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    resolved = (etc / state_dir) if relative else Path(state_dir)
    assert lines[0].startswith(f"edge-runtime: error: node.state_dir: cannot create or "
                               f"write {resolved}")
    assert ("resolves next to the config file" in lines[0]) is relative
    assert "absolute folder" in lines[0] and "/var/lib/edge-runtime" in lines[0]


def test_check_says_the_state_folder_is_writable_and_leaves_no_trace(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _check_config(tmp_path, "var/state")
    assert main(["check", str(cfg)]) == 0
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1
    assert out.endswith(f"state folder {tmp_path / 'var' / 'state'} is writable")
    assert not (tmp_path / "var").exists()  # created for the check, then removed
    (tmp_path / "var" / "state").mkdir(parents=True)
    assert main(["check", str(cfg)]) == 0
    assert list((tmp_path / "var" / "state").iterdir()) == []


# --- status without arguments --------------------------------------------------------------

REPLAY_CONFIG = """
[node]
name = "here"
gpio_pin_factory = "mock"
[budget]
enabled = false
[[sources]]
type = "replay"
id = "temp"
path = "in.csv"
speed = 20
loop = true
[[pipelines]]
id = "temp"
source = "temp"
"""


def test_status_without_arguments_finds_the_daemon_of_the_config_here(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """README shows a bare 'edge-runtime status'; it used to fail every time."""
    write_csv(tmp_path / "in.csv", [float(i % 7) for i in range(50)], period_s=0.1)
    cfg = tmp_path / "config.toml"
    cfg.write_text(REPLAY_CONFIG)  # default state_dir: ./state/control.sock
    monkeypatch.chdir(tmp_path)

    daemon = Daemon(cfg)  # reads the config: not on the loop
    sock = daemon.config.control_socket

    async def scenario() -> int:
        task = asyncio.create_task(daemon.run())
        loop = asyncio.get_running_loop()
        try:
            deadline = loop.time() + 10
            while (not await loop.run_in_executor(None, sock.exists)
                   and loop.time() < deadline):
                await asyncio.sleep(0.02)
            return int(await loop.run_in_executor(None, main, ["status"]))
        finally:
            daemon.request_stop()
            await asyncio.wait_for(task, 5)

    assert asyncio.run(scenario()) == 0
    out = capsys.readouterr().out
    assert out.startswith("node here (pid ")
    assert "pipeline temp <- temp" in out


def test_status_without_arguments_says_where_it_looked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from edge_runtime.cli.status import DEFAULT_CONFIGS, DEFAULT_SOCKETS

    monkeypatch.chdir(tmp_path)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "control.sock").write_text("left by a crashed daemon\n")
    assert main(["status"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("edge-runtime: error: no running daemon found; tried ")
    for path in (*DEFAULT_CONFIGS, *DEFAULT_SOCKETS):
        assert str(path.absolute()) in line
    assert f"{tmp_path / 'state' / 'control.sock'} (not answering)" in line
    assert "'edge-runtime status CONFIG'" in line
    assert "'edge-runtime status --socket PATH'" in line


# --- a camera that stops delivering: run's notices, status's stale rules ---------------------

URL_CAMERA = """
[node]
name = "door"
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
url = "{url}"
reconnect_min_s = 0.05
reconnect_max_s = 0.2
min_rate_hz = 5
max_rate_hz = 20
[[pipelines]]
id = "watch"
source = "cam"
[pipelines.sampling]
policy = "motion"
[[pipelines.rules]]
id = "moving"
field = "motion"
above = 1.0
actions = ["event"]
[[actions]]
type = "event"
id = "event"
"""


def _human_status(sock: Path, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["status", "--socket", str(sock)]) == 0
    return capsys.readouterr().out


def _source_state(sock: Path, *, samples: int = 0) -> str | None:
    st = _status(sock)
    if st is None or st["pipelines"]["watch"]["samples"] < samples:
        return None
    return str(st["pipelines"]["watch"]["source_state"])


def test_run_says_when_it_is_up_and_when_a_camera_drops_out_and_comes_back(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Default verbosity: one line up, one when the camera drops out, one when it is back;
    meanwhile status shows the camera disconnected, how long ago its last frame came, and
    its rules as stale (it used to show '0 reconnects, 0 errors' and live rules)."""
    server = MJPEGServer(fps=25.0)
    server.start()
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(URL_CAMERA.format(url=server.url))
    sock = load_config(cfg).control_socket
    proc = _start(cfg)  # no -v
    try:
        assert wait_for(lambda: _source_state(sock, samples=5) == "up", 30.0, 0.1)
        up = _human_status(sock, capsys)
        server.stop()
        assert wait_for(lambda: _source_state(sock) == "disconnected", 15.0, 0.1)
        time.sleep(0.3)  # the last frame ages
        down = _status(sock)
        human_down = _human_status(sock, capsys)
        time.sleep(2 * SOURCE_WATCH_INTERVAL_S + 0.2)  # the watch sees it gone
        server.start()
        assert wait_for(lambda: _source_state(sock) == "up", 30.0, 0.1)
        time.sleep(2 * SOURCE_WATCH_INTERVAL_S + 0.2)  # the watch sees it back
    finally:
        rc, out, err = _stop(proc)
        server.stop()
    assert rc == 0, err
    assert "pipeline watch <- cam (no model), source up, last sample " in up
    assert "STALE" not in up
    assert down is not None
    watch = down["pipelines"]["watch"]
    assert watch["stale"] is True and watch["source_state"] == "disconnected"
    assert watch["last_sample_age_s"] >= 0.3
    assert watch["stale_after_s"] == STALE_MIN_S  # 3 periods at 5 Hz are less
    assert all(rule["stale"] for rule in watch["rules"].values())
    assert "pipeline watch <- cam (no model), source DISCONNECTED, last sample " in human_down
    assert "    STALE: its source has stopped delivering" in human_down
    stale_line = next(line for line in human_down.splitlines() if "STALE" in line)
    assert ", last: " in stale_line and server.url in stale_line  # dropped, or cannot open
    if watch["rules"]["moving"]["active"]:
        assert "active rules (stale): moving" in human_down
    # What run printed: exactly the three notices, nothing else.
    assert out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 3, err
    assert "edge_runtime.run: node 'door' up: 1 pipeline(s) (watch) on 1 source(s) (cam); " \
           f"state in {tmp_path / 'state'}, reports to file " \
           f"{tmp_path / 'state' / 'upstream.jsonl'}" \
           in lines[0]
    assert f"'edge-runtime status --socket {sock}'" in lines[0]
    assert "WARNING edge_runtime.run: source 'cam' dropped out (disconnected" in lines[1]
    assert "the rules of pipeline(s) 'watch' are stale until it is back" in lines[1]
    assert re.search(r"INFO edge_runtime\.run: source 'cam' is back after \d+\.\d s$", lines[2])


def test_liveness_tells_up_silent_disconnected_and_ended(tmp_path: Path) -> None:
    camera = OpenCVCamera("cam", path=tmp_path / "clip.avi")  # never opened
    pipe = Pipeline("p", camera, policy=ActivityPolicy(), rules=[], actions={},
                    controller=RateController(1.0, 10.0))
    now = time.monotonic()
    assert pipe.liveness(now)["source_state"] == "disconnected"
    camera.stats.connected = True
    assert pipe.liveness(now) == {"source_state": "up", "stale": False,
                                  "last_sample_age_s": None, "stale_after_s": STALE_MIN_S}
    pipe.last_sample_mono_s = now - STALE_MIN_S - 0.5
    assert pipe.liveness(now)["source_state"] == "silent"
    pipe.controller.rate_hz = 0.1  # at 0.1 Hz, three periods are 30 s
    assert pipe.stale_after_s == pytest.approx(3 * 10.0)
    assert pipe.liveness(now)["source_state"] == "up"


def test_human_status_marks_a_dead_source_and_its_rules_stale(
        capsys: pytest.CaptureFixture[str]) -> None:
    from edge_runtime.cli.status import print_status

    def pipeline(state: str, age_s: float | None) -> dict[str, Any]:
        return {"source": "cam", "model": None, "samples": 10, "inferences": 4, "gated": 6,
                "errors": 0, "rules": {"moving": {"active": True, "stale": state != "up"}},
                "health": None, "latency_ms": {"p50": 1.0, "p99": 2.0, "max": 3.0},
                "sampling": {"rate_hz": 5.0, "min_rate_hz": 1.0, "max_rate_hz": 10.0},
                "source_stats": {"dropped": 1, "reconnects": 0, "errors": 7,
                                 "last_error": "stream http://cam/ dropped"},
                "source_state": state, "stale": state != "up", "last_sample_age_s": age_s,
                "stale_after_s": 5.0}

    print_status({"node": "n", "pid": 1, "uptime_s": 2.0, "generation": 1, "reloads": 0,
                  "reload_errors": 0, "health": {}, "health_rules": {},
                  "pipelines": {"dead": pipeline("disconnected", 12.3456),
                                "live": pipeline("up", 0.04)}})
    out = capsys.readouterr().out
    assert "pipeline dead <- cam (no model), source DISCONNECTED, last sample 12.35 s ago: " in out
    assert ("    STALE: its source has stopped delivering (stale after 5.0 s without a "
            "sample); its rules hold what they last saw; source errors 7, last: stream "
            "http://cam/ dropped") in out
    assert "    active rules (stale): moving" in out
    assert "pipeline live <- cam (no model), source up, last sample 0.04 s ago: " in out
    assert "    active rules: moving" in out
    assert out.count("STALE") == 1
