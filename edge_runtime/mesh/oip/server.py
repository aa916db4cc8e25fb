"""An Open Inference Protocol (KServe v2) server over HTTP/1.1, on aiohttp.

Endpoints (docs/mesh.md): ``GET /v2/health/live``, ``/v2/health/ready``, ``/v2`` (server
metadata), ``/v2/models/{name}[/versions/{v}]`` (model metadata),
``/v2/models/{name}[/versions/{v}]/ready`` and ``POST .../infer`` with JSON or binary
tensors (Triton's binary tensor data extension). Models come from a
:class:`ModelProvider`, so the daemon or ``edge-runtime serve`` decides which.

Limits, each cheap for the server:

- a body over ``max_body_bytes`` is a 413, refused from its ``Content-Length`` before a
  byte of it is read (a chunked body is cut at the limit);
- a body not received within ``body_timeout_s`` is a 408 and the connection is closed;
  a request head not complete within :data:`HEAD_TIMEOUT_S` is dropped (:class:`OipServer`);
- per peer (its certificate's common name under mutual TLS, else its address) at most
  ``max_concurrency_per_peer`` inferences run and ``queue_limit`` more wait; one more is
  a 429 with ``Retry-After`` (seconds), before its body is read;
- a deadline per request: the ``X-Deadline-Ms`` header (milliseconds from the request's
  arrival) or Triton's ``parameters.timeout`` (microseconds), whichever is sooner; a
  request still waiting at its deadline is not run: 504.

Errors are ``{"error": message}`` with 400 (bad request), 404 (unknown model or
version), 408, 413, 429, 503 (model failed to load), 504 or 500.

Threads: handlers run on the loop and only coordinate. Decoding, inference and
encoding run in the app's executor (``executor=``, else a private pool joined on
cleanup); a :class:`ModelProvider`'s ``load`` runs there too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
import numpy as np
from aiohttp import web

from edge_runtime.errors import EdgeRuntimeError, InputError, ModelError, PeerProtocolError
from edge_runtime.listener import GuardedConnection, GuardedListener
from edge_runtime.mesh.oip import codec
from edge_runtime.mesh.tls_reload import FollowingContext, ReloadingTls, peer_serial
from edge_runtime.models.types import TensorSpec

log = logging.getLogger(__name__)

#: The one version every model is served as.
MODEL_VERSION = "1"
#: Request header: the request's budget in milliseconds from its arrival.
DEADLINE_HEADER = "X-Deadline-Ms"
#: Request header echoed on the answer (the JSON ``id`` is echoed too).
REQUEST_ID_HEADER = "X-Request-Id"
#: Requests admitted at the server (running or waiting) when an answer left it.
QUEUE_HEADER = "X-Queue-Depth"
#: A request head not complete within this long is dropped (slowloris).
HEAD_TIMEOUT_S = 10.0
KEEPALIVE_TIMEOUT_S = 75.0
TLS_HANDSHAKE_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 128
SWEEP_INTERVAL_S = 1.0
SHUTDOWN_TIMEOUT_S = 2.0
#: The longest deadline a request may ask for (ms): a bounded wait.
MAX_DEADLINE_MS = 600_000.0
EXTENSIONS = ["binary_tensor_data"]


class ServedModel(Protocol):
    """One model a server runs. ``inputs``/``outputs`` are read on the loop; ``run`` is
    called in the server's executor, possibly from several threads at once, with arrays
    already decoded, and returns arrays by output name."""

    @property
    def inputs(self) -> Sequence[TensorSpec]: ...

    @property
    def outputs(self) -> Sequence[TensorSpec]: ...

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class ModelProvider(Protocol):
    """Which models a server offers, loaded on demand.

    ``names`` and ``loaded`` run on the loop and must not block; ``load`` runs in the
    server's executor (it may read files and take seconds), must cache, and raises a
    :class:`~edge_runtime.errors.ModelError` for a model that cannot be loaded."""

    def names(self) -> Sequence[str]: ...

    def loaded(self, name: str) -> ServedModel | None: ...

    def load(self, name: str) -> ServedModel: ...


class DictModels:
    """A :class:`ModelProvider` over models already loaded (tests, benchmarks)."""

    def __init__(self, models: Mapping[str, ServedModel]) -> None:
        self._models = dict(models)

    def names(self) -> Sequence[str]:
        return list(self._models)

    def loaded(self, name: str) -> ServedModel | None:
        return self._models.get(name)

    def load(self, name: str) -> ServedModel:
        return self._models[name]


@dataclass(slots=True)
class _Peer:
    """Admission state of one peer: requests admitted (running or waiting), and the
    semaphore that caps those running."""

    sem: asyncio.Semaphore
    in_flight: int = 0


@dataclass(slots=True)
class ServerStats:
    """Counters a status page or a test reads."""

    requests: int = 0
    inferences: int = 0
    busy: int = 0
    deadline_expired: int = 0
    too_large: int = 0
    bad_requests: int = 0
    slow_bodies: int = 0
    #: Smoothed time one inference takes here (s): what Retry-After is estimated from.
    service_s: float = 0.01
    #: Peer -> its admission state (dropped when idle).
    peers: dict[str, _Peer] = field(default_factory=dict)


#: The app's :class:`ServerStats`.
STATS = web.AppKey("oip_stats", ServerStats)


class _AnswerError(Exception):
    """An error answer: HTTP status and message (internal to the handlers)."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None
                 ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def _error(status: int, message: str, headers: Mapping[str, str] | None = None
           ) -> web.Response:
    return web.Response(status=status, body=msgspec.json.encode({"error": message}),
                        content_type="application/json", headers=headers)


