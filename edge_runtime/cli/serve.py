"""``edge-runtime serve CONFIG``: a node that only serves its models to peers.

For a laptop or a GPU box in the fleet: the Open Inference Protocol server
(docs/mesh.md) on ``[mesh] listen``, mutual TLS with the fleet CA, the ``[mesh] models``;
no sources or pipelines. SIGTERM or SIGINT stops it cleanly.
"""

from __future__ import annotations

import argparse
import logging
import signal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_runtime.config import Config

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the ``serve`` command."""
    parser = subparsers.add_parser(
        "serve", help="serve this node's models to peers (Open Inference Protocol)",
        description="Serve the [mesh] models over the Open Inference Protocol (KServe v2, "
        "Triton-compatible) with the fleet's mutual TLS, until SIGTERM. See docs/mesh.md.")
    parser.add_argument("config", metavar="CONFIG", help="the node's config file")
    parser.add_argument("--listen", metavar="HOST:PORT",
                        help="override [mesh] listen (port 0: any free port)")
    parser.add_argument("--model", action="append", metavar="MODEL", dest="models",
                        help="serve this model (repeatable; default: [mesh] models)")
    parser.add_argument("--seconds", type=float, default=None, metavar="S",
                        help="stop by itself after S seconds")
    parser.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    import asyncio

    from edge_runtime.config import load_config

    config = load_config(args.config)
    return asyncio.run(serve(config, listen=args.listen, models=args.models,
                             seconds=args.seconds))


async def serve(config: Config, *, listen: str | None = None,
                models: list[str] | None = None, seconds: float | None = None) -> int:
    """Run the server until a stop signal (or ``seconds``); the CLI's body."""
    import asyncio

    from edge_runtime.mesh.node import mesh_plan, start_server
    from edge_runtime.mesh.served import ManifestModels

    loop = asyncio.get_running_loop()
    plan = await loop.run_in_executor(None, mesh_plan, config, listen)
    specs = models or list(config.mesh.models)
    provider = await loop.run_in_executor(None, lambda: ManifestModels(specs))
    server = None
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        server = await start_server(config, plan, provider)
        if plan.server_ssl is None:  # mesh_plan warned too; this names the address
            log.warning("mesh: serving WITHOUT TLS at %s: anyone who reaches it runs "
                        "these models", server.url)
        names = ", ".join(provider.names()) or "no models"
        print(f"serving {names} at {server.url}", flush=True)
        try:
            async with asyncio.timeout(seconds):
                await stop.wait()
        except TimeoutError:
            pass
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if server is not None:
            await server.close()
        await loop.run_in_executor(None, provider.close)
    return 0
