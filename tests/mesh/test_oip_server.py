"""The OIP server through our client and raw HTTP: endpoints, deadlines, limits, and
clients that misbehave."""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import numpy as np
import numpy.testing  # imported here: a lazy import on the loop reads the disk
import pytest

from edge_runtime.errors import (
    PeerBusyError,
    PeerProtocolError,
    PeerRequestError,
    PeerTimeoutError,
    PeerUnavailableError,
)
from edge_runtime.mesh.oip import server as srv
from edge_runtime.mesh.oip.client import OipClient
from tests.mesh.oip_helpers import identity, running_server, two_outputs


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(main())  # type: ignore[arg-type]


def test_endpoints_and_inference_json_and_binary() -> None:
    async def main() -> None:
        async with running_server({"id": identity(), "two": two_outputs()}) as server, \
                OipClient(server.url) as peer:
            assert await peer.live() and await peer.ready()
            meta = await peer.server_metadata()
            assert "binary_tensor_data" in meta["extensions"]
            model = await peer.model_metadata("two")
            assert model["inputs"] == [{"name": "a", "datatype": "FP32", "shape": [-1, 3]},
                                       {"name": "b", "datatype": "FP32", "shape": [-1, 3]}]
            assert [o["datatype"] for o in model["outputs"]] == ["FP32", "BOOL"]
            assert await peer.model_ready("two")
            a = np.array([[1, 2, 3]], np.float32)
            b = np.array([[3, 2, 1]], np.float32)
            for binary in (True, False):
                out = await peer.infer("two", {"a": a, "b": b}, binary=binary,
                                       request_id="req-7")
                np.testing.assert_array_equal(out["sum"], a + b)
                np.testing.assert_array_equal(out["mask"], a > b)
                assert out.request_id == "req-7" and out.server_compute_s is not None
            only = await peer.infer("two", {"a": a, "b": b}, outputs=["mask"])
            assert list(only) == ["mask"]
            with pytest.raises(PeerRequestError, match="unknown model") as caught:
                await peer.infer("nope", {"x": a})
            assert caught.value.status == 404
            with pytest.raises(PeerProtocolError, match="missing input 'b'"):
                await peer.infer("two", {"a": a})
            with pytest.raises(PeerProtocolError, match="no output 'z'"):
                await peer.infer("two", {"a": a, "b": b}, outputs=["z"])
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{server.url}/v2/models/two/versions/1") as resp:
                    assert resp.status == 200
                async with http.get(f"{server.url}/v2/models/two/versions/2/ready") as resp:
                    assert resp.status == 404 and "no version" in (await resp.json())["error"]
                async with http.get(f"{server.url}/v2/models/two/ready",
                                    headers={"X-Request-Id": "abc"}) as resp:
                    assert resp.headers["X-Request-Id"] == "abc"

    run(main)


async def _raw(url: str, body: bytes, headers: dict[str, str] | None = None
               ) -> tuple[int, dict[str, Any], Any]:
    async with aiohttp.ClientSession() as http, http.post(
            url, data=body, headers=headers or {}) as resp:
        return resp.status, dict(resp.headers), await resp.json(content_type=None)


def test_malformed_requests_are_400_with_a_json_error() -> None:
    async def main() -> None:
        async with running_server({"id": identity()}) as server:
            url = f"{server.url}/v2/models/id/infer"
            good = b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32",' \
                   b'"parameters":{"binary_data_size":16}}]}'
            cases = [
                (b"{not json", {}, "not valid JSON"),
                (b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP99","data":[1,2,3,4]}]}',
                 {}, "unknown datatype"),
                (good + b"\0" * 12, {"Inference-Header-Content-Length": str(len(good))},
                 "runs past"),
                (good + b"\0" * 20, {"Inference-Header-Content-Length": str(len(good))},
                 "after the binary"),
                (good, {"Inference-Header-Content-Length": "99999"}, "but the body has"),
                (b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],'
                 b'"parameters":{"timeout":-5}}', {}, "timeout"),
            ]
            for body, headers, message in cases:
                status, _h, answer = await _raw(url, body, headers)
                assert status == 400, (message, answer)
                assert message in answer["error"]
            status, _h, answer = await _raw(url, good, {"X-Deadline-Ms": "soon"})
            assert status == 400 and "X-Deadline-Ms" in answer["error"]
            assert server.stats.inferences == 0

    run(main)


def test_body_over_the_limit_is_413_before_it_is_read() -> None:
    async def main() -> None:
        async with running_server({"id": identity()}, max_body_bytes=4096) as server:
            url = f"{server.url}/v2/models/id/infer"
            status, _h, answer = await _raw(url, b"x" * 5000)
            assert status == 413 and "4096" in answer["error"]
            # A huge Content-Length with no body behind it: answered at once.
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"POST /v2/models/id/infer HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Length: 99999999999\r\n\r\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 5)
            assert b" 413 " in line
            writer.close()
            # A chunked body that grows past the limit.
            async def chunks() -> Any:
                for _ in range(10):
                    yield b"y" * 1000

            async with aiohttp.ClientSession() as http, http.post(url, data=chunks()) as resp:
                assert resp.status == 413
            async with OipClient(server.url) as peer:  # still serving
                out = await peer.infer("id", {"x": np.ones((1, 4), np.float32)})
                assert out["y"].shape == (1, 4)

    run(main)


