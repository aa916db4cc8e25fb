"""Shared by the web tests: a daemon subprocess with [web] on, Chromium's flags, ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from tests.helpers.media import write_csv

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
#: Debian's Chromium, headless, with nothing that reaches the internet.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def sensor_csv(path: Path, n: int = 4000) -> Path:
    """A calm channel with a few excursions, for the detector's score to move."""
    rng = np.random.default_rng(7)
    values = 20.0 + rng.normal(0, 0.2, n)
    for start in range(600, n, 900):
        values[start:start + 40] = 30.0
    return write_csv(path, values, period_s=1.0)


def write_config(tmp_path: Path, *, port: int, camera_url: str | None = None,
                 web_extra: str = "", node: str = "shelf-node") -> Path:
    """A config with a replayed sensor under the anomaly detector and, with
    ``camera_url``, a camera pipeline running the shipped digits model."""
    sensor_csv(tmp_path / "sensor.csv")
    camera = "" if camera_url is None else f"""
[[sources]]
type = "camera"
id = "cam"
url = "{camera_url}"
min_rate_hz = 4
max_rate_hz = 8
reconnect_min_s = 0.2
reconnect_max_s = 0.5

[[pipelines]]
id = "door"
source = "cam"
model = "digits-int8-onnx"
"""
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f"""
[node]
name = "{node}"
state_dir = "state"

[budget]
enabled = false

[health]
interval_s = 0.5
check_throttling = false

[web]
enabled = true
listen = "127.0.0.1:{port}"
chart_interval_s = 0.25
{web_extra}

[[sources]]
type = "replay"
id = "sensor"
path = "sensor.csv"
speed = 50
loop = true
min_rate_hz = 10
max_rate_hz = 10

[[pipelines]]
id = "boiler"
source = "sensor"
detector = "anomaly"
[[pipelines.rules]]
id = "excursion"
field = "score"
above = 0.9
actions = ["event"]
{camera}
[[actions]]
type = "event"
id = "event"
""")
    return cfg


def start_daemon(cfg: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "edge_runtime", "run", str(cfg)],
                            cwd=cfg.parent, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def stop_daemon(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    """SIGTERM, then the exit code and stderr (killed after 10 s)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate(timeout=5)
    return proc.returncode, err.decode(errors="replace")


def get_json(url: str, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """GET ``url`` as JSON; None while nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            data: dict[str, Any] = json.loads(r.read())
            return data
    except (urllib.error.URLError, OSError, ValueError):
        return None


def wait_json(url: str, predicate: Any, timeout_s: float) -> dict[str, Any]:
    """Poll ``url`` until ``predicate(json)``; fails the test on timeout."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = get_json(url)
        if last is not None and predicate(last):
            return last
        time.sleep(0.1)
    raise AssertionError(f"{url} never satisfied the condition; last reply: "
                         f"{json.dumps(last)[:2000] if last else None}")
