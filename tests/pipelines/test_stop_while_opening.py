"""A stop while a source is still opening is not held up by it: a bridge device that
never says HELLO used to keep SIGTERM waiting for the whole shutdown budget."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tty
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CONFIG = """
[node]
name = "silent"
state_dir = "state"
shutdown_timeout_s = 5.0
[budget]
enabled = false
[[sources]]
type = "bridge"
id = "mcu"
port = "{port}"
channel = "temp"
[[pipelines]]
id = "temp"
source = "mcu"
detector = "anomaly"
"""


def test_sigterm_while_a_bridge_device_never_says_hello(tmp_path: Path) -> None:
    master, slave = os.openpty()  # a serial port with a silent device behind it
    tty.setraw(slave)
    cfg = tmp_path / "config.toml"
    cfg.write_text(CONFIG.format(port=os.ttyname(slave)))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "edge_runtime", "run", str(cfg)],
                            cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # "node 'silent' up: ...": the open is under way
        assert " up: " in line, line
        time.sleep(0.3)
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        stop_s = time.monotonic() - stopped_at
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)
        os.close(master)
        os.close(slave)
    assert proc.returncode == 0, err[-2000:]
    # Not the 5 s budget: nothing was in flight, the open was cancelled at once.
    assert stop_s < 2.0, f"stop took {stop_s:.2f} s"
    assert (tmp_path / "state" / "summary.json").exists()
