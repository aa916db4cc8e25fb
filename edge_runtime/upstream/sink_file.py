"""The JSONL file sink (the default): one message per line, so a first config and
``edge-runtime demo`` need no server.

Each batch is appended, flushed and fsynced (on an executor thread) before it is
confirmed; the file rotates at ``max_bytes`` keeping ``keep`` old files
(``upstream.jsonl.1`` ...). A snapshot row is written as its metadata (the JPEG stays in
the snapshot folder).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from edge_runtime.upstream.outbox import Row
from edge_runtime.upstream.sink import SinkLink


class FileSink:
    """Appends messages to a JSONL file; see the module docstring."""

    max_batch = 1000
    max_in_flight = 1000

    def __init__(self, path: Path, *, executor: Executor, max_bytes: int = 10_000_000,
                 keep: int = 3, fsync: bool = True, name: str = "file") -> None:
        self.name = name
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.keep = keep
        self.fsync = fsync
        self._executor = executor
        self._link: SinkLink | None = None
        self._size = 0
        self._ok = False
        self.written_bytes = 0

    async def start(self, link: SinkLink) -> None:
        self._link = link
        loop = asyncio.get_running_loop()
        try:
            self._size = await loop.run_in_executor(self._executor, self._prepare)
        except OSError as exc:
            link.disconnected(f"cannot write {self.path}: {exc.strerror or exc}")
            return
        self._ok = True
        link.connected()

    def _prepare(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return self.path.stat().st_size if self.path.exists() else 0

    def ready(self) -> bool:
        return self._ok

    async def send(self, rows: Sequence[Row]) -> None:
        assert self._link is not None
        data = b"".join(bytes(r.body) + b"\n" for r in rows)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._append, data)
        except OSError as exc:
            self._link.refused(rows, f"cannot write {self.path}: {exc.strerror or exc}")
            return
        self._link.confirmed(rows)

    def _append(self, data: bytes) -> None:
        if self._size and self._size + len(data) > self.max_bytes:
            self._rotate()
        with open(self.path, "ab") as f:
            f.write(data)
            f.flush()
            if self.fsync:
                os.fdatasync(f.fileno())
        self._size += len(data)
        self.written_bytes += len(data)

    def _rotate(self) -> None:
        for i in range(self.keep, 0, -1):
            src = self.path if i == 1 else self.path.with_name(f"{self.path.name}.{i - 1}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i}"))
        if self.keep == 0 and self.path.exists():
            self.path.unlink()
        self._size = 0

    async def close(self, timeout_s: float) -> None:
        self._ok = False

    def status(self) -> dict[str, Any]:
        return {"type": "file", "path": str(self.path), "written_bytes": self.written_bytes}
