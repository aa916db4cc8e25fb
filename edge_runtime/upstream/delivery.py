"""One :class:`Delivery` per sink: reads the outbox in order and feeds the sink.

Runs on the loop (one named task per sink). Delivery state lives in the outbox (one bit
per sink per row); the driver only keeps a cursor (the highest ``seq`` handed over on
this connection) and the rows in flight. Rewinds (cursor back to 0, everything still
pending resent in ``seq`` order) happen on connect, after a refusal's backoff and after
the outbox merged old summaries, so a row is never skipped; a row may be sent twice
(at-least-once, the message id is the idempotency key).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

from edge_runtime.upstream.backoff import Backoff, RateLimitedLog
from edge_runtime.upstream.outbox import Outbox, Row
from edge_runtime.upstream.sink import Sink

log = logging.getLogger(__name__)


class Delivery:
    """Drives one sink from the outbox; implements the sink's ``SinkLink``."""

    def __init__(self, sink: Sink, outbox: Outbox, *, loop: asyncio.AbstractEventLoop,
                 executor: Executor, retry_min_s: float = 1.0, retry_max_s: float = 60.0
                 ) -> None:
        self.sink = sink
        self.name = sink.name
        self.outbox = outbox
        self.loop = loop
        self.executor = executor
        self.backoff = Backoff(retry_min_s, retry_max_s)
        self.state = "starting"
        self.last_error: str | None = None
        self.last_error_wall_s: float | None = None
        self.delivered = 0
        self.refused_count = 0
        self.connects = 0
        self._cursor = 0
        self._in_flight: dict[int, Row] = {}
        #: seq -> outbox ticket of rows confirmed but not yet committed as such.
        self._acked: dict[int, int] = {}
        self._wake = asyncio.Event()
        self._paused_until = 0.0
        self._resume_handle: asyncio.TimerHandle | None = None
        self._seen_compactions = outbox.compactions
        self._closing = False
        self._rlog = RateLimitedLog(log)
        self.task: asyncio.Task[None] | None = None
        self._loop_thread_id = -1

    # -- SinkLink (thread-safe) ------------------------------------------------------------

    def _on_loop(self, fn: Any, *args: Any) -> None:
        if self._loop_thread_id == threading.get_ident():
            fn(*args)
        else:
            with contextlib.suppress(RuntimeError):  # loop closed: we are shutting down
                self.loop.call_soon_threadsafe(fn, *args)

    def connected(self) -> None:
        self._on_loop(self._connected)

    def disconnected(self, error: str | None) -> None:
        self._on_loop(self._disconnected, error)

    def confirmed(self, rows: Sequence[Row]) -> None:
        self._on_loop(self._confirmed, list(rows))

    def refused(self, rows: Sequence[Row], error: str) -> None:
        self._on_loop(self._refused, list(rows), error)

    # -- on the loop -----------------------------------------------------------------------

    def _connected(self) -> None:
        self.state = "connected"
        self.connects += 1
        self._rewind()
        self._rlog.forget("disconnected")
        log.info("upstream sink %s connected; sending the backlog (%d messages)",
                 self.name, self.outbox.backlog.get(self.name, 0))

    def _disconnected(self, error: str | None) -> None:
        was = self.state
        self.state = "disconnected"
        self._in_flight.clear()
        self._cursor = 0
        if error:
            self._error(error)
        if was == "connected":
            log.warning("upstream sink %s disconnected: %s", self.name, error or "closed")

    def _confirmed(self, rows: list[Row]) -> None:
        done = [(r.seq, r.id) for r in rows if self._in_flight.pop(r.seq, None) is not None]
        if done:
            ticket = self.outbox.ack(self.name, done)
            for seq, _ in done:
                self._acked[seq] = ticket
            self.delivered += len(done)
            self.backoff.reset()
        self._wake.set()

    def _refused(self, rows: list[Row], error: str) -> None:
        for r in rows:
            self._in_flight.pop(r.seq, None)
        self.refused_count += len(rows)
        self._error(error)
        delay_s = self.backoff.next_delay_s()
        self._rlog.log(logging.WARNING, "refused:" + error,
                       "upstream sink %s refused %d message(s) (%s); they stay in the "
                       "outbox, retrying in %.1f s", self.name, len(rows), error, delay_s)
        self._paused_until = time.monotonic() + delay_s
        if self._resume_handle is not None:
            self._resume_handle.cancel()
        self._resume_handle = self.loop.call_later(delay_s, self._resume)

    def _resume(self) -> None:
        self._resume_handle = None
        self._paused_until = 0.0
        self._rewind()

    def _rewind(self) -> None:
        self._cursor = 0
        self._wake.set()

    def _error(self, error: str) -> None:
        self.last_error = error
        self.last_error_wall_s = time.time()

    def wake(self) -> None:
        """New rows were committed (called on the loop)."""
        self._wake.set()

    async def run(self) -> None:
        self._loop_thread_id = threading.get_ident()
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            while not self._closing and self.sink.ready() and \
                    time.monotonic() >= self._paused_until:
                room = self.sink.max_in_flight - len(self._in_flight)
                if room <= 0:
                    break
                if self.outbox.compactions != self._seen_compactions:
                    self._seen_compactions = self.outbox.compactions
                    self._cursor = 0
                committed = self.outbox.committed_ticket
                if self._acked:
                    self._acked = {s: t for s, t in self._acked.items() if t > committed}
                fetch = functools.partial(self.outbox.fetch, self.name,
                                          after_seq=self._cursor,
                                          limit=min(room, self.sink.max_batch),
                                          skip=frozenset(self._in_flight) | self._acked.keys())
                rows = await self.loop.run_in_executor(self.executor, fetch)
                if not rows or self._closing or not self.sink.ready():
                    break
                self._cursor = rows[-1].seq
                for r in rows:
                    self._in_flight[r.seq] = r
                await self.sink.send(rows)

    def start(self) -> None:
        self._loop_thread_id = threading.get_ident()
        self.task = self.loop.create_task(self.run(), name=f"upstream-delivery-{self.name}")

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._resume_handle is not None:
            self._resume_handle.cancel()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.state = "closed"

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "state": ("backoff" if self.state == "connected"
                      and time.monotonic() < self._paused_until else self.state),
            "backlog": self.outbox.backlog.get(self.name, 0),
            "in_flight": len(self._in_flight), "delivered": self.delivered,
            "refused": self.refused_count, "connects": self.connects,
            "last_error": self.last_error, "last_error_ts_s": self.last_error_wall_s,
        }
        out.update(self.sink.status())
        return out
