"""Where one inference request runs: this node or a peer (pure: no I/O, time passed in).

The model
---------
Every place a request can run is a *target*: ``"local"`` (this node) or a peer's node id.
For each target the scheduler keeps exponentially weighted moving averages (EWMAs,
weight ``alpha`` on the newest sample) of what it has measured:

- ``service_s``: the model's compute time on that target (the peer reports it in its
  answer; locally it is measured around the model call);
- ``rtt_s``: round-trip time (heartbeats, or an answer's network share);
- ``bandwidth_Bps``: bytes per second of the link (an answer's bytes over its network
  time minus one RTT).

The predicted completion time of a request of ``payload_bytes`` on a target is::

    transfer_s + rtt_s + backlog_s + service_s
    transfer_s = payload_bytes / bandwidth_Bps          (0 and rtt 0 for "local")
    backlog_s  = (queue + 1) x service_s, less what is already done

A target serves one request at a time, first come first served. The backlog is found by
replaying the attempts this scheduler has in flight there with the estimates: each
starts when it has arrived (``rtt/2 + transfer`` after it was sent) and the one before
it is done, the first after the target's last known finish; requests the target reports
queued beyond ours add ``service_s`` each. An attempt that is overdue is assumed to need
as long again as it has overrun (a stall, a throttled CPU), so a stuck target stops
looking nearly free. Without samples yet a target borrows the local service time (an
optimistic prior, so it gets tried), with a LAN-like RTT and bandwidth.

Choosing: **power of two choices** among the eligible peers (their circuit breaker lets
a request through), compared with local; the lowest prediction wins. Two random peers
instead of all of them keeps herds off the single best-looking peer when several
schedulers share the peers, at almost no loss.

**Circuit breaker** per peer: closed; ``failure_threshold`` consecutive failures open
it (no requests) for ``cooldown_s``; then half-open: one probe request goes through; its
success closes the breaker, its failure opens it again.

**Hedging** (optional): a request still unanswered after the p95 of recent completion
times gets a second attempt on the best other target, while the hedges sent stay under
``budget_fraction`` of the requests. Whichever attempt answers first is delivered; the
other is dropped when it comes back (counted in ``duplicates_dropped``).

**Cascade** (optional, :class:`Cascade`): a small local model answers first; only inputs
whose confidence is below ``threshold`` go to the heavy model through the scheduler.

**Exactly once**: a :class:`Request` moves ``pending -> done`` (the first successful
attempt) or ``pending -> failed`` (``max_attempts`` used up); an attempt that completes
after that is dropped and counted. Each attempt ends once (``finish`` or ``abandon``).

**Prediction error**: each completed attempt's prediction is compared with its measured
time: MAPE (mean absolute percentage error) over the last ``mape_window`` attempts.

**Accounting** per peer: requests, failures, compute seconds and bytes, both what it
served for us (``consumed_*``) and what we served for it (``served_*``).

Units: seconds (``_s``), bytes, bytes per second (``_Bps``). All times come from the
caller (``now_s``, a monotonic clock); nothing here sleeps, reads a clock or does I/O.
"""

from __future__ import annotations

import enum
import itertools
import math
import random
from collections import deque
from dataclasses import dataclass, field

from edge_runtime.errors import SchedulerError

#: The target name of this node.
LOCAL = "local"

#: Priors before a peer has been measured: a wired LAN.
PRIOR_RTT_S = 0.001
PRIOR_BANDWIDTH_BPS = 10e6


