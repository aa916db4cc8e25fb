"""What a new user tripped over (issue #9): each against a real daemon.

The daemons run as ``edge-runtime run`` subprocesses (real signals, real stderr) or
in-process with a real MJPEG server; every test stops what it starts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from edge_runtime import control
from edge_runtime.config import load_config
from edge_runtime.errors import DaemonError
from tests.helpers.media import make_video, wait_for

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
    path = folder / "state" / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


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
    assert [e for e in _events(tmp_path) if e["rule"] == "moving"] == []
