"""Routes of the node's web server (all read-only unless ``[web] actions = true``).

=============================  ==========================================================
``GET /``                      the page (``/?token=TOKEN`` logs a browser in: cookie, 303)
``GET /static/app.js|app.css``  its script and style
``GET /api/status?since=T``    the daemon's status, chart points newer than ``T`` (Unix
                               s), the camera pipelines, this session's CSRF token
``GET /api/events``            recent events (upstream file sink), newest first
``GET /api/frame/NAME.jpg``    a camera pipeline's latest frame with its boxes
``GET /api/snapshot/FILE``     an event's snapshot JPEG
``GET /metrics``               Prometheus text format
``POST /api/actions/reload``   reload the config (actions only; same-origin + CSRF)
=============================  ==========================================================
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from edge_runtime.web.auth import CSRF_HEADER, SESSION_COOKIE, host_allowed
from edge_runtime.web.metrics import render
from edge_runtime.web.server import MAX_BODY_BYTES, WebServer

#: Static files served, with their content types (nothing else under /static/).
STATIC = {"index.html": "text/html; charset=utf-8",
          "app.js": "text/javascript; charset=utf-8",
          "app.css": "text/css; charset=utf-8"}
SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.jpg$")
#: The page's own resources only: no CDN, no inline script, no framing.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SERVER_KEY = web.AppKey("server", WebServer)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _srv(request: web.Request) -> WebServer:
    return request.app[SERVER_KEY]


def _json(data: Any, status: int = 200) -> web.Response:
    body = msgspec.json.encode(data, enc_hook=str)
    return web.Response(body=body, status=status, content_type="application/json")


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Host check, authentication, and the headers every answer carries."""
    server = _srv(request)
    guard = server.guard
    assert guard is not None
    if not host_allowed(request.headers.get("Host"), required=guard.required,
                        listen_host=server.host):
        return web.Response(status=421, text="this node answers to its loopback names only")
    login = request.path == "/" and "token" in request.query
    if not login and not guard.authenticated(request.headers.get("Authorization"),
                                             request.cookies.get(SESSION_COOKIE)):
        response: web.StreamResponse = web.Response(
            status=401, headers={"WWW-Authenticate": 'Bearer realm="edge-runtime"'},
            text="401: this node needs its token. On the node, 'edge-runtime web token "
                 "CONFIG' prints the link to open (or send 'Authorization: Bearer TOKEN').\n")
    else:
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # 404s and the like: a plain answer
            response = web.Response(status=exc.status, reason=exc.reason, text=exc.text)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Content-Security-Policy"] = CSP
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _set_session(server: WebServer, response: web.StreamResponse) -> None:
    assert server.guard is not None
    response.set_cookie(SESSION_COOKIE, server.guard.new_session(), httponly=True,
                        samesite="Strict", secure=server.scheme == "https", path="/")


async def _static(server: WebServer, name: str) -> bytes:
    """The bytes of a static file (read once, in the server's thread)."""
    cache = server.static_cache
    if name not in cache:
        def read() -> bytes:
            return (resources.files("edge_runtime.web") / "static" / name).read_bytes()

        cache[name] = await asyncio.get_running_loop().run_in_executor(server.pool, read)
    return cache[name]


async def index(request: web.Request) -> web.StreamResponse:
    server = _srv(request)
    guard = server.guard
    assert guard is not None
    if "token" in request.query:
        if guard.required and not guard.token_ok(request.query["token"]):
            return web.Response(status=401, text="401: that token is not this node's.\n")
        response: web.StreamResponse = web.Response(status=303, headers={"Location": "/"})
        _set_session(server, response)
        return response
    response = web.Response(body=await _static(server, "index.html"),
                            content_type="text/html", charset="utf-8")
    if guard.session_id(request.cookies.get(SESSION_COOKIE)) is None:
        _set_session(server, response)
    return response


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in STATIC or name == "index.html":
        raise web.HTTPNotFound()
    body = await _static(_srv(request), name)
    return web.Response(body=body, headers={"Content-Type": STATIC[name],
                                            "Cache-Control": "no-cache"})


