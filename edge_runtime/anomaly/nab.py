"""Scoring of anomaly detectors the way the Numenta Anomaly Benchmark (NAB) does it.

This is an independent implementation of NAB's scoring rules (see
``shared/data/nab/README.md``), used by ``benchmarks/nab_bench.py`` and by the tests:

- anomaly windows are given as timestamps and mapped to row indices;
- the first 15 % of a series (at most 750 rows) is probationary and never scored;
- a detection inside a window earns ``A_TP * sigmoid(y) / sigmoid(-1)`` where
  ``y = -(right - i + 1) / width`` is the position relative to the right edge and
  ``sigmoid(y) = 2 / (1 + exp(5 y)) - 1``; only the best (earliest) detection of a
  window counts, a window without one costs ``-A_FN``;
- a detection outside every window costs ``A_FP * sigmoid(d)`` with ``d`` the distance
  past the right edge of the preceding window in units of that window's width minus one
  (``-A_FP`` when there is no preceding window or ``d > 3``);
- one threshold for the whole corpus, chosen by a sweep over the distinct scores;
- the corpus total is normalised to ``100 * (raw - null) / (perfect - null)`` with
  ``null = -A_FN * windows`` (a detector that never fires) and
  ``perfect = A_TP * windows``.

Everything here is pure Python plus numpy and deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = [
    "PROFILES",
    "CorpusResult",
    "CostProfile",
    "SeriesScoring",
    "prepare_series",
    "probationary_length",
    "scaled_sigmoid",
    "score_at_threshold",
    "score_corpus",
]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class CostProfile:
    """NAB application profile: reward of a true positive, costs of errors."""

    a_tp: float
    a_fp: float
    a_fn: float


#: The three NAB profiles, by the names NAB uses.
PROFILES: dict[str, CostProfile] = {
    "standard": CostProfile(a_tp=1.0, a_fp=0.11, a_fn=1.0),
    "reward_low_FP_rate": CostProfile(a_tp=1.0, a_fp=0.22, a_fn=1.0),
    "reward_low_FN_rate": CostProfile(a_tp=1.0, a_fp=0.11, a_fn=2.0),
}


def scaled_sigmoid(position: float) -> float:
    """NAB's scaled sigmoid: +1 far left of a window's right edge, -1 far right of it.

    ``position`` is relative to a window's right edge in window widths (``-1`` is the
    left edge). Values past 3 widths are clamped to ``-1`` as NAB does.
    """
    if position > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def probationary_length(n_rows: int, fraction: float = 0.15) -> int:
    """Number of leading rows NAB does not score: 15 % of the series, at most 750."""
    return int(min(math.floor(fraction * n_rows), fraction * 5000))


@dataclass
class SeriesScoring:
    """Per-row scoring material of one series, independent of the detector.

    ``window_of[i]`` is the window index of row ``i`` (``-1`` outside every window);
    ``tp_weight[i]`` the unweighted sigmoid a detection at ``i`` earns inside a window
    (already divided by ``sigmoid(-1)``); ``fp_weight[i]`` the unweighted (negative)
    sigmoid a detection at ``i`` costs outside; ``scorable[i]`` False in probation.
    """

    name: str
    n_windows: int
    window_of: npt.NDArray[np.int64]
    tp_weight: FloatArray
    fp_weight: FloatArray
    scorable: npt.NDArray[np.bool_]


def prepare_series(
    name: str, timestamps: Sequence[float], windows: Sequence[tuple[float, float]]
) -> SeriesScoring:
    """Map ``windows`` (start, end timestamps in seconds, inclusive) to row weights.

    ``timestamps`` are the rows' times in seconds, increasing. A window edge that falls
    between rows snaps to the first row at or after the start and the last row at or
    before the end.
    """
    raw_ts = np.asarray(timestamps, dtype=np.float64)
    n = len(raw_ts)
    # A clock set back (NAB's machine-temperature file has one) makes time non-monotonic;
    # the running maximum keeps row order and lets edges be found by bisection.
    ts = np.maximum.accumulate(raw_ts) if n else raw_ts
    window_of = np.full(n, -1, dtype=np.int64)
    tp_weight = np.zeros(n, dtype=np.float64)
    fp_weight = np.zeros(n, dtype=np.float64)
    max_tp = scaled_sigmoid(-1.0)
    spans: list[tuple[int, int]] = []
    for start_s, end_s in sorted(windows):
        left = int(np.searchsorted(ts, start_s, side="left"))
        right = int(np.searchsorted(ts, end_s, side="left"))
        if right >= n or ts[right] != end_s:
            right -= 1  # end falls between rows: last row before it
        if left <= right:
            spans.append((left, right))
    prev_right: int | None = None
    prev_width = 0.0
    span_iter = iter(enumerate(spans))
    current = next(span_iter, None)
    i = 0
    while i < n:
        if current is not None and i == current[1][0]:
            w_index, (left, right) = current
            width = float(right - left + 1)
            for j in range(left, right + 1):
                window_of[j] = w_index
                tp_weight[j] = scaled_sigmoid(-(right - j + 1) / width) / max_tp
            prev_right, prev_width = right, width
            current = next(span_iter, None)
            i = right + 1
            continue
        if prev_right is None:
            fp_weight[i] = -1.0
        else:
            # NAB divides by (width - 1); a one-row window would divide by zero there.
            denominator = max(prev_width - 1.0, 1.0)
            fp_weight[i] = scaled_sigmoid(abs(prev_right - i) / denominator)
        i += 1
    scorable = np.arange(n) >= probationary_length(n)
    return SeriesScoring(name, len(spans), window_of, tp_weight, fp_weight, scorable)


def _series_raw_score(
    prep: SeriesScoring, detected: npt.NDArray[np.bool_], profile: CostProfile
) -> tuple[float, int, int, int]:
    """Raw score, TP windows, FN windows and FP count of one series."""
    hits = detected & prep.scorable
    fp_mask = hits & (prep.window_of < 0)
    total = profile.a_fp * float(prep.fp_weight[fp_mask].sum())
    tp = 0
    for w in range(prep.n_windows):
        in_w = hits & (prep.window_of == w)
        if in_w.any():
            # earliest detection has the largest weight
            total += profile.a_tp * float(prep.tp_weight[in_w].max())
            tp += 1
        elif (prep.scorable & (prep.window_of == w)).any():
            total -= profile.a_fn
    fn = sum(
        1
        for w in range(prep.n_windows)
        if not (hits & (prep.window_of == w)).any()
        and (prep.scorable & (prep.window_of == w)).any()
    )
    return total, tp, fn, int(fp_mask.sum())


@dataclass
class CorpusResult:
    """Score of a detector over a corpus at the best (or a given) threshold."""

    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float
    score: float
    tp: int
    fn: int
    fp: int
    per_series: dict[str, float] = field(default_factory=dict)


def _null_and_perfect(preps: Sequence[SeriesScoring], profile: CostProfile) -> tuple[float, float]:
    windows = 0
    for p in preps:
        for w in range(p.n_windows):
            if (p.scorable & (p.window_of == w)).any():
                windows += 1
    return -profile.a_fn * windows, profile.a_tp * windows


def score_at_threshold(
    preps: Sequence[SeriesScoring],
    scores: Mapping[str, FloatArray],
    threshold: float,
    profile_name: str = "standard",
) -> CorpusResult:
    """Score the corpus with detections ``score >= threshold`` (inclusive, as NAB)."""
    profile = PROFILES[profile_name]
    raw = 0.0
    tp = fn = fp = 0
    per: dict[str, float] = {}
    for p in preps:
        s, t, f, x = _series_raw_score(p, np.asarray(scores[p.name]) >= threshold, profile)
        per[p.name] = s
        raw += s
        tp, fn, fp = tp + t, fn + f, fp + x
    null, perfect = _null_and_perfect(preps, profile)
    norm = 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0
    return CorpusResult(profile_name, threshold, raw, null, perfect, norm, tp, fn, fp, per)


def score_corpus(
    preps: Sequence[SeriesScoring],
    scores: Mapping[str, FloatArray],
    profile_name: str = "standard",
) -> CorpusResult:
    """Sweep one threshold over the whole corpus and return the best normalised score.

    The sweep visits every distinct score of the scorable rows in descending order,
    exactly like NAB's sweeper: lowering the threshold to a value adds every row with
    that score at once. It is O(rows log rows) overall.
    """
    profile = PROFILES[profile_name]
    all_scores: list[FloatArray] = []
    contrib_fp: list[FloatArray] = []
    win_ids: list[npt.NDArray[np.int64]] = []
    tpw: list[FloatArray] = []
    offset = 0
    n_windows_total = 0
    for p in preps:
        sc = np.asarray(scores[p.name], dtype=np.float64)
        if len(sc) != len(p.scorable):
            raise ValueError(f"{p.name}: {len(sc)} scores for {len(p.scorable)} rows")
        m = p.scorable
        all_scores.append(sc[m])
        contrib_fp.append(np.where(p.window_of[m] < 0, profile.a_fp * p.fp_weight[m], 0.0))
        win_ids.append(np.where(p.window_of[m] >= 0, p.window_of[m] + offset, -1))
        tpw.append(profile.a_tp * p.tp_weight[m])
        offset += p.n_windows
        n_windows_total += p.n_windows
    s = np.concatenate(all_scores)
    fpc = np.concatenate(contrib_fp)
    wid = np.concatenate(win_ids)
    tw = np.concatenate(tpw)
    order = np.argsort(-s, kind="stable")
    s, fpc, wid, tw = s[order], fpc[order], wid[order], tw[order]

    null, _perfect = _null_and_perfect(preps, profile)
    window_best = np.full(max(n_windows_total, 1), -profile.a_fn)
    running_fp = 0.0
    running_tp = 0.0  # sum over windows of (best - (-a_fn)) i.e. improvement
    best_raw = null
    best_threshold = float(s[0]) + 1e-9 if len(s) else 1.1
    i = 0
    n = len(s)
    while i < n:
        j = i
        value = s[i]
        while j < n and s[j] == value:
            if wid[j] >= 0:
                w = int(wid[j])
                if tw[j] > window_best[w]:
                    running_tp += tw[j] - window_best[w]
                    window_best[w] = tw[j]
            else:
                running_fp += fpc[j]
            j += 1
        raw = null + running_tp + running_fp
        if raw > best_raw:
            best_raw, best_threshold = raw, float(value)
        i = j
    return score_at_threshold(preps, scores, best_threshold, profile_name)