class Ewma:
    """An exponentially weighted moving average; ``value`` is None until a sample."""

    __slots__ = ("alpha", "value")

    def __init__(self, alpha: float, value: float | None = None) -> None:
        if not 0 < alpha <= 1:
            raise SchedulerError(f"EWMA alpha {alpha} is outside (0, 1]",
                                 hint="use a weight such as 0.2 for the newest sample")
        self.alpha = alpha
        self.value = value

    def update(self, sample: float) -> float:
        """Fold in one sample and return the new average."""
        self.value = sample if self.value is None else (
            self.alpha * sample + (1 - self.alpha) * self.value)
        return self.value


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Stops sending to a peer after ``failure_threshold`` consecutive failures; after
    ``cooldown_s`` lets one probe through (half-open) and closes again on its success."""

    def __init__(self, *, failure_threshold: int = 3, cooldown_s: float = 5.0) -> None:
        if failure_threshold < 1 or not cooldown_s > 0:
            raise SchedulerError(
                f"circuit breaker needs failure_threshold >= 1 and cooldown_s > 0 "
                f"(got {failure_threshold}, {cooldown_s})",
                hint="open after a few failures (3) and probe after a few seconds")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.failures = 0
        self._opened_at_s: float | None = None
        self._probe_in_flight = False

    def state(self, now_s: float) -> BreakerState:
        if self._opened_at_s is None:
            return BreakerState.CLOSED
        if now_s - self._opened_at_s >= self.cooldown_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allows(self, now_s: float) -> bool:
        """Whether a request may be sent now (does not take the half-open probe)."""
        state = self.state(now_s)
        return state is BreakerState.CLOSED or (
            state is BreakerState.HALF_OPEN and not self._probe_in_flight)

    def on_send(self, now_s: float) -> None:
        if self.state(now_s) is BreakerState.HALF_OPEN:
            self._probe_in_flight = True

    def on_success(self) -> None:
        self.failures = 0
        self._opened_at_s = None
        self._probe_in_flight = False

    def on_failure(self, now_s: float) -> None:
        self.failures += 1
        was_probe = self._probe_in_flight
        self._probe_in_flight = False
        if was_probe or self.failures >= self.failure_threshold:
            self._opened_at_s = now_s


@dataclass
class Accounting:
    """What one peer did for us and we for it."""

    requests: int = 0
    failures: int = 0
    consumed_compute_s: float = 0.0
    consumed_bytes: int = 0
    served_requests: int = 0
    served_compute_s: float = 0.0
    served_bytes: int = 0


@dataclass
class TargetStats:
    """The scheduler's view of one target (local or a peer)."""

    name: str
    service_s: Ewma
    rtt_s: Ewma
    bandwidth_Bps: Ewma  # noqa: N815 (unit in the name)
    breaker: CircuitBreaker
    reported_queue: int = 0
    #: When the target finished the last attempt that came back (caller's clock).
    last_finish_s: float | None = None
    in_flight: dict[int, Attempt] = field(default_factory=dict)
    accounting: Accounting = field(default_factory=Accounting)