def _frame_pipelines(server: WebServer, pipelines: dict[str, Any]) -> list[str]:
    frames = server.jpegs
    return [name for name in pipelines if frames.has_frame(name)]


async def api_status(request: web.Request) -> web.StreamResponse:
    server = _srv(request)
    guard = server.guard
    assert guard is not None
    try:
        since = float(request.query.get("since", "0"))
    except ValueError:
        since = 0.0
    status = server.status_provider()
    sid = guard.session_id(request.cookies.get(SESSION_COOKIE))
    return _json({
        "status": status,
        "now_unix_s": time.time(),
        "web": {"started_unix_s": server.started_unix_s, "actions": server.reload is not None,
                "csrf": guard.csrf_token(sid) if sid is not None else None,
                "chart_interval_s": server.history.interval_s,
                "chart_span_s": server.history.maxlen * server.history.interval_s},
        "chart": {"what": server.history.what, "points": server.history.since(since)},
        "cameras": _frame_pipelines(server, status.get("pipelines") or {}),
    })


async def api_events(request: web.Request) -> web.StreamResponse:
    server = _srv(request)
    events = await asyncio.get_running_loop().run_in_executor(server.pool, server.events.read)
    return _json({"events": events, "source": str(server.events.path)
                  if server.events.path is not None else None})


async def api_frame(request: web.Request) -> web.StreamResponse:
    server = _srv(request)
    got = await server.jpegs.get(request.match_info["pipeline"])
    if got is None:
        raise web.HTTPNotFound(text="no frame from that pipeline (yet)")
    key, data = got
    return web.Response(body=data, content_type="image/jpeg",
                        headers={"X-Frame-Key": repr(key)})


async def api_snapshot(request: web.Request) -> web.StreamResponse:
    server = _srv(request)
    name = request.match_info["name"]
    folder = server.snapshot_dir
    if folder is None or not SNAPSHOT_NAME.match(name):
        raise web.HTTPNotFound()

    def read() -> bytes | None:
        try:
            return (Path(folder) / name).read_bytes()
        except OSError:
            return None

    data = await asyncio.get_running_loop().run_in_executor(server.pool, read)
    if data is None:
        raise web.HTTPNotFound(text="that snapshot is gone (the folder's byte cap)")
    return web.Response(body=data, content_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=3600"})


async def metrics(request: web.Request) -> web.StreamResponse:
    server = _srv(request)
    assert server.registry is not None
    body, content_type = render(server.registry)
    return web.Response(body=body, headers={"Content-Type": content_type})


async def reload_action(request: web.Request) -> web.StreamResponse:
    server = _srv(request)
    guard = server.guard
    assert guard is not None and server.reload is not None
    refused = guard.may_act(cookie=request.cookies.get(SESSION_COOKIE),
                            csrf=request.headers.get(CSRF_HEADER),
                            origin=request.headers.get("Origin"),
                            fetch_site=request.headers.get("Sec-Fetch-Site"),
                            own_origin=f"{server.scheme}://{request.host}")
    if refused is not None:
        return _json({"ok": False, "error": refused}, status=403)
    server.reload()
    return _json({"ok": True, "action": "reload"})


async def no_icon(request: web.Request) -> web.StreamResponse:
    return web.Response(status=204)


def build_app(server: WebServer) -> web.Application:
    """The aiohttp application of ``server``."""
    app = web.Application(middlewares=[_guard], client_max_size=MAX_BODY_BYTES)
    app[SERVER_KEY] = server
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/api/status", api_status)
    app.router.add_get("/api/events", api_events)
    app.router.add_get("/api/frame/{pipeline}.jpg", api_frame)
    app.router.add_get("/api/snapshot/{name}", api_snapshot)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/favicon.ico", no_icon)
    if server.reload is not None:
        app.router.add_post("/api/actions/reload", reload_action)
    return app
