"""Sensor intelligence: streaming anomaly detection, cleaning, forecasting, health.

One job per module:

- :mod:`.detector`: :class:`AnomalyDetector` (one channel) and
  :class:`MultiChannelDetector`, the pipeline stage (``update(t_s, value) -> score``).
- :mod:`.baselines`: windowed Gaussian, null and random detectors for comparison.
- :mod:`.cleaning`: gap filling, spike and range correction with counters.
- :mod:`.forecast`: time-to-threshold with an uncertainty band, early warnings.
- :mod:`.health`: a 0..100 health score per monitored device.
- :mod:`.csvio`: ``timestamp,value`` CSV reading with line-numbered errors.
- :mod:`.nab`: NAB scoring (used by ``benchmarks/nab_bench.py`` and the tests).

Adaptive sampling on the detector's score is not here: it is the pipelines' own
(``[pipelines.sampling] policy = "score"``, ``field = "raw_score"``; see
:mod:`edge_runtime.sampling`).

Importing the package is cheap (numpy is only imported by :mod:`.nab`).
"""

from __future__ import annotations

from edge_runtime.anomaly.detector import AnomalyDetector, DetectorConfig, MultiChannelDetector

__all__ = ["AnomalyDetector", "DetectorConfig", "MultiChannelDetector"]