class RequestState(enum.Enum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class AttemptState(enum.Enum):
    IN_FLIGHT = "in_flight"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DROPPED = "dropped"  # answered after the request was already delivered or failed
    ABANDONED = "abandoned"


@dataclass(eq=False)
class Attempt:
    """One send of a request to one target."""

    id: int
    request: Request
    target: str
    sent_s: float
    predicted_s: float
    hedge: bool
    state: AttemptState = AttemptState.IN_FLIGHT


@dataclass(eq=False)
class Request:
    """One inference request; delivered exactly once (see the module docstring)."""

    id: int
    payload_bytes: int
    created_s: float
    state: RequestState = RequestState.PENDING
    attempts: list[Attempt] = field(default_factory=list)
    delivered_by: Attempt | None = None

    @property
    def in_flight(self) -> list[Attempt]:
        return [a for a in self.attempts if a.state is AttemptState.IN_FLIGHT]


class Outcome(enum.Enum):
    """What ``Scheduler.finish`` means for the caller."""

    DELIVERED = "delivered"  # the first answer: hand it to the user
    DUPLICATE = "duplicate"  # the request was already settled: drop this answer
    WAITING = "waiting"  # this attempt failed, another is still in flight
    RETRY = "retry"  # this attempt failed and none is in flight: choose again
    FAILED = "failed"  # max_attempts used up: the request failed


@dataclass(frozen=True)
class Decision:
    target: str
    predicted_s: float


@dataclass(frozen=True)
class HedgePolicy:
    """Hedge after the ``quantile`` of recent completion times, at most
    ``budget_fraction`` extra requests."""

    quantile: float = 0.95
    budget_fraction: float = 0.05
    min_samples: int = 20
    window: int = 500

    def __post_init__(self) -> None:
        if not (0 < self.quantile < 1 and 0 <= self.budget_fraction <= 1
                and self.min_samples >= 1 and self.window >= self.min_samples):
            raise SchedulerError(
                f"bad hedge policy {self}",
                hint="quantile in (0, 1), budget_fraction in [0, 1], "
                     "1 <= min_samples <= window")


class Cascade:
    """A small local model first; only answers below ``threshold`` confidence escalate."""

    def __init__(self, threshold: float) -> None:
        if not 0 <= threshold <= 1:
            raise SchedulerError(f"cascade threshold {threshold} is outside [0, 1]",
                                 hint="a confidence such as 0.9")
        self.threshold = threshold
        self.answered_small = 0
        self.escalated = 0

    def needs_heavy(self, confidence: float) -> bool:
        """Whether the small model's answer with this ``confidence`` must escalate."""
        heavy = not confidence >= self.threshold  # NaN escalates
        if heavy:
            self.escalated += 1
        else:
            self.answered_small += 1
        return heavy

    @property
    def escalated_fraction(self) -> float:
        total = self.answered_small + self.escalated
        return self.escalated / total if total else 0.0


class Scheduler:
    """Chooses a target per request and keeps the books (see the module docstring)."""

    def __init__(
        self,
        *,
        local_service_s: float | None = None,
        alpha: float = 0.2,
        failure_threshold: int = 3,
        cooldown_s: float = 5.0,
        max_attempts: int = 3,
        hedge: HedgePolicy | None = None,
        mape_window: int = 1000,
        local: bool = True,
        seed: int | None = None,
    ) -> None:
        if max_attempts < 1 or mape_window < 1:
            raise SchedulerError("max_attempts and mape_window must be at least 1",
                                 hint="e.g. max_attempts=3, mape_window=1000")
        self._alpha = alpha
        self._breaker_args = (failure_threshold, cooldown_s)
        self._max_attempts = max_attempts
        self._rng = random.Random(seed)
        self.hedge_policy = hedge
        self._targets: dict[str, TargetStats] = {}
        self._local_enabled = local
        self._new_target(LOCAL, service_s=local_service_s)
        self._req_ids = itertools.count(1)
        self._attempt_ids = itertools.count(1)
        self._latencies_s: deque[float] = deque(maxlen=hedge.window if hedge else 500)
        self._ape: deque[float] = deque(maxlen=mape_window)
        self.requests_total = 0
        self.hedges_sent = 0
        self.duplicates_dropped = 0
        self.requests_failed = 0

    # --- targets ------------------------------------------------------------------------

    def _new_target(self, name: str, *, service_s: float | None = None) -> TargetStats:
        threshold, cooldown = self._breaker_args
        stats = TargetStats(
            name=name, service_s=Ewma(self._alpha, service_s),
            rtt_s=Ewma(self._alpha, 0.0 if name == LOCAL else None),
            bandwidth_Bps=Ewma(self._alpha, math.inf if name == LOCAL else None),
            breaker=CircuitBreaker(failure_threshold=threshold, cooldown_s=cooldown))
        self._targets[name] = stats
        return stats

    def add_peer(self, peer_id: str) -> TargetStats:
        """Start considering ``peer_id`` (idempotent)."""
        if peer_id == LOCAL:
            raise SchedulerError(f"a peer cannot be called {LOCAL!r}",
                                 hint="peers are named by their node id")
        return self._targets.get(peer_id) or self._new_target(peer_id)

    def remove_peer(self, peer_id: str) -> None:
        """Stop considering ``peer_id``; its in-flight attempts still finish normally."""
        if peer_id != LOCAL:
            self._targets.pop(peer_id, None)

    @property
    def peers(self) -> list[str]:
        return [n for n in self._targets if n != LOCAL]

    def stats(self, target: str) -> TargetStats:
        try:
            return self._targets[target]
        except KeyError:
            raise SchedulerError(f"unknown target {target!r}",
                                 hint="add it with add_peer first") from None

    def accounting(self) -> dict[str, Accounting]:
        return {n: t.accounting for n, t in self._targets.items() if n != LOCAL}

    # --- measurements -------------------------------------------------------------------

    def observe_rtt(self, peer_id: str, rtt_s: float) -> None:
        """An RTT sample (a heartbeat's round trip)."""
        if peer_id in self._targets and rtt_s >= 0:
            self._targets[peer_id].rtt_s.update(rtt_s)

    def observe_queue(self, target: str, queued: int) -> None:
        """The queue length a target reports (including others' requests)."""
        if target in self._targets:
            self._targets[target].reported_queue = max(0, queued)

    def observe_service(self, target: str, service_s: float) -> None:
        """A compute-time sample not tied to an attempt (local work of other callers)."""
        if target in self._targets and service_s > 0:
            self._targets[target].service_s.update(service_s)

    def record_served(self, peer_id: str, *, compute_s: float, bytes_total: int) -> None:
        """We served one request for ``peer_id``."""
        acc = self.add_peer(peer_id).accounting
        acc.served_requests += 1
        acc.served_compute_s += compute_s
        acc.served_bytes += bytes_total

    # --- prediction ---------------------------------------------------------------------

    def _service_estimate(self, t: TargetStats) -> float:
        if t.service_s.value is not None:
            return t.service_s.value
        local = self._targets[LOCAL].service_s.value
        return local if local is not None else 0.0

    def predict_s(self, target: str, payload_bytes: int, now_s: float) -> float:
        """Predicted seconds from now until a request sent to ``target`` now answers."""
        t = self.stats(target)
        service = self._service_estimate(t)
        rtt = t.rtt_s.value if t.rtt_s.value is not None else PRIOR_RTT_S
        bw = t.bandwidth_Bps.value if t.bandwidth_Bps.value is not None else (
            PRIOR_BANDWIDTH_BPS)

        def transfer_s(nbytes: int) -> float:
            return nbytes / bw if bw > 0 else math.inf

        # Replay the target's queue with the estimates: each attempt in flight starts when
        # it has arrived and the one before it is done.
        busy_until = t.last_finish_s if t.last_finish_s is not None else -math.inf
        flying = sorted(t.in_flight.values(), key=lambda a: a.sent_s)
        for a in flying:
            began = max(a.sent_s + rtt / 2 + transfer_s(a.request.payload_bytes), busy_until)
            busy_until = began + service
            overrun_s = now_s - (busy_until + rtt / 2)  # its answer is this late
            if began <= now_s and overrun_s > 0:
                # Overdue: assume it needs as long again as it has overrun (a stall, a
                # throttled CPU), so that a stuck target stops looking nearly free.
                busy_until = now_s + overrun_s
        begins = max(now_s + rtt / 2 + transfer_s(payload_bytes), busy_until)
        begins += max(0, t.reported_queue - len(flying)) * service
        return begins + service + rtt / 2 - now_s

    # --- choosing -----------------------------------------------------------------------

    def _eligible_peers(self, now_s: float, exclude: set[str]) -> list[str]:
        return [n for n, t in self._targets.items()
                if n != LOCAL and n not in exclude and t.breaker.allows(now_s)]

    def new_request(self, payload_bytes: int, now_s: float) -> Request:
        """A new request of ``payload_bytes`` (input plus expected output)."""
        if payload_bytes < 0:
            raise SchedulerError(f"payload_bytes {payload_bytes} is negative",
                                 hint="pass the request's input plus output size")
        self.requests_total += 1
        return Request(id=next(self._req_ids), payload_bytes=payload_bytes, created_s=now_s)

    def choose(self, request: Request, now_s: float, *,
               exclude: set[str] | None = None) -> Decision:
        """The best target for ``request`` now: local against two random eligible peers."""
        excluded = set(exclude or ())
        candidates = self._eligible_peers(now_s, excluded)
        if len(candidates) > 2:
            candidates = self._rng.sample(candidates, 2)
        if self._local_enabled and LOCAL not in excluded:
            candidates.append(LOCAL)
        if not candidates:
            raise SchedulerError(
                "no target can take the request (local excluded or disabled, every peer's "
                "circuit breaker open)",
                hint="wait for a breaker's cool-down or enable local inference")
        scored = [(self.predict_s(c, request.payload_bytes, now_s), c) for c in candidates]
        best_s, best = min(scored)
        return Decision(best, best_s)

    def start(self, request: Request, decision: Decision, now_s: float, *,
              hedge: bool = False) -> Attempt:
        """Record that ``request`` was sent to ``decision.target`` at ``now_s``."""
        if request.state is not RequestState.PENDING:
            raise SchedulerError(f"request {request.id} is already {request.state.value}",
                                 hint="start attempts only for pending requests")
        t = self.stats(decision.target)
        t.breaker.on_send(now_s)
        attempt = Attempt(id=next(self._attempt_ids), request=request, target=t.name,
                          sent_s=now_s, predicted_s=decision.predicted_s, hedge=hedge)
        t.in_flight[attempt.id] = attempt
        request.attempts.append(attempt)
        if t.name != LOCAL:
            t.accounting.requests += 1
        return attempt

    def submit(self, request: Request, now_s: float) -> Attempt:
        """``choose`` then ``start``."""
        return self.start(request, self.choose(request, now_s), now_s)

    # --- hedging ------------------------------------------------------------------------

    def latency_quantile_s(self, q: float) -> float | None:
        if not self._latencies_s:
            return None
        ordered = sorted(self._latencies_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def hedge_due_s(self, request: Request) -> float | None:
        """When ``request`` should be hedged if still pending (None: never)."""
        p = self.hedge_policy
        if p is None or len(self._latencies_s) < p.min_samples:
            return None
        quantile = self.latency_quantile_s(p.quantile)
        return None if quantile is None else request.created_s + quantile

    def maybe_hedge(self, request: Request, now_s: float) -> Attempt | None:
        """Send a second attempt if ``request`` is overdue and the budget allows."""
        due = self.hedge_due_s(request)
        p = self.hedge_policy
        if (p is None or due is None or now_s < due
                or request.state is not RequestState.PENDING
                or any(a.hedge for a in request.attempts)
                or self.hedges_sent + 1 > p.budget_fraction * self.requests_total):
            return None
        busy = {a.target for a in request.in_flight}
        try:
            decision = self.choose(request, now_s, exclude=busy)
        except SchedulerError:
            return None
        self.hedges_sent += 1
        return self.start(request, decision, now_s, hedge=True)

    # --- completions --------------------------------------------------------------------

    def _settle_attempt(self, attempt: Attempt, state: AttemptState) -> TargetStats | None:
        if attempt.state is not AttemptState.IN_FLIGHT:
            raise SchedulerError(f"attempt {attempt.id} already ended "
                                 f"({attempt.state.value})",
                                 hint="finish or abandon each attempt once")
        attempt.state = state
        t = self._targets.get(attempt.target)
        if t is not None:
            t.in_flight.pop(attempt.id, None)
        return t

    def finish(self, attempt: Attempt, now_s: float, *, ok: bool,
               service_s: float | None = None, queue_wait_s: float = 0.0,
               bytes_total: int = 0) -> Outcome:
        """An attempt came back (``ok``: with an answer). ``service_s`` and
        ``queue_wait_s`` are the compute time and queue wait the target reports;
        ``bytes_total`` is what went over the link both ways."""
        request = attempt.request
        settled = request.state is not RequestState.PENDING
        t = self._settle_attempt(
            attempt, AttemptState.DROPPED if settled and ok else
            AttemptState.SUCCEEDED if ok else AttemptState.FAILED)
        elapsed_s = max(0.0, now_s - attempt.sent_s)
        if t is not None:
            self._learn(t, attempt, ok=ok, elapsed_s=elapsed_s, service_s=service_s,
                        queue_wait_s=queue_wait_s, bytes_total=bytes_total, now_s=now_s)
        if settled:
            if ok:
                self.duplicates_dropped += 1
            return Outcome.DUPLICATE
        if ok:
            request.state = RequestState.DONE
            request.delivered_by = attempt
            self._latencies_s.append(now_s - request.created_s)
            return Outcome.DELIVERED
        if request.in_flight:
            return Outcome.WAITING
        if len(request.attempts) >= self._max_attempts:
            request.state = RequestState.FAILED
            self.requests_failed += 1
            return Outcome.FAILED
        return Outcome.RETRY

    def give_up(self, request: Request) -> None:
        """The caller stopped waiting for ``request`` (its deadline passed, it was
        cancelled): it fails now, and any attempt still out is dropped when it ends."""
        if request.state is RequestState.PENDING:
            request.state = RequestState.FAILED
            self.requests_failed += 1

    def abandon(self, attempt: Attempt) -> None:
        """The caller cancelled an attempt (a hedge lost); no measurement is taken."""
        self._settle_attempt(attempt, AttemptState.ABANDONED)

    def _learn(self, t: TargetStats, attempt: Attempt, *, ok: bool, elapsed_s: float,
               service_s: float | None, queue_wait_s: float, bytes_total: int,
               now_s: float) -> None:
        rtt = t.rtt_s.value if t.rtt_s.value is not None else PRIOR_RTT_S
        t.last_finish_s = max(t.last_finish_s or -math.inf, now_s - rtt / 2)
        if not ok:
            t.breaker.on_failure(now_s)
            if t.name != LOCAL:
                t.accounting.failures += 1
            return
        t.breaker.on_success()
        if attempt.predicted_s > 0 and elapsed_s > 0:
            self._ape.append(abs(elapsed_s - attempt.predicted_s) / elapsed_s)
        if service_s is not None and service_s > 0:
            t.service_s.update(service_s)
        if t.name == LOCAL:
            return
        t.accounting.consumed_compute_s += service_s or 0.0
        t.accounting.consumed_bytes += bytes_total
        if service_s is not None and bytes_total > 0:
            # What is neither compute nor the wait in the peer's queue is network time;
            # less one RTT, it is transfer.
            transfer_s = elapsed_s - service_s - queue_wait_s - rtt
            if transfer_s > 1e-6:
                t.bandwidth_Bps.update(bytes_total / transfer_s)

    # --- prediction error ---------------------------------------------------------------

    @property
    def mape(self) -> float | None:
        """Mean absolute percentage error of recent predictions (0.1 = 10 %)."""
        return sum(self._ape) / len(self._ape) if self._ape else None
