"""Regression floors on the NAB subset (documented in benchmarks/results/nab.json).

The floors sit a little under the measured values (standard 68.9; the adaptive-sampling
pipeline with a peak-hold replay 64.2 = 93 % of full rate at 26 % of points read) so that
a change which loses detections fails here, while benign score noise does not.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.nab.corpus import load_corpus
from benchmarks.nab_bench import run_detector, sampled_replay, score_all
from edge_runtime.anomaly import AnomalyDetector

STANDARD_FLOOR = 67.5
SAMPLED_RATIO_FLOOR = 0.9
SAMPLED_FRACTION_CEILING = 0.4


def test_detector_and_sampling_floors_on_the_nab_subset(nab_root: Path) -> None:
    corpus = load_corpus(nab_root)
    full, _ = run_detector(AnomalyDetector, corpus)
    full_std = score_all(corpus, full)["standard"]
    assert full_std >= STANDARD_FLOOR
    sampled, fraction = sampled_replay(corpus)
    assert fraction <= SAMPLED_FRACTION_CEILING
    peak_hold = score_all(corpus, sampled)["standard"]
    assert peak_hold >= SAMPLED_RATIO_FLOOR * full_std
    # Without the envelope, spikes between reads are lost: the reason it exists.
    plain, _ = sampled_replay(corpus, envelope=False)
    assert score_all(corpus, plain)["standard"] < peak_hold - 5.0
