"""The MQTT sink against a real mosquitto: outages, ACLs, credentials, TLS, discovery."""

from __future__ import annotations

import asyncio
import logging
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
