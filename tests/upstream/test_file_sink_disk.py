"""The local JSONL file sink on a full disk, with a torn tail, and its file mode.

These are the guarantees the old event log gave, now given by the file sink that
replaced it as the node's local record of events. The full-disk test runs a node in a
child process with its own mount namespace and a 64 KiB tmpfs for the file (``unshare
--mount``; as root, as CI runs, or with ``--map-root-user`` where user namespaces allow
it), so a real ENOSPC comes from a real filesystem and nothing is left mounted whatever
happens. The outbox stays on the real disk: what the file cannot take waits there.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import msgspec

from edge_runtime.config import UpstreamConfig
from edge_runtime.upstream import Upstream

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import asyncio, json, logging, os, subprocess, sys, time
from pathlib import Path
import msgspec
from edge_runtime.config import UpstreamConfig
from edge_runtime.upstream import Upstream
mnt, state = Path(sys.argv[1]), Path(sys.argv[2])
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], check=True)
records = []
class Keep(logging.Handler):
    def emit(self, record): records.append(record.getMessage())
logging.getLogger("edge_runtime").addHandler(Keep())
logging.getLogger("edge_runtime").setLevel(logging.INFO)
path = mnt / "upstream.jsonl"
cfg = msgspec.convert({"file": {"path": str(path), "max_bytes": 8000, "keep": 3}},
                      UpstreamConfig)

def lines():
    files = [p for p in (mnt / f"upstream.jsonl.{i}" for i in (3, 2, 1)) if p.exists()]
    files.append(path)  # oldest first
    out = [json.loads(x) for f in files for x in f.read_bytes().split(b"\n") if x]
    torn = [f.name for f in files if f.read_bytes() and not f.read_bytes().endswith(b"\n")]
    return out, torn

async def main():
    up = Upstream(node="full", state_dir=state, config=cfg)
    await up.start()
    # Another program fills the disk, leaving two 4 KiB pages.
    fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"x" * 1024)
    except OSError:
        pass
    os.close(fd)
    os.truncate(mnt / "filler", os.path.getsize(mnt / "filler") - 8192)
    ids = [up.publish_event(type="rule", name="r", state="active",
                            data={"i": i, "pad": "p" * 100}) for i in range(300)]
    await up.flush()
    await asyncio.sleep(2.0)
    full = up.status()["sinks"]["file"]
    _, torn_full = lines()
    os.unlink(mnt / "filler")  # the disk has room again
    deadline = time.monotonic() + 30
    while up.status()["sinks"]["file"]["backlog"] and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    after = up.status()["sinks"]["file"]
    await up.close(2.0)
    got, torn = lines()
    print(json.dumps({
        "full_backlog": full["backlog"], "full_error": full["last_error"],
        "after_backlog": after["backlog"], "torn": torn + torn_full,
        "ids": ids, "got": [m["id"] for m in got], "n_got": len(got),
        "log_lines": len(records), "sample": records[:5]}))

asyncio.run(main())
"""


def test_a_full_disk_keeps_events_in_the_outbox_until_there_is_room(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    prefix = ["unshare", "--mount"] if os.geteuid() == 0 else [
        "unshare", "--mount", "--map-root-user"]
    assert shutil.which("unshare"), "unshare (util-linux) is needed for the full-disk test"
    out = subprocess.run([*prefix, sys.executable, "-c", CHILD, str(mnt), str(tmp_path / "st")],
                         capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # While full: what did not fit waits in the outbox, with the reason in the status.
    assert result["full_backlog"] > 0
    assert "No space left" in str(result["full_error"])
    assert result["torn"] == []  # a failed write leaves no partial line
    # Once there is room, everything is written: the newest lines are in the (rotated,
    # 4 x 8000 bytes) files, in order, none lost on the way.
    assert result["after_backlog"] == 0
    ids, got = result["ids"], result["got"]
    assert got and got == ids[-len(got):]
    assert result["log_lines"] <= 15, result["sample"]  # rate-limited, not one per event


def _file_only(path: Path) -> UpstreamConfig:
    return msgspec.convert({"file": {"path": str(path)}}, UpstreamConfig)


async def _publish(state: Path, path: Path, n: int) -> None:
    up = Upstream(node="n", state_dir=state, config=_file_only(path))
    await up.start()
    for i in range(n):
        up.publish_event(type="rule", name="r", state="active", data={"i": i})
    await up.close(2.0)


def test_a_torn_last_line_is_cut_off_at_start(tmp_path: Path) -> None:
    path = tmp_path / "upstream.jsonl"
    path.write_bytes(b'{"i": 1}\n{"i": 2}\n{"i": 3, "tr')  # power cut mid-write
    asyncio.run(_publish(tmp_path / "state", path, 1))
    lines = [json.loads(line) for line in path.read_bytes().splitlines()]
    assert [x.get("i") for x in lines[:2]] == [1, 2]
    assert lines[2]["kind"] == "event" and lines[2]["data"] == {"i": 0}


def test_the_file_is_private_to_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "state" / "upstream.jsonl"
    old = os.umask(0o022)
    try:
        asyncio.run(_publish(tmp_path / "state", path, 1))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
