"""NAB subset benchmark of the streaming anomaly detector against simple baselines.

Run: ``python benchmarks/nab_bench.py`` (about a minute on 2 cores). It scores, over the
NAB subset in ``../shared/data/nab``, with all three NAB profiles and one corpus-wide
threshold per detector and profile:

- ``edge_runtime`` (AnomalyDetector, default settings), windowed Gaussian, null, random;
- a generalisation check: the detector's settings swept on the odd-indexed series and
  reported on the even-indexed ones (and the reverse);
- the adaptive-sampling replay (score and share of points read);
- throughput (points/s, one core) and state memory per channel (bytes).

Writes ``benchmarks/results/nab.json`` and prints a table.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.nab.corpus import Series, load_corpus
from edge_runtime.anomaly.baselines import (
    NullDetector,
    RandomDetector,
    WindowedGaussianDetector,
)
from edge_runtime.anomaly.detector import AnomalyDetector, DetectorConfig
from edge_runtime.anomaly.nab import PROFILES, score_corpus
from edge_runtime.anomaly.sampling import AdaptiveSampler

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


def sampled_replay(corpus: list[Series]) -> tuple[dict[str, Any], float]:
    """Replay with the adaptive sampler: skipped points score 0 and are unseen.

    The detector's clock follows the timestamps of the points it reads, and the sampler
    stays at full rate while the detector warms up.
    """
    out: dict[str, Any] = {}
    reads = offered = 0
    for s in corpus:
        det, sampler = AnomalyDetector(), AdaptiveSampler()
        scores = np.zeros(len(s.values))
        for i, (t, v) in enumerate(zip(s.times.tolist(), s.values.tolist(), strict=True)):
            if sampler.should_read():
                scores[i] = det.update(t, v)
                sampler.observe(v, det.last_raw, learning=not det.warmed_up)
        reads += sampler.reads
        offered += sampler.offered
        out[s.name] = scores
    return out, reads / offered


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


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "timestamp": datetime.now(tz=UTC).isoformat(timespec="seconds"),
    }


def main() -> int:
    corpus = load_corpus()
    n_points = sum(len(s.values) for s in corpus)
    detectors: dict[str, Callable[[], Detector]] = {
        "edge_runtime": AnomalyDetector,
        "windowed_gaussian": WindowedGaussianDetector,
        "random": RandomDetector,
        "null": NullDetector,
    }
    results: dict[str, Any] = {"machine": machine(), "series": len(corpus), "points": n_points}
    results["detectors"] = {}
    for name, make in detectors.items():
        scores, spent = run_detector(make, corpus)
        memory = max(_state_after(make, s) for s in corpus)
        results["detectors"][name] = {
            "scores": score_all(corpus, scores),
            "points_per_s": round(n_points / spent),
            "state_bytes_max": memory,
        }
    sampled, fraction = sampled_replay(corpus)
    full = results["detectors"]["edge_runtime"]["scores"]
    sampled_scores = score_all(corpus, sampled)
    results["adaptive_sampling"] = {
        "scores": sampled_scores,
        "fraction_read": round(fraction, 3),
        "score_ratio_standard": round(sampled_scores["standard"] / full["standard"], 3),
    }
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
    a = results["adaptive_sampling"]
    print(
        f"adaptive sampling: standard {a['scores']['standard']:.1f} "
        f"({100 * a['score_ratio_standard']:.0f} % of full rate), "
        f"{100 * a['fraction_read']:.1f} % of points read"
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
