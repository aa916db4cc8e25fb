"""``edge-runtime run`` reporting to a real mosquitto: nothing lost across a broker outage
and 20 kill -9s, Home Assistant discovery published, in order per node.

The daemon runs as a subprocess (``python -m edge_runtime run``) on a replay source whose
rule fires several times a second, with the MQTT sink and the default JSONL file sink
on. The file sink is the witness of what the outbox committed: it only ever receives
committed rows, and after a clean stop it has every one of them (a clean stop drains
connected sinks). So every id in ``upstream.jsonl`` must reach the subscriber.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.helpers.media import write_csv
from tests.upstream.broker import USERS, Mosquitto, Subscriber

ROOT = Path(__file__).resolve().parents[2]
NODE = "d9"
KILLS = 20


def _config(folder: Path, broker: Mosquitto) -> Path:
    # A square wave: at 10x speed the rule goes active and clears 10 times a second.
    write_csv(folder / "wave.csv", [40.0 if (i // 5) % 2 else 10.0 for i in range(200)],
              period_s=0.1)
    cfg = folder / "node.toml"
    cfg.write_text(f"""
[node]
name = "{NODE}"
state_dir = "state"
shutdown_timeout_s = 3.0

[[sources]]
type = "replay"
id = "wave"
path = "wave.csv"
speed = 10
loop = true
min_rate_hz = 100
max_rate_hz = 100

[[pipelines]]
id = "machine"
source = "wave"
[[pipelines.rules]]
id = "hot"
field = "value"
above = 30.0
actions = ["event"]

[[actions]]
type = "event"
id = "event"

[health]
interval_s = 5.0

[upstream]
summary_interval_s = 0.5