def peer_name(request: web.BaseRequest) -> str:
    """Who is asking: the TLS client certificate's common name, else the address."""
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport is not None else None
    if cert:
        for rdn in cert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return f"cn:{value}"
    return f"ip:{request.remote}"


def make_app(models: ModelProvider, *, max_body_bytes: int = 64 << 20,
             max_concurrency_per_peer: int = 2, queue_limit: int = 8,
             body_timeout_s: float = 30.0, default_deadline_ms: float | None = None,
             executor: Executor | None = None, workers: int = 2,
             server_name: str = "edge-runtime", server_version: str = "",
             on_served: Callable[[str, str, float, int], None] | None = None
             ) -> web.Application:
    """The aiohttp application serving ``models``; see the module docstring.

    ``max_body_bytes``: largest request body; ``max_concurrency_per_peer``: inferences
    one peer may have running; ``queue_limit``: more it may have waiting;
    ``body_timeout_s``: time to receive a body; ``default_deadline_ms``: the deadline of
    a request that names none (None: no deadline); ``executor`` runs decoding, inference
    and model loads (default: a private pool of ``workers`` threads, joined on cleanup).
    ``on_served(peer, model, compute_s, bytes_total)`` is called on the loop after each
    inference answered (must not block): the node's books of work done for peers.
    Every answer carries ``X-Queue-Depth``: the requests admitted here (running or
    waiting, every peer's) once it is sent, the load a caller's scheduler plans with.
    """
    if max_body_bytes < 1024:
        raise ValueError(f"max_body_bytes must be at least 1024, got {max_body_bytes}")
    if max_concurrency_per_peer < 1 or queue_limit < 0:
        raise ValueError("max_concurrency_per_peer must be at least 1 and queue_limit at "
                         f"least 0, got {max_concurrency_per_peer} and {queue_limit}")
    app = web.Application(client_max_size=max_body_bytes)
    stats = ServerStats()
    own_pool = executor is None
    pool: Executor = executor or ThreadPoolExecutor(max_workers=workers,
                                                    thread_name_prefix="oip")
    load_locks: dict[str, asyncio.Lock] = {}
    app[STATS] = stats

    async def model_for(name: str) -> ServedModel:
        if name not in models.names():
            raise _AnswerError(404, f"unknown model {name!r} (served: "
                               f"{', '.join(models.names()) or 'none'})")
        found = models.loaded(name)
        if found is not None:
            return found
        lock = load_locks.setdefault(name, asyncio.Lock())
        async with lock:
            try:
                return await asyncio.get_running_loop().run_in_executor(
                    pool, models.load, name)
            except EdgeRuntimeError as exc:
                log.warning("oip: model %s cannot be loaded: %s", name, exc)
                raise _AnswerError(503, f"model {name!r} cannot be loaded: {exc}") from exc

    def check_version(request: web.Request) -> None:
        version = request.match_info.get("version")
        if version is not None and version != MODEL_VERSION:
            raise _AnswerError(404, f"model {request.match_info['name']!r} has no version "
                               f"{version!r} (only {MODEL_VERSION!r})")

    @web.middleware
    async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
        stats.requests += 1
        try:
            response: web.StreamResponse = await handler(request)
        except _AnswerError as answer:
            response = _error(answer.status, answer.message, answer.headers)
        except web.HTTPException as exc:
            if exc.status == 413:
                stats.too_large += 1
            response = _error(exc.status, exc.reason)
        rid = request.headers.get(REQUEST_ID_HEADER)
        if rid is not None and not response.prepared:
            response.headers[REQUEST_ID_HEADER] = rid[:256]
        return response

    app.middlewares.append(errors)

    async def live(request: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"ready": True})

    async def server_metadata(request: web.Request) -> web.Response:
        return web.json_response({"name": server_name, "version": server_version,
                                  "extensions": EXTENSIONS})

    async def model_metadata(request: web.Request) -> web.Response:
        check_version(request)
        name = request.match_info["name"]
        model = await model_for(name)
        return web.json_response({
            "name": name, "versions": [MODEL_VERSION], "platform": "edge-runtime",
            "inputs": [_spec_metadata(s) for s in model.inputs],
            "outputs": [_spec_metadata(s) for s in model.outputs]})

    async def model_ready(request: web.Request) -> web.Response:
        check_version(request)
        await model_for(request.match_info["name"])
        return web.json_response({"name": request.match_info["name"], "ready": True})

    async def infer(request: web.Request) -> web.Response:
        arrival_s = time.monotonic()
        check_version(request)
        name = request.match_info["name"]
        deadline_s = _deadline(request.headers.get(DEADLINE_HEADER), default_deadline_ms,
                               arrival_s)
        length = request.content_length
        if length is not None and length > max_body_bytes:
            stats.too_large += 1
            response = _error(413, f"the body of {length} bytes is over this server's "
                                   f"limit of {max_body_bytes}")
            return await _send_and_close(request, response)  # never read what was refused
        model = await model_for(name)
        who = peer_name(request)
        peer = stats.peers.get(who)
        if peer is None:
            peer = stats.peers[who] = _Peer(asyncio.Semaphore(max_concurrency_per_peer))
        if peer.in_flight >= max_concurrency_per_peer + queue_limit:
            stats.busy += 1
            # Whole seconds (HTTP's unit), at least 1: when this peer's queue should
            # have drained at the current service time.
            retry_s = min(600, max(1, math.ceil(
                peer.in_flight / max_concurrency_per_peer * stats.service_s)))
            response = _error(429, f"{peer.in_flight} requests of yours are running or "
                                   "queued here; retry later",
                              {"Retry-After": str(retry_s)})
            return await _send_and_close(request, response)
        peer.in_flight += 1
        try:
            try:
                async with asyncio.timeout(body_timeout_s):
                    body = await request.read()
                received_s = time.monotonic()
            except TimeoutError:
                stats.slow_bodies += 1
                response = _error(408, f"the body did not arrive within {body_timeout_s} s")
                return await _send_and_close(request, response)
            try:
                async with asyncio.timeout_at(_loop_time(deadline_s)):
                    await peer.sem.acquire()
            except TimeoutError:
                stats.deadline_expired += 1
                raise _AnswerError(504, "the request's deadline passed while it waited in the "
                                   "queue; it was not run") from None
            try:
                if deadline_s is not None and time.monotonic() >= deadline_s:
                    stats.deadline_expired += 1
                    raise _AnswerError(504, "the request's deadline passed before it could run")
                result = await asyncio.get_running_loop().run_in_executor(
                    pool, _infer_blocking, model, name, body,
                    request.headers.get(codec.HEADER_LENGTH), (arrival_s, received_s))
            finally:
                peer.sem.release()
        finally:
            peer.in_flight -= 1
            if peer.in_flight == 0:
                stats.peers.pop(who, None)
        status, payload, header_length, compute_s, work_s, queue_s = result
        if status != 200:
            stats.bad_requests += 1
            return web.Response(status=status, body=payload, content_type="application/json")
        stats.inferences += 1
        stats.service_s += 0.1 * (time.monotonic() - arrival_s - stats.service_s)
        if on_served is not None:
            on_served(who, name, compute_s, len(body) + len(payload))
        # infer: the model call; work: all this request held a worker for (decoding,
        # checks, model, encoding); queue: its wait from a whole body to a worker.
        headers = {"Server-Timing": f"infer;dur={compute_s * 1e3:.3f}, "
                                    f"work;dur={work_s * 1e3:.3f}, "
                                    f"queue;dur={queue_s * 1e3:.3f}",
                   QUEUE_HEADER: str(sum(p.in_flight for p in stats.peers.values()))}
        if header_length is not None:
            headers[codec.HEADER_LENGTH] = str(header_length)
            return web.Response(body=payload, headers=headers,
                                content_type=codec.BINARY_CONTENT_TYPE)
        return web.Response(body=payload, headers=headers, content_type="application/json")

    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        app.router.add_get(prefix, model_metadata)
        app.router.add_get(prefix + "/ready", model_ready)
        app.router.add_post(prefix + "/infer", infer)
    app.router.add_get("/v2/health/live", live)
    app.router.add_get("/v2/health/ready", ready)
    app.router.add_get("/v2", server_metadata)

    async def cleanup(_app: web.Application) -> None:
        if own_pool:
            assert isinstance(pool, ThreadPoolExecutor)
            await asyncio.get_running_loop().run_in_executor(None, pool.shutdown, True)

    app.on_cleanup.append(cleanup)
    return app


