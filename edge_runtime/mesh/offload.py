"""Offloading: each run of a pipeline's model goes to this node or to a peer.

A pipeline with ``offload = true`` keeps its local model, and the model's backend is
wrapped in an :class:`OffloadBackend`: every ``run`` becomes a request to the
:class:`Offloader` on the daemon's loop, whose :class:`~edge_runtime.mesh.scheduler.Scheduler`
(one per model) picks the target with the earliest predicted completion: ``local`` (the
model's own backend, in a one-thread executor: one request at a time, as the scheduler
models a target) or a peer serving the same model over the Open Inference Protocol.

Per request:

- **exactly once**: the first answer is delivered; a later one (a hedge, a retry that
  raced) is dropped and counted;
- **failover**: a peer that fails (refused, reset, timed out after
  ``attempt_timeout_s``, a wrong answer shape) opens its circuit breaker a notch and the
  request is sent again elsewhere, this node included, until ``request_timeout_s``; an
  error of the local engine is raised at once (offloading must not hide a local bug);
- **hedging** (optional): a request unanswered after the p95 of recent completions gets
  a second attempt elsewhere, within a budget of extra requests;
- **trust but verify**: a fraction (``verify_fraction``) of the answers peers give is
  run again here, after delivery, and compared (:func:`edge_runtime.mesh.trust.agree`);
  a peer that disagrees is quarantined for good (:class:`~edge_runtime.mesh.trust.TrustStore`),
  dropped from every scheduler, and reported by ``on_security_event``;
- **the books**: every attempt on a peer is counted in the
  :class:`~edge_runtime.mesh.ledger.Ledger`.

A peer is used for a model only after its model metadata matched the local model's
tensors (names, datatypes, fixed dimensions, quantization): the same name on a peer
may be another model.

Threads: :class:`Offloader` lives on the daemon's loop (every method there, except
:meth:`OffloadBackend.run`, which blocks a pipeline's worker thread while the request
runs on that loop; calling it on the loop is refused).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_runtime.errors import (
    InferenceError,
    MeshError,
    PeerProtocolError,
    PeerRequestError,
    PeerTimeoutError,
    SchedulerError,
)
from edge_runtime.mesh.ledger import Ledger
from edge_runtime.mesh.scheduler import LOCAL, Attempt, HedgePolicy, Outcome, Scheduler
from edge_runtime.mesh.trust import CompareMode, TrustStore, agree
from edge_runtime.models.backend import Backend
from edge_runtime.models.types import TensorSpec

if TYPE_CHECKING:
    from edge_runtime.mesh.oip.client import OipClient
    from edge_runtime.models.model import Model

log = logging.getLogger(__name__)

#: Extra time (s) a worker waits past the request's budget for the loop to answer.
HANDOFF_MARGIN_S = 1.0
#: Attempts per request (each peer that fails is excluded, so this node is always among
#: the first few tried; the request's deadline is the real bound).
MAX_ATTEMPTS = 16
#: How long closing may wait for this node's queued runs and spot checks (s).
CLOSE_TIMEOUT_S = 5.0

SecurityEvent = Callable[[str, str, dict[str, Any]], None]
_Outcome = tuple[bool, list[np.ndarray], float | None, float, int, BaseException | None]


def _timed_run(backend: Backend, arrays: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
    """``backend.run`` and its own time (in the executor's thread)."""
    started = time.perf_counter()
    outs = backend.run(arrays)
    return outs, time.perf_counter() - started


@dataclass
class PeerLink:
    """A peer the offloader may use: its id (certificate name, or URL for a static
    peer), its client, where it came from and its liveness."""

    peer_id: str
    url: str
    client: OipClient
    origin: str  # "mdns" | "static"
    up: bool = True
    rtt_s: float | None = None
    #: Per model: True (matches), False (does not serve it or another model), absent:
    #: not checked yet (or the check could not reach the peer: tried again later).
    models: dict[str, bool] = field(default_factory=dict)
    last_error: str | None = None
    #: Models whose check is running now.
    checking: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class VerifyPolicy:
    """Spot checks of peers' answers (see :mod:`edge_runtime.mesh.trust`)."""

    fraction: float = 0.05
    compare: CompareMode = "auto"
    tolerance: float = 0.02


@dataclass
class OffloadStats:
    requests: int = 0
    local: int = 0
    offloaded: int = 0
    failovers: int = 0
    failed: int = 0
    hedges: int = 0
    duplicates_dropped: int = 0
    verified: int = 0
    disagreements: int = 0
    #: Spot checks not made because one was still waiting (they never crowd out work).
    checks_skipped: int = 0


class _Offloaded:
    """One model the offloader routes: its local backend, scheduler and executor."""

    def __init__(self, name: str, local: Backend, scheduler: Scheduler,
                 sha256: str = "") -> None:
        self.name = name
        self.sha256 = sha256
        self.local = local
        self.scheduler = scheduler
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"local-{name}"[:15])
        self.inputs: list[TensorSpec] = list(local.inputs)
        self.outputs: list[TensorSpec] = list(local.outputs)
        self.stats = OffloadStats()
        self.out_bytes = sum(_fixed_bytes(s) for s in self.outputs)
        self.checks_pending = 0

    def close(self) -> None:
        """Stop the local executor; runs and checks still queued are dropped."""
        self.pool.shutdown(wait=False, cancel_futures=True)


