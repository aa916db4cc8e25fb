"""Activity policies, the rate controller and the CPU/thermal budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_runtime.sampling import constants
from edge_runtime.sampling.controller import Budget, RateController
from edge_runtime.sampling.policy import (
    ChangePolicy,
    MotionGate,
    NoveltyPolicy,
    ScorePolicy,
    make_policy,
)
from edge_runtime.sources.base import Sample
from tests.helpers.media import frame_with_square


def _frame(t: float, i: int, *, moving: bool) -> Sample:
    return Sample("cam", t, i, frame=frame_with_square(i if moving else 0))


def test_motion_gate_skips_still_frames_and_passes_motion() -> None:
    gate = MotionGate(heartbeat_s=1000.0)
    decisions = []
    for i in range(20):
        s = _frame(i * 0.1, i, moving=False)
        decisions.append(gate.wants_inference(s, gate.observe(s)))
    assert decisions[0] and not any(decisions[1:])  # first frame only
    assert gate.state()["frames_with_motion"] == 0  # ... and it was not motion
    moving = []
    for i in range(20, 30):
        s = _frame(i * 0.1, i, moving=True)
        moving.append(gate.wants_inference(s, gate.observe(s)))
    assert all(moving)
    assert gate.state()["frames_gated"] == 19


def test_motion_gate_first_frame_is_inferred_but_not_motion() -> None:
    gate = MotionGate(heartbeat_s=1000.0)
    first = _frame(0.0, 0, moving=False)
    activity = gate.observe(first)
    assert activity == 0.0 and gate.wants_inference(first, activity)


def test_motion_gate_heartbeat() -> None:
    gate = MotionGate(heartbeat_s=1.0)
    infer = [gate.wants_inference(s, gate.observe(s))
             for s in (_frame(i * 0.25, i, moving=False) for i in range(9))]
    assert infer == [True, False, False, False, True, False, False, False, True]


def test_change_policy_flags_steps_not_noise() -> None:
    rng = np.random.default_rng(0)
    values = [*list(20 + rng.normal(0, 0.1, 200)), 30.0, *list(30 + rng.normal(0, 0.1, 20))]
    pol = ChangePolicy()
    acts = [pol.observe(Sample("s", float(i), i, value=float(v))) for i, v in enumerate(values)]
    assert max(acts[20:200]) < 1.0
    assert acts[200] >= 1.0


def test_novelty_policy_ignores_nan_and_flags_outliers() -> None:
    pol = NoveltyPolicy()
    rng = np.random.default_rng(1)
    for i, v in enumerate(rng.normal(0, 1, 100)):
        pol.observe(Sample("s", float(i), i, value=float(v)))
    assert pol.observe(Sample("s", 100.0, 100, value=float("nan"))) == pol.last_activity
    assert pol.observe(Sample("s", 101.0, 101, value=10.0)) >= 1.0


def test_score_policy_and_factory() -> None:
    pol = make_policy("score", field="score", threshold=0.8)
    assert isinstance(pol, ScorePolicy)
    assert pol.observe_result({"score": 0.4}) == pytest.approx(0.5)
    assert pol.observe_result({"label": "x"}) == pytest.approx(0.5)
    # A detector or window model still learning wants the full rate.
    assert pol.observe_result({"score": 0.0, "warming": True}) == 1.0
    with pytest.raises(ValueError, match="known: fixed"):
        make_policy("magic")


def test_controller_jumps_holds_decays_and_reports() -> None:
    changes: list[tuple[float, float, str]] = []
    ctl = RateController(1.0, 10.0, hold_s=2.0, decay_half_life_s=1.0,
                         listeners=[lambda a, b, r: changes.append((a, b, r))])
    assert ctl.rate_hz == 10.0
    t = 0.0
    for _ in range(20):  # calm: decays towards min after the hold
        t += 0.5
        ctl.update(t, 0.0)
    assert ctl.rate_hz < 1.1
    assert ctl.update(t + 0.1, 2.0) == 10.0  # activity: straight back to max
    assert ctl.update(t + 1.0, 0.0) == 10.0  # still within the hold time
    assert changes[-1] == (pytest.approx(changes[-1][0]), 10.0, "activity")
    assert ctl.increases == 1 and ctl.decreases >= 2
    assert ctl.state()["rate_changes"] == ctl.changes == len(changes)


def test_budget_caps_rate_when_hot(tmp_path: Path) -> None:
    zone = tmp_path / "thermal_zone0"
    zone.mkdir()
    (zone / "temp").write_text("75000\n")
    budget = Budget(thermal_root=tmp_path, temp_soft_c=70.0, temp_hard_c=80.0)
    ctl = RateController(1.0, 11.0, budget=budget)
    assert ctl.update(0.0, 5.0) == 11.0  # nothing measured yet: no cap
    budget.observe(*budget.measure())
    assert ctl.update(0.5, 5.0) == pytest.approx(6.0)  # half the range at 75 C
    assert budget.temperature_c == 75.0
    (zone / "temp").write_text("85000\n")
    assert ctl.update(1.0, 5.0) == pytest.approx(6.0)  # the factor changes only on observe
    budget.observe(*budget.measure())
    assert ctl.update(1.5, 5.0) == 1.0
    assert budget.compute(None, 95.0) == pytest.approx(1 - 10 / 15)
    assert Budget(enabled=False).factor(0.0) == 1.0


def test_constants_are_patchable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "MOTION_HEARTBEAT_S", 0.0)
    gate = MotionGate()
    s = _frame(0.0, 0, moving=False)
    gate.wants_inference(s, gate.observe(s))
    assert gate.wants_inference(s, gate.observe(s))


class _ScriptedDetector:
    """Scores come from a list, as a detector would give them."""

    def __init__(self, scores: list[float]) -> None:
        self.scores = iter(scores)

    def update(self, t_s: float, value: float) -> float:
        return next(self.scores)


def test_detector_gate_holds_after_activity_and_beats() -> None:
    from edge_runtime.sampling.policy import DetectorGate

    scores = [0.0] * 5 + [0.2] + [0.0] * 10
    gate = DetectorGate(threshold=0.1, hold_samples=2, heartbeat_samples=4,
                        detector=_ScriptedDetector(scores))
    decisions = []
    for i in range(len(scores)):
        s = Sample("s", float(i), i, value=1.0)
        decisions.append(gate.wants_inference(s, gate.observe(s)))
    assert decisions == [False, False, False, True, False, True, True, True,
                         False, False, False, True, False, False, False, True]
    assert gate.state()["samples_gated"] == decisions.count(False)
