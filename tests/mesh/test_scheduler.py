"""The scheduler: predictions, choice, breakers, hedging, cascade, exactly-once, books."""

from __future__ import annotations

import math

import pytest

from edge_runtime.errors import SchedulerError
from edge_runtime.mesh.scheduler import (
    LOCAL,
    BreakerState,
    Cascade,
    CircuitBreaker,
    Decision,
    Ewma,
    HedgePolicy,
    Outcome,
    RequestState,
    Scheduler,
)


def _scheduler(**kwargs: object) -> Scheduler:
    return Scheduler(local_service_s=0.1, seed=1, **kwargs)  # type: ignore[arg-type]


def _teach(s: Scheduler, peer: str, *, service_s: float, rtt_s: float = 0.0) -> None:
    s.add_peer(peer)
    s.stats(peer).service_s.value = service_s
    s.stats(peer).rtt_s.value = rtt_s
    s.stats(peer).bandwidth_Bps.value = 1e6


def test_ewma_first_sample_then_weighted() -> None:
    e = Ewma(0.5)
    assert e.value is None
    assert e.update(4.0) == 4.0
    assert e.update(2.0) == 3.0
    with pytest.raises(SchedulerError, match="alpha"):
        Ewma(0.0)


def test_prediction_is_transfer_plus_rtt_plus_queue_times_service() -> None:
    s = _scheduler()
    _teach(s, "p1", service_s=0.2, rtt_s=0.01)
    r = s.new_request(10_000, 0.0)
    # 10 kB at 1 MB/s = 0.01 s, + RTT 0.01, + (0 queued + 1) x 0.2
    assert s.predict_s("p1", r.payload_bytes, 0.0) == pytest.approx(0.22)
    s.observe_queue("p1", 2)
    assert s.predict_s("p1", r.payload_bytes, 0.0) == pytest.approx(0.62)
    # local: no network, its own queue
    assert s.predict_s(LOCAL, r.payload_bytes, 0.0) == pytest.approx(0.1)


def test_in_flight_head_is_partly_done() -> None:
    s = _scheduler()
    a = s.submit(s.new_request(0, 0.0), 0.0)
    assert a.target == LOCAL
    # one in flight, started 0.04 s ago: 0.06 left of it, then 0.1 for the new one
    assert s.predict_s(LOCAL, 0, 0.04) == pytest.approx(0.16)


def test_choose_local_when_faster_and_peer_when_local_is_busy() -> None:
    s = _scheduler()
    _teach(s, "p1", service_s=0.1, rtt_s=0.005)
    assert s.choose(s.new_request(0, 0.0), 0.0).target == LOCAL
    s.observe_queue(LOCAL, 3)
    d = s.choose(s.new_request(0, 0.0), 0.0)
    assert d.target == "p1"
    assert d.predicted_s == pytest.approx(0.105)


def test_power_of_two_never_picks_the_worst_of_three() -> None:
    s = _scheduler(local=False)
    for name, service in (("fast", 0.1), ("mid", 0.2), ("slow", 0.9)):
        _teach(s, name, service_s=service)
    picks = {s.choose(s.new_request(0, 0.0), 0.0).target for _ in range(200)}
    assert picks == {"fast", "mid"}  # mid wins when fast is not among the two sampled


def test_unmeasured_peer_borrows_local_service_time() -> None:
    s = _scheduler()
    s.add_peer("new")
    assert s.predict_s("new", 0, 0.0) == pytest.approx(0.1 + 0.001)


def test_breaker_opens_after_threshold_then_half_open_probe() -> None:
    b = CircuitBreaker(failure_threshold=2, cooldown_s=5.0)
    b.on_failure(0.0)
    assert b.state(0.0) is BreakerState.CLOSED
    b.on_failure(1.0)
    assert b.state(1.0) is BreakerState.OPEN and not b.allows(5.9)
    assert b.state(6.0) is BreakerState.HALF_OPEN and b.allows(6.0)
    b.on_send(6.0)
    assert not b.allows(6.1)  # one probe at a time
    b.on_failure(6.5)  # probe failed: open again
    assert b.state(7.0) is BreakerState.OPEN
    assert b.state(11.5) is BreakerState.HALF_OPEN
    b.on_send(11.5)
    b.on_success()
    assert b.state(11.6) is BreakerState.CLOSED and b.failures == 0


def test_open_breaker_excludes_peer_and_no_target_is_a_typed_error() -> None:
    s = _scheduler(local=False, failure_threshold=1, cooldown_s=10.0)
    _teach(s, "p1", service_s=0.1)
    r = s.new_request(0, 0.0)
    a = s.submit(r, 0.0)
    assert s.finish(a, 0.5, ok=False) is Outcome.RETRY
    with pytest.raises(SchedulerError, match="breaker"):
        s.choose(r, 1.0)
    assert s.choose(r, 10.5).target == "p1"  # half-open probe


