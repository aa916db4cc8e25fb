"""The outbox and the file sink without a broker: cap, corruption, order, per-sink state."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_runtime.upstream import Row, SinkLink, Summary, SummaryWindow, Upstream
from edge_runtime.upstream.schema import MessageFactory, decode
from edge_runtime.upstream.summary import merge_summaries
from tests.upstream.helpers import upstream_config, wait_until


class GateSink:
    """A real test sink: confirms what it gets while ``open``; records everything."""

    max_batch = 50
    max_in_flight = 50

    def __init__(self, name: str, *, open: bool = True) -> None:
        self.name = name
        self.open = open
        self.got: list[Row] = []
        self.link: SinkLink | None = None

    async def start(self, link: SinkLink) -> None:
        self.link = link
        if self.open:
            link.connected()

    def ready(self) -> bool:
        return self.open

    async def send(self, rows: Sequence[Row]) -> None:
        assert self.link is not None
        self.got += rows
        self.link.confirmed(rows)

    def set_open(self) -> None:
        self.open = True
        assert self.link is not None
        self.link.connected()

    async def close(self, timeout_s: float) -> None:
        self.open = False

    def status(self) -> dict[str, Any]:
        return {"type": "gate"}


def test_file_sink_is_the_default_and_needs_no_server(tmp_path: Path) -> None:
    async def main() -> None:
        up = Upstream(node="n1", state_dir=tmp_path / "state")
        await up.start()
        try:
            ids = [up.publish_event(type="rule", name="r", state="active") for _ in range(5)]
            await wait_until(lambda: up.status()["sinks"]["file"]["delivered"] == 5)
            await wait_until(lambda: up.status()["sinks"]["file"]["backlog"] == 0)
        finally:
            await up.close(2.0)
        lines = await asyncio.to_thread((tmp_path / "state" / "upstream.jsonl").read_text)
        assert [json.loads(x)["id"] for x in lines.splitlines()] == ids

    asyncio.run(main())


def test_a_row_goes_only_after_every_sink_confirmed(tmp_path: Path) -> None:
    a, b = GateSink("a"), GateSink("b", open=False)

    async def main() -> None:
        up = Upstream(node="n1", state_dir=tmp_path / "state", sinks=[a, b])
        await up.start()
        try:
            for i in range(120):
                up.publish_event(type="rule", name="r", state="active", data={"i": i})
            await wait_until(lambda: len(a.got) == 120)
            await up.flush()
            st = up.status()
            assert st["sinks"]["a"]["backlog"] == 0 and st["sinks"]["b"]["backlog"] == 120
            assert st["outbox"]["rows"] == 120
            b.set_open()
            await wait_until(lambda: len(b.got) == 120)
            await wait_until(lambda: up.status()["outbox"]["rows"] == 0)
        finally:
            await up.close(2.0)
        assert [r.seq for r in b.got] == sorted(r.seq for r in b.got)

    asyncio.run(main())


def test_disk_cap_merges_summaries_then_drops_and_reports_loss(tmp_path: Path) -> None:
    gate = GateSink("g", open=False)
    cfg = upstream_config(max_bytes=60_000, loss_report_interval_s=0.01)

    async def main() -> tuple[list[Row], dict[str, Any]]:
        up = Upstream(node="n1", state_dir=tmp_path / "state", config=cfg, sinks=[gate])
        await up.start()
        try:
            events = [up.publish_event(type="rule", name="r", state="active", data={"i": i})
                      for i in range(40)]
            for i in range(400):
                up.publish_summary(Summary(**up.factory.header("p"), samples=i, window_s=60,
                                           window_start_s=1000.0 + 60 * i))
            await up.flush()
            status = up.status()
            gate.set_open()
            await wait_until(lambda: up.status()["outbox"]["rows"] == 0)
            assert set(events) <= {r.id for r in gate.got}  # events are kept
            return gate.got, status
        finally:
            await up.close(2.0)

    got, status = asyncio.run(main())
    assert status["outbox"]["stored_bytes"] <= 60_000
    assert status["outbox"]["merged"] > 0
    msgs = [decode(r.body) for r in got]
    summaries = [m for m in msgs if isinstance(m, Summary)]
    assert sum(s.merged for s in summaries) + status["lost"].get("summary", 0) == 400
    assert sum(s.samples for s in summaries) <= sum(range(400))
    loss = [m for m in msgs if getattr(m, "name", "") == "outbox_loss"]
    assert loss, "the forced merge/loss is reported upstream"


def test_events_dropped_last_and_counted(tmp_path: Path) -> None:
    gate = GateSink("g", open=False)
    cfg = upstream_config(max_bytes=30_000, loss_report_interval_s=0.01)

    async def main() -> dict[str, Any]:
        up = Upstream(node="n1", state_dir=tmp_path / "state", config=cfg, sinks=[gate])
        await up.start()
        try:
            for i in range(500):
                up.publish_event(type="rule", name="r", state="active", data={"i": i})
            await up.flush()
            gate.set_open()
            await wait_until(lambda: up.status()["outbox"]["rows"] == 0)
            return up.status()
        finally:
            await up.close(2.0)

    status = asyncio.run(main())
    lost = status["lost"]["event"]
    delivered = status["sinks"]["g"]["delivered"]
    assert lost > 0
    kept = [decode(r.body) for r in gate.got]
    assert any(getattr(m, "name", "") == "outbox_loss" and m.data["lost"]["event"] > 0
               for m in kept)
    assert delivered + lost >= 500  # every event is delivered or counted lost


def test_corrupt_database_is_moved_aside_and_reported(tmp_path: Path) -> None:
    gate = GateSink("g", open=False)
    state = tmp_path / "state"

    async def run(publish: int) -> dict[str, Any]:
        up = Upstream(node="n1", state_dir=state, sinks=[gate])
        await up.start()
        try:
            for i in range(publish):
                up.publish_event(type="rule", name="r", state="active", data={"i": i})
            await up.flush()
            return up.status()
        finally:
            await up.close(2.0)

    asyncio.run(run(200))
    db = state / "outbox.db"
    data = bytearray(db.read_bytes())
    data[0:16] = b"this is garbage!"
    data[len(data) // 2: len(data) // 2 + 512] = b"\xff" * 512
    db.write_bytes(bytes(data))
    status = asyncio.run(run(3))
    moved = status["outbox"]["recovered_to"]
    assert moved and Path(moved).exists() and ".corrupt-" in moved
    assert status["outbox"]["rows"] == 4  # 3 new + the outbox_corrupt event

    gate.open = True

    async def drain() -> list[Any]:
        up = Upstream(node="n1", state_dir=state, sinks=[gate])
        await up.start()
        try:
            gate.link.connected()  # type: ignore[union-attr]
            await wait_until(lambda: up.status()["outbox"]["rows"] == 0)
        finally:
            await up.close(2.0)
        return [decode(r.body) for r in gate.got]

    msgs = asyncio.run(drain())
    report = [m for m in msgs if getattr(m, "name", "") == "outbox_corrupt"]
    assert report and report[0].data["moved_to"] == moved


def test_seq_continues_across_restarts(tmp_path: Path) -> None:
    gate = GateSink("g")

    async def run() -> None:
        gate.open = True
        up = Upstream(node="n1", state_dir=tmp_path / "state", sinks=[gate])
        await up.start()
        try:
            for _ in range(10):
                up.publish_event(type="rule", name="r", state="active")
            await up.flush()
            await wait_until(lambda: up.status()["outbox"]["rows"] == 0)
        finally:
            await up.close(2.0)

    asyncio.run(run())
    asyncio.run(run())
    assert [r.seq for r in gate.got] == list(range(1, 21))


def test_summary_window_and_merge() -> None:
    f = MessageFactory("n1")
    w = SummaryWindow("p", window_s=60.0, now_s=0.0, wall_s=1000.0)
    for i in range(100):
        w.add_sample()
        w.add_inference(float(i), offloaded=i % 10 == 0)
        w.add_result({"label": "7" if i % 2 else "1", "score": i / 100})
    w.add_result({"score": 0.9, "raw_score": 0.9, "time_to_limit_s": 300.0})
    w.add_gated(5)
    w.add_rate_change(2.0)
    w.set_source_connected(False, 10.0)
    w.set_source_connected(True, 25.0)
    assert not w.due(59.0) and w.due(60.0)
    s = w.take(f, now_s=60.0, wall_s=1060.0)
    assert (s.samples, s.inferences, s.local, s.offloaded) == (100, 100, 90, 10)
    assert s.labels == {"1": 50, "7": 50} and s.score_max == 0.99
    assert s.anomaly_score_max == 0.9 and s.time_to_limit_min_s == 300.0
    assert s.latency_p50_ms == 49.0 and s.latency_p95_ms == 94.0
    assert s.source_connected == 0.75 and s.source_disconnects == 1
    assert (s.gated, s.rate_changes, s.rate_hz) == (5, 1, 2.0)
    s2 = w.take(f, now_s=120.0, wall_s=1120.0)
    assert s2.samples == 0 and s2.window_start_s == 1060.0
    m = merge_summaries([s, s2], id="x", seq=s.seq)
    assert m.merged == 2 and m.samples == 100 and m.window_s == 120.0
