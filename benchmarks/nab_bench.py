"""NAB subset benchmark of the streaming anomaly detector against simple baselines.

Run: ``python benchmarks/nab_bench.py`` (about a minute on 2 cores). It scores, over the
NAB subset in ``tests/data/nab``, with all three NAB profiles and one corpus-wide
threshold per detector and profile:

- ``edge_runtime`` (AnomalyDetector, default settings), windowed Gaussian, null, random;
- a generalisation check: the detector's settings swept on the odd-indexed series and
  reported on the even-indexed ones (and the reverse);
- the adaptive-sampling replay through a real pipeline (score and share of points
  read), with a peak-hold device (each read carries the min/max of the rows skipped
  since the previous one) and with a plain one, each also with jittered read times;
- throughput (points/s, one core) and state memory per channel (bytes).

Writes ``benchmarks/results/nab.json`` and prints a table.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import machine_info
from benchmarks.nab.corpus import Series, load_corpus
from edge_runtime.anomaly.baselines import (
    NullDetector,
    RandomDetector,
    WindowedGaussianDetector,
)
from edge_runtime.anomaly.detector import AnomalyDetector, DetectorConfig
from edge_runtime.anomaly.nab import PROFILES, score_corpus

RESULTS = Path(__file__).resolve().parent / "results" / "nab.json"


class Detector(Protocol):
    def update(self, t_s: float, value: float) -> float: ...
    def state_bytes(self) -> int: ...


def run_detector(
    make: Callable[[], Detector], corpus: list[Series]
) -> tuple[dict[str, Any], float]:
    """Scores per series and the pure detector time (s)."""
    out: dict[str, Any] = {}
    spent = 0.0
    for s in corpus:
        det = make()
        update = det.update
        ts, vs = s.times.tolist(), s.values.tolist()
        t0 = time.perf_counter()
        scores = [update(t, v) for t, v in zip(ts, vs, strict=True)]
        spent += time.perf_counter() - t0
        out[s.name] = np.asarray(scores)
    return out, spent


def score_all(corpus: list[Series], scores: dict[str, Any]) -> dict[str, float]:
    preps = [s.prep for s in corpus]
    return {p: round(score_corpus(preps, scores, p).score, 1) for p in PROFILES}


#: The pipeline a user would write for one NAB channel with adaptive sampling: the
#: streaming detector, its raw score driving the rate. Rates and times are in units of
#: the channel's native interval ``dt`` (5 min for most NAB series): at most one read
#: per interval, at least one per 6; full rate for 12 intervals after activity, then the
#: rate's distance above the minimum halves every 24 intervals.
SAMPLED_PIPELINE = """
[budget]
enabled = false
[[sources]]
id = "nab"
type = "replay"
path = "{path}"
min_rate_hz = {min_rate_hz!r}
max_rate_hz = {max_rate_hz!r}
[[pipelines]]
id = "nab"
source = "nab"
detector = "anomaly"
[pipelines.sampling]
policy = "score"
field = "raw_score"
threshold = 0.3
hold_s = {hold_s!r}
decay_half_life_s = {half_life_s!r}
"""
SAMPLING_RATIO = 6  # max_rate_hz / min_rate_hz
SAMPLING_HOLD = 12  # hold_s in native intervals
SAMPLING_HALF_LIFE = 24  # decay_half_life_s in native intervals


def _sampled_pipeline(s: Series) -> tuple[Any, float]:
    """The pipeline of :data:`SAMPLED_PIPELINE` for one series, and its native interval."""
    from edge_runtime.config import decode_config
    from edge_runtime.pipelines.build import build_runtime

    dt = float(np.median(np.diff(s.times)))
    text = SAMPLED_PIPELINE.format(
        path=s.path, min_rate_hz=1.0 / (SAMPLING_RATIO * dt), max_rate_hz=1.0 / dt,
        hold_s=SAMPLING_HOLD * dt, half_life_s=SAMPLING_HALF_LIFE * dt)
    runtime = build_runtime(decode_config(text))
    return runtime.pipelines[0], dt


def sampled_replay(
    corpus: list[Series], *, envelope: bool = True, jitter_seed: int | None = None
) -> tuple[dict[str, Any], float]:
    """Replay every series through an adaptive-sampling pipeline; scores, share read.

    The loop plays the sensor: the pipeline's rate controller says when the next read is
    due, the first row at or after that time is read, and the rows passed over since the
    previous read give the sample's ``envelope`` (min, max) as a device in peak-hold
    mode would (``envelope=False``: a plain device, skipped rows are never seen).
    Skipped rows score 0. ``jitter_seed`` shifts every due time by up to +-15 % of the
    period at random, to see how much the score owes to where the reads happen to fall.
    """
    from edge_runtime.sources.base import Sample

    rng = np.random.default_rng(jitter_seed)
    out: dict[str, Any] = {}
    reads = offered = 0
    for s in corpus:
        pipe, dt = _sampled_pipeline(s)
        controller = pipe.controller
        scores = np.zeros(len(s.values))
        due = -np.inf
        lo, hi = np.inf, -np.inf
        for i, (t, v) in enumerate(zip(s.times.tolist(), s.values.tolist(), strict=True)):
            lo = min(lo, v)
            hi = max(hi, v)
            if t < due:
                continue
            env = (lo, hi) if envelope and lo < hi else None
            sample = Sample("nab", t, i, value=v, envelope=env)
            step = pipe.infer(sample)
            pipe.decide(sample, step, now_s=t)
            if step.result is not None:
                scores[i] = step.result.get("score", 0.0)
            reads += 1
            lo, hi = np.inf, -np.inf
            period = controller.period_s
            if jitter_seed is not None and period > 1.01 * dt:
                period *= rng.uniform(0.85, 1.15)
            due = t + period - 0.5 * dt
        offered += len(s.values)
        out[s.name] = scores
    return out, reads / offered


def sampling_results(corpus: list[Series], full_standard: float) -> dict[str, Any]:
    """The sampled replay with a peak-hold device and with a plain one."""
    out: dict[str, Any] = {}
    for mode, envelope in (("peak_hold", True), ("plain", False)):
        sampled, fraction = sampled_replay(corpus, envelope=envelope)
        scores = score_all(corpus, sampled)
        row: dict[str, Any] = {
            "scores": scores,
            "fraction_read": round(fraction, 3),
            "score_ratio_standard": round(scores["standard"] / full_standard, 3),
        }
        jittered = [score_all(corpus, sampled_replay(corpus, envelope=envelope,
                                                     jitter_seed=seed)[0])["standard"]
                    for seed in range(JITTER_SEEDS)]
        row["jittered"] = {
            "standard": jittered,
            "mean_ratio": round(float(np.mean(jittered)) / full_standard, 3),
            "min_ratio": round(min(jittered) / full_standard, 3),
        }
        out[mode] = row
    return out


JITTER_SEEDS = 4

GRID = [
    {"levels": lv, "distance_bins": db, "alarm_level": al, "horizon_points": hz}
    for lv in (8, 10, 12)
    for db in (2, 3)
    for al in (0.3, 0.4)
    for hz in (10000, 20000)
]


def generalisation(corpus: list[Series]) -> dict[str, Any]:
    """Pick settings on one half of the series, report them on the other half."""
    halves = {"odd": corpus[1::2], "even": corpus[0::2]}
    table = []
    for kw in GRID:
        row: dict[str, Any] = {"settings": kw}
        for name, half in halves.items():
            sc, _ = run_detector(lambda kw=kw: AnomalyDetector(DetectorConfig(**kw)), half)
            row[name] = score_all(half, sc)["standard"]
        table.append(row)
    result: dict[str, Any] = {"grid_size": len(GRID)}
    for tune, test in (("odd", "even"), ("even", "odd")):
        best = max(table, key=lambda r: r[tune])
        result[f"tuned_on_{tune}"] = {
            "settings": best["settings"],
            f"{tune}_score": best[tune],
            f"held_out_{test}_score": best[test],
        }
    default = DetectorConfig()
    result["default_settings"] = {k: getattr(default, k) for k in GRID[0]}
    return result


def main() -> int:
    corpus = load_corpus()
    n_points = sum(len(s.values) for s in corpus)
    detectors: dict[str, Callable[[], Detector]] = {
        "edge_runtime": AnomalyDetector,
        "windowed_gaussian": WindowedGaussianDetector,
        "random": RandomDetector,
        "null": NullDetector,
    }
    results: dict[str, Any] = {"machine": machine_info(), "series": len(corpus), "points": n_points}
    results["detectors"] = {}
    for name, make in detectors.items():
        scores, spent = run_detector(make, corpus)
        memory = max(_state_after(make, s) for s in corpus)
        results["detectors"][name] = {
            "scores": score_all(corpus, scores),
            "points_per_s": round(n_points / spent),
            "state_bytes_max": memory,
        }
    full = results["detectors"]["edge_runtime"]["scores"]
    results["adaptive_sampling"] = sampling_results(corpus, full["standard"])
    results["generalisation"] = generalisation(corpus)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"NAB subset: {len(corpus)} series, {n_points} points  ({results['machine']['cpu']})")
    print(
        f"{'detector':20s} {'standard':>9s} {'low FP':>8s} {'low FN':>8s} "
        f"{'points/s':>10s} {'state B':>9s}"
    )
    for name, r in results["detectors"].items():
        s = r["scores"]
        print(
            f"{name:20s} {s['standard']:9.1f} {s['reward_low_FP_rate']:8.1f} "
            f"{s['reward_low_FN_rate']:8.1f} {r['points_per_s']:10d} {r['state_bytes_max']:9d}"
        )
    for mode, a in results["adaptive_sampling"].items():
        spread = a.get("jittered")
        extra = (f"; due times jittered, {len(spread['standard'])} seeds: mean "
                 f"{spread['mean_ratio'] * 100:.0f} % (min {spread['min_ratio'] * 100:.0f} %)"
                 if spread else "")
        print(
            f"adaptive sampling, {mode}: standard {a['scores']['standard']:.1f} "
            f"({100 * a['score_ratio_standard']:.0f} % of full rate), "
            f"{100 * a['fraction_read']:.1f} % of points read{extra}"
        )
    g = results["generalisation"]
    for k in ("tuned_on_odd", "tuned_on_even"):
        print(f"generalisation {k}: {g[k]}")
    print(f"wrote {RESULTS}")
    return 0


def _state_after(make: Callable[[], Detector], s: Series) -> int:
    det = make()
    for t, v in zip(s.times.tolist(), s.values.tolist(), strict=True):
        det.update(t, v)
    return det.state_bytes()


if __name__ == "__main__":
    raise SystemExit(main())
