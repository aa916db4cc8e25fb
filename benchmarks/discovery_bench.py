"""Mesh benchmark, part 2: discovery in network namespaces, and the scheduler simulated.

Part 1 (the OIP round trip over mutual TLS) is ``benchmarks/mesh_bench.py``; this part
has its own file and ``benchmarks/results/discovery.json``.

**Discovery (real processes, real mDNS).** Each run builds 3 hosts as network
namespaces on a bridge (``tests/mesh/netns.py``) and starts the discovery probe
(``python -m edge_runtime.mesh._probe``: advertise, serve ``/v2/health/live``, browse,
heartbeat with the defaults of ``[mesh.discovery]``: every 1 s, down after 3 misses) on
two of them; once they see each other a third starts. Measured: from the new node's
discovery start (its ``starting`` line: interpreter up, health endpoint served) to the
others listing it (target 2 s; this includes zeroconf's name probing, about 0.5 s), also
from its process start (adds the interpreter's start-up); then its process is SIGKILLed (no
goodbye; its mDNS records linger) and the time until the others mark it ``down`` (target
10 s); and, in a separate step, a clean stop's goodbye until the others drop it.
Medians over ``--runs`` runs.

**Scheduler (simulation only; no inference runs over a network here).** A discrete-event
simulation of one node that receives Poisson requests for the heavy model and two helper
peers, each a FIFO single server. Service times are drawn from the shipped
``digits-heavy-int8-onnx`` model's latency, measured in this process (one thread,
``--samples`` runs), multiplied by ``--pi-factor`` to stand for a Pi-class CPU (an
assumption, not a measurement on a Pi); a CPU-quota'd peer is emulated by a further
factor on its service times. The link is ``--rtt-ms`` and ``--mbps``. Policies: local
only, round robin, :class:`~edge_runtime.mesh.scheduler.Scheduler`, and an oracle that
knows every node's true mean service time and every queue exactly (how much work each
node has left) and picks the earliest expected completion; for scale also a clairvoyant
one that knows even each request's own service time on each node (no real scheduler can:
it dodges the measured latency's outliers). The scheduler learns only from what it would
see for real: the compute time and queue wait a peer reports, heartbeat RTTs. Its MAPE
comes with a floor: the MAPE of the best constant guess of one request's service time
from the measured distribution (what no estimate of a mean can beat). Scenarios:

- ``equal``: three equal nodes offered 2.85x one node's capacity: throughput (target at
  least 2.5x local alone) and p99;
- ``mixed``: one helper at full speed, one quota'd to half, offered 90 % of the total
  capacity: mean and p99 latency of the scheduler within 15 % of the oracle; its
  prediction error (MAPE of predicted vs simulated completion time; target 10 %);
- ``straggler``: three equal nodes, offered 60 %, one peer a straggler: ``--lag-share``
  of its answers arrive ``--lag-factor`` x its service time late (outside the compute it
  reports: Wi-Fi retransmissions, a paused process): p99 without and with hedging after
  the p95 (target: at least halved, at most 5 % extra requests). Also
  ``straggler_compute_stalls``: ``--stall-share`` of its requests compute
  ``--stall-factor`` x longer, which it reports, so the scheduler already steers away and
  hedging has little left to cut (reported, not a target).

Run it with ``nice``: ``nice python benchmarks/discovery_bench.py``.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.machine import save  # noqa: E402
from edge_runtime.mesh.scheduler import (  # noqa: E402
    LOCAL,
    Decision,
    HedgePolicy,
    Outcome,
    Request,
    Scheduler,
)

DISCOVERY_TARGET_S = 2.0
CRASH_TARGET_S = 10.0
SPEEDUP_TARGET = 2.5
ORACLE_TOLERANCE = 0.15
MAPE_TARGET = 0.10
MODEL = "digits-heavy-int8-onnx"


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


# --- discovery in namespaces --------------------------------------------------------------


def discovery_runs(runs: int) -> dict[str, Any]:
    import signal

    from tests.mesh.netns import Net

    def probe(host: Any, name: str) -> Any:
        return host.popen([sys.executable, "-m", "edge_runtime.mesh._probe", "--name", name,
                           "--port", "8001", "--serve-health",
                           "--heartbeat-interval-s", "1.0", "--down-after-misses", "3"])

    def lists(node_id: str, state: str | None = None) -> Callable[[dict[str, Any]], bool]:
        return lambda line: any(p["node_id"] == node_id and (state is None or
                                                             p["state"] == state)
                                for p in line.get("peers", ()))

    found_s, found_from_start_s, crash_s, goodbye_s = [], [], [], []
    for run in range(runs):
        print(f"[discovery {run + 1}/{runs}]", file=sys.stderr)
        with Net(3) as net:
            a, b = probe(net.hosts[0], "n1"), probe(net.hosts[1], "n2")
            a.wait_for(lists("n2"), 20.0)
            b.wait_for(lists("n1"), 20.0)
            launched = time.monotonic()
            c = probe(net.hosts[2], "n3")
            starting = c.wait_for(lambda line: line["event"] == "starting", 20.0)
            seen = [p.wait_for(lists("n3"), 20.0)["_received_s"] for p in (a, b)]
            found_s += [s - starting["_received_s"] for s in seen]
            found_from_start_s += [s - launched for s in seen]
            marks = [len(p.lines) for p in (a, b)]
            c.kill(signal.SIGKILL)
            killed = time.monotonic()
            crash_s += [p.wait_for(lists("n3", "down"), 30.0, start=m)["_received_s"] - killed
                        for p, m in zip((a, b), marks, strict=True)]
            # a clean stop: n2's goodbye, seen by n1
            mark = len(a.lines)
            stopped = time.monotonic()
            b.kill(signal.SIGTERM)
            gone = a.wait_for(lambda line: line["event"] == "removed"
                              and line["peer"]["node_id"] == "n2", 10.0, start=mark)
            goodbye_s.append(gone["_received_s"] - stopped)
    return {
        "runs": runs, "hosts": 3, "heartbeat_interval_s": 1.0, "down_after_misses": 3,
        "discovered_after_discovery_start_s": {"median": _median(found_s),
                                            "max": round(max(found_s), 3)},
        "discovered_after_process_start_s": {"median": _median(found_from_start_s),
                                             "max": round(max(found_from_start_s), 3)},
        "crash_marked_down_s": {"median": _median(crash_s), "max": round(max(crash_s), 3)},
        "goodbye_removed_s": {"median": _median(goodbye_s), "max": round(max(goodbye_s), 3)},
        "targets": {"discovery_s": DISCOVERY_TARGET_S, "crash_s": CRASH_TARGET_S},
        "discovery_target_met": statistics.median(found_s) <= DISCOVERY_TARGET_S,
        "crash_target_met": statistics.median(crash_s) <= CRASH_TARGET_S,
    }


# --- the scheduler, simulated -------------------------------------------------------------


def measure_service_s(samples: int) -> list[float]:
    """The heavy model's latency, one thread, in seconds (sorted)."""
    import numpy as np

    from edge_runtime import load_model

    model = load_model(MODEL, num_threads=1)
    spec = model.inputs[0]
    x = np.zeros([d if isinstance(d, int) and d > 0 else 1 for d in spec.shape], spec.dtype)
    for _ in range(50):
        model.run(x)
    out = []
    for _ in range(samples):
        start = time.perf_counter()
        model.run(x)
        out.append(time.perf_counter() - start)
    return sorted(out)


