"""A reload never moves the daemon's state folder or control socket: another process may
own the new path, and the running socket must not be abandoned. Such a reload is
refused in one line and the running generation goes on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from edge_runtime import control
from edge_runtime.errors import DaemonError
from tests.helpers.media import wait_for, write_csv

REPO = Path(__file__).resolve().parents[2]

CONFIG = """
[node]
name = "paths"
state_dir = "{state}"
{socket}
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
"""


def _status(sock: Path) -> dict[str, Any] | None:
    try:
        return control.request(sock, timeout_s=2.0)
    except DaemonError:
        return None


def test_a_reload_that_moves_the_state_folder_or_socket_is_refused(tmp_path: Path) -> None:
    write_csv(tmp_path / "temp.csv", [20.0 + (i % 3) for i in range(100)], period_s=0.05)
    cfg = tmp_path / "config.toml"
    cfg.write_text(CONFIG.format(state="state", socket=""))
    sock = tmp_path / "state" / "control.sock"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "edge_runtime", "run", str(cfg)],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: _status(sock) is not None, 20.0, 0.1)
        for n, (state, socket) in enumerate([("elsewhere", ""),
                                             ("state", 'control_socket = "other.sock"')],
                                            start=1):
            cfg.write_text(CONFIG.format(state=state, socket=socket))
            proc.send_signal(signal.SIGHUP)
            assert wait_for(lambda n=n: (_status(sock) or {}).get("reload_errors") == n,
                            10.0, 0.1)
            status = _status(sock)
            assert status is not None and status["generation"] == 1
            # (The default socket lives in the state folder: moving one moves both.)
            expected = ("node.state_dir and node.control_socket changed" if n == 1
                        else "node.control_socket changed")
            assert status["last_reload_error"].startswith(expected)
        assert not (tmp_path / "elsewhere").exists()
        assert not (tmp_path / "other.sock").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err[-2000:]
    assert not sock.exists()  # its own socket, removed at exit
