"""With the state folder's disk full, the daemon still obeys SIGHUP and SIGTERM: a
reload is applied (or refused) and a stop is clean and within its budget, the
failures to write being logged, not raised.

The daemon runs in its own mount namespace (``unshare --mount``; root, as CI runs, or
``--map-root-user``) with its state folder on a 4 MiB tmpfs that a filler fills once it
is up; its control socket lives outside, where this test can reach it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from edge_runtime import control
from edge_runtime.errors import DaemonError
from tests.helpers.media import wait_for, write_csv

REPO = Path(__file__).resolve().parents[2]

CONFIG = """
[node]
name = "{name}"
state_dir = "{state}"
control_socket = "{sock}"
shutdown_timeout_s = 2.0
[budget]
enabled = false
[[sources]]
type = "replay"
id = "temp"
path = "{csv}"
loop = true
speed = 20.0
[[pipelines]]
id = "temp"
source = "temp"
[[pipelines.rules]]
id = "hot"
field = "value"
above = 25.0
actions = ["event"]
[[actions]]
type = "event"
id = "event"
"""

SCRIPT = """
set -u
mount -t tmpfs -o size=4m tmpfs "$STATE"
"$PY" -m edge_runtime run "$CFG" 2>"$OUT/stderr.txt" &
pid=$!
echo $pid > "$OUT/pid"
while [ ! -S "$SOCK" ]; do sleep 0.05; done
dd if=/dev/zero of="$STATE/filler" bs=64k 2>/dev/null
touch "$OUT/full"
wait $pid
echo $? > "$OUT/rc"
"""


def _status(sock: Path) -> dict[str, Any] | None:
    try:
        return control.request(sock, timeout_s=2.0)
    except DaemonError:
        return None


def test_sighup_and_sigterm_work_with_the_disk_full(tmp_path: Path) -> None:
    assert shutil.which("unshare"), "unshare (util-linux) is needed for the full-disk test"
    state, out = tmp_path / "state", tmp_path / "out"
    state.mkdir()
    out.mkdir()
    sock = tmp_path / "control.sock"
    csv = write_csv(tmp_path / "temp.csv", [20.0 + 10.0 * (i % 2) for i in range(200)],
                    period_s=0.5)
    cfg = tmp_path / "config.toml"
    cfg.write_text(CONFIG.format(name="full", state=state, sock=sock, csv=csv))
    prefix = ["unshare", "--mount"] if os.geteuid() == 0 else [
        "unshare", "--mount", "--map-root-user"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PY": sys.executable, "CFG": str(cfg),
           "STATE": str(state), "SOCK": str(sock), "OUT": str(out)}
    shell = subprocess.Popen([*prefix, "sh", "-c", SCRIPT], env=env)
    try:
        assert wait_for((out / "full").exists, 30.0, 0.05), "the daemon never came up"
        pid = int((out / "pid").read_text())
        time.sleep(0.5)  # events and summaries now fail to be written
        cfg.write_text(CONFIG.format(name="renamed", state=state, sock=sock, csv=csv))
        os.kill(pid, signal.SIGHUP)
        assert wait_for(lambda: (_status(sock) or {}).get("node") == "renamed", 15.0, 0.1)
        status = _status(sock)
        assert status is not None and status["reloads"] == 1
        started = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        assert wait_for((out / "rc").exists, 20.0, 0.05), "SIGTERM did not stop it"
        stop_s = time.monotonic() - started
    finally:
        if shell.poll() is None:
            with_pid = out / "pid"
            if with_pid.exists():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(with_pid.read_text()), signal.SIGKILL)
        shell.wait(timeout=20)
    stderr = (out / "stderr.txt").read_text()
    assert (out / "rc").read_text().strip() == "0", stderr[-3000:]
    # Within its budget: 2 s for each bounded step, however full the disk.
    assert stop_s < 10.0, f"stop took {stop_s:.1f} s"
    assert "Traceback" not in stderr, stderr[-3000:]
    # The disk really was full: the outbox said so (once) and kept going.
    assert "disk is full" in stderr or "No space left" in stderr, stderr[-3000:]
