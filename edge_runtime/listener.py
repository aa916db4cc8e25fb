"""Listening for an aiohttp application with the guards that make bad clients cheap: the
one listener of the OIP server (``mesh/oip/server.py``) and of the web page
(``web/server.py``).

- at most ``max_connections`` open connections; one more is closed at once;
- a request head not complete within ``head_timeout_s`` (slowloris) is dropped: a sweep
  looks every ``sweep_interval_s``, and sleeps while no connection is open;
- a TLS handshake not done within ``tls_handshake_timeout_s`` is dropped, an idle
  keep-alive connection after ``keepalive_timeout_s``;
- aiohttp's parser limits on the request line, header fields and their count;
- closing is bounded by ``shutdown_timeout_s``.

"Not complete" counts the bytes received since the last complete head (the blank line
that ends it). An application that adds :meth:`GuardedListener.mark_busy` as its first
middleware takes the time its handlers run out of that count: bytes that arrive while a
handler runs (a large body) are the handler's business, under its own timeouts. Without
it a slow body counts as a slow head (the web page: bodies of at most 64 KiB).

Threads: everything runs on the loop that calls :meth:`GuardedListener.start`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from typing import Any

from aiohttp import web


class GuardedConnection(asyncio.Protocol):
    """Wraps aiohttp's protocol for one connection: counts it, closes what is over the
    cap, and notes since when a request head has been arriving."""

    def __init__(self, owner: GuardedListener, inner: asyncio.Protocol | None) -> None:
        self._owner = owner
        self._inner = inner
        self.transport: asyncio.Transport | None = None
        #: Monotonic time the first byte of a head not yet complete arrived.
        self.pending_since_s: float | None = None
        #: A handler is running (set by :meth:`GuardedListener.mark_busy`).
        self.busy = False
        #: Close once the running request is answered (:meth:`close_gracefully`).
        self.close_after = False
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self._inner is None:  # over the cap
            self._owner.refused_connections += 1
            transport.abort()
            return
        self._owner.connections[transport] = self
        self._owner.wake_sweeper()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        if not self.busy:
            seen = self._tail + data
            if b"\r\n\r\n" in seen:
                self.pending_since_s = None if seen.endswith(b"\r\n\r\n") else \
                    time.monotonic()
            elif self.pending_since_s is None:
                self.pending_since_s = time.monotonic()
            self._tail = seen[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self._owner.connections.pop(self.transport, None)
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def too_slow(self, now_s: float) -> bool:
        """A head has been arriving for longer than the listener allows."""
        since = self.pending_since_s
        return not self.busy and since is not None and \
            now_s - since > self._owner.head_timeout_s

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close_gracefully(self) -> None:
        """Close at once when idle, else once the running request is answered (that
        needs :meth:`GuardedListener.mark_busy`; without it, at once)."""
        if self.busy:
            self.close_after = True
        elif self.transport is not None:
            self.transport.close()


class GuardedListener:
    """Serves one aiohttp application on ``host:port`` with the guards in the module
    docstring (``max_headers``: aiohttp's default unless given). ``connections``: the
    open ones by transport; ``refused_connections`` and ``slow_heads_dropped`` count
    what the guards closed. :meth:`close` ends everything :meth:`start` started."""

    def __init__(self, *, max_connections: int, head_timeout_s: float,
                 keepalive_timeout_s: float, tls_handshake_timeout_s: float,
                 shutdown_timeout_s: float, sweep_interval_s: float = 1.0,
                 backlog: int = 128, max_line_bytes: int = 8190, max_field_bytes: int = 8190,
                 max_headers: int = 128, name: str = "http") -> None:
        self.max_connections = max_connections
        self.head_timeout_s = head_timeout_s
        self.keepalive_timeout_s = keepalive_timeout_s
        self.tls_handshake_timeout_s = tls_handshake_timeout_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self.sweep_interval_s = sweep_interval_s
        self.backlog = backlog
        self.name = name
        self.max_line_bytes = max_line_bytes
        self.max_field_bytes = max_field_bytes
        self.max_headers = max_headers
        self.connections: dict[asyncio.Transport, GuardedConnection] = {}
        self.refused_connections = 0
        self.slow_heads_dropped = 0
        #: The port listened on (the one bound when asked for 0), once started.
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def start(self, app: web.Application, *, host: str, port: int,
                    ssl_context: ssl.SSLContext | None) -> None:
        """Listen; raises OSError (after cleaning up) when the address cannot be bound."""
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None,
                                     shutdown_timeout=self.shutdown_timeout_s,
                                     keepalive_timeout=self.keepalive_timeout_s,
                                     max_line_size=self.max_line_bytes,
                                     max_field_size=self.max_field_bytes,
                                     max_headers=self.max_headers)
        await self._runner.setup()
        factory = self._runner.server
        assert factory is not None

        def protocol() -> asyncio.Protocol:
            inner = factory() if len(self.connections) < self.max_connections else None
            return GuardedConnection(self, inner)

        try:
            self._server = await asyncio.get_running_loop().create_server(
                protocol, host, port, ssl=ssl_context, backlog=self.backlog,
                ssl_handshake_timeout=self.tls_handshake_timeout_s if ssl_context else None,
                reuse_address=True)
        except BaseException:
            runner, self._runner = self._runner, None
            await runner.cleanup()
            raise
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._sweeper = asyncio.create_task(self._sweep(), name=f"{self.name}-sweep")

    @web.middleware
    async def mark_busy(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Middleware (add it first): the connection is busy while its handler runs, so
        what arrives meanwhile is not a slow head; honours ``close_gracefully``."""
        guard = self.connections.get(request.transport) if request.transport else None
        if guard is not None:
            guard.busy, guard.pending_since_s = True, None
        try:
            response: web.StreamResponse = await handler(request)
            if guard is not None and guard.close_after and not response.prepared:
                response.force_close()
            return response
        finally:
            if guard is not None:
                guard.busy = False

    def wake_sweeper(self) -> None:
        self._wake.set()

    async def _sweep(self) -> None:
        """Drop connections whose head is too slow; sleeps while none is open."""
        while True:
            if not self.connections:
                self._wake.clear()
                await self._wake.wait()
            await asyncio.sleep(self.sweep_interval_s)
            now = time.monotonic()
            for guard in [g for g in self.connections.values() if g.too_slow(now)]:
                self.slow_heads_dropped += 1
                guard.abort()

    async def close(self) -> None:
        """Stop listening, end open requests (bounded by ``shutdown_timeout_s``)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._server is not None:
            self._server.close()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        for guard in list(self.connections.values()):
            guard.abort()
        if self._server is not None:
            server, self._server = self._server, None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), self.shutdown_timeout_s)