def _fixed_bytes(spec: TensorSpec) -> int:
    n = 1
    for d in spec.shape:
        n *= d if d is not None else 1
    return n * np.dtype(spec.dtype).itemsize


def tensors_match(local: Sequence[TensorSpec], meta: Sequence[dict[str, Any]]) -> str:
    """Why a peer's model metadata does not describe the local tensors ("" if it does)."""
    from edge_runtime.mesh.oip import codec

    theirs = {t.get("name"): t for t in meta if isinstance(t, dict)}
    for spec in local:
        t = theirs.get(spec.name)
        if t is None:
            return f"it has no tensor {spec.name!r}"
        try:
            dtype = codec.dtype_of(t.get("datatype"), spec.name)
        except MeshError:
            return f"tensor {spec.name!r} has datatype {t.get('datatype')!r}"
        if np.dtype(dtype) != np.dtype(spec.dtype):
            return f"tensor {spec.name!r} is {np.dtype(dtype)}, here {np.dtype(spec.dtype)}"
        dims = t.get("shape")
        if not isinstance(dims, list) or len(dims) != len(spec.shape):
            return f"tensor {spec.name!r} has shape {dims!r}, here {list(spec.shape)}"
        for mine, other in zip(spec.shape, dims, strict=True):
            if mine is not None and other not in (-1, mine):
                return f"tensor {spec.name!r} has shape {dims!r}, here {list(spec.shape)}"
        params = t.get("parameters") or {}
        if spec.quant is not None and isinstance(params, dict) and "quant_scale" in params:
            scale = tuple(float(v) for v in params.get("quant_scale") or ())
            zero = tuple(int(v) for v in params.get("quant_zero_point") or ())
            if not (np.allclose(scale, spec.quant.scale, rtol=1e-6)
                    and zero == tuple(spec.quant.zero_point)):
                return f"tensor {spec.name!r} is quantized differently"
    return ""


