"""A SIGHUP or SIGTERM in the first moments after start is handled, not fatal: the
command catches them from its first line until the daemon's loop takes over, then the
daemon acts on them (a SIGHUP's default action would kill it; a SIGTERM's would skip the
clean stop and the summary)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.media import write_csv

REPO = Path(__file__).resolve().parents[2]

CONFIG = """
[node]
name = "early"
state_dir = "state"
[budget]
enabled = false
[[sources]]
type = "replay"
id = "temp"
path = "temp.csv"
loop = true
[[pipelines]]
id = "temp"
source = "temp"
detector = "anomaly"
"""


def _catches(pid: int, sig: int) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` (SigCgt in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


@pytest.mark.parametrize("when", ["first-catch", "0.15 s"])
def test_signals_during_start_are_handled(tmp_path: Path, when: str) -> None:
    """``first-catch``: the very moment the process catches SIGHUP (before that, only the
    Python interpreter itself is starting, a few tens of ms); ``0.15 s``: while the
    engines are imported and the pipelines built."""
    write_csv(tmp_path / "temp.csv", [20.0 + (i % 5) for i in range(200)], period_s=0.05)
    cfg = tmp_path / "config.toml"
    cfg.write_text(CONFIG)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "edge_runtime", "run", str(cfg)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        if when == "first-catch":
            deadline = time.monotonic() + 10
            while not _catches(proc.pid, signal.SIGHUP) and time.monotonic() < deadline:
                time.sleep(0.001)
        else:
            time.sleep(0.15)
        proc.send_signal(signal.SIGHUP)  # a reload asked for while starting
        time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)
    assert proc.returncode == 0, err.decode()[-2000:]
    summary = json.loads((tmp_path / "state" / "summary.json").read_text())
    assert summary["stopped"] is True
