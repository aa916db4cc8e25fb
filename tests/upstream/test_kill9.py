"""kill -9 at random moments: every message the outbox committed reaches the broker."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.upstream.broker import Mosquitto, Subscriber

ROOT = Path(__file__).resolve().parents[2]
KILLS = 20


def _start(args: list[str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.upstream.child_publisher", *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", proc.stderr.read() if proc.stderr else line
    return proc


def test_kill_dash_9_twenty_times_loses_nothing(tmp_path: Path, broker: Mosquitto,
                                                subscriber: Subscriber) -> None:
    rng = random.Random(11)
    ids_file = tmp_path / "committed.txt"
    args = [str(tmp_path / "state"), str(broker.port), str(ids_file)]
    for _ in range(KILLS):
        proc = _start([*args, "publish"])
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
        assert proc.returncode == -signal.SIGKILL
    drain = _start([*args, "drain"])
    try:
        assert drain.wait(30) == 0, drain.stderr.read() if drain.stderr else ""
    finally:
        for stream in (drain.stdout, drain.stderr):
            if stream:
                stream.close()
    committed = [line for line in ids_file.read_text().splitlines() if len(line) == 32]
    assert len(committed) > KILLS * 20  # every run got some messages on disk

    deadline = time.monotonic() + 10
    while not set(committed) <= set(subscriber.ids("edge/k9/")):
        assert time.monotonic() < deadline, "messages missing at the subscriber"
        time.sleep(0.05)
    received = [json.loads(m.payload) for m in list(subscriber.messages)
                if m.topic.startswith("edge/k9/event")]
    first: dict[str, int] = {}
    for body in received:
        first.setdefault(body["id"], body["seq"])
    seqs = list(first.values())
    assert seqs == sorted(seqs), "first deliveries out of seq order"
    assert len(set(seqs)) == len(seqs), "one seq for two different messages"
    dupes = len(received) - len(first)
    # QoS 1 duplicates only: what was in flight when a process died, resent after restart
    assert dupes <= KILLS * 120, dupes
