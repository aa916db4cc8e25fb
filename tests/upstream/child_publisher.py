"""A node that publishes events through the outbox to mosquitto, for the kill -9 test.

``python child_publisher.py STATE_DIR PORT IDS_FILE publish|drain``: prints ``ready``
once started; ``publish`` publishes events for ever and, after each commit, appends the
ids known to be on disk to IDS_FILE; ``drain`` publishes nothing and exits 0 once the
MQTT backlog is empty.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from edge_runtime.upstream import Upstream
from tests.upstream.helpers import upstream_config


class _Port:
    def __init__(self, port: int) -> None:
        self.port = self.tls_port = self.mtls_port = port
        self.pki: dict[str, Path] = {}


async def main(state_dir: Path, port: int, ids_file: Path, mode: str) -> int:
    cfg = upstream_config(_Port(port))  # type: ignore[arg-type]
    up = Upstream(node="k9", state_dir=state_dir, config=cfg)
    await up.start()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    fd = await loop.run_in_executor(None, lambda: os.open(
        ids_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT))
    n = 0
    try:
        if mode == "drain":
            while up.status()["sinks"]["mqtt"]["backlog"] or \
                    up.status()["sinks"]["mqtt"]["in_flight"]:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # the last acks reach the disk
            return 0
        while True:
            batch = []
            for _ in range(20):
                n += 1
                batch.append(up.publish_event(type="rule", name="r", state="active",
                                              data={"n": n, "pid": os.getpid()}))
            await up.flush()
            line = "".join(f"{i}\n" for i in batch).encode()
            await loop.run_in_executor(None, os.write, fd, line)
            await asyncio.sleep(0.01)
    finally:
        await up.close(2.0)
        os.close(fd)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]),
                              sys.argv[4])))