async def _send_and_close(request: web.Request, response: web.Response) -> web.Response:
    """Answer, then close the connection: the rest of the body is never read (aiohttp
    would otherwise keep the connection open to drain it)."""
    rid = request.headers.get(REQUEST_ID_HEADER)
    if rid is not None:
        response.headers[REQUEST_ID_HEADER] = rid[:256]
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    if request.transport is not None:
        request.transport.close()
    return response


def _loop_time(deadline_s: float | None) -> float | None:
    if deadline_s is None:
        return None
    return asyncio.get_running_loop().time() + (deadline_s - time.monotonic())


def _deadline(header: str | None, default_ms: float | None, arrival_s: float
              ) -> float | None:
    """Monotonic deadline of a request from its header (or the default); 400 when bad."""
    if header is None:
        return None if default_ms is None else arrival_s + default_ms / 1e3
    try:
        ms = float(header)
    except ValueError:
        ms = math.nan
    if not 0 < ms <= MAX_DEADLINE_MS:
        raise _AnswerError(400, f"{DEADLINE_HEADER} must be milliseconds in (0, "
                           f"{MAX_DEADLINE_MS:.0f}], got {header[:40]!r}")
    return arrival_s + ms / 1e3


def _spec_metadata(spec: TensorSpec) -> dict[str, Any]:
    # Extensions under "parameters" (Triton's clients ignore them): the layout, and the
    # quantization a peer that runs the model raw needs to (de)quantize as we would.
    extra: dict[str, Any] = {}
    if spec.layout is not None:
        extra["layout"] = spec.layout
    if spec.quant is not None:
        extra |= {"quant_scale": list(spec.quant.scale),
                  "quant_zero_point": list(spec.quant.zero_point)}
        if spec.quant.axis is not None:
            extra["quant_axis"] = spec.quant.axis
    return codec.tensor_metadata(spec.name, spec.dtype, spec.shape, extra)