def test_exactly_once_first_completion_wins_later_dropped() -> None:
    s = _scheduler()
    _teach(s, "p1", service_s=0.1)
    r = s.new_request(0, 0.0)
    a1 = s.start(r, Decision(LOCAL, 0.1), 0.0)
    a2 = s.start(r, Decision("p1", 0.1), 0.0, hedge=True)
    assert s.finish(a2, 0.12, ok=True, service_s=0.1) is Outcome.DELIVERED
    assert r.state is RequestState.DONE and r.delivered_by is a2
    assert s.finish(a1, 0.2, ok=True, service_s=0.2) is Outcome.DUPLICATE
    assert s.duplicates_dropped == 1
    with pytest.raises(SchedulerError, match="already ended"):
        s.finish(a1, 0.3, ok=True)
    with pytest.raises(SchedulerError, match="already done"):
        s.start(r, Decision(LOCAL, 0.1), 0.3)


def test_failure_waits_for_other_attempt_then_retry_then_failed() -> None:
    s = _scheduler(max_attempts=3)
    _teach(s, "p1", service_s=0.1)
    r = s.new_request(0, 0.0)
    a1 = s.start(r, Decision("p1", 0.1), 0.0)
    a2 = s.start(r, Decision(LOCAL, 0.1), 0.0)
    assert s.finish(a1, 0.1, ok=False) is Outcome.WAITING
    assert s.finish(a2, 0.1, ok=False) is Outcome.RETRY
    a3 = s.submit(r, 0.2)
    assert s.finish(a3, 0.3, ok=False) is Outcome.FAILED
    assert r.state is RequestState.FAILED and s.requests_failed == 1
    assert s.accounting()["p1"].failures == 1


def test_abandoned_attempt_frees_the_queue_without_a_measurement() -> None:
    s = _scheduler()
    r = s.new_request(0, 0.0)
    a = s.submit(r, 0.0)
    s.abandon(a)
    assert not s.stats(LOCAL).in_flight
    assert s.mape is None


def test_hedge_after_p95_within_budget() -> None:
    s = _scheduler(hedge=HedgePolicy(quantile=0.95, budget_fraction=0.05, min_samples=20))
    _teach(s, "p1", service_s=0.1)
    now = 0.0
    for _ in range(40):  # 40 requests answered in 0.1 s each: p95 = 0.1
        r = s.new_request(0, now)
        assert s.hedge_due_s(r) is None or s.hedge_due_s(r) == pytest.approx(now + 0.1)
        a = s.start(r, Decision(LOCAL, 0.1), now)
        s.finish(a, now + 0.1, ok=True, service_s=0.1)
        now += 1.0
    slow = s.new_request(0, now)
    s.start(slow, Decision(LOCAL, 0.1), now)
    assert s.maybe_hedge(slow, now + 0.05) is None  # not due yet
    h = s.maybe_hedge(slow, now + 0.11)
    assert h is not None and h.hedge and h.target == "p1"  # the other target
    assert s.maybe_hedge(slow, now + 0.5) is None  # one hedge per request
    assert s.finish(h, now + 0.2, ok=True, service_s=0.1) is Outcome.DELIVERED
    # 42 requests x 5 % = 2.1: one more hedge fits, then the budget is spent
    r2 = s.new_request(0, now)
    s.start(r2, Decision(LOCAL, 0.1), now)
    assert s.maybe_hedge(r2, now + 1) is not None
    r3 = s.new_request(0, now)
    s.start(r3, Decision(LOCAL, 0.1), now)
    assert s.maybe_hedge(r3, now + 1) is None
    assert s.hedges_sent == 2


def test_no_hedging_without_policy() -> None:
    s = _scheduler()
    r = s.new_request(0, 0.0)
    s.submit(r, 0.0)
    assert s.hedge_due_s(r) is None and s.maybe_hedge(r, 100.0) is None


def test_cascade_escalates_only_low_confidence() -> None:
    c = Cascade(0.9)
    assert [c.needs_heavy(x) for x in (0.95, 0.5, 0.9, math.nan)] == [False, True, False, True]
    assert c.escalated_fraction == 0.5
    with pytest.raises(SchedulerError):
        Cascade(1.5)


