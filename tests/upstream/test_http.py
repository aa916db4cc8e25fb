"""The HTTP sink against a local aiohttp server: 2xx confirms, 500 is retried."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from edge_runtime.config import UpstreamConfig
from edge_runtime.upstream import Upstream
from tests.upstream.helpers import wait_until


class Webhook:
    """A real HTTP server that fails the first ``fail`` POSTs with 500."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.posts: list[dict[str, Any]] = []
        self.statuses: list[int] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        if self.fail > 0:
            self.fail -= 1
            self.statuses.append(500)
            return web.Response(status=500, text="boom")
        self.posts.append(body)
        self.statuses.append(200)
        return web.Response(status=204)


def test_http_sink_confirms_on_2xx_and_retries_500(tmp_path: Path) -> None:
    hook = Webhook(fail=2)

    async def main() -> dict[str, Any]:
        app = web.Application()
        app.router.add_post("/ingest", hook.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        cfg = msgspec.convert({"file": {"enabled": False}, "http": {
            "url": f"http://127.0.0.1:{port}/ingest", "retry_min_s": 0.05,
            "retry_max_s": 0.2}}, UpstreamConfig)
        up = Upstream(node="n1", state_dir=tmp_path / "state", config=cfg)
        await up.start()
        try:
            ids = [up.publish_event(type="rule", name="r", state="active", data={"i": i})
                   for i in range(30)]
            await wait_until(lambda: up.status()["sinks"]["http"]["delivered"] == 30)
            await wait_until(lambda: up.status()["sinks"]["http"]["backlog"] == 0)
            got = [m["id"] for p in hook.posts for m in p["messages"]]
            assert got == ids and all(p["node"] == "n1" for p in hook.posts)
            return up.status()
        finally:
            await up.close(2.0)
            await runner.cleanup()

    status = asyncio.run(main())
    sink = status["sinks"]["http"]
    assert hook.statuses[:2] == [500, 500] and hook.statuses[2] == 200
    assert sink["refused"] > 0 and "HTTP 500" in sink["last_error"]
    assert sink["backlog"] == 0
