"""The JSONL file sink (the default): one message per line, so a first config and
``edge-runtime demo`` need no server.

This file is also the node's local record of what it reported (events, summaries,
snapshot metadata, statuses), the successor of the old ``events.jsonl``. Each batch is
appended, flushed and fsynced (on an executor thread) before it is confirmed; the file
rotates at ``max_bytes`` keeping ``keep`` old files (``upstream.jsonl.1`` ...). A
snapshot row is written as its metadata (the JPEG stays in the snapshot folder).

The file is created 0600 (events may say where things are; 0640 when the state folder
belongs to a group the operator shares it with). At start a torn last line (a power cut
mid-write) is cut off, so the next line starts on a line of its own; the rows of that
batch were not confirmed and are written again from the outbox. A write that fails
(a full disk) is cut back to the last whole line and the rows are refused: they stay
in the outbox and are retried after a backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from edge_runtime.errors import FileWriteError
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
        self._mode = 0o600
        self.written_bytes = 0
        #: Bytes of a torn last line cut off at start (a power cut mid-write).
        self.torn_bytes = 0

    async def start(self, link: SinkLink) -> None:
        self._link = link
        loop = asyncio.get_running_loop()
        try:
            self._size = await loop.run_in_executor(self._executor, self._prepare)
        except OSError as exc:
            why = exc.message if isinstance(exc, FileWriteError) else exc.strerror or exc
            link.disconnected(f"cannot write {self.path}: {why}")
            return
        self._ok = True
        link.connected()

    def _prepare(self) -> int:
        """Create the folder and the file (private mode), cut a torn last line off."""
        from edge_runtime.files import state_folder

        self._mode = state_folder(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, self._mode)
        try:
            size = os.fstat(fd).st_size
            good = _last_line_end(fd, size)
            if good < size:
                os.ftruncate(fd, good)
                os.fsync(fd)
                self.torn_bytes += size - good
        finally:
            os.close(fd)
        return good

    def ready(self) -> bool:
        return self._ok

    async def send(self, rows: Sequence[Row]) -> None:
        assert self._link is not None
        loop = asyncio.get_running_loop()
        done, error = await loop.run_in_executor(self._executor, self._append_rows, rows)
        if done:
            self._link.confirmed(rows[:done])
        if error is not None:
            self._link.refused(rows[done:], f"cannot write {self.path}: {error}")

    def _append_rows(self, rows: Sequence[Row]) -> tuple[int, str | None]:
        """Append ``rows`` in chunks that fit the rotation size (a big backlog after an
        outage must not become one write larger than the file may grow); returns how
        many were written and fsynced, and the error that stopped the rest."""
        done = 0
        while done < len(rows):
            room = max(1, self.max_bytes - self._size) if self._size else self.max_bytes
            chunk: list[bytes] = []
            size = 0
            for r in rows[done:]:
                line = bytes(r.body) + b"\n"
                if chunk and size + len(line) > room:
                    break
                chunk.append(line)
                size += len(line)
            try:
                self._append(b"".join(chunk))
            except OSError as exc:
                return done, str(exc.strerror or exc)
            done += len(chunk)
        return done, None

    def _append(self, data: bytes) -> None:
        if self._size and self._size + len(data) > self.max_bytes:
            self._rotate()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                     self._mode)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if self.fsync:
                    os.fdatasync(fd)
            except OSError:
                # No partial line may stay behind: the rows are refused and resent.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, self._size)
                raise
        finally:
            os.close(fd)
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
        return {"type": "file", "path": str(self.path), "written_bytes": self.written_bytes,
                "torn_bytes": self.torn_bytes}


def _last_line_end(fd: int, size: int, chunk_bytes: int = 4096) -> int:
    """Offset just past the last newline of the file (0 when it has none)."""
    end = size
    while end > 0:
        start = max(0, end - chunk_bytes)
        data = os.pread(fd, end - start, start)
        cut = data.rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        end = start
    return 0