def test_learning_service_bandwidth_and_accounting() -> None:
    s = _scheduler(alpha=1.0)
    s.add_peer("p1")
    s.observe_rtt("p1", 0.01)
    r = s.new_request(100_000, 0.0)
    a = s.start(r, Decision("p1", 0.2), 0.0)
    # 0.3 s = 0.05 queue wait + 0.14 compute + 0.01 RTT + 0.1 transfer of 100 kB
    s.finish(a, 0.3, ok=True, service_s=0.14, queue_wait_s=0.05, bytes_total=100_000)
    st = s.stats("p1")
    assert st.service_s.value == pytest.approx(0.14)
    assert st.bandwidth_Bps.value == pytest.approx(1e6)
    acc = s.accounting()["p1"]
    assert (acc.requests, acc.consumed_bytes) == (1, 100_000)
    assert acc.consumed_compute_s == pytest.approx(0.14)
    s.record_served("p1", compute_s=0.5, bytes_total=2000)
    s.record_served("p2", compute_s=0.25, bytes_total=10)
    assert (acc.served_requests, acc.served_compute_s, acc.served_bytes) == (1, 0.5, 2000)
    assert "p2" in s.peers


def test_mape_tracks_prediction_error() -> None:
    s = _scheduler()
    for i, actual in enumerate((0.1, 0.125, 0.08)):
        r = s.new_request(0, float(i))
        a = s.start(r, Decision(LOCAL, 0.1), float(i))
        s.finish(a, i + actual, ok=True)
    # |0.1-0.1|/0.1 = 0, |0.125-0.1|/0.125 = 0.2, |0.08-0.1|/0.08 = 0.25
    assert s.mape == pytest.approx(0.15)


def test_bad_arguments_are_typed_errors() -> None:
    with pytest.raises(SchedulerError):
        Scheduler(max_attempts=0)
    with pytest.raises(SchedulerError):
        HedgePolicy(quantile=1.5)
    with pytest.raises(SchedulerError):
        CircuitBreaker(failure_threshold=0)
    s = _scheduler()
    with pytest.raises(SchedulerError, match="local"):
        s.add_peer(LOCAL)
    with pytest.raises(SchedulerError, match="unknown target"):
        s.stats("nobody")
    with pytest.raises(SchedulerError, match="negative"):
        s.new_request(-1, 0.0)


def test_removed_peer_is_no_longer_chosen_but_its_attempt_finishes() -> None:
    s = _scheduler(local=False)
    _teach(s, "p1", service_s=0.1)
    _teach(s, "p2", service_s=0.5)
    r = s.new_request(0, 0.0)
    a = s.submit(r, 0.0)
    assert a.target == "p1"
    s.remove_peer("p1")
    assert s.finish(a, 0.1, ok=True) is Outcome.DELIVERED
    assert s.choose(s.new_request(0, 1.0), 1.0).target == "p2"


def test_queue_replay_and_an_overdue_attempt() -> None:
    s = _scheduler(local=False)
    _teach(s, "p1", service_s=0.1, rtt_s=0.02)
    r = s.new_request(0, 0.0)
    s.start(r, Decision("p1", 0.12), 0.0)
    # in flight: arrives at 0.01, done at 0.11, its answer due at 0.12; not overdue at
    # 0.115, so a new request begins at 0.125 (its own arrival) and answers at 0.235
    assert s.predict_s("p1", 0, 0.115) == pytest.approx(0.12)
    # at 0.32 its answer is 0.2 s late: assume it needs 0.2 s more, then ours
    assert s.predict_s("p1", 0, 0.32) == pytest.approx(0.2 + 0.1 + 0.01)


def test_last_finish_anchors_the_queue() -> None:
    s = _scheduler()
    a1 = s.start(s.new_request(0, 0.0), Decision(LOCAL, 0.1), 0.0)
    a2 = s.start(s.new_request(0, 0.0), Decision(LOCAL, 0.2), 0.0)
    s.finish(a1, 0.15, ok=True, service_s=0.1)  # the first took 0.15: a2 began then
    assert a2.state.value == "in_flight"
    # service EWMA 0.1*0.8 + 0.1*0.2 = 0.1: a2 done at 0.25, a new one at 0.35
    assert s.predict_s(LOCAL, 0, 0.2) == pytest.approx(0.15)


def test_a_request_given_up_fails_and_its_late_answer_is_dropped() -> None:
    s = _scheduler()
    s.add_peer("p")
    request = s.new_request(1000, 0.0)
    attempt = s.start(request, Decision("p", 0.01), 0.0)
    s.give_up(request)  # the caller's deadline passed
    assert request.state is RequestState.FAILED and s.requests_failed == 1
    assert s.finish(attempt, 5.0, ok=True, service_s=0.01) is Outcome.DUPLICATE
    assert s.duplicates_dropped == 1 and s.latency_quantile_s(0.5) is None
    s.give_up(request)  # once only
    assert s.requests_failed == 1
