"""A small discovery node for tests and benchmarks: advertise, serve a health endpoint,
browse, and print the peer table as JSON lines on stdout.

``python -m edge_runtime.mesh._probe --name n1 --port 8001 --serve-health``

Each line is one JSON object: ``{"event": "starting"}`` when discovery starts (the
interpreter is up and the health endpoint served), ``{"event": "registered",
"instance": ...}`` once registered (after mDNS probing and the first announcement), then
``{"event": "added"|"updated"|"state"|"removed", "peer": ..., "peers": [...], "t": ...}``
per change (``t``: seconds since the probe started), ``{"event": "closed"}`` after a
clean stop (SIGTERM or SIGINT; goodbyes sent). Heartbeats GET ``/v2/health/live``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from typing import Any

import aiohttp
from aiohttp import web

from edge_runtime.mesh.discovery import Discovery, Peer, tcp_heartbeat

log = logging.getLogger(__name__)


class HttpHeartbeat:
    """GET ``/v2/health/live`` on the peer's first answering address (one session)."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, peer: Peer) -> bool:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        for address in peer.addresses:
            host = f"[{address}]" if ":" in address else address
            try:
                async with self._session.get(f"http://{host}:{peer.port}/v2/health/live") as r:
                    return r.status == 200
            except (aiohttp.ClientError, OSError) as e:
                log.debug("GET /v2/health/live on %s:%s failed: %r", host, peer.port, e)
                continue
        return False

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m edge_runtime.mesh._probe")
    p.add_argument("--name", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--serve-health", action="store_true",
                   help="serve GET /v2/health/live on the port (aiohttp)")
    p.add_argument("--heartbeat", choices=("http", "tcp"), default="http")
    p.add_argument("--interfaces", nargs="*", default=None)
    p.add_argument("--ip-version", choices=("v4", "v6", "all"), default="v4")
    p.add_argument("--heartbeat-interval-s", type=float, default=0.5)
    p.add_argument("--down-after-misses", type=int, default=3)
    p.add_argument("--remove-after-s", type=float, default=30.0)
    p.add_argument("--models", nargs="*", default=["digits-heavy-int8-onnx"])
    p.add_argument("--capacity", type=float, default=100.0)
    p.add_argument("--log-level", default="WARNING", help="logging level on stderr")
    return p


async def _main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    t0 = time.monotonic()

    async def emit(obj: dict[str, Any]) -> None:
        line = json.dumps({**obj, "t": round(time.monotonic() - t0, 3)}) + "\n"
        await loop.run_in_executor(None, lambda: (sys.stdout.write(line), sys.stdout.flush()))

    runner = None
    if args.serve_health:
        async def live(_request: web.Request) -> web.Response:
            return web.json_response({"live": True})

        app = web.Application()
        app.router.add_get("/v2/health/live", live)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, None, args.port).start()

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    http_heartbeat = HttpHeartbeat()
    discovery = Discovery(
        node_name=args.name, port=args.port, model_names=args.models,
        capacity=args.capacity, interfaces=args.interfaces, ip_version=args.ip_version,
        heartbeat=http_heartbeat if args.heartbeat == "http" else tcp_heartbeat,
        heartbeat_interval_s=args.heartbeat_interval_s,
        down_after_misses=args.down_after_misses, remove_after_s=args.remove_after_s)
    events = discovery.subscribe()
    await emit({"event": "starting"})  # interpreter up, imports done, health served
    try:
        async with discovery:
            await emit({"event": "registered", "instance": discovery.instance,
                        "txt": discovery.properties})
            stopping = asyncio.create_task(stop.wait())
            while not stop.is_set():
                getting = asyncio.create_task(events.get())
                done, _ = await asyncio.wait({getting, stopping},
                                             return_when=asyncio.FIRST_COMPLETED)
                if getting not in done:
                    getting.cancel()
                    break
                event = getting.result()
                await emit({"event": event.kind.value, "why": event.why,
                            "peer": event.peer.as_dict(),
                            "peers": [p.as_dict() for p in discovery.peers]})
    finally:
        await http_heartbeat.aclose()
        if runner is not None:
            await runner.cleanup()
    await emit({"event": "closed"})


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
