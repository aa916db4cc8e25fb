"""Offloading for real (issue #13): three CPU-quota'd nodes on loopback, real OIP over
fleet mutual TLS, the real :class:`~edge_runtime.mesh.offload.Offloader`.

The nodes. Every node is its own process in its own cgroup with a CPU quota of
``--quota`` of one core (default 0.5) in a **10 ms** period (cgroup v2 ``cpu.max`` or v1
``cpu.cfs_quota_us``, whichever the machine has; processes on loopback, no network
namespaces). The short period is on purpose: with the usual 100 ms period a quota'd
process runs at full speed for 50 ms and then stops for 50 ms, so one inference takes
either 8 ms or 60 ms; a Pi-class CPU is slow all the time, and a 10 ms period is closer to
that. The helpers are ``edge-runtime serve`` with mutual TLS (``[mesh]
max_concurrency_per_peer = 1``, ``workers = 1``: one inference at a time, as the
scheduler models a target and as the requester's own one-thread local executor runs).
The **requester** is a subprocess of this script (``--role requester``) under the same
quota: it holds the model locally, runs the Offloader and drives the load; its own TLS
and HTTP work shares its quota with its local inferences (three *equal* nodes). The
model is ``tests/mesh/heavy.py``'s seeded image classifier (``--convs`` 3x3 convs on a
96x96 RGB frame, 110 kB of float32 input), built in a temporary folder; the engine's
default threads everywhere. Spot checks are off (``VerifyPolicy(fraction=0)``): pure
throughput.

Measured, side by side in one run, policies alternating (the order rotates every
repeat), medians over ``--repeats``; every run is a fresh Offloader with a warm-up that
is not counted:

- **policies**, the requester and two helpers, closed loop with ``--inflight`` requests
  in flight: local only (no peers), round robin (local, helper 1, helper 2 in turn), the
  runtime's scheduler (the default :class:`~edge_runtime.mesh.scheduler.Scheduler`), and
  an **oracle** that knows every target's true mean service time (its occupancy per
  request, measured under load in a round-robin calibration run before, and the
  network's share from sequential calls) and the exact queue at each (the requester is
  the only client) and picks the earliest completion among all targets.
  Throughput (inferences/s), mean and p99 latency; the scheduler against local (target
  at least 2.5x) and against the oracle (target: throughput and p99 within 15 %); the
  prediction error of the scheduler's completion-time model (MAPE over the attempts of
  the measured window; target 10 %), with what bounds it: the per-request variance of
  compute under the quota (the lowest MAPE any constant guess of one request's compute
  time reaches), the error split by target, and each target's reported service time
  (a helper's ``Server-Timing`` work, the local executor's own timing) against its
  occupancy per request seen from the requester's side.
- **failover**: during a scheduler run, one helper is SIGKILLed (its sockets close: the
  requests on it fail at once) or, as a second case, SIGSTOPped (it hangs: the requests
  on it wait their attempt timeout, then run again elsewhere); for each request in
  flight on it at that moment, the time from the signal to its answer, against
  ``attempt_timeout_s`` + 100 ms.
- **hedging**: helper 2 replaced by a straggler (``--role straggler``: the same model
  and server, but ``--lag-share`` of its answers are held back ``--lag-factor`` x their
  compute time *after* the compute it reports, like a paused process or Wi-Fi
  retransmissions), open loop (Poisson) at ``--hedge-load`` of the scheduler's measured
  throughput; hedging after the p95 with a 5 % budget on and off: p99 ratio (target at
  most 0.5) for the extra requests it sent (``stats.hedges`` / requests, target at most
  5 %).

Needs root (cgroups). One command: ``nice .venv/bin/python benchmarks/offload_bench.py``
(about 6 minutes; ``--quick``: about 2). Progress on stderr; results in
``benchmarks/results/offload.json`` with the machine description.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import secrets
import selectors
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from edge_runtime.mesh.scheduler import (  # noqa: E402
    LOCAL,
    Attempt,
    Decision,
    HedgePolicy,
    Outcome,
    Request,
    Scheduler,
)

NAME = "heavy-test"
PERIOD_US = 10_000
SPEEDUP_TARGET = 2.5
ORACLE_TOLERANCE = 0.15
MAPE_TARGET = 0.10
FAILOVER_MARGIN_S = 0.1
HEDGE_P99_TARGET = 0.5
HEDGE_EXTRA_TARGET = 0.05
POLICIES = ("local", "round_robin", "scheduler", "oracle")


def log(message: str) -> None:
    print(f"[offload {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- schedulers: the runtime's, and the policies it is compared with ------------------------


class Recording(Scheduler):
    """The runtime's scheduler, unchanged, that also writes down every attempt that came
    back (target, predicted and measured seconds, reported compute) and when each
    request was delivered: what the benchmark reports, no influence on the choices."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        #: (answered at, target, predicted s, elapsed s, reported compute s, hedge)
        self.log: list[tuple[float, str, float, float, float | None, bool]] = []
        self.delivered_s: dict[int, tuple[float, str]] = {}
        #: maybe_hedge calls that sent nothing (a request past its hedge time that got
        #: no hedge: the budget was spent or there was no other target)
        self.hedge_refusals = 0

    def maybe_hedge(self, request: Request, now_s: float) -> Attempt | None:
        attempt = super().maybe_hedge(request, now_s)
        if attempt is None:
            self.hedge_refusals += 1
        return attempt

    def finish(self, attempt: Attempt, now_s: float, *, ok: bool,
               service_s: float | None = None, queue_wait_s: float = 0.0,
               bytes_total: int = 0) -> Outcome:
        outcome = super().finish(attempt, now_s, ok=ok, service_s=service_s,
                                 queue_wait_s=queue_wait_s, bytes_total=bytes_total)
        if ok:
            self.log.append((now_s, attempt.target, attempt.predicted_s,
                             max(0.0, now_s - attempt.sent_s), service_s, attempt.hedge))
        if outcome is Outcome.DELIVERED:
            self.delivered_s[attempt.request.id] = (now_s, attempt.target)
        return outcome

    def eligible(self, now_s: float, exclude: set[str] | None) -> list[str]:
        excluded = set(exclude or ())
        peers = [p for p in self.peers
                 if p not in excluded and self.stats(p).breaker.allows(now_s)]
        return ([LOCAL] if LOCAL not in excluded else []) + peers


def local_compute_s(log: Sequence[tuple[float, str, float, float, float | None, bool]],
                    target: str = LOCAL, overhead_s: float = 0.0
                    ) -> list[tuple[float, float]]:
    """(service s, what the scheduler was told) of each attempt on ``target`` in
    ``log``: a target runs one attempt at a time in the order they were sent (the local
    executor has one thread; a helper serves one request of ours at a time), so one
    starts when it has arrived (``overhead_s`` after it was sent, 0 for local) or when
    the one before it answered, whichever is later, and ends when it answers. For a
    helper this is its real occupancy per request (decoding, encoding and TLS on its
    side included), not only the model's compute that it reports."""
    out = []
    prev = -math.inf
    for answered, tg, _p, elapsed, service, _h in log:
        if tg == target:
            out.append((answered - max(answered - elapsed + overhead_s, prev), service or 0.0))
            prev = answered
    return out


