"""The node's operator surfaces: a local web page, a JSON status and Prometheus metrics.

A library in the sense of docs/architecture.md: it knows nothing of pipelines. The
daemon hands it plain callables (see :class:`~edge_runtime.web.server.WebServer`):

- ``status_provider()``: the daemon's status dict (called on the loop; must be cheap);
- ``frame_provider(pipeline_id)``: ``(key, frame, boxes)`` of a camera pipeline's latest
  frame (``key`` changes with each new frame; ``boxes`` as ``(x0, y0, x1, y1, label,
  score)`` in pixels), or None;
- ``reload()``: ask for a config reload (only with ``[web] actions = true``).

Modules: ``server.py`` (listening, TLS, the limits that make bad clients cheap),
``app.py`` (routes), ``auth.py`` (token, session cookie, CSRF, same-origin checks),
``metrics.py`` (a Prometheus collector over the status dict), ``live.py`` (the chart's
ring of points, the JPEG cache, the recent events), ``static/`` (one page, no build
step, nothing from the internet).

Importing this package imports nothing heavy: aiohttp and prometheus_client are
imported by :func:`start_web` when a server starts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_runtime.config import Config
    from edge_runtime.web.server import FrameProvider, WebServer


async def start_web(config: Config, *, status_provider: Callable[[], dict[str, Any]],
                    frame_provider: FrameProvider,
                    reload: Callable[[], None] | None = None) -> WebServer | None:
    """Start the web server of ``config.web`` (None when it is not enabled).

    Raises :class:`~edge_runtime.errors.WebError` when it must not or cannot start.
    """
    if not config.web.enabled:
        return None
    import asyncio

    from edge_runtime.web.server import WebServer

    # Resolving paths reads the filesystem (symlinks): not on the loop.
    paths = await asyncio.get_running_loop().run_in_executor(None, web_paths, config)
    server = WebServer(config.web, node=config.node.name, status_provider=status_provider,
                       frame_provider=frame_provider, reload=reload, **paths)
    await server.start()
    return server


def web_paths(config: Config) -> dict[str, Path | None]:
    """Blocking (resolves paths): the token file, TLS files, the upstream event log and
    snapshot folder the web server reads (None where there is none)."""
    web, up = config.web, config.upstream
    return {
        "token_path": config.state_path(web.token_file),
        "cert_path": config.resolve(web.tls_cert) if web.tls_cert else None,
        "key_path": config.resolve(web.tls_key) if web.tls_key else None,
        "events_path": config.event_log_path if up.enabled and up.file.enabled else None,
        "snapshot_dir": config.state_path(up.snapshots.path) if up.enabled else None,
    }
