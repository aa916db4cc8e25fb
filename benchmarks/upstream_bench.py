"""Upstream reporting benchmark: outbox throughput, publish to a local mosquitto, fsyncs
and bytes written in steady state, bytes per summary, extra RSS of the MQTT sink.

    nice .venv/bin/python benchmarks/upstream_bench.py [--quick]

Writes benchmarks/results/upstream.json (with benchmarks/machine.py's machine_info()).
Needs mosquitto (tests/system-packages.sh installs it); talks to loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import RESULTS, machine_info  # noqa: E402


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_enqueue(folder: Path, n: int) -> dict[str, Any]:
    """Messages per second from put() to committed, at the default durability."""
    from edge_runtime.upstream.outbox import Outbox
    from edge_runtime.upstream.schema import MessageFactory

    f = MessageFactory("bench")
    ob = Outbox(folder / "enqueue.db", sinks=["s"], factory=f, max_bytes=10**10)
    ob.open()
    msgs = [f.event(type="rule", name="r", state="active", pipeline="p",
                    data={"i": i, "value": 0.5}) for i in range(n)]
    done = threading.Event()
    t0 = time.perf_counter()
    for m in msgs:
        ob.put(m)
    put_s = time.perf_counter() - t0
    ob.flush(done.set)
    done.wait(120)
    total_s = time.perf_counter() - t0
    stats = ob.stats()
    ob.close()
    return {"messages": n, "enqueue_call_per_s": round(n / put_s),
            "committed_per_s": round(n / total_s), "commits": stats["commits"],
            "target_committed_per_s": 20000}


def bench_steady(folder: Path, rate_hz: float, seconds: float) -> dict[str, Any]:
    """fsyncs/s and bytes written per hour at a steady message rate, all acked."""
    from edge_runtime.upstream.outbox import Outbox
    from edge_runtime.upstream.schema import MessageFactory

    f = MessageFactory("bench")
    ob = Outbox(folder / "steady.db", sinks=["s"], factory=f, max_bytes=10**9)
    ob.open()
    t0 = time.monotonic()
    n = 0
    seq_acked = 0
    while time.monotonic() - t0 < seconds:
        ob.put(f.event(type="rule", name="r", state="active", pipeline="p", data={"i": n}))
        n += 1
        # a sink that confirms everything it could have seen (the steady state)
        if ob.last_seq > seq_acked:
            rows = ob.fetch("s", after_seq=seq_acked, limit=1000)
            if rows:
                ob.ack("s", [(r.seq, r.id) for r in rows])
                seq_acked = rows[-1].seq
        time.sleep(1.0 / rate_hz)
    time.sleep(1.2)  # the last commit and the I/O counters
    ob.put(f.event(type="rule", name="end", state="x"))
    done = threading.Event()
    ob.flush(done.set)
    done.wait(10)
    elapsed = time.monotonic() - t0
    stats = ob.stats()
    ob.close()
    return {"rate_hz": rate_hz, "seconds": round(elapsed, 1), "messages": n,
            "commits_per_s": round(stats["commits"] / elapsed, 2),
            "fsyncs_per_s": round(stats["fsyncs"] / elapsed, 2),
            "written_bytes_per_hour": round(stats["written_bytes"] / elapsed * 3600),
            "disk_written_bytes_per_hour": round(stats["disk_written_bytes"] / elapsed * 3600),
            "written_bytes_per_day": round(stats["written_bytes"] / elapsed * 86400),
            "note": "written = bytes handed to write() by the outbox thread "
                    "(/proc/thread-self/io wchar); disk = write_bytes (0 on overlay/tmpfs)"}


def bytes_per_summary() -> dict[str, Any]:
    from edge_runtime.upstream.schema import MessageFactory, encode
    from edge_runtime.upstream.summary import SummaryWindow

    f = MessageFactory("kitchen-pi", boot="0" * 36)
    w = SummaryWindow("door", window_s=60.0)
    for i in range(600):
        w.add_sample()
        w.add_inference(3.0 + i % 7, offloaded=i % 9 == 0)
        w.add_result({"label": str(i % 10), "score": 0.5 + (i % 50) / 100})
    w.add_rate_change(5.0)
    s = w.take(f, now_s=60.0, wall_s=time.time())
    body = encode(s)
    return {"summary_json_bytes": len(body), "stored_bytes_with_row_overhead": len(body) + 96,
            "labels": 10}


async def _e2e(port: int, n: int, folder: Path) -> dict[str, Any]:
    import msgspec

    from edge_runtime.config import UpstreamConfig
    from edge_runtime.upstream import Upstream

    rss0 = _rss_kb()
    cfg = msgspec.convert({"file": {"enabled": False},
                           "mqtt": {"url": f"mqtt://127.0.0.1:{port}",
                                    "reconnect_min_s": 0.05}}, UpstreamConfig)
    up = Upstream(node="bench", state_dir=folder / "e2e", config=cfg)
    await up.start()
    deadline = time.monotonic() + 10
    while up.status()["sinks"]["mqtt"]["state"] != "connected":
        assert time.monotonic() < deadline, "no connection to mosquitto"
        await asyncio.sleep(0.02)
    t0 = time.perf_counter()
    for i in range(n):
        up.publish_event(type="rule", name="r", state="active", pipeline="p", data={"i": i})
    while up.status()["sinks"]["mqtt"]["delivered"] < n:
        await asyncio.sleep(0.01)
    dt = time.perf_counter() - t0
    rss1 = _rss_kb()
    await up.close(3.0)
    return {"messages": n, "delivered_per_s": round(n / dt), "qos": 1,
            "extra_rss_kb_mqtt_sink_on": rss1 - rss0}


def bench_e2e(folder: Path, n: int) -> dict[str, Any]:
    port = _free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 0\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        return asyncio.run(_e2e(port, n, folder))
    finally:
        proc.terminate()
        proc.wait(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test)")
    args = parser.parse_args()
    n = 20_000 if args.quick else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        results = {
            "machine": machine_info(),
            "enqueue": bench_enqueue(folder, n),
            "publish_to_local_mosquitto": bench_e2e(folder, n // 5),
            "steady_state_10_msg_per_s": bench_steady(folder, 10.0, 10.0 if args.quick
                                                      else 30.0),
            "steady_state_1_msg_per_s": bench_steady(folder, 1.0, 10.0 if args.quick
                                                     else 30.0),
            "bytes_per_summary": bytes_per_summary(),
        }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "upstream.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
