"""The web server of one daemon process: listening, TLS, limits, the chart's sampler.

Safe by default (docs/web.md): a loopback address needs nothing; any other address
needs ``tls_cert`` + ``tls_key`` (refused at start otherwise) and the token on every
request. Bad clients cost nothing and crash nothing:

- request line, header and header-count limits (aiohttp's parser), bodies of at most
  :data:`MAX_BODY_BYTES`;
- a client that has not sent a complete request head within :data:`HEAD_TIMEOUT_S`
  (slowloris) is disconnected, idle keep-alive connections after
  :data:`KEEPALIVE_TIMEOUT_S`, a TLS handshake after :data:`TLS_HANDSHAKE_TIMEOUT_S`;
- at most :data:`MAX_CONNECTIONS` connections; one more is closed at once;
- unknown paths are a 404 from the router, with no work done.

The connection guards are the shared :class:`~edge_runtime.listener.GuardedListener`
(the OIP server's too); no handler marks itself busy here, so a body (at most
:data:`MAX_BODY_BYTES`) also has :data:`HEAD_TIMEOUT_S` to arrive.

Threads: everything runs on the daemon's loop except JPEG encoding and file reads
(token, events, snapshots), which run in one private thread joined by :meth:`close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_runtime.config import WebConfig
from edge_runtime.errors import WebConfigError, WebStartError
from edge_runtime.listener import GuardedListener
from edge_runtime.web.auth import Guard, is_loopback, load_or_create_token, parse_listen
from edge_runtime.web.live import EventTail, FrameView, History, JpegCache

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

log = logging.getLogger(__name__)

#: ``frame_provider(pipeline_id)``: ``(key, frame, boxes)`` or None (see the package doc).
FrameProvider = Callable[[str], FrameView | None]

MAX_BODY_BYTES = 64 * 1024
MAX_LINE_BYTES = 8190
MAX_FIELD_BYTES = 8190
MAX_HEADERS = 64
HEAD_TIMEOUT_S = 10.0
KEEPALIVE_TIMEOUT_S = 75.0
TLS_HANDSHAKE_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 64
#: How often the slow-client sweep looks (only while connections are open).
SWEEP_INTERVAL_S = 1.0
#: At most this long for open requests to finish when the server closes.
SHUTDOWN_TIMEOUT_S = 1.0


class WebServer:
    """The node's web server; see the module docstring and ``edge_runtime.web``."""

    def __init__(self, config: WebConfig, *, node: str,
                 status_provider: Callable[[], dict[str, Any]],
                 frame_provider: FrameProvider, reload: Callable[[], None] | None = None,
                 token_path: Path | None = None, cert_path: Path | None = None,
                 key_path: Path | None = None, events_path: Path | None = None,
                 snapshot_dir: Path | None = None) -> None:
        self.config = config
        self.node = node
        self.host, self.port = parse_listen(config.listen)
        self.loopback = is_loopback(self.host)
        if not self.loopback and (cert_path is None or key_path is None):
            raise WebConfigError(
                f"web.listen = {config.listen!r} is not a loopback address, and a page "
                "reachable from the network must be served over HTTPS",
                hint="set web.tls_cert and web.tls_key (PEM files), or listen on "
                     "127.0.0.1 and reach it through an SSH tunnel")
        if (cert_path is None) != (key_path is None):
            raise WebConfigError("web.tls_cert and web.tls_key go together",
                                 hint="set both, or neither")
        self.status_provider = status_provider
        self.reload = reload if config.actions else None
        self.token_path = token_path
        self.cert_path, self.key_path = cert_path, key_path
        self.snapshot_dir = snapshot_dir
        self.events = EventTail(events_path)
        self.history = History(config.chart_interval_s)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="web")
        self.jpegs = JpegCache(frame_provider, self.pool)
        self.guard: Guard | None = None
        #: The Prometheus registry (private to this server) and the static files read.
        self.registry: CollectorRegistry | None = None
        self.static_cache: dict[str, bytes] = {}
        self.listener = GuardedListener(
            max_connections=MAX_CONNECTIONS, head_timeout_s=HEAD_TIMEOUT_S,
            keepalive_timeout_s=KEEPALIVE_TIMEOUT_S,
            tls_handshake_timeout_s=TLS_HANDSHAKE_TIMEOUT_S,
            shutdown_timeout_s=SHUTDOWN_TIMEOUT_S, sweep_interval_s=SWEEP_INTERVAL_S,
            backlog=64, max_line_bytes=MAX_LINE_BYTES, max_field_bytes=MAX_FIELD_BYTES,
            max_headers=MAX_HEADERS, name="web")
        self.started_unix_s = time.time()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    @property
    def refused_connections(self) -> int:
        """Connections closed at once because the cap was reached."""
        return self.listener.refused_connections

    @property
    def slow_clients_dropped(self) -> int:
        """Connections dropped because their request head was too slow."""
        return self.listener.slow_heads_dropped

    @property
    def scheme(self) -> str:
        return "https" if self.cert_path is not None else "http"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/"

    async def start(self) -> None:
        """Listen; raises :class:`WebStartError` / :class:`WebConfigError`."""
        loop = asyncio.get_running_loop()
        # Import aiohttp's app and prometheus_client off the loop: the latter reads /proc
        # as it is imported (its global registry's process collector, which we never use).
        await loop.run_in_executor(self.pool, importlib.import_module, "edge_runtime.web.app")
        from edge_runtime.web.app import build_app
        from edge_runtime.web.metrics import make_registry

        try:
            token: str | None = None
            if not self.loopback:
                assert self.token_path is not None
                token, created = await loop.run_in_executor(self.pool, load_or_create_token,
                                                            self.token_path)
                if created:
                    log.warning("web: created a token in %s; 'edge-runtime web token' prints "
                                "it and the link to open", self.token_path)
            self.guard = Guard(token=token, required=not self.loopback)
            ssl_ctx = await loop.run_in_executor(self.pool, self._ssl_context)
            self.registry = make_registry(self.status_provider)
            app = build_app(self)
            try:
                await self.listener.start(app, host=self.host, port=self.port,
                                          ssl_context=ssl_ctx)
            except OSError as exc:
                raise WebStartError(f"the web server cannot listen on {self.config.listen}: "
                                    f"{exc.strerror or exc}") from exc
            self.port = self.listener.port
        except BaseException:
            await self.close()
            raise
        self._tasks = [asyncio.create_task(self._sample_history(), name="web-chart")]
        log.info("web page at %s%s", self.url,
                 "" if self.loopback else " (token required; 'edge-runtime web token')")

    def _ssl_context(self) -> ssl.SSLContext | None:
        """Blocking: the server's TLS context (loads the PEM files)."""
        if self.cert_path is None or self.key_path is None:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(self.cert_path, self.key_path)
        except (OSError, ssl.SSLError) as exc:
            raise WebStartError(f"cannot load web.tls_cert {self.cert_path} / web.tls_key "
                                f"{self.key_path}: {exc}",
                                hint="give a PEM certificate chain and its private key") \
                from exc
        return ctx

    async def _sample_history(self) -> None:
        """One chart point per pipeline every ``chart_interval_s``."""
        while True:
            try:
                self.history.add(time.time(), self.status_provider().get("pipelines") or {})
            except Exception as exc:  # the page must not take the daemon down
                log.warning("web: status for the chart failed: %s", exc)
            await asyncio.sleep(self.history.interval_s)

    async def close(self) -> None:
        """Stop listening, end open requests (bounded), join the private thread."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.listener.close()
        await asyncio.get_running_loop().run_in_executor(None, self.pool.shutdown, True)