def _infer_blocking(model: ServedModel, name: str, body: bytes, header_length: str | None,
                    times: tuple[float, float]
                    ) -> tuple[int, bytes, int | None, float, float, float]:
    """Decode, check, run, encode (in the executor). ``times``: when the request arrived
    and when its body was in (monotonic). Returns status, body, the JSON header's length
    for a binary answer, the model's own compute time, the whole time in here, and the
    wait since the body was received."""
    arrival_s, received_s = times
    began = time.perf_counter()
    queue_s = max(0.0, time.monotonic() - received_s)
    status, payload, header_len, compute_s = _infer_work(model, name, body, header_length,
                                                         arrival_s)
    return status, payload, header_len, compute_s, time.perf_counter() - began, queue_s


def _infer_work(model: ServedModel, name: str, body: bytes, header_length: str | None,
                arrival_s: float) -> tuple[int, bytes, int | None, float]:
    try:
        header, tail = codec.split_body(body, header_length)
        decoded = codec.decode_tensors(header, tail, "inputs")
        rid = header.get("id")
        params = header.get("parameters") or {}
        if not isinstance(params, dict):
            raise PeerProtocolError("parameters must be an object")
        timeout_us = params.get("timeout")
        if timeout_us is not None:
            if type(timeout_us) is not int or timeout_us <= 0:
                raise PeerProtocolError("parameters.timeout must be a positive integer "
                                        "(microseconds)")
            if time.monotonic() > arrival_s + timeout_us / 1e6:
                return 504, msgspec.json.encode({"error": "the request's timeout passed "
                                                 "before it could run"}), None, 0.0
        binary_all = params.get("binary_data_output", False) is True
        wanted = _requested_outputs(header, model, binary_all)
        inputs = _checked_inputs(decoded.tensors, model)
        start = time.perf_counter()
        outputs = model.run(inputs)
        compute_s = time.perf_counter() - start
        chosen = {n: np.asarray(outputs[n]) for n in wanted}
        answer: dict[str, Any] = {"model_name": name, "model_version": MODEL_VERSION}
        if rid is not None:
            answer["id"] = str(rid)[:256]
        payload, header_len = codec.encode_tensors(answer, "outputs", chosen, wanted)
        return 200, payload, header_len, compute_s
    except (PeerProtocolError, InputError) as exc:
        return 400, msgspec.json.encode({"error": str(exc)}), None, 0.0
    except ModelError as exc:
        log.warning("oip: %s failed: %s", name, exc)
        return 500, msgspec.json.encode({"error": f"model {name!r} failed: {exc}"}), None, 0.0


