"""The MQTT sink against a real mosquitto: outages, ACLs, credentials, TLS, discovery."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from edge_runtime.upstream import PipelineInfo, Upstream
from tests.upstream.broker import Mosquitto, Subscriber
from tests.upstream.helpers import upstream_config, wait_until


def first_seen(ids: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for i in ids:
        seen.setdefault(i, None)
    return list(seen)


def test_broker_restart_delivers_the_backlog_in_order(
        tmp_path: Path, broker: Mosquitto, subscriber: Subscriber) -> None:
    async def main() -> tuple[list[str], dict[str, object]]:
        up = Upstream(node="n1", state_dir=tmp_path / "state", config=upstream_config(broker))
        await up.start()
        try:
            sent = [up.publish_event(type="rule", name="r", state="active", pipeline="p",
                                     data={"i": i}) for i in range(50)]
            await wait_until(lambda: set(sent) <= set(subscriber.ids()), what="first 50")
            await asyncio.to_thread(broker.stop)
            await wait_until(lambda: up.status()["sinks"]["mqtt"]["state"] == "disconnected",
                             what="disconnected")
            # the outbox keeps filling while the broker is away
            sent += [up.publish_event(type="rule", name="r", state="clear", pipeline="p",
                                      data={"i": i}) for i in range(50, 300)]
            await up.flush()
            assert up.status()["sinks"]["mqtt"]["backlog"] == 250
            await asyncio.to_thread(broker.start)
            await wait_until(lambda: set(sent) <= set(subscriber.ids()), what="backlog")
            await wait_until(lambda: up.status()["sinks"]["mqtt"]["backlog"] == 0,
                             what="backlog acked")
            return sent, up.status()
        finally:
            await up.close(2.0)

    sent, status = asyncio.run(main())
    got = first_seen(subscriber.ids())
    assert got == sent  # in order, nothing lost
    assert status["sinks"]["mqtt"]["connects"] >= 2  # type: ignore[index]
    # the retained status says offline after the clean close
    status_msgs = [m for m in subscriber.messages if m.topic == "edge/n1/status"]
    assert status_msgs[-1].json()["state"] == "offline"


def test_acl_refusal_is_never_counted_delivered(
        tmp_path: Path, broker: Mosquitto, subscriber: Subscriber,
        caplog: pytest.LogCaptureFixture) -> None:
    """User 'limited' may publish summaries but not events: PUBACK 135 keeps the event."""
    from edge_runtime.upstream.schema import Summary

    async def main() -> dict[str, object]:
        up = Upstream(node="n1", state_dir=tmp_path / "state",
                      config=upstream_config(broker, user="limited"))
        await up.start()
        try:
            ev = up.publish_event(type="rule", name="r", state="active", pipeline="p")
            sm = up.publish_summary(Summary(**up.factory.header("p"), samples=3))
            await wait_until(lambda: sm in subscriber.ids(), what="summary")
            await wait_until(lambda: up.status()["sinks"]["mqtt"]["refused"] >= 2,
                             what="event refused twice (retried)")
            assert ev not in subscriber.ids()
            await wait_until(lambda: up.status()["sinks"]["mqtt"]["backlog"] == 1,
                             what="the summary's ack on disk")
            return up.status()
        finally:
            await up.close(2.0)

    with caplog.at_level(logging.WARNING):
        status = asyncio.run(main())
    sink = status["sinks"]["mqtt"]  # type: ignore[index]
    assert sink["delivered"] == 1 and sink["backlog"] == 1
    assert "Not authorized" in sink["last_error"] and "edge/n1/event/p" in sink["last_error"]
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1  # one clear line, repeats rate-limited


def test_wrong_password_one_log_line_retries_no_crash(
        tmp_path: Path, broker: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> dict[str, object]:
        up = Upstream(node="n1", state_dir=tmp_path / "state",
                      config=upstream_config(broker, password="wrong"))
        await up.start()
        try:
            up.publish_event(type="rule", name="r", state="active")
            await asyncio.sleep(1.5)  # several attempts at 0.05..0.3 s
            up.publish_event(type="rule", name="r", state="clear")
            await up.flush()
            return up.status()
        finally:
            await up.close(2.0)

    with caplog.at_level(logging.WARNING):
        status = asyncio.run(main())
    sink = status["sinks"]["mqtt"]  # type: ignore[index]
    assert sink["state"] == "disconnected" and sink["backlog"] == 2
    assert "refused the connection: Not authorized" in sink["last_error"]
    assert "username/password" in sink["last_error"]
    lines = [r.getMessage() for r in caplog.records if "cannot connect" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "mqtt://127.0.0.1" in lines[0] and "retrying" in lines[0]


@pytest.mark.parametrize("tls", ["tls", "mtls"])
def test_tls_and_mutual_tls(tmp_path: Path, broker: Mosquitto, subscriber: Subscriber,
                            tls: str) -> None:
    async def main() -> str:
        up = Upstream(node="n1", state_dir=tmp_path / "state",
                      config=upstream_config(broker, tls=tls))
        await up.start()
        try:
            ev = up.publish_event(type="rule", name="r", state="active")
            await wait_until(lambda: ev in subscriber.ids(), what="event over TLS")
            return ev
        finally:
            await up.close(2.0)

    asyncio.run(main())


def test_mutual_tls_without_a_client_certificate_is_a_clear_error(
        tmp_path: Path, broker: Mosquitto) -> None:
    cfg = upstream_config(broker, tls="tls")
    assert cfg.mqtt is not None
    cfg.mqtt.url = f"mqtts://127.0.0.1:{broker.mtls_port}"

    async def main() -> dict[str, object]:
        up = Upstream(node="n1", state_dir=tmp_path / "state", config=cfg)
        await up.start()
        try:
            up.publish_event(type="rule", name="r", state="active")
            await wait_until(lambda: up.status()["sinks"]["mqtt"]["last_error"], what="error")
            return up.status()
        finally:
            await up.close(2.0)

    sink = asyncio.run(main())["sinks"]["mqtt"]  # type: ignore[index]
    assert sink["delivered"] == 0 and sink["backlog"] == 1


def test_home_assistant_discovery(tmp_path: Path, broker: Mosquitto,
                                  subscriber: Subscriber) -> None:
    from tests.upstream.ha_schema import check_discovery

    pipes = [PipelineInfo("door", ["seven-at-door"], camera=True),
             PipelineInfo("machine", ["machine-anomaly", "machine-early-warning"])]

    def configs() -> list[object]:
        return [m for m in list(subscriber.messages)
                if m.topic.startswith("homeassistant/") and m.topic.endswith("/config")]

    async def main() -> int:
        up = Upstream(node="n1", state_dir=tmp_path / "state",
                      config=upstream_config(broker, home_assistant=True), pipelines=pipes)
        await up.start()
        try:
            await wait_until(lambda: len(configs()) >= 7 * 2 + 3 + 1, what="configs")
            first = len(configs())
            # Home Assistant restarts: every config is sent again
            await asyncio.to_thread(subscriber.publish, "homeassistant/status", b"online")
            await wait_until(lambda: len(configs()) >= 2 * first, what="re-sent configs")
            return first
        finally:
            await up.close(2.0)

    n = asyncio.run(main())
    msgs = configs()[:n]
    check_discovery({m.topic: m.json() for m in msgs}, node="n1",  # type: ignore[attr-defined]
                    pipelines=pipes)


def test_snapshot_is_written_referenced_and_published_retained(
        tmp_path: Path, broker: Mosquitto, subscriber: Subscriber) -> None:
    import numpy as np

    frame = np.zeros((48, 64, 3), np.uint8)
    frame[10:30, 20:40] = 200

    async def main() -> tuple[str, str, dict[str, object]]:
        up = Upstream(node="n1", state_dir=tmp_path / "state", config=upstream_config(broker))
        await up.start()
        try:
            name = up.attach_snapshot("door", frame, [(20, 10, 40, 30, "person", 0.9)])
            assert name is not None
            ev = up.publish_event(type="rule", name="r", state="active", pipeline="door",
                                  snapshot=name)
            await wait_until(lambda: any(m.topic == "edge/n1/snapshot/door"
                                         for m in list(subscriber.messages)), what="jpeg")
            return name, ev, up.status()
        finally:
            await up.close(2.0)

    name, ev, status = asyncio.run(main())
    jpeg = next(m for m in subscriber.messages if m.topic == "edge/n1/snapshot/door")
    assert jpeg.payload[:2] == b"\xff\xd8"
    assert (tmp_path / "state" / "snapshots" / name).read_bytes() == jpeg.payload
    event = next(m.json() for m in subscriber.messages if m.topic == "edge/n1/event/door")
    assert event["id"] == ev and event["snapshot"] == name
    assert status["snapshots"]["files"] == 1  # type: ignore[index]
    # a late subscriber still gets the latest snapshot: it is retained
    late = Subscriber(broker, topics=("edge/n1/snapshot/#",))
    try:
        deadline = time.monotonic() + 5
        while not late.messages:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert late.messages[0].retain and late.messages[0].payload == jpeg.payload
    finally:
        late.close()