def test_deadline_passed_in_the_queue_is_504_and_not_run() -> None:
    async def main() -> None:
        slow = identity(delay_s=0.0)
        slow.gate.clear()  # hold every call until released
        async with running_server({"id": slow}, max_concurrency_per_peer=1,
                                  queue_limit=4) as server, OipClient(server.url) as peer:
            x = np.ones((1, 4), np.float32)
            first = asyncio.create_task(peer.infer("id", {"x": x}, timeout_s=10))
            while slow.calls == 0:
                await asyncio.sleep(0.01)
            with pytest.raises(PeerTimeoutError):
                await peer.infer("id", {"x": x}, timeout_s=0.2)
            slow.gate.set()
            await first
            await asyncio.sleep(0.05)
            assert slow.calls == 1  # the expired one never ran
            assert server.stats.deadline_expired == 1

    run(main)


def test_full_queue_is_429_with_retry_after_and_other_peers_are_served() -> None:
    async def main() -> None:
        held = identity()
        held.gate.clear()
        async with running_server({"id": held}, max_concurrency_per_peer=1,
                                  queue_limit=1) as server, OipClient(server.url) as peer:
            x = np.ones((1, 4), np.float32)
            waiting = [asyncio.create_task(peer.infer("id", {"x": x}, timeout_s=10))
                       for _ in range(2)]
            while server.stats.peers.get("ip:127.0.0.1") is None or \
                    server.stats.peers["ip:127.0.0.1"].in_flight < 2:
                await asyncio.sleep(0.01)
            with pytest.raises(PeerBusyError) as caught:
                await peer.infer("id", {"x": x})
            assert caught.value.retry_after_s >= 1
            status, headers, _a = await _raw(f"{server.url}/v2/models/id/infer", b"{}")
            assert status == 429 and int(headers["Retry-After"]) >= 1
            # Another peer (another loopback address) has its own queue.
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(
                    local_addr=("127.0.0.2", 0))) as other_http:
                other = OipClient(server.url, session=other_http)
                task = asyncio.create_task(other.infer("id", {"x": x}, timeout_s=10))
                while "ip:127.0.0.2" not in server.stats.peers:
                    await asyncio.sleep(0.01)
                held.gate.set()
                assert (await task)["y"].shape == (1, 4)
            for task in waiting:
                await task
            out = await peer.infer("id", {"x": x})
            assert out["y"].shape == (1, 4)

    run(main)


def test_slow_sender_is_dropped_and_others_are_served(monkeypatch: pytest.MonkeyPatch
                                                     ) -> None:
    monkeypatch.setattr(srv, "HEAD_TIMEOUT_S", 0.3)
    monkeypatch.setattr(srv, "SWEEP_INTERVAL_S", 0.1)

    async def main() -> None:
        before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        async with running_server({"id": identity()}, body_timeout_s=0.5) as server, \
                OipClient(server.url) as peer:
            # A head that never completes.
            r1, w1 = await asyncio.open_connection("127.0.0.1", server.port)
            w1.write(b"POST /v2/models/id/infer HTTP/1.1\r\nHost: x\r\n")
            # A body that trickles.
            r2, w2 = await asyncio.open_connection("127.0.0.1", server.port)
            w2.write(b"POST /v2/models/id/infer HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 100000\r\n\r\n{")
            await w1.drain()
            await w2.drain()
            x = np.ones((1, 4), np.float32)
            for _ in range(5):
                assert (await peer.infer("id", {"x": x}))["y"].shape == (1, 4)
                await asyncio.sleep(0.05)
            assert await asyncio.wait_for(r1.read(), 5) == b""  # dropped
            answer = await asyncio.wait_for(r2.read(), 5)
            assert b" 408 " in answer.split(b"\r\n", 1)[0]
            assert server.slow_heads_dropped == 1
            w1.close()
            w2.close()
        after_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert after_kb - before_kb < 50_000

    run(main)


def test_unreachable_peer_is_a_typed_error() -> None:
    async def main() -> None:
        async with running_server({}) as server:
            port = server.port
        async with OipClient(f"http://127.0.0.1:{port}") as peer:
            with pytest.raises(PeerUnavailableError) as caught:
                await peer.live()
            assert caught.value.__cause__ is not None

    run(main)


def test_a_camera_frame_round_trips_whole() -> None:
    """An answer larger than one socket read (a 224x224x3 frame) arrives whole."""
    frame = np.random.default_rng(5).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)

    async def main() -> None:
        model = identity(shape=(None, 224, 224, 3), dtype=np.uint8)
        async with running_server({"id": model}) as server, OipClient(server.url) as peer:
            for binary in (True, False):
                out = await peer.infer("id", {"x": frame}, binary=binary)
                np.testing.assert_array_equal(out["y"], frame)

    run(main)