class RoundRobin(Recording):
    """Local, then each peer, in turn (skipping what is excluded or open)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._turn = 0

    def choose(self, request: Request, now_s: float, *,
               exclude: set[str] | None = None) -> Decision:
        targets = self.eligible(now_s, exclude)
        if not targets:
            return super().choose(request, now_s, exclude=exclude)  # raises
        target = targets[self._turn % len(targets)]
        self._turn += 1
        return Decision(target, self.predict_s(target, request.payload_bytes, now_s))


class Oracle(Recording):
    """Knows each target's true mean service time and network overhead (``truth``:
    target -> (service s, overhead s)) and its exact queue (the attempts in flight: the
    requester is the only client), and picks the earliest completion of all targets."""

    def __init__(self, truth: dict[str, tuple[float, float]], **kw: Any) -> None:
        super().__init__(**kw)
        self.truth = truth

    def oracle_s(self, target: str, now_s: float) -> float:
        service, overhead = self.truth.get(target, self.truth[LOCAL])
        busy = -math.inf
        for a in sorted(self.stats(target).in_flight.values(), key=lambda a: a.sent_s):
            busy = max(a.sent_s + overhead / 2, busy) + service
        return max(now_s + overhead / 2, busy) + service + overhead / 2 - now_s

    def choose(self, request: Request, now_s: float, *,
               exclude: set[str] | None = None) -> Decision:
        targets = self.eligible(now_s, exclude)
        if not targets:
            return super().choose(request, now_s, exclude=exclude)  # raises
        best = min(targets, key=lambda t: self.oracle_s(t, now_s))
        return Decision(best, self.oracle_s(best, now_s))


# --- the requester (a quota'd subprocess) ---------------------------------------------------


@dataclass
class RunResult:
    """One run's measured window."""

    window_s: float
    latencies_s: list[float] = field(default_factory=list)
    completed: int = 0
    errors: int = 0
    stats: dict[str, int] = field(default_factory=dict)
    attempts: list[tuple[float, str, float, float, float | None, bool]] = field(
        default_factory=list)
    live_mape: float | None = None
    bandwidth_Bps: dict[str, float | None] = field(default_factory=dict)  # noqa: N815
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_s)
        n = len(lat)
        attempts = self.attempts
        apes = [abs(e - p) / e for _t, _tg, p, e, _s, _h in attempts if e > 0 and p > 0]
        by_target: dict[str, int] = {}
        for _t, tg, *_ in attempts:
            by_target[tg] = by_target.get(tg, 0) + 1
        out = {
            "throughput_per_s": round(self.completed / self.window_s, 2),
            "requests": n,
            "mean_ms": round(1e3 * statistics.fmean(lat), 2) if n else None,
            "p50_ms": round(1e3 * lat[n // 2], 2) if n else None,
            "p99_ms": round(1e3 * lat[min(n - 1, int(0.99 * n))], 2) if n else None,
            "max_ms": round(1e3 * lat[-1], 2) if n else None,
            "errors": self.errors,
            "answers_by_target": by_target,
            "mape_pct": round(100 * statistics.fmean(apes), 2) if apes else None,
            "live_mape_pct": None if self.live_mape is None else round(100 * self.live_mape,
                                                                        2),
            **self.stats_summary(),
        }
        return out | self.extra

    def stats_summary(self) -> dict[str, Any]:
        s = self.stats
        req = max(1, s.get("requests", 0))
        return {"offloaded": s.get("offloaded", 0), "local": s.get("local", 0),
                "failovers": s.get("failovers", 0), "hedges": s.get("hedges", 0),
                "duplicates_dropped": s.get("duplicates_dropped", 0),
                "extra_requests_pct": round(100 * s.get("hedges", 0) / req, 2)}


class Requester:
    """The requesting node: the model here, the Offloader, the load (on its loop)."""

    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = plan
        self.model: Any = None
        self.ctx: Any = None
        rng = np.random.default_rng(5)
        self.xs = [rng.random((1, 3, 96, 96), dtype=np.float32) for _ in range(16)]

    async def setup(self) -> None:
        from edge_runtime.mesh import fleet as fl
        from edge_runtime.models import load_model

        self.model = await asyncio.to_thread(load_model, self.plan["manifest"])
        files = fl.TlsFiles(**{k: Path(v) for k, v in self.plan["tls"].items()})
        self.ctx = await asyncio.to_thread(fl.client_context, files)

    def client(self, url: str) -> Any:
        from edge_runtime.mesh.oip.client import OipClient

        return OipClient(url, ssl=self.ctx)

    def peer_url(self, peer: str) -> str:
        return str(self.plan["peers"][peer]["url"])

    # -- one run ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def offloader(self, peers: Sequence[str], factory: Callable[[], Scheduler],
                        hedge: HedgePolicy | None = None) -> Any:
        from edge_runtime.mesh.ledger import Ledger
        from edge_runtime.mesh.offload import Offloader, PeerLink, VerifyPolicy
        from edge_runtime.mesh.trust import TrustStore

        folder = Path(tempfile.mkdtemp(prefix="offload-bench-"))
        trust = await asyncio.to_thread(lambda: TrustStore(folder).load())
        off = Offloader(trust=trust, ledger=Ledger(folder), verify=VerifyPolicy(fraction=0.0),
                        attempt_timeout_s=self.plan["attempt_timeout_s"],
                        request_timeout_s=self.plan["request_timeout_s"], hedge=hedge,
                        seed=1, scheduler_factory=factory)
        off.attach(NAME, self.model)
        for p in peers:
            off.add_peer(PeerLink(p, self.peer_url(p), self.client(self.peer_url(p)),
                                  "static"))
        heartbeat = asyncio.create_task(self._heartbeats(off), name="heartbeats")
        try:
            async with asyncio.timeout(30):
                while not set(peers) <= set(off.models[NAME].scheduler.peers):
                    await asyncio.sleep(0.02)
            yield off
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            await off.aclose()

    async def _heartbeats(self, off: Any) -> None:
        """What the daemon does for static peers: ping each every second (RTT samples),
        down after 3 misses (``edge_runtime/mesh/service.py``)."""
        from edge_runtime.errors import MeshError

        misses: dict[str, int] = {}
        while True:
            for peer_id, link in list(off.peers.items()):
                started = time.monotonic()
                try:
                    alive = await link.client.live(timeout_s=0.8)
                except MeshError:
                    alive = False
                if alive:
                    off.observe_rtt(peer_id, time.monotonic() - started)
                misses[peer_id] = 0 if alive else misses.get(peer_id, 0) + 1
                off.set_peer_up(peer_id, misses[peer_id] < 3)
            await asyncio.sleep(1.0)

    async def _one(self, off: Any, i: int, result: RunResult, begin: float, end: float
                   ) -> None:
        from edge_runtime.errors import EdgeRuntimeError

        started = time.monotonic()
        try:
            await off.infer(NAME, [self.xs[i % len(self.xs)]])
        except EdgeRuntimeError:
            if started >= begin:
                result.errors += 1
            return
        done = time.monotonic()
        if started >= begin:
            result.latencies_s.append(done - started)
        if begin <= done <= end:
            result.completed += 1

    async def drive(self, off: Any, *, warm_s: float, measure_s: float,
                    inflight: int | None = None, rate_hz: float | None = None,
                    during: Callable[[Any, float], Any] | None = None) -> RunResult:
        """Closed loop (``inflight`` requests always out) or open loop (Poisson at
        ``rate_hz``); ``during(off, begin)`` runs beside the load (the failover's kill)."""
        entry = off.models[NAME]
        now = time.monotonic()
        begin, end = now + warm_s, now + warm_s + measure_s
        result = RunResult(window_s=measure_s)
        side = asyncio.create_task(during(off, begin)) if during is not None else None
        snapshot: dict[str, int] = {}

        async def mark() -> None:
            await asyncio.sleep(max(0.0, begin - time.monotonic()))
            snapshot.update(dict(entry.stats.__dict__))

        marker = asyncio.create_task(mark())
        cpu_before = os.times()
        if inflight is not None:
            async def worker(j: int) -> None:
                i = j
                while time.monotonic() < end:
                    await self._one(off, i, result, begin, end)
                    i += inflight

            await asyncio.gather(*(worker(j) for j in range(inflight)))
        else:
            assert rate_hz is not None
            rng = random.Random(11)
            tasks: set[asyncio.Task[None]] = set()
            i = 0
            t = time.monotonic()
            while t < end:
                t += rng.expovariate(rate_hz)
                await asyncio.sleep(max(0.0, t - time.monotonic()))
                task = asyncio.create_task(self._one(off, i, result, begin, end))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
            await asyncio.gather(*list(tasks))
        await marker
        cpu = os.times()
        result.extra["requester_cpu_cores"] = round(
            (cpu.user + cpu.system - cpu_before.user - cpu_before.system)
            / (time.monotonic() - now), 3)
        if side is not None:
            result.extra.update(await side)
        after = dict(entry.stats.__dict__)
        result.stats = {k: after[k] - snapshot.get(k, 0) for k in after}
        sched = entry.scheduler
        if isinstance(sched, Recording):
            result.attempts = [a for a in sched.log if begin <= a[0] <= end]
        result.live_mape = sched.mape
        if isinstance(sched, Recording):
            result.extra["hedge_refusals"] = sched.hedge_refusals
        result.bandwidth_Bps = {p: sched.stats(p).bandwidth_Bps.value for p in sched.peers}
        return result

    # -- the phases ------------------------------------------------------------------------

    async def calibrate(self) -> dict[str, Any]:
        """Sequential calls (each target's own service time and the network's share),
        then a scheduler run under load: the oracle's truth."""
        helpers = self.plan["helpers"]
        seq: dict[str, Any] = {}
        local = self.model.backend
        runs = []
        for k in range(25):
            started = time.perf_counter()
            await asyncio.to_thread(local.run, [self.xs[k % len(self.xs)]])
            runs.append(time.perf_counter() - started)
        seq[LOCAL] = {"service_ms": round(1e3 * statistics.median(runs[5:]), 2),
                      "overhead_ms": 0.0}
        overhead: dict[str, float] = {LOCAL: 0.0}
        for p in helpers:
            async with self.client(self.peer_url(p)) as c:
                rtts, computes, works = [], [], []
                for k in range(25):
                    started = time.perf_counter()
                    out = await c.infer(NAME, {"input": self.xs[k % len(self.xs)]},
                                        timeout_s=10)
                    rtts.append(time.perf_counter() - started)
                    computes.append(out.server_compute_s or 0.0)
                    works.append(out.server_work_s or out.server_compute_s or 0.0)
            # the network's share: all but what the request held the helper's worker for
            over = [r - w for r, w in zip(rtts[5:], works[5:], strict=True)]
            overhead[p] = statistics.median(over)
            seq[p] = {"service_ms": round(1e3 * statistics.median(computes[5:]), 2),
                      "work_ms": round(1e3 * statistics.median(works[5:]), 2),
                      "round_trip_ms": round(1e3 * statistics.median(rtts[5:]), 2),
                      "overhead_ms": round(1e3 * overhead[p], 2)}
        async with self.offloader(helpers, lambda: RoundRobin(seed=3)) as off:
            res = await self.drive(off, warm_s=1.0, measure_s=self.plan["calibrate_s"],
                                   inflight=self.plan["inflight"])
        truth: dict[str, tuple[float, float]] = {}
        local_runs = local_compute_s(res.attempts)
        reported: dict[str, float] = {}
        for target in [LOCAL, *helpers]:
            occupancy = [c for c, _told in local_compute_s(res.attempts, target,
                                                           overhead[target])]
            service = statistics.fmean(occupancy) if occupancy else (
                seq[target]["service_ms"] / 1e3)
            truth[target] = (service, overhead[target])
            told = [s for _t, tg, _p, _e, s, _h in res.attempts if tg == target and s]
            reported[target] = statistics.fmean(told) if told else math.nan
        self.truth = truth
        return {"sequential": seq,
                "under_load": "a round-robin run, closed loop: each target's service time "
                              "from its answers' times (it serves one at a time, in order: "
                              "local_compute_s), the oracle's truth",
                "service_as_told_to_the_scheduler_ms": {
                    t: round(1e3 * v, 2) for t, v in reported.items()},
                "local_service_as_told_to_the_scheduler_ms": round(1e3 * statistics.fmean(
                    [told for _c, told in local_runs]), 2) if local_runs else None,
                "under_load_mean_service_ms": {t: round(1e3 * s, 2)
                                               for t, (s, _o) in truth.items()},
                "oracle_truth": {t: {"service_ms": round(1e3 * s, 2),
                                     "overhead_ms": round(1e3 * o, 2)}
                                 for t, (s, o) in truth.items()}}

    def factory(self, policy: str, hedge: HedgePolicy | None = None
                ) -> Callable[[], Scheduler]:
        if policy == "round_robin":
            return lambda: RoundRobin(seed=1)
        if policy == "oracle":
            return lambda: Oracle(self.truth, seed=1)
        return lambda: Recording(hedge=hedge, seed=1)

    async def policies(self) -> dict[str, Any]:
        plan = self.plan
        runs: dict[str, list[dict[str, Any]]] = {p: [] for p in POLICIES}
        raw: dict[str, list[RunResult]] = {p: [] for p in POLICIES}
        for r in range(plan["repeats"]):
            order = POLICIES[r % len(POLICIES):] + POLICIES[:r % len(POLICIES)]
            for policy in order:
                peers = [] if policy == "local" else plan["helpers"]
                async with self.offloader(peers, self.factory(policy)) as off:
                    res = await self.drive(off, warm_s=plan["warm_s"],
                                           measure_s=plan["measure_s"],
                                           inflight=plan["inflight"])
                s = res.summary()
                runs[policy].append(s)
                raw[policy].append(res)
                log(f"policies {r + 1}/{plan['repeats']} {policy:11s} "
                    f"{s['throughput_per_s']:6.1f}/s mean {s['mean_ms']} ms p99 "
                    f"{s['p99_ms']} ms MAPE {s['mape_pct']} %")
        overhead = {t: o for t, (_s, o) in self.truth.items()}
        analysis = {"scheduler": mape_analysis(raw["scheduler"], overhead)}
        analysis["local_timing"] = {p: local_timing(raw[p]) for p in POLICIES}
        return {"runs": runs, "analysis": analysis}

    async def failover(self) -> list[dict[str, Any]]:
        plan = self.plan
        out = []
        for victim, sig_name in plan["victims"]:
            sig = getattr(signal, sig_name)
            pid = int(plan["peers"][victim]["pid"])
            peers = [victim, plan["helpers"][1]]

            async def kill(off: Any, begin: float, sig: int = sig, pid: int = pid,
                           victim: str = victim) -> dict[str, Any]:
                sched = off.models[NAME].scheduler
                await asyncio.sleep(max(0.0, begin + 0.5 - time.monotonic()))
                async with asyncio.timeout(5):
                    while not sched.stats(victim).in_flight:
                        await asyncio.sleep(0.001)
                flying = {a.request.id: time.monotonic() - a.sent_s
                          for a in sched.stats(victim).in_flight.values()}
                os.kill(pid, sig)
                killed = time.monotonic()
                await asyncio.sleep(plan["attempt_timeout_s"] + 1.5)
                after_ms, by = [], []
                for rid in flying:
                    got = sched.delivered_s.get(rid)
                    if got is None:  # never answered (counted in errors)
                        after_ms.append(None)
                        by.append(None)
                    else:
                        after_ms.append(round(1e3 * (got[0] - killed), 1))
                        by.append(got[1])
                # requests sent to the victim after the signal (before its breaker opened
                # or the heartbeat marked it down)
                later = [e for t, tg, _p, e, _s, _h in sched.log if tg == victim
                         and t > killed]
                # a request answered elsewhere after a SIGSTOP: its attempt on the victim
                # timed out (attempt_timeout_s after it was sent), then it ran again;
                # the time from that timeout to its answer
                rerun_ms = [
                    round(ms - 1e3 * (plan["attempt_timeout_s"] - age), 1)
                    if sig == signal.SIGSTOP and b not in (None, victim) and ms is not None
                    else None
                    for ms, b, age in zip(after_ms, by, flying.values(), strict=True)]
                return {"in_flight_at_signal": len(flying),
                        "their_age_at_signal_ms": [round(1e3 * v, 1) for v in flying.values()],
                        "answered_after_their_attempt_timeout_ms": rerun_ms,
                        "answered_after_signal_ms": after_ms, "answered_by": by,
                        "victim_answers_after_signal": len(later)}

            async with self.offloader(peers, self.factory("scheduler")) as off:
                res = await self.drive(off, warm_s=plan["warm_s"],
                                       measure_s=plan["attempt_timeout_s"] + 2.5,
                                       inflight=plan["inflight"], during=kill)
            s = res.summary()
            answered = [v for v in s["answered_after_signal_ms"] if v is not None]
            unanswered = len(s["answered_after_signal_ms"]) - len(answered)
            worst = max(answered) if answered and not unanswered else None
            bound = 1e3 * (plan["attempt_timeout_s"] + FAILOVER_MARGIN_S)
            s.update({"victim": victim, "signal": sig_name, "unanswered": unanswered,
                      "worst_after_signal_ms": worst, "bound_ms": bound,
                      "within_bound": worst is not None and worst <= bound})
            out.append(s)
            log(f"failover {sig_name}: {s['in_flight_at_signal']} in flight, answered "
                f"{s['answered_after_signal_ms']} ms after the signal (bound {bound:.0f} ms)")
        return out

    async def hedging(self, capacity_hz: float) -> dict[str, Any]:
        plan = self.plan
        peers = [plan["helpers"][0], plan["straggler"]]
        rate = plan["hedge_load"] * capacity_hz
        policy = HedgePolicy(quantile=0.95, budget_fraction=0.05)
        runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
        for r in range(plan["repeats"]):
            for mode in (("off", "on") if r % 2 == 0 else ("on", "off")):
                hedge = policy if mode == "on" else None
                async with self.offloader(peers, self.factory("scheduler", hedge),
                                          hedge) as off:
                    res = await self.drive(off, warm_s=plan["warm_s"] + 1.0,
                                           measure_s=plan["hedge_measure_s"], rate_hz=rate)
                s = res.summary()
                runs[mode].append(s)
                log(f"hedging {r + 1}/{plan['repeats']} {mode:3s} p99 {s['p99_ms']} ms "
                    f"mean {s['mean_ms']} ms extra {s['extra_requests_pct']} %")
        return {"rate_per_s": round(rate, 1), "runs": runs}


def _floor_mape(samples: list[float]) -> float:
    """The lowest MAPE of any constant guess of ``samples`` (tried at each sample)."""
    ordered = sorted(samples)
    step = max(1, len(ordered) // 200)
    return min(statistics.fmean(abs(x - c) / x for x in ordered) for c in ordered[::step])


def mape_analysis(runs: list[RunResult], overhead: dict[str, float]) -> dict[str, Any]:
    """Where the scheduler's prediction error comes from, over its measured windows;
    ``overhead``: each target's network share (the calibration's), for its occupancy."""
    attempts = [a for r in runs for a in r.attempts]
    out: dict[str, Any] = {}
    for target in sorted({a[1] for a in attempts}):
        mine = [a for a in attempts if a[1] == target]
        occupancy = [c for r in runs for c, _told in local_compute_s(
            r.attempts, target, overhead.get(target, 0.0))]
        apes = [abs(e - p) / e for _t, _tg, p, e, _s, _h in mine if e > 0]
        comp = [s for *_x, s, _h in mine if s]
        elapsed = [e for _t, _tg, _p, e, _s, _h in mine]
        over = [(p - e) / e for _t, _tg, p, e, _s, _h in mine if e > 0]
        out[target] = {
            "attempts": len(mine),
            "mape_pct": round(100 * statistics.fmean(apes), 2) if apes else None,
            "mean_signed_error_pct": round(100 * statistics.fmean(over), 2) if over else None,
            "compute_mean_ms": round(1e3 * statistics.fmean(comp), 2) if comp else None,
            "compute_cv_pct": round(100 * statistics.pstdev(comp) / statistics.fmean(comp), 1)
            if len(comp) > 1 else None,
            "compute_constant_guess_floor_pct": round(100 * _floor_mape(comp), 2)
            if comp else None,
            "elapsed_mean_ms": round(1e3 * statistics.fmean(elapsed), 2) if elapsed else None,
            # what it held the target for, seen from here (local_compute_s), against the
            # service time it reported (compute_mean_ms: a helper's work, local's own)
            "occupancy_mean_ms": round(1e3 * statistics.fmean(occupancy), 2)
            if occupancy else None,
        }
    out["bandwidth_estimate_MBps"] = [
        {p: None if v is None else round(v / 1e6, 2) for p, v in r.bandwidth_Bps.items()}
        for r in runs]
    return out


def local_timing(runs: list[RunResult]) -> dict[str, Any]:
    """What the scheduler was told a local run took against what it took."""
    pairs = [pair for r in runs for pair in local_compute_s(r.attempts)]
    if not pairs:
        return {"local_attempts": 0}
    return {"local_attempts": len(pairs),
            "compute_mean_ms": round(1e3 * statistics.fmean(c for c, _t in pairs), 2),
            "told_the_scheduler_mean_ms": round(1e3 * statistics.fmean(t for _c, t in pairs),
                                                2)}


async def requester_main(plan: dict[str, Any]) -> dict[str, Any]:
    req = Requester(plan)
    await req.setup()
    log("requester: calibrating (sequential calls, then one scheduler run)")
    results: dict[str, Any] = {"calibration": await req.calibrate()}
    log(f"oracle truth {results['calibration']['oracle_truth']}")
    results["policies"] = await req.policies()
    results["failover"] = await req.failover()
    capacity = statistics.median(r["throughput_per_s"]
                                 for r in results["policies"]["runs"]["scheduler"])
    results["hedging"] = await req.hedging(capacity)
    return results


# --- the straggler helper -------------------------------------------------------------------


async def straggler_main(args: argparse.Namespace) -> None:
    """The heavy model served as ``edge-runtime serve`` would, but ``lag_share`` of the
    answers are held back ``lag_factor`` x their compute before they are sent (after
    the compute the answer reports: a paused process, a lossy radio)."""
    from aiohttp import web

    from edge_runtime.mesh import fleet as fl
    from edge_runtime.mesh.oip.server import OipServer, make_app
    from edge_runtime.mesh.served import ManifestModels

    files = fl.TlsFiles(cert=Path(args.cert), key=Path(args.key), ca=Path(args.ca),
                        crl=Path(args.crl))
    provider = await asyncio.to_thread(ManifestModels, [args.manifest])
    app = make_app(provider, max_concurrency_per_peer=1, workers=1,
                   default_deadline_ms=10_000, server_name="straggler")
    rng = random.Random(17)

    @web.middleware
    async def lag(request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        timing = response.headers.get("Server-Timing", "")
        if request.path.endswith("/infer") and timing.startswith("infer;dur=") \
                and rng.random() < args.lag_share:
            infer_ms = timing.split(",", 1)[0].split("=", 1)[1]  # infer;dur=MS, work;...
            await asyncio.sleep(args.lag_factor * float(infer_ms) / 1e3)
        return response

    app.middlewares.append(lag)
    server = OipServer(app, host="127.0.0.1", port=0,
                       ssl_context=fl.server_context(files))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    print(f"serving {NAME} at {server.url}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.close()
        await asyncio.to_thread(provider.close)


# --- the parent: nodes, quotas, the run -----------------------------------------------------


class Nodes:
    """Processes each in a cgroup of its own with a CPU quota (see the module docstring);
    ``close()`` kills them and removes the cgroups."""

    def __init__(self, quota: float) -> None:
        from tests.mesh.netns import CGROUP_ROOT, cgroup_version

        self.version = cgroup_version()
        if self.version is None:
            raise SystemExit("no cgroup cpu controller here: the nodes need CPU quotas")
        self.root = CGROUP_ROOT if self.version == 2 else CGROUP_ROOT / "cpu"
        self.quota = quota
        self.tag = f"offload-{secrets.token_hex(3)}"
        self.groups: list[Path] = []
        self.procs: list[subprocess.Popen[str]] = []

    def cgroup(self) -> Path:
        path = self.root / f"{self.tag}-{len(self.groups)}"
        path.mkdir()
        self.groups.append(path)
        quota_us = int(self.quota * PERIOD_US)
        if self.version == 2:
            (path / "cpu.max").write_text(f"{quota_us} {PERIOD_US}\n")
        else:
            (path / "cpu.cfs_period_us").write_text(f"{PERIOD_US}\n")
            (path / "cpu.cfs_quota_us").write_text(f"{quota_us}\n")
        return path

    def start(self, argv: list[str], *, stdout: Any = subprocess.PIPE,
              stderr: Any = subprocess.PIPE) -> subprocess.Popen[str]:
        procs = self.cgroup() / "cgroup.procs"
        proc = subprocess.Popen(["sh", "-c", f'echo $$ > "{procs}" && exec "$@"', "sh", *argv],
                                stdout=stdout, stderr=stderr, text=True, cwd=REPO,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"),
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        for proc in self.procs:
            with contextlib.suppress(Exception):
                proc.communicate(timeout=10)
        for path in self.groups:
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)


def _wait_url(proc: subprocess.Popen[str], log_path: Path, timeout_s: float = 90.0) -> str:
    """The URL from the ``serving NAMES at URL`` line, as ``https://localhost:PORT``."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sel.select(timeout=max(0.0, deadline - time.monotonic())):
            line = proc.stdout.readline()
            if not line:
                break
            if " at " in line:
                return "https://localhost:" + line.strip().rsplit(":", 1)[1]
    proc.kill()
    raise SystemExit(f"a node did not start (exit {proc.wait(10)}): "
                     f"{log_path.read_text()[-2000:]}")


def _med(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def _report(raw: dict[str, Any], args: argparse.Namespace, setup: dict[str, Any]
            ) -> dict[str, Any]:
    pol = raw["policies"]["runs"]
    table = {p: {"throughput_per_s": _med([r["throughput_per_s"] for r in pol[p]]),
                 "mean_ms": _med([r["mean_ms"] for r in pol[p]]),
                 "p99_ms": _med([r["p99_ms"] for r in pol[p]]),
                 "errors": sum(r["errors"] for r in pol[p])} for p in POLICIES}
    sched, oracle, local = table["scheduler"], table["oracle"], table["local"]
    paired_speedup = [s["throughput_per_s"] / lo["throughput_per_s"]
                      for s, lo in zip(pol["scheduler"], pol["local"], strict=True)]
    paired_oracle_tp = [s["throughput_per_s"] / o["throughput_per_s"]
                        for s, o in zip(pol["scheduler"], pol["oracle"], strict=True)]
    paired_oracle_p99 = [s["p99_ms"] / o["p99_ms"]
                         for s, o in zip(pol["scheduler"], pol["oracle"], strict=True)]
    mapes = [r["mape_pct"] for r in pol["scheduler"]]
    speedup = sched["throughput_per_s"] / local["throughput_per_s"]
    tp_vs_oracle = sched["throughput_per_s"] / oracle["throughput_per_s"]
    p99_vs_oracle = sched["p99_ms"] / oracle["p99_ms"]
    mape = statistics.median(mapes)
    policies = {
        "load": f"closed loop, {args.inflight} requests in flight",
        "repeats": args.repeats, "warm_s": args.warm_s, "measure_s": args.measure_s,
        "median": table,
        "scheduler_over_local_throughput": round(speedup, 2),
        "scheduler_over_round_robin_throughput": round(
            sched["throughput_per_s"] / table["round_robin"]["throughput_per_s"], 3),
        "scheduler_over_oracle_throughput": round(tp_vs_oracle, 3),
        "scheduler_over_oracle_p99": round(p99_vs_oracle, 3),
        "scheduler_over_oracle_mean": round(sched["mean_ms"] / oracle["mean_ms"], 3),
        "round_robin_over_oracle_p99": round(table["round_robin"]["p99_ms"]
                                             / oracle["p99_ms"], 3),
        "paired_per_repeat": {
            "scheduler_over_local_throughput": [round(v, 2) for v in paired_speedup],
            "scheduler_over_oracle_throughput": [round(v, 3) for v in paired_oracle_tp],
            "scheduler_over_oracle_p99": [round(v, 3) for v in paired_oracle_p99]},
        "scheduler_mape_pct": {"median": round(mape, 2), "per_repeat": mapes},
        "speedup_target_met": speedup >= SPEEDUP_TARGET,
        "oracle_target_met": tp_vs_oracle >= 1 - ORACLE_TOLERANCE
        and p99_vs_oracle <= 1 + ORACLE_TOLERANCE,
        "mape_target_met": mape <= 100 * MAPE_TARGET,
        "mape_analysis": raw["policies"]["analysis"],
        "runs": pol,
    }
    fo = raw["failover"]
    failover = {
        "attempt_timeout_s": args.attempt_timeout_s,
        "bound_ms": round(1e3 * (args.attempt_timeout_s + FAILOVER_MARGIN_S)),
        "by_signal": {},
        "runs": fo,
    }
    met = True
    for sig in sorted({r["signal"] for r in fo}):
        mine = [r for r in fo if r["signal"] == sig]
        worsts = [r["worst_after_signal_ms"] for r in mine]
        worst = None if None in worsts else max(worsts)
        within = all(r["within_bound"] for r in mine)
        failover["by_signal"][sig] = {
            "runs": len(mine),
            "requests_in_flight_at_signal": sum(r["in_flight_at_signal"] for r in mine),
            "worst_answer_after_signal_ms": worst,
            "median_answer_after_signal_ms": _med(
                [v for r in mine for v in r["answered_after_signal_ms"] if v is not None]),
            "unanswered": sum(r["unanswered"] for r in mine),
            "worst_over_bound_ms": None if worst is None else round(
                worst - failover["bound_ms"], 1),
            "answered_after_their_attempt_timeout_ms": [
                v for r in mine for v in r.get("answered_after_their_attempt_timeout_ms", [])
                if v is not None],
            "within_bound": within,
            "errors": sum(r["errors"] for r in mine),
        }
        met = met and within
    failover["target_met"] = met
    hd = raw["hedging"]["runs"]
    p99_off = _med([r["p99_ms"] for r in hd["off"]])
    p99_on = _med([r["p99_ms"] for r in hd["on"]])
    extra = _med([r["extra_requests_pct"] for r in hd["on"]])
    hedging = {
        "straggler": f"{100 * args.lag_share:g} % of its answers held back "
                     f"{args.lag_factor:g}x their compute, after the compute it reports",
        "load": f"open loop (Poisson) at {args.hedge_load:g} x the scheduler's measured "
                f"throughput: {raw['hedging']['rate_per_s']}/s",
        "policy": "hedge after the p95 of recent completions, budget 5 %",
        "measure_s": args.hedge_measure_s,
        "median": {"off": {"p99_ms": p99_off,
                           "mean_ms": _med([r["mean_ms"] for r in hd["off"]])},
                   "on": {"p99_ms": p99_on, "mean_ms": _med([r["mean_ms"] for r in hd["on"]]),
                          "extra_requests_pct": extra}},
        "p99_on_over_off": round(p99_on / p99_off, 3),
        "paired_p99_on_over_off": [round(a["p99_ms"] / b["p99_ms"], 3)
                                   for a, b in zip(hd["on"], hd["off"], strict=True)],
        "extra_requests_pct": extra,
        "target_met": p99_on / p99_off <= HEDGE_P99_TARGET
        and extra <= 100 * HEDGE_EXTRA_TARGET,
        "runs": hd,
    }
    results = {
        "what": "offloading for real: three CPU-quota'd processes on loopback (the requester "
                "and two `edge-runtime serve` helpers), OIP over fleet mutual TLS (TLS 1.3), "
                "the runtime's Offloader and Scheduler",
        "setup": setup,
        "calibration": raw["calibration"],
        "targets": {"speedup_over_local": SPEEDUP_TARGET,
                    "within_oracle": ORACLE_TOLERANCE, "mape": MAPE_TARGET,
                    "failover_margin_s": FAILOVER_MARGIN_S,
                    "hedge_p99_ratio": HEDGE_P99_TARGET,
                    "hedge_extra_fraction": HEDGE_EXTRA_TARGET},
        "policies": policies,
        "failover": failover,
        "hedging": hedging,
    }
    results["notes"] = _notes(results)
    return results


def _notes(r: dict[str, Any]) -> list[str]:
    """What the figures mean, with the figures (see the module docstring)."""
    p, h, cal = r["policies"], r["hedging"], r["calibration"]
    med, targets = p["median"], r["targets"]
    fo = r["failover"]["by_signal"]
    lt = p["mape_analysis"]["local_timing"]
    an = p["mape_analysis"]["scheduler"]
    targets_seen = [t for t in an if t == "local" or t.startswith("helper")]
    helpers = [t for t in targets_seen if t != "local"]
    cpu = [x.get("requester_cpu_cores") for x in p["runs"]["scheduler"]]
    refusals = [x.get("hedge_refusals") for x in h["runs"]["on"]]
    cpu_on = [x.get("requester_cpu_cores") for x in h["runs"]["on"]]
    cpu_off = [x.get("requester_cpu_cores") for x in h["runs"]["off"]]
    bw = an["bandwidth_estimate_MBps"]
    bw_values = [v for run in bw for v in run.values() if v]
    seq = cal["sequential"]
    truth = {t: v["service_ms"] for t, v in cal["oracle_truth"].items()}
    capacity = sum(1e3 / v for v in truth.values() if v)
    request_kb = 110.6  # the input tensor (the answer is a few hundred bytes)
    spread = {k: round(100 * (max(v) - min(v)) / statistics.median(v))
              for k, runs in p["runs"].items()
              if (v := [x["throughput_per_s"] for x in runs])}

    def by(key: str, names: Sequence[str] = targets_seen) -> dict[str, Any]:
        return {t: an[t].get(key) for t in names}

    met = {"speedup over local": p["speedup_target_met"],
           "within 15 % of the oracle": p["oracle_target_met"],
           "MAPE": p["mape_target_met"], "failover": r["failover"]["target_met"],
           "hedging": h["target_met"]}
    told_below = all(
        (v.get("told_the_scheduler_mean_ms") or 0) <= (v.get("compute_mean_ms") or 0)
        for k, v in lt.items() if k in ("local", "scheduler"))
    n_hedged = int(statistics.median(x["requests"] for x in h["runs"]["off"]))
    stop = fo.get("SIGSTOP", {})
    kill = fo.get("SIGKILL", {})
    stop_worst = stop.get("worst_answer_after_signal_ms")
    stop_over = stop.get("worst_over_bound_ms")
    notes = [
        "Pi-class nodes are emulated, not measured: each process has a CFS quota of "
        f"{r['setup']['cpu_quota_cores']} core in a {r['setup']['cpu_period_ms']:g} ms period "
        f"on a shared 2-core x86 machine; loopback, no radio. Sequential: local "
        f"{seq['local']['service_ms']} ms per inference, a helper's round trip "
        f"{seq['helper-1']['round_trip_ms']} ms of which {seq['helper-1']['work_ms']} ms "
        f"its worker's work ({seq['helper-1']['service_ms']} ms the model call).",
        "Targets met: " + (", ".join(k for k, v in met.items() if v) or "none")
        + "; not met: " + (", ".join(k for k, v in met.items() if not v) or "none") + ".",
        f"Throughput: local {med['local']['throughput_per_s']}/s, round robin "
        f"{med['round_robin']['throughput_per_s']}/s, scheduler "
        f"{med['scheduler']['throughput_per_s']}/s ({p['scheduler_over_local_throughput']}x "
        f"local, target {targets['speedup_over_local']}x), oracle "
        f"{med['oracle']['throughput_per_s']}/s. The targets' occupancies per request in "
        f"the calibration run ({truth} ms) add up to {capacity:.1f}/s if each were kept "
        f"busy; the scheduler reached {100 * med['scheduler']['throughput_per_s'] / capacity:.0f}"
        " % of that. The requester's own TLS, HTTP and tensor encoding (110 kB out per "
        "offloaded request) share its quota with its "
        f"local inferences: it used {cpu} cores of {r['setup']['cpu_quota_cores']} in the "
        f"scheduler runs, and its local runs took {lt['scheduler'].get('compute_mean_ms')} "
        f"ms each there against {lt['local'].get('compute_mean_ms')} ms with no peers.",
        "Local timing: a local run is timed in the executor; the scheduler was told "
        f"{lt['local'].get('told_the_scheduler_mean_ms')} ms per run for "
        f"{lt['local'].get('compute_mean_ms')} ms of occupancy seen from the answers (local "
        f"only; MAPE {statistics.median(x['mape_pct'] for x in p['runs']['local'])} %), "
        f"{lt['scheduler'].get('told_the_scheduler_mean_ms')} ms for "
        f"{lt['scheduler'].get('compute_mean_ms')} ms under the scheduler: "
        + ("the wait in the one-thread executor is not in what it is told (that would make "
           "it more than the occupancy); the small rest is the hand-over to the executor "
           "and back." if told_below else "told more than the occupancy seen from here."),
        f"MAPE {p['scheduler_mape_pct']['median']} % (per repeat "
        f"{p['scheduler_mape_pct']['per_repeat']}), target {100 * targets['mape']:g} %: "
        + ("met. " if p["mape_target_met"] else "not met. ")
        + "Where the prediction error comes from (scheduler runs, by target): one request's "
        "service time varies a lot under the quota (coefficient of variation "
        f"{by('compute_cv_pct')} %; CFS hands out the quota in 10 ms slices, a third of an "
        "inference, so where the throttling falls decides its time); the best constant "
        "guess of one request's service time is already "
        f"{by('compute_constant_guess_floor_pct')} % off (the floor for that part of any "
        "prediction that, like the scheduler's, uses a mean). The predictions of the whole "
        f"completion time (network, queue, service) are {by('mape_pct')} % off, on "
        f"average {by('mean_signed_error_pct')} % (negative: too short), for answers "
        f"that took {by('elapsed_mean_ms')} ms on average.",
        "Reported service time against occupancy: the helpers report their worker's work "
        "(Server-Timing work) and their queue wait, and the scheduler is told both. Their "
        f"reported work averaged {by('compute_mean_ms', helpers)} ms in the scheduler runs "
        f"against an occupancy per request of {by('occupancy_mean_ms', helpers)} ms seen "
        "from the requester (answer to answer, local_compute_s; the calibration run: "
        f"{ {t: cal['service_as_told_to_the_scheduler_ms'].get(t) for t in helpers} } ms "
        f"reported, { {t: truth.get(t) for t in helpers} } ms occupancy): "
        + ("the work covers " + ", ".join(
            f"{t} {100 * an[t]['compute_mean_ms'] / an[t]['occupancy_mean_ms']:.0f} %"
            for t in helpers if an[t].get("compute_mean_ms") and an[t].get("occupancy_mean_ms"))
           + " of the occupancy; the rest is time outside the worker (the helper's TLS "
             "and HTTP handling, the requester's reading of the answer) that no reported "
             "figure holds, so each request queued ahead on a helper is counted that much "
             "short in the prediction."),
        "Bandwidth estimates (scheduler runs, one per repeat; MB/s): "
        f"{bw}. The scheduler takes what of an answer's time is neither the reported work "
        "nor the reported queue wait, less one RTT, for transfer; on loopback that is not "
        "the link's capacity but the per-request cost of sending and reading the bodies "
        "over TLS on two quota'd processes (and the rest of the occupancy above): "
        + (f"{request_kb / max(bw_values):.1f} to {request_kb / min(bw_values):.1f} ms per "
           f"{request_kb:g} kB request" if bw_values else "no estimate")
        + "; the scheduler predicts that much transfer time on each request.",
        "The oracle knows each target's mean occupancy (from the round-robin calibration "
        "run) and its exact queue, but its numbers are fixed: the requester's local runs "
        f"took {lt['round_robin'].get('compute_mean_ms')} ms in the round-robin runs, "
        f"{lt['oracle'].get('compute_mean_ms')} ms in the oracle's and "
        f"{lt['scheduler'].get('compute_mean_ms')} ms in the scheduler's (its local "
        "compute depends on how much it offloads), and it knows only means, not each "
        "request's time. It is not a strict upper bound: the scheduler reached "
        f"{p['scheduler_over_oracle_throughput']} of its throughput and "
        f"{p['scheduler_over_oracle_p99']} of its p99 (paired per repeat: "
        f"{p['paired_per_repeat']['scheduler_over_oracle_throughput']}, "
        f"{p['paired_per_repeat']['scheduler_over_oracle_p99']}). The machine is noisy: a "
        f"policy's throughput spread between repeats, (max - min) / median: {spread} %.",
        "Failover: a SIGKILLed helper's sockets are closed by the kernel, so its requests "
        "fail at once and run again elsewhere: answered "
        f"{kill.get('median_answer_after_signal_ms')} ms after the signal (median), worst "
        f"{kill.get('worst_answer_after_signal_ms')} ms. A SIGSTOPped one answers nothing, "
        "so a request on it is answered after its attempt timeout "
        f"({r['failover']['attempt_timeout_s']} s after it was sent) plus its re-run's own "
        "queue and compute elsewhere: "
        f"{stop.get('answered_after_their_attempt_timeout_ms')} ms after the timeout "
        f"(median {stop.get('median_answer_after_signal_ms')} ms, worst {stop_worst} ms after "
        f"the signal, bound {r['failover']['bound_ms']} ms: "
        + ("unanswered requests)" if stop_worst is None else
           f"{'misses' if stop_over > 0 else 'meets'} it by {abs(stop_over)} ms). ")
        + "A request sent a ms before the signal is answered (timeout - a) + re-run after "
          "it, so the bound holds only while its re-run takes at most the "
          f"{1e3 * targets['failover_margin_s']:g} ms margin + a.",
        f"Hedging (straggler: {h['straggler']}; {h['load']}): p99 "
        f"{h['median']['off']['p99_ms']} ms without, {h['median']['on']['p99_ms']} ms with "
        f"({h['p99_on_over_off']}x, target at most {targets['hedge_p99_ratio']}; paired "
        f"per repeat {h['paired_p99_on_over_off']}) for {h['extra_requests_pct']} % extra "
        f"requests (target at most {100 * targets['hedge_extra_fraction']:g} %). A p99 of "
        f"a {h['measure_s']:g} s window of about {n_hedged} requests is its "
        f"{max(1, n_hedged // 100)} slowest, hence the spread between repeats. "
        f"maybe_hedge sent nothing {refusals} times per run (a request past its hedge time "
        "with the budget spent or no other target); requester CPU "
        f"{cpu_on} cores with hedging, {cpu_off} without.",
    ]
    return notes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--role", choices=("bench", "requester", "straggler"),
                        default="bench", help=argparse.SUPPRESS)
    parser.add_argument("--plan", help=argparse.SUPPRESS)
    for name in ("manifest", "cert", "key", "ca", "crl"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="about 2 minutes")
    parser.add_argument("--quota", type=float, default=0.5,
                        help="CPU quota of every node, in cores (default 0.5)")
    parser.add_argument("--convs", type=int, default=6, help="the heavy model's convolutions")
    parser.add_argument("--inflight", type=int, default=6,
                        help="closed loop: requests in flight (default 6)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warm-s", type=float, default=1.5)
    parser.add_argument("--measure-s", type=float, default=10.0)
    parser.add_argument("--attempt-timeout-s", type=float, default=1.0)
    parser.add_argument("--lag-share", type=float, default=0.10)
    parser.add_argument("--lag-factor", type=float, default=25.0)
    parser.add_argument("--hedge-load", type=float, default=0.6)
    parser.add_argument("--hedge-measure-s", type=float, default=15.0)
    parser.add_argument("--kills", type=int, default=3, help="SIGKILL failover runs")
    parser.add_argument("--stops", type=int, default=2, help="SIGSTOP failover runs")
    parser.add_argument("--keep-raw", metavar="PATH",
                        help="also write the requester's raw results (with the arguments) here")
    parser.add_argument("--report-from", metavar="PATH",
                        help="no run: write offload.json again from a --keep-raw file")
    args = parser.parse_args()
    if args.report_from:
        from benchmarks.machine import save

        kept = json.loads(Path(args.report_from).read_text())
        vars(args).update(kept["args"])
        print(f"wrote {save('offload', _report(kept['raw'], args, kept['setup']))}")
        return 0
    if args.role == "requester":
        plan = json.loads(Path(args.plan).read_text())
        results = asyncio.run(requester_main(plan))
        Path(plan["out"]).write_text(json.dumps(results))
        return 0
    if args.role == "straggler":
        asyncio.run(straggler_main(args))
        return 0
    if args.quick:
        args.repeats, args.measure_s, args.hedge_measure_s = 1, 5.0, 8.0
        args.kills, args.stops = 1, 1
    return bench(args)


def bench(args: argparse.Namespace) -> int:
    from benchmarks.machine import save
    from edge_runtime.mesh import fleet as fl
    from tests.mesh.heavy import write_heavy
    from tests.mesh.oip_helpers import node

    started = time.monotonic()
    nodes = Nodes(args.quota)
    try:
        with tempfile.TemporaryDirectory() as tmp_text, contextlib.ExitStack() as logs:
            tmp = Path(tmp_text)
            manifest = write_heavy(tmp / "model", NAME, convs=args.convs)
            fleet = fl.init_fleet(tmp / "fleet")
            victims = [(f"victim-{i + 1}", "SIGKILL") for i in range(args.kills)] + [
                (f"victim-{args.kills + i + 1}", "SIGSTOP") for i in range(args.stops)]
            names = ["helper-1", "helper-2", *(v for v, _s in victims)]
            peers: dict[str, dict[str, Any]] = {}
            starting = []
            for name in names:
                f = node(fleet, tmp / "nodes", name).files
                config = tmp / f"{name}.toml"
                config.write_text(
                    f'[node]\nname = "{name}"\n[mesh]\nlisten = "127.0.0.1:0"\n'
                    f'models = ["{manifest}"]\nmax_concurrency_per_peer = 1\nworkers = 1\n'
                    f'tls_cert = "{f.cert}"\ntls_key = "{f.key}"\n'
                    f'tls_ca = "{f.ca}"\ntls_crl = "{f.crl}"\n')
                starting.append((name, nodes.start(
                    [sys.executable, "-m", "edge_runtime", "serve", str(config)],
                    stderr=logs.enter_context((tmp / f"{name}.log").open("w")))))
            f = node(fleet, tmp / "nodes", "straggler").files
            starting.append(("straggler", nodes.start(
                [sys.executable, str(Path(__file__).resolve()), "--role", "straggler",
                 "--manifest", str(manifest), "--cert", str(f.cert), "--key", str(f.key),
                 "--ca", str(f.ca), "--crl", str(f.crl), "--lag-share", str(args.lag_share),
                 "--lag-factor", str(args.lag_factor)],
                stderr=logs.enter_context((tmp / "straggler.log").open("w")))))
            log(f"starting {len(starting)} helper nodes ({args.quota:g} core each, "
                f"{PERIOD_US // 1000} ms period, cgroup v{nodes.version})")
            for name, proc in starting:
                peers[name] = {"url": _wait_url(proc, tmp / f"{name}.log"), "pid": proc.pid}
            mine = node(fleet, tmp / "nodes", "requester").files
            plan = {
                "manifest": str(manifest),
                "tls": {k: str(getattr(mine, k)) for k in ("cert", "key", "ca", "crl")},
                "peers": peers, "helpers": ["helper-1", "helper-2"], "victims": victims,
                "straggler": "straggler", "inflight": args.inflight,
                "repeats": args.repeats, "warm_s": args.warm_s, "measure_s": args.measure_s,
                "calibrate_s": 3.0, "attempt_timeout_s": args.attempt_timeout_s,
                "request_timeout_s": 10.0, "hedge_load": args.hedge_load,
                "hedge_measure_s": args.hedge_measure_s, "out": str(tmp / "out.json"),
            }
            (tmp / "plan.json").write_text(json.dumps(plan))
            log("nodes up; the requester runs (its progress follows)")
            req = nodes.start([sys.executable, str(Path(__file__).resolve()), "--role",
                               "requester", "--plan", str(tmp / "plan.json")],
                              stdout=subprocess.DEVNULL)
            assert req.stderr is not None
            tail: list[str] = []
            for line in req.stderr:
                tail = [*tail[-40:], line]
                if line.startswith("[offload"):
                    sys.stderr.write(line)
            if req.wait() != 0:
                sys.stderr.write("".join(tail))
                raise SystemExit(f"the requester failed (exit {req.returncode})")
            raw = json.loads((tmp / "out.json").read_text())
    finally:
        nodes.close()
    setup = {
        "nodes": "3 processes on loopback, each in its own cgroup with a CPU quota: the "
                 "requester (this script's --role requester: the Offloader, the local "
                 "model, the load) and two `edge-runtime serve` helpers; spare helpers for "
                 "the failover runs and a straggler for the hedging runs, idle otherwise",
        "cgroup_version": nodes.version,
        "cpu_quota_cores": args.quota, "cpu_period_ms": PERIOD_US / 1000,
        "network": "loopback (no network namespaces), fleet mutual TLS 1.3, binary tensors",
        "model": f"tests/mesh/heavy.py write_heavy(convs={args.convs}, channels=48, "
                 "size=96): float32 1x3x96x96 input (110592 bytes), 10 classes",
        "server": "[mesh] max_concurrency_per_peer = 1, workers = 1",
        "offloader": {"attempt_timeout_s": args.attempt_timeout_s, "request_timeout_s": 10.0,
                      "verify_fraction": 0.0},
        "heartbeats": "every 1 s, /v2/health/live, RTT to the scheduler, down after 3 misses",
        "quick": args.quick,
        "wall_s": round(time.monotonic() - started, 1),
    }
    if args.keep_raw:
        Path(args.keep_raw).write_text(json.dumps(
            {"args": {k: v for k, v in vars(args).items()
                      if k not in ("keep_raw", "report_from")},
             "setup": setup, "raw": raw}))
    results = _report(raw, args, setup)
    path = save("offload", results)
    p, fo, h = results["policies"], results["failover"], results["hedging"]
    print(f"throughput/s {json.dumps({k: v['throughput_per_s'] for k, v in p['median'].items()})}"
          f"; p99 ms {json.dumps({k: v['p99_ms'] for k, v in p['median'].items()})}")
    print(f"scheduler/local {p['scheduler_over_local_throughput']}x (target 2.5), "
          f"vs oracle throughput {p['scheduler_over_oracle_throughput']} p99 "
          f"{p['scheduler_over_oracle_p99']}, MAPE {p['scheduler_mape_pct']['median']} %")
    print(f"failover {json.dumps(fo['by_signal'])}")
    print(f"hedging p99 {h['p99_on_over_off']}x for {h['extra_requests_pct']} % extra")
    print(f"wrote {path} in {setup['wall_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
