"""The ``remote`` backend: a model that runs on a peer, over the Open Inference Protocol.

Its "path" is the model's address on the peer, ``https://garage:8001/v2/models/NAME``
(a plain Triton works too: ``http://triton:8000/v2/models/NAME``). Its tensors come from
the peer's model metadata, with the quantization parameters ``edge-runtime serve``
adds, so :class:`~edge_runtime.models.model.Model` quantizes inputs and dequantizes
outputs here exactly as it would for the same model run locally. Open one with
:func:`load_remote_model`; peers come from ``[mesh] peers`` and the TLS context from
:func:`edge_runtime.mesh.node.mesh_plan` (``client_ssl``).

Threads: :meth:`RemoteBackend.run` blocks the calling thread (a pipeline's worker) while
the request runs as a coroutine on the backend's loop: the ``loop`` it was given (the
daemon's, which must be running in another thread) or, by default, a private loop in
one thread of its own (``remote-NAME``), joined by :meth:`close`. Calling ``run`` on the
loop it uses would deadlock, so it is refused. Each call waits at most ``timeout_s``
(plus a second for the loop to hand the answer back) and raises a
:class:`~edge_runtime.errors.MeshError` leaf on failure.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import numpy as np

from edge_runtime.errors import (
    InferenceError,
    PeerProtocolError,
    PeerTimeoutError,
    UnsupportedModelError,
)
from edge_runtime.models.backend import Backend
from edge_runtime.models.types import Layout, QuantParams, TensorSpec

if TYPE_CHECKING:
    from edge_runtime.models.model import Model

T = TypeVar("T")

#: Extra time (s) the calling thread waits past ``timeout_s`` for the loop to answer.
HANDOFF_MARGIN_S = 1.0


def split_model_url(url: str) -> tuple[str, str]:
    """``https://garage:8001/v2/models/NAME`` -> (``https://garage:8001``, ``NAME``)."""
    text = str(url)
    if text.startswith(("http:/", "https:/")) and "://" not in text:
        text = text.replace(":/", "://", 1)  # what pathlib made of the URL
    parts = urlsplit(text)
    prefix, _, name = parts.path.partition("/v2/models/")
    if parts.scheme not in ("http", "https") or not parts.hostname or prefix or not name \
            or "/" in name.strip("/"):
        raise UnsupportedModelError(
            f"{url!r} is not a remote model address",
            hint="write it like https://garage:8001/v2/models/digits-heavy-int8-onnx")
    return f"{parts.scheme}://{parts.netloc}", name.strip("/")


class RemoteBackend(Backend):
    """A model on a peer; see the module docstring."""

    def __init__(self, path: Path | str, *, num_threads: int | None = None,
                 ssl_context: Any = None, timeout_s: float = 10.0,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        from edge_runtime.mesh.oip.client import OipClient

        del num_threads  # the peer decides its own threads
        self.base_url, self.model_name = split_model_url(str(path))
        if not 0 < timeout_s <= 600:
            raise ValueError(f"timeout_s must be in (0, 600], got {timeout_s}")
        self.timeout_s = timeout_s
        self._thread: threading.Thread | None = None
        if loop is None:
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=loop.run_forever,
                                            name=f"remote-{self.model_name}", daemon=True)
            self._thread.start()
        self._loop = loop
        self._client = OipClient(self.base_url, ssl=ssl_context)
        self.name = f"remote {self.base_url}"
        try:
            meta = self._call(self._client.model_metadata(self.model_name,
                                                          timeout_s=timeout_s))
            self._inputs = [_spec(t, "inputs") for t in meta["inputs"]]
            self._outputs = [_spec(t, "outputs") for t in meta["outputs"]]
        except BaseException:
            self.close()
            raise
        self._input_names = [s.name for s in self._inputs]
        self._output_names = [s.name for s in self._outputs]

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            coro.close()
            raise InferenceError(f"{self.name}: run() was called on the loop it uses",
                                 hint="call it from a worker thread or an executor")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(self.timeout_s + HANDOFF_MARGIN_S)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise PeerTimeoutError(f"{self.base_url}: {self.model_name} did not answer "
                                   f"within {self.timeout_s:g} s (is the loop blocked?)") \
                from exc

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        inputs = dict(zip(self._input_names, arrays, strict=True))
        out = self._call(self._client.infer(self.model_name, inputs, binary=True,
                                            timeout_s=self.timeout_s))
        try:
            return [out[n] for n in self._output_names]
        except KeyError as exc:
            raise PeerProtocolError(f"{self.base_url}: the answer of {self.model_name} "
                                    f"lacks output {exc.args[0]!r}") from None

    @classmethod
    def engine_version(cls) -> str:
        import aiohttp

        return f"oip-client aiohttp {aiohttp.__version__}"

    def close(self) -> None:
        """Close the client's connections; stop and join the private loop (if any)."""
        loop = self._loop
        if loop.is_closed():
            return
        if loop.is_running():
            with_timeout = asyncio.run_coroutine_threadsafe(self._client.close(), loop)
            try:
                with_timeout.result(self.timeout_s)
            except concurrent.futures.TimeoutError:
                with_timeout.cancel()
        if self._thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(self.timeout_s)
            loop.close()


def _spec(meta: Any, where: str) -> TensorSpec:
    from edge_runtime.mesh.oip import codec

    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or \
            not isinstance(meta.get("shape"), list):
        raise PeerProtocolError(f"model metadata: a tensor of {where} lacks name or shape")
    dims = meta["shape"]
    if not all(type(d) is int and d >= -1 for d in dims):
        raise PeerProtocolError(f"model metadata: {meta['name']!r} has shape {dims!r}")
    shape = tuple(None if d == -1 else d for d in dims)
    dtype = codec.dtype_of(meta.get("datatype"), f"model metadata {meta['name']!r}")
    params = meta.get("parameters") or {}
    quant = None
    if isinstance(params, dict) and "quant_scale" in params:
        quant = QuantParams(tuple(float(v) for v in params["quant_scale"]),
                            tuple(int(v) for v in params["quant_zero_point"]),
                            params.get("quant_axis"))
    layout: Layout | None = params.get("layout") if isinstance(params, dict) and \
        params.get("layout") in ("NHWC", "NCHW") else None
    return TensorSpec(meta["name"], shape, dtype, layout, quant)


def load_remote_model(url: str, *, ssl_context: Any = None, timeout_s: float = 10.0,
                      loop: asyncio.AbstractEventLoop | None = None) -> Model:
    """A :class:`~edge_runtime.models.model.Model` that runs on the peer at ``url``
    (``https://garage:8001/v2/models/NAME``). Blocking (fetches the metadata)."""
    from edge_runtime.models.model import Model

    backend = RemoteBackend(url, ssl_context=ssl_context, timeout_s=timeout_s, loop=loop)
    return Model(backend, path=Path(backend.model_name), fmt="remote", sha256="")