def _requested_outputs(header: dict[str, Any], model: ServedModel, binary_all: bool
                       ) -> dict[str, bool]:
    """Output name -> as binary, for the outputs the request asks for (all by default)."""
    known = [s.name for s in model.outputs]
    requested = header.get("outputs")
    if requested is None:
        return dict.fromkeys(known, binary_all)
    if not isinstance(requested, list):
        raise PeerProtocolError("outputs must be a list")
    wanted: dict[str, bool] = {}
    for i, entry in enumerate(requested):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise PeerProtocolError(f"outputs[{i}] needs a name")
        out_name = entry["name"]
        if out_name not in known:
            raise PeerProtocolError(f"outputs[{i}]: the model has no output {out_name!r} "
                                    f"(its outputs: {', '.join(known)})")
        params = entry.get("parameters") or {}
        if not isinstance(params, dict):
            raise PeerProtocolError(f"outputs[{i}].parameters must be an object")
        if "classification" in params:
            raise PeerProtocolError("the classification extension is not supported; "
                                    "ask for the raw output")
        wanted[out_name] = params.get("binary_data", binary_all) is True
    return wanted


def _checked_inputs(tensors: dict[str, np.ndarray], model: ServedModel
                    ) -> dict[str, np.ndarray]:
    names = [s.name for s in model.inputs]
    unknown = [n for n in tensors if n not in names]
    if unknown:
        raise PeerProtocolError(f"unknown input {unknown[0]!r} (the model's inputs: "
                                f"{', '.join(names)})")
    missing = [n for n in names if n not in tensors]
    if missing:
        raise PeerProtocolError(f"missing input {missing[0]!r}")
    return tensors