@dataclass
class Node:
    name: str
    speed_factor: float  # service time multiplier
    stall_share: float = 0.0  # requests whose compute takes stall_factor x longer
    stall_factor: float = 1.0
    lag_share: float = 0.0  # answers delayed by lag_factor x the service time on the way
    lag_factor: float = 0.0
    free_at_s: float = 0.0


@dataclass(frozen=True)
class Link:
    rtt_s: float
    bandwidth_Bps: float  # noqa: N815

    def one_way_s(self, nbytes: int) -> float:
        return self.rtt_s / 2 + nbytes / self.bandwidth_Bps


@dataclass
class SimResult:
    latencies_s: list[float]
    makespan_s: float
    extra_requests: int
    mape: float | None

    def summary(self, n: int) -> dict[str, Any]:
        ordered = sorted(self.latencies_s)
        return {
            "throughput_per_s": round(n / self.makespan_s, 1),
            "mean_ms": round(1e3 * statistics.fmean(ordered), 3),
            "p50_ms": round(1e3 * ordered[len(ordered) // 2], 3),
            "p99_ms": round(1e3 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3),
            "extra_requests_pct": round(100 * self.extra_requests / n, 2),
            **({"mape_pct": round(100 * self.mape, 2)} if self.mape is not None else {}),
        }


def simulate(policy: str, nodes: list[Node], link: Link, base_s: list[float], *,
             rate_hz: float, n: int, payload_bytes: int, seed: int,
             hedge: HedgePolicy | None = None) -> SimResult:
    """One run; ``nodes[0]`` is the node the requests arrive at."""
    rng = random.Random(seed)
    arrivals: list[float] = []
    t = 0.0
    for _ in range(n):
        t += rng.expovariate(rate_hz)
        arrivals.append(t)
    # The true service time of request i on each node (the oracle may look; no one else).
    true_s: list[dict[str, float]] = []
    lag_s: list[dict[str, float]] = []
    for _ in range(n):
        row, lags = {}, {}
        for node in nodes:
            s = rng.choice(base_s) * node.speed_factor
            if node.stall_share and rng.random() < node.stall_share:
                s *= node.stall_factor
            row[node.name] = s
            lags[node.name] = (node.lag_factor * s if node.lag_share
                               and rng.random() < node.lag_share else 0.0)
        true_s.append(row)
        lag_s.append(lags)
    for node in nodes:
        node.free_at_s = 0.0
    by_name = {node.name: node for node in nodes}
    local = nodes[0].name

    def link_of(name: str) -> Link:
        return Link(0.0, math.inf) if name == local else link

    def run_on(name: str, i: int, sent_s: float) -> tuple[float, float, float]:
        """(answer arrives, compute s, queue wait s) of request i sent at sent_s."""
        node, lk = by_name[name], link_of(name)
        arrive = sent_s + lk.one_way_s(payload_bytes)
        start = max(arrive, node.free_at_s)
        node.free_at_s = start + true_s[i][name]
        answered = node.free_at_s + lk.one_way_s(64) + lag_s[i][name]
        return answered, true_s[i][name], start - arrive

    latencies: list[float] = []
    done_s = 0.0
    extra = 0
    mean_s = statistics.fmean(base_s)
    if policy in ("local", "round_robin", "oracle", "clairvoyant"):
        cycle = itertools.cycle([node.name for node in nodes])
        for i, at in enumerate(arrivals):
            if policy == "local":
                target = local
            elif policy == "round_robin":
                target = next(cycle)
            else:
                def finish_if(name: str, i: int = i, at: float = at) -> float:
                    lk = link_of(name)
                    start = max(at + lk.one_way_s(payload_bytes), by_name[name].free_at_s)
                    service = true_s[i][name] if policy == "clairvoyant" else (
                        mean_s * by_name[name].speed_factor)
                    return start + service + lk.one_way_s(64)
                target = min(by_name, key=finish_if)
            answered, _, _ = run_on(target, i, at)
            latencies.append(answered - at)
            done_s = max(done_s, answered)
        return SimResult(latencies, done_s - arrivals[0], 0, None)

    # The scheduler: events in time order; it sees answers only when they arrive.
    sched = Scheduler(local_service_s=statistics.median(base_s) * nodes[0].speed_factor,
                      hedge=hedge, seed=seed)
    for node in nodes[1:]:
        sched.add_peer(node.name)
        sched.observe_rtt(node.name, link.rtt_s)  # heartbeats measure it
    events: list[tuple[float, int, str, Any]] = []
    seq = itertools.count()
    for i, at in enumerate(arrivals):
        heapq.heappush(events, (at, next(seq), "arrive", i))
    requests: dict[int, Request] = {}
    index_of: dict[int, int] = {}

    def send(req: Request, decision: Decision, now: float, hedged: bool) -> None:
        attempt = sched.start(req, decision, now, hedge=hedged)
        answered, compute, wait = run_on(decision.target, index_of[req.id], now)
        heapq.heappush(events, (answered, next(seq), "answer", (attempt, compute, wait)))

    while events:
        now, _, kind, data = heapq.heappop(events)
        if kind == "arrive":
            req = sched.new_request(payload_bytes + 64, now)
            requests[req.id] = req
            index_of[req.id] = data
            send(req, sched.choose(req, now), now, False)
            due = sched.hedge_due_s(req)
            if due is not None:
                heapq.heappush(events, (due, next(seq), "hedge", req))
        elif kind == "hedge":
            req = data
            busy = {a.target for a in req.in_flight}
            if sched.maybe_hedge(req, now) is not None:
                extra += 1
                # maybe_hedge started the attempt; run it on the simulated node
                attempt = req.attempts[-1]
                answered, compute, wait = run_on(attempt.target, index_of[req.id], now)
                heapq.heappush(events, (answered, next(seq), "answer",
                                        (attempt, compute, wait)))
                assert attempt.target not in busy
        else:
            attempt, compute, wait = data
            outcome = sched.finish(attempt, now, ok=True, service_s=compute,
                                   queue_wait_s=wait,
                                   bytes_total=0 if attempt.target == LOCAL else
                                   payload_bytes + 64)
            if outcome is Outcome.DELIVERED:
                latencies.append(now - attempt.request.created_s)
                done_s = max(done_s, now)
    return SimResult(latencies, done_s - arrivals[0], extra, sched.mape)


def _mape_floor(samples: list[float]) -> float:
    """The lowest MAPE any constant guess reaches on ``samples`` (tried at each sample)."""
    step = max(1, len(samples) // 200)
    return min(statistics.fmean(abs(x - c) / x for x in samples) for c in samples[::step])


def scheduler_sim(args: argparse.Namespace) -> dict[str, Any]:
    base_s = [s * args.pi_factor for s in measure_service_s(args.samples)]
    mean_s = statistics.fmean(base_s)
    link = Link(args.rtt_ms / 1e3, args.mbps * 1e6 / 8)
    payload = 4096  # the model's 1x1x32x32 float32 input
    n = args.requests

    def run(policy: str, nodes: list[Node], load: float, seed: int,
            hedge: HedgePolicy | None = None) -> dict[str, Any]:
        capacity_hz = sum(1 / (mean_s * node.speed_factor) for node in nodes)
        return simulate(policy, nodes, link, base_s, rate_hz=load * capacity_hz, n=n,
                        payload_bytes=payload, seed=seed, hedge=hedge).summary(n)

    def equal() -> list[Node]:
        return [Node("local", 1.0), Node("p1", 1.0), Node("p2", 1.0)]

    out: dict[str, Any] = {
        "service_time": {
            "model": MODEL, "measured_samples": args.samples,
            "measured_median_ms": round(1e3 * statistics.median(base_s) / args.pi_factor, 4),
            "pi_factor": args.pi_factor,
            "simulated_median_ms": round(1e3 * statistics.median(base_s), 3),
            "simulated_p95_ms": round(1e3 * base_s[int(0.95 * len(base_s))], 3),
            "simulated_max_ms": round(1e3 * base_s[-1], 3),
            "mape_floor_pct": round(100 * _mape_floor(base_s), 2),
        },
        "link": {"rtt_ms": args.rtt_ms, "mbps": args.mbps, "payload_bytes": payload},
        "requests_per_run": n,
    }
    # equal nodes, overloaded for one node: throughput
    load_equal = 0.95  # of the three nodes' capacity: 2.85x one node
    eq = {p: run(p, equal(), load_equal, 1) for p in ("local", "round_robin", "scheduler",
                                                      "oracle", "clairvoyant")}
    speedup = eq["scheduler"]["throughput_per_s"] / eq["local"]["throughput_per_s"]
    out["equal"] = {"offered_x_one_node": round(3 * load_equal, 2), **eq,
                    "scheduler_over_local_throughput": round(speedup, 2),
                    "target_met": speedup >= SPEEDUP_TARGET}

    # a quota'd helper at half speed
    def mixed() -> list[Node]:
        return [Node("local", 1.0), Node("p1", 1.0), Node("p2-quota-50pct", 2.0)]
    mx = {p: run(p, mixed(), 0.9, 2) for p in ("local", "round_robin", "scheduler", "oracle",
                                               "clairvoyant")}
    mean_ratio = mx["scheduler"]["mean_ms"] / mx["oracle"]["mean_ms"]
    p99_ratio = mx["scheduler"]["p99_ms"] / mx["oracle"]["p99_ms"]
    out["mixed"] = {"offered_of_capacity": 0.9, **mx,
                    "scheduler_over_oracle_mean": round(mean_ratio, 3),
                    "scheduler_over_oracle_p99": round(p99_ratio, 3),
                    "oracle_target_met": mean_ratio <= 1 + ORACLE_TOLERANCE,
                    "mape_target_met": mx["scheduler"]["mape_pct"] <= 100 * MAPE_TARGET}

    # one straggler peer: hedging
    def hedging(name: str, straggler: Node, load: float) -> dict[str, Any]:
        def nodes() -> list[Node]:
            return [Node("local", 1.0), Node("p1", 1.0), Node(**vars(straggler))]
        plain = run("scheduler", nodes(), load, 3)
        hedged = run("scheduler", nodes(), load, 3,
                     hedge=HedgePolicy(quantile=0.95, budget_fraction=0.05))
        cut = hedged["p99_ms"] / plain["p99_ms"]
        return {"scenario": name, "offered_of_capacity": load, "no_hedging": plain,
                "hedging_after_p95_budget_5pct": hedged,
                "p99_hedged_over_plain": round(cut, 3),
                "target_met": cut <= 0.5 and hedged["extra_requests_pct"] <= 5.0}

    out["straggler"] = hedging(
        f"{100 * args.lag_share:g} % of the straggler's answers arrive late by "
        f"{args.lag_factor:g}x the service time (Wi-Fi retransmissions, a paused process): "
        "its reported compute stays normal, so the estimates cannot see it coming",
        Node("p2-straggler", 1.0, lag_share=args.lag_share, lag_factor=args.lag_factor), 0.6)
    out["straggler_compute_stalls"] = hedging(
        f"{100 * args.stall_share:g} % of the straggler's requests compute "
        f"{args.stall_factor:g}x longer (it reports it): the service EWMA and the overdue "
        "rule already steer requests away, so hedging has little left to cut",
        Node("p2-stalls", 1.0, stall_share=args.stall_share,
             stall_factor=args.stall_factor), 0.6)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="discovery runs (default 5)")
    parser.add_argument("--skip-discovery", action="store_true")
    parser.add_argument("--samples", type=int, default=2000, help="model latency samples")
    parser.add_argument("--pi-factor", type=float, default=8.0,
                        help="service-time multiplier for a Pi-class CPU (default 8)")
    parser.add_argument("--rtt-ms", type=float, default=0.5)
    parser.add_argument("--mbps", type=float, default=100.0)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--stall-share", type=float, default=0.02)
    parser.add_argument("--stall-factor", type=float, default=20.0)
    parser.add_argument("--lag-share", type=float, default=0.10)
    parser.add_argument("--lag-factor", type=float, default=30.0)
    args = parser.parse_args()
    results: dict[str, Any] = {
        "honesty": ("discovery: real processes and real mDNS in network namespaces on one "
                    "machine (no radio, no switch); scheduler: a discrete-event simulation "
                    "only; service times are this machine's measured latency of the heavy "
                    f"model times {args.pi_factor} for a Pi-class CPU (assumed, not measured "
                    "on a Pi), a quota'd peer by a further factor 2, the link by fixed RTT "
                    "and bandwidth"),
    }
    if not args.skip_discovery:
        results["discovery"] = discovery_runs(args.runs)
    results["scheduler"] = scheduler_sim(args)
    path = save("discovery", results)
    print(f"wrote {path}")
    if "discovery" in results:
        d = results["discovery"]
        print(f"discovery {d['discovered_after_discovery_start_s']['median']} s, "
              f"crash down {d['crash_marked_down_s']['median']} s, "
              f"goodbye {d['goodbye_removed_s']['median']} s")
    s = results["scheduler"]
    mixed = s["mixed"]
    print(f"equal: scheduler/local throughput {s['equal']['scheduler_over_local_throughput']}x; "
          f"mixed: scheduler/oracle mean {mixed['scheduler_over_oracle_mean']}, p99 "
          f"{mixed['scheduler_over_oracle_p99']}, MAPE {mixed['scheduler']['mape_pct']} % "
          f"(floor {s['service_time']['mape_floor_pct']} %); "
          f"straggler p99 hedged/plain {s['straggler']['p99_hedged_over_plain']} "
          f"(+{s['straggler']['hedging_after_p95_budget_5pct']['extra_requests_pct']} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
