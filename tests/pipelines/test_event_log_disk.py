"""The event log on a full disk, a torn tail and its file mode.

The full-disk test runs the event log in a child process with its own mount namespace
and a 64 KiB tmpfs (``unshare --mount``; as root, as CI runs, or with
``--map-root-user`` where user namespaces allow it), so a real ENOSPC comes from a real
filesystem and nothing is left mounted whatever happens.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from edge_runtime.pipelines.actions import EventLog

CHILD = r"""
import json, logging, os, subprocess, sys
from pathlib import Path
mnt = Path(sys.argv[1])
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], check=True)
records = []
class Keep(logging.Handler):
    def emit(self, record): records.append(record.getMessage())
logging.getLogger("edge_runtime").addHandler(Keep())
from edge_runtime.pipelines.actions import EventLog
events = EventLog(mnt / "events.jsonl", max_bytes=8000, keep=3)
# Another program fills the disk, leaving two 4 KiB pages.
fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)
try:
    while True:
        os.write(fd, b"x" * 1024)
except OSError:
    pass
os.close(fd)
os.truncate(mnt / "filler", os.path.getsize(mnt / "filler") - 8192)
for i in range(3000):
    events.append({"rule": "r", "i": i, "pad": "p" * 100})
    if i % 100 == 99:
        events.flush(5.0)
events.close()
files = sorted(mnt.glob("events.jsonl*"))
lines = [line for f in files for line in f.read_bytes().split(b"\n") if line]
print(json.dumps({
    "written": events.written, "dropped": events.dropped,
    "ids": sorted(json.loads(line)["i"] for line in lines),
    "torn": [f.name for f in files if f.read_bytes() and not f.read_bytes().endswith(b"\n")],
    "log_lines": len(records), "sample": records[:3],
}))
"""


def _run_on_tiny_disk(tmp_path: Path) -> dict[str, object]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    prefix = ["unshare", "--mount"] if os.geteuid() == 0 else [
        "unshare", "--mount", "--map-root-user"]
    assert shutil.which("unshare"), "unshare (util-linux) is needed for the full-disk test"
    out = subprocess.run([*prefix, sys.executable, "-c", CHILD, str(mnt)], capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_a_full_disk_keeps_the_newest_events_and_logs_rarely(tmp_path: Path) -> None:
    result = _run_on_tiny_disk(tmp_path)
    ids = result["ids"]
    assert isinstance(ids, list) and ids
    # The newest event made it to disk, and what is kept is a run up to the newest.
    assert ids[-1] == 2999
    assert ids == list(range(ids[0], 3000))
    assert result["torn"] == []
    assert result["written"] == 3000 - int(str(result["dropped"]))
    # 3000 events on a full disk: a few log lines, not one per event (was 360/s).
    assert int(str(result["log_lines"])) <= 10, result["sample"]


def test_a_torn_last_line_is_cut_off_at_open(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"i": 1}\n{"i": 2}\n{"i": 3, "tr')  # power cut mid-write
    events = EventLog(path)
    events.append({"i": 4})
    events.close()
    assert [json.loads(line)["i"] for line in path.read_bytes().splitlines()] == [1, 2, 4]


def test_the_event_log_is_private_to_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    old = os.umask(0o022)
    try:
        events = EventLog(path)
        events.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
