"""NAB scorer against hand-computed cases, and the baselines on the real subset."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_runtime.anomaly.nab import (
    prepare_series,
    probationary_length,
    scaled_sigmoid,
    score_at_threshold,
    score_corpus,
)


def test_sigmoid_values() -> None:
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(-1.0) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert scaled_sigmoid(3.5) == -1.0


def test_probation() -> None:
    assert probationary_length(1000) == 150
    assert probationary_length(10_000) == 750


# 100 rows; probation = 15 rows; one window on rows 50..59 (width 10)
TS = [float(i) for i in range(100)]
PREP = prepare_series("s", TS, [(50.0, 59.0)])


def _scores(*hits: int) -> dict[str, np.ndarray]:
    s = np.zeros(100)
    for h in hits:
        s[h] = 1.0
    return {"s": s}


def test_detection_at_left_edge_earns_a_tp() -> None:
    r = score_at_threshold([PREP], _scores(50), 0.5)
    assert r.raw == pytest.approx(1.0)
    assert r.score == pytest.approx(100.0)


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    # row 55: y = -(59 - 55 + 1) / 10 = -0.5
    expected = scaled_sigmoid(-0.5) / scaled_sigmoid(-1.0)
    r = score_at_threshold([PREP], _scores(55, 57), 0.5)
    assert r.raw == pytest.approx(expected)


def test_fp_before_any_window_costs_full_weight_and_probation_is_ignored() -> None:
    r = score_at_threshold([PREP], _scores(5, 20), 0.5)  # 5 in probation
    assert r.raw == pytest.approx(-1.0 - 0.11)
    assert r.fp == 1


def test_fp_after_a_window_is_discounted() -> None:
    # row 62: distance |59 - 62| / (10 - 1) = 1/3
    r = score_at_threshold([PREP], _scores(50, 62), 0.5)
    assert r.raw == pytest.approx(1.0 + 0.11 * scaled_sigmoid(1 / 3))


def test_profiles_and_normalisation() -> None:
    r = score_at_threshold([PREP], _scores(), 0.5, "reward_low_FN_rate")
    assert (r.raw, r.null, r.perfect, r.score) == (-2.0, -2.0, 1.0, 0.0)


def test_sweep_picks_the_best_threshold() -> None:
    s = np.zeros(100)
    s[50] = 0.6  # TP
    s[20] = 0.9  # FP at a higher score
    s[30] = 0.3  # another FP below the TP
    r = score_corpus([PREP], {"s": s})
    assert r.threshold == 0.6
    assert r.raw == pytest.approx(1.0 - 0.11)