[upstream.mqtt]
url = "mqtt://127.0.0.1:{broker.port}"
username = "node"
password = "{USERS['node']}"
reconnect_min_s = 0.05
reconnect_max_s = 0.3
connect_timeout_s = 3.0
home_assistant.enabled = true
""")
    return cfg


def _start(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("ab") as out:  # a file, not a pipe: logging can never block
        return subprocess.Popen([sys.executable, "-m", "edge_runtime", "run", str(cfg)],
                                cwd=cfg.parent, env=env, stdout=out, stderr=out)


def _wait_up(log: Path, runs: int, proc: subprocess.Popen[bytes], timeout_s: float = 20.0
             ) -> None:
    """Until the ``runs``-th 'up' line is in the log (the upstream has started)."""
    deadline = time.monotonic() + timeout_s
    while log.read_text().count(f"node '{NODE}' up:") < runs:
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.02)


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(20)


def _reported(state: Path) -> list[dict[str, Any]]:
    """What the file sink holds (messages with a seq: not the live online/offline)."""
    files = [p for p in (state / f"upstream.jsonl.{i}" for i in (3, 2, 1)) if p.exists()]
    files.append(state / "upstream.jsonl")
    return [m for f in files if f.exists() for line in f.read_text().splitlines()
            if line.strip() and (m := json.loads(line)).get("seq")]


def _received(sub: Subscriber) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in list(sub.messages)
            if m.topic.startswith(f"edge/{NODE}/") and "/snapshot/" not in m.topic
            and json.loads(m.payload).get("seq")]


def _wait_all(sub: Subscriber, ids: set[str], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while missing := ids - {m["id"] for m in _received(sub)}:
        assert time.monotonic() < deadline, f"{len(missing)} of {len(ids)} never arrived"
        time.sleep(0.05)


def _in_order(received: list[dict[str, Any]]) -> tuple[int, int]:
    """(distinct messages, duplicates); fails if first deliveries are out of seq order."""
    first: dict[str, int] = {}
    for body in received:
        first.setdefault(body["id"], body["seq"])
    seqs = list(first.values())
    assert seqs == sorted(seqs), "first deliveries out of seq order"
    assert len(set(seqs)) == len(seqs), "one seq for two different messages"
    return len(first), len(received) - len(first)


def test_broker_outage_loses_nothing_and_discovery_is_published(
        tmp_path: Path, broker: Mosquitto, subscriber: Subscriber) -> None:
    cfg = _config(tmp_path, broker)
    log = tmp_path / "daemon.log"
    proc = _start(cfg, log)
    try:
        _wait_up(log, 1, proc)
        deadline = time.monotonic() + 10
        while len(_received(subscriber)) < 20:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        broker.stop()
        time.sleep(2.0)  # the rule keeps firing; the outbox keeps it all
        broker.start()
        time.sleep(1.5)
    finally:
        assert _stop(proc) == 0, log.read_text()[-3000:]
    reported = _reported(tmp_path / "state")
    kinds = {m["kind"] for m in reported}
    assert {"event", "summary", "status"} <= kinds, kinds
    _wait_all(subscriber, {m["id"] for m in reported})
    distinct, dupes = _in_order(_received(subscriber))
    print(f"\nbroker outage 2 s: {distinct} messages, {dupes} duplicates")
    # Events of the rule, both edges, with their value; summaries count the samples.
    events = [m for m in reported if m["kind"] == "event" and m["type"] == "rule"]
    assert {e["state"] for e in events} == {"active", "clear"}
    assert all(e["pipeline"] == "machine" and e["name"] == "hot" for e in events)
    summaries = [m for m in reported if m["kind"] == "summary"]
    assert sum(s["samples"] for s in summaries) > 40
    # Home Assistant: the device's sensors and the rule's binary sensor, retained.
    configs = {m.topic: m for m in list(subscriber.messages)
               if m.topic.startswith("homeassistant/") and m.topic.endswith("/config")}
    assert f"homeassistant/binary_sensor/edge_{NODE}/machine_hot/config" in configs, \
        sorted(configs)
    assert any(t.startswith(f"homeassistant/sensor/edge_{NODE}/machine_") for t in configs)
    late = Subscriber(broker, topics=("homeassistant/#",))  # retained: a newcomer sees them
    try:
        deadline = time.monotonic() + 5
        while not any(m.retain and m.topic.endswith("machine_hot/config")
                      for m in list(late.messages)):
            assert time.monotonic() < deadline, "discovery configs are not retained"
            time.sleep(0.05)
    finally:
        late.close()
    status = json.loads((tmp_path / "state" / "summary.json").read_text())
    mqtt = status["upstream"]["sinks"]["mqtt"]
    assert mqtt["backlog"] == 0 and mqtt["connects"] >= 2  # reconnected after the outage
    assert status["events_written"] >= len(events)


def test_kill_dash_9_twenty_times_every_committed_message_arrives(
        tmp_path: Path, broker: Mosquitto, subscriber: Subscriber) -> None:
    rng = random.Random(9)
    cfg = _config(tmp_path, broker)
    log = tmp_path / "daemon.log"
    started = time.monotonic()
    for run in range(1, KILLS + 1):
        proc = _start(cfg, log)
        _wait_up(log, run, proc)
        time.sleep(rng.uniform(0.1, 0.7))
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    # The last run stops cleanly: it sends what the killed ones left in the outbox.
    proc = _start(cfg, log)
    _wait_up(log, KILLS + 1, proc)
    time.sleep(1.0)
    assert _stop(proc) == 0, log.read_text()[-3000:]
    reported = _reported(tmp_path / "state")
    committed = {m["id"] for m in reported}
    assert len(committed) > KILLS * 5, len(committed)  # the runs got messages on disk
    _wait_all(subscriber, committed)
    received = _received(subscriber)
    distinct, dupes = _in_order(received)
    print(f"\n{KILLS} x kill -9 in {time.monotonic() - started:.1f} s: {len(committed)} "
          f"committed, {distinct} received, {dupes} duplicates")
    # QoS 1 duplicates only: what was in flight when a process died, resent after the
    # restart (at most the sink's max_in_flight per kill).
    assert dupes <= KILLS * 100, dupes
