"""An async Open Inference Protocol (KServe v2) client on aiohttp; talks to
``edge-runtime serve`` and to Triton.

Every failure is a :class:`~edge_runtime.errors.MeshError` raised ``from`` its cause:
:class:`~edge_runtime.errors.PeerBusyError` (429, with the peer's ``Retry-After``),
:class:`~edge_runtime.errors.PeerTimeoutError` (no answer in time, 504, 408),
:class:`~edge_runtime.errors.PeerTlsError` (handshake refused either way),
:class:`~edge_runtime.errors.PeerUnavailableError` (cannot connect),
:class:`~edge_runtime.errors.PeerRequestError` (another error status, with the peer's
message), :class:`~edge_runtime.errors.PeerProtocolError` (an answer that breaks the
protocol).

Threads: every coroutine runs on the loop that created the client's session. Decoding
a large answer is a memory copy, done on the loop (the answer is bounded by
``max_response_bytes``).
"""

from __future__ import annotations

import asyncio
import math
import ssl as _ssl
import uuid
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import aiohttp
import msgspec
import numpy as np

from edge_runtime.errors import (
    PeerBusyError,
    PeerProtocolError,
    PeerRequestError,
    PeerTimeoutError,
    PeerTlsError,
    PeerUnavailableError,
)
from edge_runtime.mesh.oip import codec
from edge_runtime.mesh.oip.server import DEADLINE_HEADER, QUEUE_HEADER, REQUEST_ID_HEADER
from edge_runtime.mesh.tls_reload import FollowingContext

#: The largest answer read from a peer.
MAX_RESPONSE_BYTES = 256 << 20
#: The wait of a metadata or health call.
DEFAULT_TIMEOUT_S = 10.0


class InferResult(dict[str, np.ndarray]):
    """Outputs by name, plus what the peer said about the request."""

    request_id: str | None = None
    #: The peer's own compute time (its ``Server-Timing`` header), when it gave one.
    server_compute_s: float | None = None
    #: What the request held the peer's worker for (decoding, model, encoding) and its
    #: wait there for a worker (``Server-Timing`` ``work`` and ``queue``), when given.
    server_work_s: float | None = None
    server_queue_s: float | None = None
    #: Requests admitted at the peer when it answered (``X-Queue-Depth``), when given.
    queue_depth: int | None = None
    #: Bytes of the request and answer bodies.
    bytes_total: int = 0