# --- listening --------------------------------------------------------------------------


class OipServer:
    """Listens for :func:`make_app`'s application: TLS (mutual when the context asks for
    client certificates), a connection cap, a head timeout (the shared
    :class:`~edge_runtime.listener.GuardedListener`). Runs on the loop that calls
    :meth:`start`; :meth:`close` ends everything it started.

    Given a :class:`~edge_runtime.mesh.tls_reload.FollowingContext` (``mesh_plan``'s
    ``server_ssl``), it looks at the TLS files every ``poll_interval_s`` (in a thread);
    after a reload, new handshakes use the new files and the open connections of peers
    the new CRL refuses are closed (a request running on one finishes first)."""

    def __init__(self, app: web.Application, *, host: str, port: int,
                 ssl_context: ssl.SSLContext | None) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.listener = GuardedListener(
            max_connections=MAX_CONNECTIONS, head_timeout_s=HEAD_TIMEOUT_S,
            keepalive_timeout_s=KEEPALIVE_TIMEOUT_S,
            tls_handshake_timeout_s=TLS_HANDSHAKE_TIMEOUT_S,
            shutdown_timeout_s=SHUTDOWN_TIMEOUT_S, sweep_interval_s=SWEEP_INTERVAL_S,
            backlog=128, name="oip")
        #: Open connections closed because a reloaded CRL refuses their peer.
        self.revoked_connections_closed = 0
        self._tls_follower: asyncio.Task[None] | None = None

    @property
    def stats(self) -> ServerStats:
        """The application's counters."""
        return self.app[STATS]

    @property
    def connections(self) -> dict[asyncio.Transport, GuardedConnection]:
        """The open connections, by transport."""
        return self.listener.connections

    @property
    def refused_connections(self) -> int:
        """Connections closed at once because the cap was reached."""
        return self.listener.refused_connections

    @property
    def slow_heads_dropped(self) -> int:
        """Connections dropped because their request head was too slow."""
        return self.listener.slow_heads_dropped

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.ssl_context else 'http'}://{host}:{self.port}"

    async def start(self) -> None:
        """Listen (raises OSError when the address cannot be bound)."""
        self.app.middlewares.insert(0, self.listener.mark_busy)
        await self.listener.start(self.app, host=self.host, port=self.port,
                                  ssl_context=self.ssl_context)
        self.port = self.listener.port
        if isinstance(self.ssl_context, FollowingContext):
            self._tls_follower = asyncio.create_task(
                self._follow_tls(self.ssl_context.reloader), name="oip-tls-reload")

    async def _follow_tls(self, tls: ReloadingTls) -> None:
        """Poll the TLS files; after each reload, close the connections of peers the new
        list refuses (idle ones at once, busy ones after their request)."""
        seen = tls.generation
        while True:
            await asyncio.sleep(tls.poll_interval_s)
            await tls.async_refresh(force=True)
            if tls.generation == seen:
                continue
            seen = tls.generation
            refused = [guard for transport, guard in list(self.connections.items())
                       if not tls.admits(peer_serial(transport.get_extra_info("peercert")))]
            for guard in refused:
                guard.close_gracefully()
            self.revoked_connections_closed += len(refused)
            if refused:
                log.info("oip: closed %d connection(s) of peers the new TLS files refuse",
                         len(refused))

    async def close(self) -> None:
        """Stop listening, end open requests (bounded), run the app's cleanup."""
        if self._tls_follower is not None:
            self._tls_follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tls_follower
        await self.listener.close()
