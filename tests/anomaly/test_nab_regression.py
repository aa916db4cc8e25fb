"""Regression floors on the NAB subset (documented in benchmarks/results/nab.json).

The floors sit a little under the measured values (standard 68.9; sampling replay 58.8 =
85 % of full rate at 33.1 % of points read) so that a change which loses detections
fails here, while benign score noise does not.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.nab.corpus import load_corpus
from benchmarks.nab_bench import run_detector, sampled_replay, score_all
from edge_runtime.anomaly import AnomalyDetector

STANDARD_FLOOR = 67.5
SAMPLED_RATIO_FLOOR = 0.8
SAMPLED_FRACTION_CEILING = 0.4


def test_detector_and_sampling_floors_on_the_nab_subset(nab_root: Path) -> None:
    corpus = load_corpus(nab_root)
    full, _ = run_detector(AnomalyDetector, corpus)
    full_std = score_all(corpus, full)["standard"]
    assert full_std >= STANDARD_FLOOR
    sampled, fraction = sampled_replay(corpus)
    assert fraction <= SAMPLED_FRACTION_CEILING
    assert score_all(corpus, sampled)["standard"] >= SAMPLED_RATIO_FLOOR * full_std