class OipClient:
    """A client for one peer at ``base_url`` (``https://garage:8001``; ``http://`` for a
    plaintext peer or a plain Triton).

    ``ssl``: the TLS context (:func:`edge_runtime.mesh.fleet.client_context` for the
    fleet's mutual TLS; ``mesh_plan``'s ``client_ssl``, a
    :class:`~edge_runtime.mesh.tls_reload.FollowingContext`, also follows its files:
    before a request, at most once per ``poll_interval_s``, the files are looked at in a
    thread, and a connection made under an older context is never reused). ``session``:
    an aiohttp session to share (not closed by :meth:`close`). ``server_hostname``: the
    name the peer's certificate must carry when ``base_url`` names it by address (a peer
    found by mDNS is dialled at its address and checked against its node id). Use it as
    ``async with OipClient(...) as peer:``.
    """

    def __init__(self, base_url: str, *, ssl: _ssl.SSLContext | None = None,
                 session: aiohttp.ClientSession | None = None,
                 max_response_bytes: int = MAX_RESPONSE_BYTES,
                 server_hostname: str | None = None) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got "
                             f"{base_url!r}")
        if base_url.startswith("https://") and ssl is None:
            raise ValueError(f"{base_url} is https: pass ssl= (the fleet's client context)")
        self.base_url = base_url.rstrip("/")
        self._ssl: _ssl.SSLContext | bool = ssl if ssl is not None else False
        self._own_session = session is None
        self._session = session
        self.max_response_bytes = max_response_bytes
        self.server_hostname = server_hostname

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=16, ssl=self._ssl),
                read_bufsize=1 << 18)
        return self._session

    async def close(self) -> None:
        """Close the session this client made (not one it was given)."""
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> OipClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    # -- the calls -------------------------------------------------------------------------

    async def live(self, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
        """True when the peer answers its liveness probe with 200."""
        status, _h, _b = await self._request("GET", "/v2/health/live", timeout_s=timeout_s,
                                             ok_only=False)
        return status == 200

    async def ready(self, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
        """True when the peer says it is ready for inference."""
        status, _h, _b = await self._request("GET", "/v2/health/ready", timeout_s=timeout_s,
                                             ok_only=False)
        return status == 200

    async def server_metadata(self, *, timeout_s: float = DEFAULT_TIMEOUT_S
                              ) -> dict[str, Any]:
        """``{"name", "version", "extensions"}``."""
        return await self._json("GET", "/v2", timeout_s)

    async def model_metadata(self, name: str, *, timeout_s: float = DEFAULT_TIMEOUT_S
                             ) -> dict[str, Any]:
        """``{"name", "versions", "platform", "inputs", "outputs"}`` of one model."""
        meta = await self._json("GET", f"/v2/models/{name}", timeout_s)
        for key in ("inputs", "outputs"):
            if not isinstance(meta.get(key), list):
                raise PeerProtocolError(f"{self.base_url}: metadata of {name!r} has no "
                                        f"list {key!r}")
        return meta

    async def model_ready(self, name: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
        """True when the peer has ``name`` ready (loading it if it loads on demand)."""
        status, _h, _b = await self._request("GET", f"/v2/models/{name}/ready",
                                             timeout_s=timeout_s, ok_only=False)
        return status == 200

    async def infer(self, name: str, inputs: Mapping[str, np.ndarray], *,
                    outputs: Sequence[str] | None = None, binary: bool = True,
                    timeout_s: float = DEFAULT_TIMEOUT_S, request_id: str | None = None
                    ) -> InferResult:
        """Run ``name`` on the peer; outputs by name (all of them unless ``outputs``).

        ``binary``: send and ask for binary tensors (Triton's extension), else JSON.
        ``timeout_s`` bounds the whole call and is sent as the request's deadline, so a
        peer that cannot start it in time does not run it.
        """
        rid = request_id or uuid.uuid4().hex[:16]
        header: dict[str, Any] = {"id": rid}
        if binary:
            header["parameters"] = {"binary_data_output": True}
        if outputs is not None:
            header["outputs"] = [{"name": n, "parameters": {"binary_data": binary}}
                                 for n in outputs]
        arrays = {k: np.asarray(v) for k, v in inputs.items()}
        body, header_length = codec.encode_tensors(header, "inputs", arrays, binary)
        headers = {DEADLINE_HEADER: f"{timeout_s * 1e3:.0f}", REQUEST_ID_HEADER: rid,
                   "Content-Type": codec.BINARY_CONTENT_TYPE if header_length is not None
                   else codec.JSON_CONTENT_TYPE}
        if header_length is not None:
            headers[codec.HEADER_LENGTH] = str(header_length)
        _status, resp_headers, payload = await self._request(
            "POST", f"/v2/models/{name}/infer", timeout_s=timeout_s, data=body,
            headers=headers)
        try:
            answer, tail = codec.split_body(payload, resp_headers.get(codec.HEADER_LENGTH))
            decoded = codec.decode_tensors(answer, tail, "outputs")
        except PeerProtocolError as exc:
            raise PeerProtocolError(f"{self.base_url}: the answer for {name!r} breaks the "
                                    f"protocol: {exc.message}") from exc
        result = InferResult(decoded.tensors)
        result.request_id = answer.get("id")
        timings = server_timings(resp_headers.get("Server-Timing"))
        result.server_compute_s = timings.get("infer")
        result.server_work_s = timings.get("work")
        result.server_queue_s = timings.get("queue")
        depth = resp_headers.get(QUEUE_HEADER, "")
        result.queue_depth = int(depth) if depth.isdigit() and len(depth) < 7 else None
        result.bytes_total = len(body) + len(payload)
        return result

    # -- plumbing ---------------------------------------------------------------------------

    async def _json(self, method: str, path: str, timeout_s: float) -> dict[str, Any]:
        _status, _h, body = await self._request(method, path, timeout_s=timeout_s)
        try:
            value = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise PeerProtocolError(f"{self.base_url}{path}: the answer is not JSON") from exc
        if not isinstance(value, dict):
            raise PeerProtocolError(f"{self.base_url}{path}: the answer is not an object")
        return value

    async def _request(self, method: str, path: str, *, timeout_s: float,
                       data: bytes | None = None, headers: Mapping[str, str] | None = None,
                       ok_only: bool = True) -> tuple[int, Mapping[str, str], bytes]:
        if not 0 < timeout_s <= 600:
            raise ValueError(f"timeout_s must be in (0, 600], got {timeout_s}")
        url = self.base_url + path
        session = self._get_session()
        ssl = self._ssl
        try:
            async with asyncio.timeout(timeout_s):
                if isinstance(ssl, FollowingContext):
                    await ssl.reloader.async_refresh()
                    # The current context itself: aiohttp pools connections by context,
                    # so none made under an older one is reused.
                    ssl = ssl.current()
                async with session.request(method, url, data=data, headers=headers,
                                           ssl=ssl,
                                           server_hostname=self.server_hostname) as resp:
                    length = resp.content_length
                    if length is not None and length > self.max_response_bytes:
                        raise PeerProtocolError(f"{url}: an answer of {length} bytes is over "
                                                f"the limit of {self.max_response_bytes}")
                    if length is not None:
                        body = await resp.read()  # its length is known and bounded
                    else:
                        body = await self._read_bounded(resp, url)
                    status, resp_headers = resp.status, resp.headers
        except TimeoutError as exc:
            raise PeerTimeoutError(f"{url}: no answer within {timeout_s:g} s") from exc
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError,
                _ssl.SSLError) as exc:
            raise PeerTlsError(f"{url}: TLS with the peer failed: {exc}") from exc
        except aiohttp.ClientConnectionError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, _ssl.SSLError) or _tls_alert(exc):
                raise PeerTlsError(f"{url}: the peer ended the TLS session: {exc}") from exc
            if url.startswith("https://") and isinstance(
                    exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError) and not \
                    isinstance(exc, aiohttp.ClientConnectorError):
                # Under TLS 1.3 the server checks the client's certificate after the
                # client has finished its handshake; a refusal then arrives as a reset
                # (its alert is lost when it closes with our request unread).
                raise PeerTlsError(
                    f"{url}: the peer closed the connection before answering ({exc}); under "
                    "TLS 1.3 that is how a peer refuses this node's certificate (another "
                    "CA, expired or revoked)") from exc
            raise PeerUnavailableError(f"{url}: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise PeerProtocolError(f"{url}: {exc}") from exc
        if status == 200 or not ok_only:
            return status, resp_headers, body
        message = _error_message(body) or f"HTTP {status}"
        if status == 429:
            retry = _retry_after_s(resp_headers.get("Retry-After"))
            raise PeerBusyError(f"{url}: the peer is busy: {message}", retry_after_s=retry)
        if status in (408, 504):
            raise PeerTimeoutError(f"{url}: {message}")
        if status == 400:
            raise PeerProtocolError(f"{url}: the peer refused the request: {message}")
        raise PeerRequestError(f"{url}: HTTP {status}: {message}", status=status)


    async def _read_bounded(self, resp: aiohttp.ClientResponse, url: str) -> bytes:
        """A body of unknown length (chunked), refused past ``max_response_bytes``."""
        chunks: list[bytes] = []
        total = 0
        async for chunk in resp.content.iter_chunked(1 << 16):
            total += len(chunk)
            if total > self.max_response_bytes:
                raise PeerProtocolError(f"{url}: the answer is over "
                                        f"{self.max_response_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


def _tls_alert(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(word in text for word in ("ssl", "tlsv1", "certificate", "alert"))


def _error_message(body: bytes) -> str | None:
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body[:200].decode(errors="replace") or None
    if isinstance(value, dict) and isinstance(value.get("error"), str):
        return str(value["error"])[:500]
    return None


def _retry_after_s(header: str | None) -> float:
    try:
        value = float(header) if header is not None else 1.0
    except ValueError:
        return 1.0
    return min(max(value, 0.0), 600.0)


def server_timings(header: str | None) -> dict[str, float]:
    """``infer;dur=1.2, work;dur=1.5`` (W3C Server Timing; milliseconds) -> seconds by name."""
    out: dict[str, float] = {}
    for metric in (header or "").split(",")[:16]:
        name, *params = metric.strip().split(";")
        for param in params:
            key, _, value = param.strip().partition("=")
            if key == "dur":
                try:
                    dur = float(value)
                except ValueError:
                    continue
                if math.isfinite(dur) and dur >= 0:
                    out[name.strip()] = dur / 1e3
    return out
