"""The client against a peer that breaks the protocol: a real aiohttp server with scripted
answers. Every failure is a typed MeshError raised from its cause."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
import pytest
from aiohttp import web

from edge_runtime.errors import PeerProtocolError, PeerRequestError, PeerTimeoutError
from edge_runtime.mesh.oip.client import OipClient


@asynccontextmanager
async def bad_peer(answer: web.Response | None, *, delay_s: float = 0.0
                   ) -> AsyncIterator[str]:
    """A peer whose every infer answer is ``answer`` (None: hang for ``delay_s``)."""

    async def infer(request: web.Request) -> web.Response:
        await request.read()
        if answer is None:
            await asyncio.sleep(delay_s)
            return web.Response(text="late")
        return answer

    async def meta(request: web.Request) -> web.Response:
        return web.json_response(["not", "an", "object"])

    app = web.Application()
    app.router.add_post("/v2/models/m/infer", infer)
    app.router.add_get("/v2", meta)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


X = {"x": np.ones((1, 2), np.float32)}
SIZE_LIE = (b'{"outputs":[{"name":"y","shape":[1,2],"datatype":"FP32",'
            b'"parameters":{"binary_data_size":8}}]}')


@pytest.mark.parametrize(("response", "message"), [
    (web.Response(body=b"<html>oops</html>"), "not valid JSON"),
    (web.Response(body=SIZE_LIE + b"\0" * 4,
                  headers={"Inference-Header-Content-Length": str(len(SIZE_LIE))}),
     "runs past"),
    (web.json_response({"outputs": [{"name": "y", "shape": [3], "datatype": "FP32",
                                     "data": [1, 2]}]}), "needs 3"),
    (web.json_response({"error": "the model exploded"}, status=500), "exploded"),
])
def test_broken_answers_are_typed(response: web.Response, message: str) -> None:
    async def main() -> None:
        async with bad_peer(response) as url, OipClient(url) as peer:
            with pytest.raises((PeerProtocolError, PeerRequestError), match=message) as caught:
                await peer.infer("m", X)
            if isinstance(caught.value, PeerRequestError):
                assert caught.value.status == 500

    asyncio.run(main())


def test_an_oversized_answer_and_a_silent_peer() -> None:
    async def main() -> None:
        async with bad_peer(web.Response(body=b"x" * 5000)) as url, \
                OipClient(url, max_response_bytes=4096) as peer:
            with pytest.raises(PeerProtocolError, match="over the limit"):
                await peer.infer("m", X)
        async with bad_peer(None, delay_s=5) as url, OipClient(url) as peer:
            with pytest.raises(PeerTimeoutError) as caught:
                await peer.infer("m", X, timeout_s=0.2)
            assert isinstance(caught.value.__cause__, TimeoutError)
            with pytest.raises(PeerProtocolError, match="not an object"):
                await peer.server_metadata()

    asyncio.run(main())


def test_arguments_are_checked_up_front() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        OipClient("garage:8001")
    with pytest.raises(ValueError, match="pass ssl="):
        OipClient("https://garage:8001")
