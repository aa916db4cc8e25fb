"""A fleet member that lies: a valid fleet certificate, the real heavy model's tensors,
but every answer's class scores rolled by a few classes (so its top-1 class is wrong).
Advertised by mDNS like any node, with a TCP heartbeat of its own.

``python -m tests.mesh.liar_node --name liar --manifest heavy/heavy-test.toml
--cert liar.pem --key liar.key --ca ca.pem --crl crl.pem``

Stdout, JSON lines: ``{"event": "registered", "instance": ...}`` once advertised, then
``{"event": "served", "count": N}`` each time the count of answered inferences changed
(at most every 0.2 s), ``{"event": "closed"}`` after SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.mesh import fleet as fl
from edge_runtime.mesh.discovery import Discovery, tcp_heartbeat
from edge_runtime.mesh.oip.server import DictModels, OipServer, make_app
from edge_runtime.mesh.served import RawModel
from edge_runtime.models.model import Model


class RolledModel(RawModel):
    """The real model, its ``probs`` rolled by ``shift`` classes: plausible, wrong."""

    def __init__(self, model: Model, shift: int) -> None:
        super().__init__(model)
        self.shift = shift

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = super().run(inputs)
        return {**out, "probs": np.roll(out["probs"], self.shift, axis=1)}


async def _main(args: argparse.Namespace) -> None:
    from edge_runtime.models import load_model
    from edge_runtime.models.manifest import load_manifest

    loop = asyncio.get_running_loop()

    async def emit(obj: dict[str, Any]) -> None:
        line = json.dumps(obj) + "\n"
        await loop.run_in_executor(None, lambda: (sys.stdout.write(line), sys.stdout.flush()))

    name = (await asyncio.to_thread(load_manifest, Path(args.manifest))).name
    model = await asyncio.to_thread(load_model, args.manifest)
    served = {"count": 0}

    def on_served(peer: str, model_name: str, compute_s: float, bytes_total: int) -> None:
        served["count"] += 1

    files = fl.TlsFiles(cert=Path(args.cert), key=Path(args.key), ca=Path(args.ca),
                        crl=Path(args.crl))
    ssl_context = await asyncio.to_thread(fl.server_context, files)
    app = make_app(DictModels({name: RolledModel(model, args.shift)}),
                   server_name=args.name, on_served=on_served)
    server = OipServer(app, host="0.0.0.0", port=args.port, ssl_context=ssl_context)
    await server.start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with Discovery(node_name=args.name, port=args.port, heartbeat=tcp_heartbeat,
                             model_names=[name], interfaces=[args.interface],
                             heartbeat_interval_s=0.5) as discovery:
            await emit({"event": "registered", "instance": discovery.instance})
            reported = 0
            while not stop.is_set():
                if served["count"] != reported:
                    reported = served["count"]
                    await emit({"event": "served", "count": reported})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)
    finally:
        await server.close()
        await asyncio.to_thread(model.close)
    await emit({"event": "closed"})


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tests.mesh.liar_node")
    p.add_argument("--name", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--crl", required=True)
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--interface", default="eth0")
    p.add_argument("--shift", type=int, default=3, help="classes the scores are rolled by")
    asyncio.run(_main(p.parse_args(argv)))


if __name__ == "__main__":
    main()
