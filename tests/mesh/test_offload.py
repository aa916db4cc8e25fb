"""The offloader on real models and real OIP servers on loopback: work shared with a
peer, answers identical to local ones, failover when a peer hangs, a lying peer
quarantined (persisted, reported), a peer serving another model under the same name
never used."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_allclose

from edge_runtime.errors import ConfigError
from edge_runtime.mesh.ledger import Ledger
from edge_runtime.mesh.offload import Offloader, PeerLink, VerifyPolicy
from edge_runtime.mesh.oip.client import OipClient
from edge_runtime.mesh.served import RawModel
from edge_runtime.mesh.trust import TrustStore, agree
from edge_runtime.models import load_model
from edge_runtime.models.types import TensorSpec

from .heavy import Slowed
from .oip_helpers import ScriptedModel, running_server

MODEL = "digits-int8-onnx"


def inputs(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.random((1, 1, 8, 8), dtype=np.float32) * 16 for _ in range(n)]


Events = list[tuple[str, str, dict[str, Any]]]


def make_offloader(folder: Path, **kw: Any) -> tuple[Offloader, Events]:
    events: Events = []
    off = Offloader(trust=TrustStore(folder).load(), ledger=Ledger(folder),
                    on_security_event=lambda p, s, d: events.append((p, s, d)), seed=1, **kw)
    return off, events


def in_loop(fn: Any) -> Any:
    """Run the async test body in a fresh event loop (the suite's own convention)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


async def aload() -> Any:
    return await asyncio.to_thread(load_model, MODEL)


async def areference(xs: list[np.ndarray]) -> list[np.ndarray]:
    model = await aload()
    return await asyncio.to_thread(lambda: [model.run(x)["probs"] for x in xs])


async def wait_until(pred: Any, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not pred():
            await asyncio.sleep(0.02)


async def run_many(model: Any, xs: list[np.ndarray], threads: int) -> list[dict[str, np.ndarray]]:
    """``model.run`` on every input from ``threads`` worker threads at once."""
    sem = asyncio.Semaphore(threads)

    async def one(x: np.ndarray) -> dict[str, np.ndarray]:
        async with sem:
            return await asyncio.to_thread(model.run, x)

    return list(await asyncio.gather(*(one(x) for x in xs)))


@in_loop
async def test_work_is_shared_with_an_honest_peer_and_answers_match(tmp_path: Path) -> None:
    served = await aload()
    local = await aload()
    local.replace_backend(Slowed(local.backend, 0.005))
    xs = inputs(40)
    expected = await areference(xs)
    async with running_server({MODEL: RawModel(served)}) as server:
        off, events = await asyncio.to_thread(
            make_offloader, tmp_path, verify=VerifyPolicy(fraction=0.5))
        off.attach(MODEL, local)
        off.add_peer(PeerLink("peer-a", server.url, OipClient(server.url), "static"))
        await wait_until(lambda: "peer-a" in off.models[MODEL].scheduler.peers)
        try:
            got = await run_many(local, xs, threads=6)
        finally:
            stats = off.models[MODEL].stats
            await off.aclose()
    for g, e in zip(got, expected, strict=True):
        assert_allclose(g["probs"], e, rtol=1e-5, atol=1e-6)
    assert stats.requests == 40 and stats.local + stats.offloaded == 40
    assert stats.offloaded > 0 and stats.local > 0, stats
    assert stats.verified > 0 and stats.disagreements == 0 and events == []
    books = off.ledger.of("peer-a")
    assert books.consumed_requests >= stats.offloaded and books.consumed_compute_s > 0
    assert books.consumed_bytes > 0


@in_loop
async def test_a_hung_peer_is_failed_over_and_each_result_arrives_once(tmp_path: Path) -> None:
    local = await aload()
    local.replace_backend(Slowed(local.backend, 0.02))  # so the peer looks worth it
    spec_in = TensorSpec("input", (None, 1, 8, 8), np.dtype(np.float32))
    spec_out = TensorSpec("probs", (None, 10), np.dtype(np.float32))
    hung = ScriptedModel([spec_in], [spec_out],
                         lambda d: {"probs": np.zeros((1, 10), np.float32)})
    hung.gate.clear()  # every call waits: the peer accepts work and never answers
    xs = inputs(6)
    expected = await areference(xs)
    try:
        async with running_server({MODEL: hung}) as server:
            off, _ = await asyncio.to_thread(
            make_offloader, tmp_path, attempt_timeout_s=0.3, request_timeout_s=5.0)
            off.attach(MODEL, local)
            off.add_peer(PeerLink("hung", server.url, OipClient(server.url), "static"))
            await wait_until(lambda: "hung" in off.models[MODEL].scheduler.peers)
            try:
                got = await run_many(local, xs, threads=3)
            finally:
                stats = off.models[MODEL].stats
                await off.aclose()
                hung.gate.set()
    finally:
        hung.gate.set()
    for g, e in zip(got, expected, strict=True):
        assert_allclose(g["probs"], e, rtol=1e-5, atol=1e-6)
    assert stats.failovers >= 1 and stats.failed == 0
    assert stats.local == 6 and stats.offloaded == 0  # every answer came from here, once
    assert off.ledger.of("hung").consumed_failures >= 1


@in_loop
async def test_a_lying_peer_is_quarantined_persisted_and_reported(tmp_path: Path) -> None:
    local = await aload()
    local.replace_backend(Slowed(local.backend, 0.02))
    truth = await aload()

    def lie(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        probs = truth.run(d["input"])["probs"]  # in the server's executor
        return {"probs": np.roll(probs, 3, axis=1)}  # plausible, wrong class

    liar = ScriptedModel(list(truth.inputs), list(truth.outputs), lie)
    async with running_server({MODEL: liar}) as server:
        off, events = await asyncio.to_thread(
            make_offloader, tmp_path, verify=VerifyPolicy(fraction=1.0))
        off.attach(MODEL, local)
        off.add_peer(PeerLink("liar", server.url, OipClient(server.url), "static"))
        await wait_until(lambda: "liar" in off.models[MODEL].scheduler.peers)
        try:
            await run_many(local, inputs(12), threads=4)
            await wait_until(lambda: bool(events))
            calls_when_caught = liar.calls
            await run_many(local, inputs(12), threads=4)
        finally:
            stats = off.models[MODEL].stats
            await off.aclose()
    assert stats.disagreements >= 1
    assert events[0][0] == "liar" and events[0][1] == "quarantined"
    assert "top-1 class" in events[0][2]["reason"]
    assert liar.calls == calls_when_caught  # never asked again
    saved = json.loads(await asyncio.to_thread((tmp_path / "trust.json").read_text))
    assert "liar" in saved["quarantined"]
    # A restart remembers it: the peer is not given work.
    async with running_server({MODEL: liar}) as server:
        off2, _ = await asyncio.to_thread(make_offloader, tmp_path)
        off2.attach(MODEL, await aload())
        off2.add_peer(PeerLink("liar", server.url, OipClient(server.url), "static"))
        await asyncio.sleep(0.3)
        assert off2.models[MODEL].scheduler.peers == []
        await off2.aclose()


@in_loop
async def test_a_peer_with_another_model_under_the_name_is_never_used(tmp_path: Path) -> None:
    local = await aload()
    other = ScriptedModel([TensorSpec("input", (None, 1, 8, 8), np.dtype(np.float32))],
                          [TensorSpec("probs", (None, 12), np.dtype(np.float32))],
                          lambda d: {"probs": np.zeros((1, 12), np.float32)})
    async with running_server({MODEL: other}) as server:
        off, _ = await asyncio.to_thread(make_offloader, tmp_path)
        off.attach(MODEL, local)
        link = PeerLink("other", server.url, OipClient(server.url), "static")
        off.add_peer(link)
        await wait_until(lambda: MODEL in link.models)
        await run_many(local, inputs(6), threads=3)
        stats = off.models[MODEL].stats
        await off.aclose()
    assert link.models[MODEL] is False and "probs" in (link.last_error or "")
    assert stats.offloaded == 0 and other.calls == 0


def test_agree_compares_as_the_task_sees_it() -> None:
    spec = TensorSpec("probs", (None, 4), np.dtype(np.float32))
    a = np.array([[0.1, 0.7, 0.1, 0.1]], np.float32)
    assert agree([a], [a + 0.05], [spec])[0]  # same class, other rounding
    ok, why = agree([np.roll(a, 1, axis=1)], [a], [spec])
    assert not ok and "top-1" in why
    box = TensorSpec("boxes", (None, 2, 4), np.dtype(np.float32))
    b = np.ones((1, 2, 4), np.float32)
    assert agree([b * 1.01], [b], [box])[0]
    assert not agree([b * 1.5], [b], [box])[0]
    assert not agree([b[:, :1]], [b], [box])[0]


@pytest.mark.parametrize("damage", ["{not json", "[]", ""])
def test_a_damaged_trust_file_keeps_what_was_known(tmp_path: Path, damage: str) -> None:
    store = TrustStore(tmp_path).load()
    store.quarantine("liar", "test")
    (tmp_path / "trust.json").write_text(damage)
    assert store.reload_if_changed()
    assert store.is_quarantined("liar")
    assert store.clear("liar") is True
    assert not TrustStore(tmp_path).load().is_quarantined("liar")


def test_server_timing_names_compute_work_and_queue() -> None:
    from edge_runtime.mesh.oip.client import server_timings

    assert server_timings("infer;dur=1.5, work;dur=2.0, queue;dur=0.25") == {
        "infer": 0.0015, "work": 0.002, "queue": 0.00025}
    assert server_timings('infer;desc="x";dur=3') == {"infer": 0.003}
    assert server_timings("infer;dur=nan, work;dur=-1, queue;dur=abc, x") == {}
    assert server_timings(None) == {}


@in_loop
async def test_a_served_answer_says_what_it_held_the_peer_for() -> None:
    served = await aload()
    async with running_server({MODEL: RawModel(served)}) as server, \
            OipClient(server.url) as client:
        out = await client.infer(MODEL, {"input": inputs(1)[0]}, timeout_s=5.0)
    assert out.server_compute_s is not None and out.server_work_s is not None
    assert out.server_work_s >= out.server_compute_s > 0
    assert out.server_queue_s is not None and out.server_queue_s >= 0


@in_loop
async def test_every_peer_failing_still_leaves_this_node_to_answer(tmp_path: Path) -> None:
    """Four peers that pass the model check but fail every run (a 500): each request is
    tried on peers, then answered here; none is lost."""
    local = await aload()
    local.replace_backend(Slowed(local.backend, 0.02))  # so the peers look better
    truth = await aload()

    def broken(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise ValueError("engine fell over")

    peers = [ScriptedModel(list(truth.inputs), list(truth.outputs), broken) for _ in range(4)]
    xs = inputs(8)
    expected = await areference(xs)
    async with contextlib.AsyncExitStack() as stack:
        servers = [await stack.enter_async_context(running_server({MODEL: p}))
                   for p in peers]
        off, _ = await asyncio.to_thread(make_offloader, tmp_path)
        off.attach(MODEL, local)
        for i, server in enumerate(servers):
            off.add_peer(PeerLink(f"broken-{i}", server.url, OipClient(server.url), "static"))
        await wait_until(lambda: len(off.models[MODEL].scheduler.peers) == 4)
        try:
            got = await run_many(local, xs, threads=4)
        finally:
            stats = off.models[MODEL].stats
            await off.aclose()
    for g, e in zip(got, expected, strict=True):
        assert_allclose(g["probs"], e, rtol=1e-5, atol=1e-6)
    assert stats.failed == 0 and stats.local == 8 and stats.failovers >= 1
    assert sum(p.calls for p in peers) >= 1


def test_a_trust_list_damaged_before_start_trusts_nobody(tmp_path: Path) -> None:
    """A node that starts with a damaged list cannot tell who was quarantined: it uses
    no peer until the list is mended or deleted, and it never overwrites it."""
    (tmp_path / "trust.json").write_text('{"version": 1, "quarantined": {"liar": ')
    store = TrustStore(tmp_path).load()
    assert store.damaged and store.is_quarantined("anybody")
    with pytest.raises(ConfigError, match="the trust list cannot be read"):
        store.clear("liar")
    with pytest.raises(OSError, match="quarantined in memory only"):
        store.write("other", store.mark("other", "test"))
    assert (tmp_path / "trust.json").read_text().endswith('"liar": ')  # left as it was
    (tmp_path / "trust.json").unlink()  # the operator deletes it
    assert store.reload_if_changed() and store.damaged is None
    assert not store.is_quarantined("anybody")