class Offloader:
    """Routes the runs of offloaded models (see the module docstring). On the loop."""

    def __init__(self, *, trust: TrustStore, ledger: Ledger,
                 verify: VerifyPolicy = VerifyPolicy(),
                 attempt_timeout_s: float = 2.0, request_timeout_s: float = 10.0,
                 hedge: HedgePolicy | None = None,
                 on_security_event: SecurityEvent | None = None,
                 seed: int | None = None,
                 scheduler_factory: Callable[[], Scheduler] | None = None) -> None:
        self.trust = trust
        self.ledger = ledger
        self.verify = verify
        self.attempt_timeout_s = attempt_timeout_s
        self.request_timeout_s = request_timeout_s
        self.hedge = hedge
        self.on_security_event = on_security_event
        self.peers: dict[str, PeerLink] = {}
        self.models: dict[str, _Offloaded] = {}
        self._rng = random.Random(seed)
        self._seed = seed
        #: Makes each model's scheduler (benchmarks compare other policies through it).
        self.scheduler_factory = scheduler_factory or (
            lambda: Scheduler(hedge=self.hedge, seed=self._seed, max_attempts=MAX_ATTEMPTS))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    # --- setup --------------------------------------------------------------------------

    def attach(self, name: str, model: Model, *, share: bool = False
               ) -> OffloadBackend | None:
        """Route ``model``'s runs through this offloader under the peers' name ``name``
        (on the loop). Returns the wrapping backend (already installed in ``model``).

        ``share``: another pipeline of this generation already attached ``name``; runs of
        both go through one scheduler and one local executor (one CPU, the same peers).
        Otherwise ``name`` starts afresh (a reload replaces the old model). Another
        model under a name already shared is refused (None; it runs here only)."""
        self._loop = asyncio.get_running_loop()
        local = model.backend
        if isinstance(local, OffloadBackend):
            local = local.local
        existing = self.models.get(name)
        if share and existing is not None and existing.sha256 != model.sha256:
            log.error("mesh: two pipelines offload different models under one name %r; "
                      "the second runs here only (give its manifest another name)", name)
            return None
        if share and existing is not None:
            backend = OffloadBackend(self, existing, self._loop, own=local)
            model.replace_backend(backend)
            return backend
        sched = self.scheduler_factory()
        if model.stats.count:
            sched.observe_service(LOCAL, model.stats.summary().p50_ms / 1000.0)
        entry = _Offloaded(name, local, sched, model.sha256)
        old = self.models.get(name)
        if old is not None:  # a reload: the new model replaces the old one
            old.close()
            for link in self.peers.values():  # its verdicts were for the old model
                link.models.pop(name, None)
        self.models[name] = entry
        backend = OffloadBackend(self, entry, self._loop)
        model.replace_backend(backend)
        for link in self.peers.values():
            self._check_model(link, entry)
        return backend

    def detach_others(self, keep: set[str]) -> None:
        """Stop routing the models not in ``keep`` (a reload dropped their pipelines)."""
        for name in [n for n in self.models if n not in keep]:
            self.models.pop(name).close()

    def add_peer(self, link: PeerLink) -> None:
        """A peer (found or configured); checked per model before it gets work."""
        if link.peer_id == LOCAL:
            log.warning("mesh: a peer calls itself %r, this node's own name in the "
                        "scheduler; ignored", LOCAL)
            self._spawn(link.client.close())
            return
        if self.trust.is_quarantined(link.peer_id):
            log.warning("mesh: peer %s is quarantined; not used (edge-runtime peers --clear)",
                        link.peer_id)
        old = self.peers.get(link.peer_id)
        if old is not None and old.url == link.url:
            return
        if old is not None:
            self.remove_peer(link.peer_id)
        self.peers[link.peer_id] = link
        for entry in self.models.values():
            self._check_model(link, entry)

    def remove_peer(self, peer_id: str) -> None:
        link = self.peers.pop(peer_id, None)
        for entry in self.models.values():
            entry.scheduler.remove_peer(peer_id)
        if link is not None:
            self._spawn(link.client.close())

    def set_peer_up(self, peer_id: str, up: bool) -> None:
        """Liveness from the heartbeat: a down peer gets no work until it is up again."""
        link = self.peers.get(peer_id)
        if link is None or link.up == up:
            return
        link.up = up
        for entry in self.models.values():
            if up:
                self._admit(link, entry)
            else:
                entry.scheduler.remove_peer(peer_id)
        if up:
            self.recheck(peer_id)

    def observe_rtt(self, peer_id: str, rtt_s: float) -> None:
        link = self.peers.get(peer_id)
        if link is not None:
            link.rtt_s = rtt_s
        for entry in self.models.values():
            entry.scheduler.observe_rtt(peer_id, rtt_s)

    def trust_changed(self) -> None:
        """The trust file changed (an operator cleared a peer): re-admit cleared peers."""
        for link in self.peers.values():
            for entry in self.models.values():
                self._admit(link, entry)

    def recheck(self, peer_id: str) -> None:
        """Check the models ``peer_id`` has no verdict for yet (the peer answers again)."""
        link = self.peers.get(peer_id)
        if link is None:
            return
        for entry in self.models.values():
            if entry.name not in link.models:
                self._check_model(link, entry)

    def _check_model(self, link: PeerLink, entry: _Offloaded) -> None:
        if entry.name in link.checking:
            return
        link.checking.add(entry.name)
        self._spawn(self._check(link, entry))

    async def _check(self, link: PeerLink, entry: _Offloaded) -> None:
        try:
            meta = await link.client.model_metadata(entry.name, timeout_s=5.0)
            why = tensors_match(entry.inputs, meta.get("inputs") or []) or \
                tensors_match(entry.outputs, meta.get("outputs") or [])
        except PeerRequestError as exc:
            if exc.status != 404:  # a passing failure (503: could not load it now)
                link.last_error = str(exc)
                return
            why = str(exc)  # it answered: it does not serve this model
        except MeshError as exc:  # not reached (down, TLS refused): no verdict yet
            link.last_error = str(exc)
            return
        finally:
            link.checking.discard(entry.name)
        if self.peers.get(link.peer_id) is not link or self.models.get(entry.name) is not entry:
            return  # the peer or the model changed meanwhile
        link.models[entry.name] = not why
        if why:
            link.last_error = f"{entry.name}: {why}"
            log.info("mesh: peer %s not used for %s: %s", link.peer_id, entry.name, why)
            return
        if self._admit(link, entry):
            log.info("mesh: peer %s takes %s", link.peer_id, entry.name)

    def _admit(self, link: PeerLink, entry: _Offloaded) -> bool:
        """Give ``link`` work for ``entry`` if it may have it: up (it answers over the
        fleet's TLS), its model matched, not quarantined. True when admitted."""
        if link.up and link.models.get(entry.name) and \
                not self.trust.is_quarantined(link.peer_id):
            entry.scheduler.add_peer(link.peer_id)
            return True
        return False

    def _spawn(self, coro: Any) -> None:
        if self._closed:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- one request --------------------------------------------------------------------

    async def infer(self, name: str, arrays: Sequence[np.ndarray]) -> tuple[list[np.ndarray], str]:
        """Run model ``name`` on ``arrays`` (raw inputs) where the scheduler says; returns
        the raw outputs and the target that answered (``"local"`` or a peer id)."""
        entry = self.models[name]
        sched = entry.scheduler
        entry.stats.requests += 1
        payload = sum(int(np.asarray(a).nbytes) for a in arrays) + entry.out_bytes
        now = time.monotonic()
        deadline = now + self.request_timeout_s
        request = sched.new_request(payload, now)
        pending: dict[asyncio.Future[Any], Attempt] = {}
        failed: set[str] = set()
        last_error: BaseException | None = None

        def send(attempt: Attempt) -> None:
            pending[asyncio.ensure_future(
                self._attempt(entry, attempt, arrays, deadline))] = attempt

        def launch(exclude: set[str]) -> None:
            t = time.monotonic()
            try:
                decision = sched.choose(request, t, exclude=exclude)
            except SchedulerError:
                return
            send(sched.start(request, decision, t))

        launch(set())
        hedge_refused = False  # asked once past its time: not again until an answer
        try:
            while pending:
                now = time.monotonic()
                wait_s = deadline - now
                hedge_at = sched.hedge_due_s(request)
                if hedge_at is not None and not hedge_refused and \
                        not any(a.hedge for a in request.attempts):
                    wait_s = min(wait_s, max(0.0, hedge_at - now))
                if wait_s <= 0 and now >= deadline:
                    break
                done, _ = await asyncio.wait(pending, timeout=max(0.0, wait_s),
                                             return_when=asyncio.FIRST_COMPLETED)
                now = time.monotonic()
                if not done:
                    if now < deadline and not hedge_refused:
                        hedge = sched.maybe_hedge(request, now)
                        if hedge is not None:
                            entry.stats.hedges += 1
                            send(hedge)
                        elif hedge_at is not None and now >= hedge_at:
                            hedge_refused = True  # its time has come and it was refused
                    continue
                hedge_refused = False
                for fut in done:
                    attempt = pending.pop(fut)
                    result = fut.result()
                    outs, err = result[1], result[5]
                    outcome = self._settle(entry, attempt, result, now)
                    if outcome is Outcome.DELIVERED:
                        self._settle_rest(entry, pending)
                        if attempt.target == LOCAL:
                            entry.stats.local += 1
                        else:
                            entry.stats.offloaded += 1
                            self._maybe_verify(entry, attempt.target, arrays, outs)
                        return outs, attempt.target
                    if outcome is Outcome.DUPLICATE:
                        entry.stats.duplicates_dropped += 1
                        continue
                    last_error = err
                    if attempt.target == LOCAL and not isinstance(err, PeerTimeoutError):
                        raise err if err is not None else InferenceError(
                            f"{name}: the local run failed")
                    failed.add(attempt.target)
                    if attempt.target != LOCAL:
                        entry.stats.failovers += 1
                        log.info("mesh: %s on %s failed (%s); sending it elsewhere", name,
                                 attempt.target, err)
                    if outcome is Outcome.RETRY and now < deadline:
                        launch(failed)
                    elif outcome is Outcome.FAILED and LOCAL not in failed:
                        raise InferenceError(
                            f"{name}: {len(request.attempts)} attempts failed on peers "
                            f"(last: {err})", hint="check the peers with edge-runtime peers")
            entry.stats.failed += 1
            raise InferenceError(
                f"{name}: no answer within {self.request_timeout_s:g} s from this node or "
                f"any peer (last: {last_error or 'timed out'})",
                hint="check the peers with edge-runtime peers, or raise "
                     "[mesh] request_timeout_s")
        finally:
            sched.give_up(request)  # no-op once delivered; late answers are dropped
            self._settle_rest(entry, pending)

    def _settle(self, entry: _Offloaded, attempt: Attempt, result: _Outcome, now_s: float
                ) -> Outcome:
        """One attempt's end: the scheduler learns from it and the books count it."""
        ok, _outs, service_s, queue_s, bytes_total, _err = result
        outcome = entry.scheduler.finish(attempt, now_s, ok=ok, service_s=service_s,
                                         queue_wait_s=queue_s, bytes_total=bytes_total)
        if attempt.target != LOCAL:
            self.ledger.consumed(attempt.target, ok=ok, compute_s=service_s or 0.0,
                                 bytes_total=bytes_total)
        return outcome

    def _settle_rest(self, entry: _Offloaded, pending: dict[asyncio.Future[Any], Attempt]
                     ) -> None:
        """Attempts still out once the request is settled: their answers are dropped
        when they come (counted), and the scheduler still learns from them."""
        for fut, attempt in list(pending.items()):
            pending.pop(fut)

            def done(f: asyncio.Future[Any], attempt: Attempt = attempt) -> None:
                if f.cancelled():
                    entry.scheduler.abandon(attempt)
                    return
                result = f.result()
                outcome = self._settle(entry, attempt, result, time.monotonic())
                if outcome is Outcome.DUPLICATE and result[0]:
                    entry.stats.duplicates_dropped += 1

            fut.add_done_callback(done)

    async def _attempt(self, entry: _Offloaded, attempt: Attempt,
                       arrays: Sequence[np.ndarray], deadline: float
                       ) -> _Outcome:
        """One attempt; never raises (its failure is returned): ok, outputs, the
        target's service time, its queue wait, bytes both ways, the error."""
        loop = asyncio.get_running_loop()
        if attempt.target == LOCAL:
            try:  # timed in the executor: the wait for it is the scheduler's to replay
                outs, compute_s = await loop.run_in_executor(entry.pool, _timed_run,
                                                             entry.local, list(arrays))
            except Exception as exc:
                return False, [], None, 0.0, 0, exc
            return True, outs, compute_s, 0.0, 0, None
        link = self.peers.get(attempt.target)
        if link is None:
            return False, [], None, 0.0, 0, MeshError(f"peer {attempt.target} is gone")
        timeout_s = max(0.05, min(self.attempt_timeout_s, deadline - time.monotonic()))
        inputs = {s.name: np.asarray(a) for s, a in zip(entry.inputs, arrays, strict=True)}
        sent_s = time.monotonic()
        try:
            answer = await link.client.infer(entry.name, inputs, binary=True,
                                             timeout_s=timeout_s)
            outs = []
            for spec in entry.outputs:
                value = answer.get(spec.name)
                if value is None:
                    raise PeerProtocolError(f"{link.peer_id}: no output {spec.name!r}")
                if np.dtype(value.dtype) != np.dtype(spec.dtype) or value.ndim != len(
                        spec.shape) or any(d is not None and d != got
                                           for d, got in zip(spec.shape, value.shape,
                                                             strict=True)):
                    raise PeerProtocolError(
                        f"{link.peer_id}: output {spec.name!r} is {value.dtype} "
                        f"{list(value.shape)}, expected {np.dtype(spec.dtype)} "
                        f"{list(spec.shape)}")
                outs.append(value)
        except MeshError as exc:
            link.last_error = str(exc)
            return False, [], None, 0.0, 0, exc
        except Exception as exc:  # an answer that breaks our expectations
            link.last_error = str(exc)
            return False, [], None, 0.0, 0, PeerProtocolError(f"{link.peer_id}: {exc}")
        if answer.queue_depth is not None:
            entry.scheduler.observe_queue(attempt.target, answer.queue_depth)
        # What the request held the peer for (its worker's time, else the model's), and
        # its wait there: neither is network time.
        service_s = answer.server_work_s or answer.server_compute_s
        if service_s is None:  # a server that does not say (Triton): all but one RTT
            service_s = max(1e-6, time.monotonic() - sent_s - (link.rtt_s or 0.0))
        return True, outs, service_s, answer.server_queue_s or 0.0, answer.bytes_total, None

    # --- trust but verify ---------------------------------------------------------------

    def _maybe_verify(self, entry: _Offloaded, peer_id: str, arrays: Sequence[np.ndarray],
                      theirs: list[np.ndarray]) -> None:
        if self.verify.fraction <= 0 or self._rng.random() >= self.verify.fraction:
            return
        if entry.checks_pending >= 1:  # one at a time: checks must not crowd out work
            entry.stats.checks_skipped += 1
            return
        entry.checks_pending += 1
        self._spawn(self._verify(entry, peer_id, list(arrays), [t.copy() for t in theirs]))

    async def _verify(self, entry: _Offloaded, peer_id: str, arrays: list[np.ndarray],
                      theirs: list[np.ndarray]) -> None:
        loop = asyncio.get_running_loop()
        verify = self.verify

        def run_and_compare() -> tuple[bool, str]:
            ours = entry.local.run(arrays)
            return agree(theirs, ours, entry.outputs, mode=verify.compare,
                         tolerance=verify.tolerance)

        try:
            ok, why = await loop.run_in_executor(entry.pool, run_and_compare)
        except Exception as exc:  # the local engine failed: nothing learnt of the peer
            log.warning("mesh: spot check of %s could not run here: %s", peer_id, exc)
            return
        finally:
            entry.checks_pending -= 1
        entry.stats.verified += 1
        if ok or self.trust.is_quarantined(peer_id):
            return
        entry.stats.disagreements += 1
        await self.quarantine(peer_id, f"{entry.name}: {why}")

    async def quarantine(self, peer_id: str, reason: str) -> None:
        """Stop using ``peer_id`` for good (persisted) and report it."""
        if self.trust.is_quarantined(peer_id):
            return  # another check caught it first
        entry = self.trust.mark(peer_id, reason)  # on the loop, before anything awaits
        for e in self.models.values():
            e.scheduler.remove_peer(peer_id)
        log.error("mesh: peer %s QUARANTINED: its answer disagrees with this node's (%s); "
                  "clear it with: edge-runtime peers CONFIG --clear %s", peer_id, reason,
                  peer_id)
        try:
            await asyncio.to_thread(self.trust.write, peer_id, entry)
        except OSError as exc:
            log.error("mesh: could not write the quarantine of %s: %s", peer_id, exc)
        if self.on_security_event is not None:
            link = self.peers.get(peer_id)
            self.on_security_event(peer_id, "quarantined",
                                   {"reason": reason, "url": link.url if link else None})

    # --- status and close ---------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        models: dict[str, Any] = {}
        for name, e in self.models.items():
            s = e.scheduler
            mape = s.mape
            local_s = s.stats(LOCAL).service_s.value
            models[name] = {
                **e.stats.__dict__,
                "peers": s.peers,
                "local_service_ms": None if local_s is None else round(local_s * 1e3, 3),
                "prediction_mape_percent": None if mape is None else round(mape * 100, 1),
            }
        return {"models": models}

    async def aclose(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        for link in list(self.peers.values()):
            with contextlib.suppress(Exception):
                await link.client.close()
        self.peers.clear()
        for e in self.models.values():  # queued runs and checks are dropped, not run
            e.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                for e in self.models.values():
                    await asyncio.to_thread(e.pool.shutdown, wait=True)


class OffloadBackend(Backend):
    """A model's backend that sends each run through an :class:`Offloader`.

    Same tensors as the local backend it wraps; ``run`` blocks the calling worker while
    the request runs on the offloader's loop. :attr:`last_target` (per thread) says
    where the calling thread's last run went.
    """

    def __init__(self, offloader: Offloader, entry: _Offloaded,
                 loop: asyncio.AbstractEventLoop, *, own: Backend | None = None) -> None:
        self._offloader = offloader
        self._entry = entry
        self._loop = loop
        #: This model's own engine (closed with it); runs here use the entry's.
        self.local = own if own is not None else entry.local
        self.name = f"{entry.local.name} + mesh"
        self._inputs = list(entry.inputs)
        self._outputs = list(entry.outputs)
        self._input_names = [s.name for s in self._inputs]
        self._output_names = [s.name for s in self._outputs]
        self._where = threading.local()

    @property
    def last_target(self) -> str | None:
        return getattr(self._where, "target", None)

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            raise InferenceError(f"{self._entry.name}: an offloaded model was run on the "
                                 "daemon's loop", hint="run it from a worker thread")
        future = asyncio.run_coroutine_threadsafe(
            self._offloader.infer(self._entry.name, list(arrays)), self._loop)
        try:
            outs, target = future.result(self._offloader.request_timeout_s + HANDOFF_MARGIN_S)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise InferenceError(f"{self._entry.name}: no answer within "
                                 f"{self._offloader.request_timeout_s:g} s") from exc
        self._where.target = target
        return outs

    @classmethod
    def engine_version(cls) -> str:
        return "mesh"

    def close(self) -> None:
        """Close the local backend (the offloader closes its own side)."""
        self.local.close()
