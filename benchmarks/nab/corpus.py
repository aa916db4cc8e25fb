"""Load the NAB subset shipped in ``tests/data/nab`` with its anomaly windows, and the
variants the scale-freedom check scores (resampled, shortened)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_runtime.anomaly.csvio import parse_timestamp, read_series
from edge_runtime.anomaly.nab import SeriesScoring, prepare_series

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "tests" / "data" / "nab"


@dataclass
class Series:
    """One NAB series: name (``folder/file.csv``), times (s), values, scoring material."""

    name: str
    path: Path
    times: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]
    prep: SeriesScoring
    #: Anomaly windows (start, end) in POSIX seconds, as labelled.
    windows: list[tuple[float, float]] = field(default_factory=list)

    @property
    def category(self) -> str:
        """The NAB folder (``realAWSCloudwatch``, ...)."""
        return self.name.split("/", 1)[0]

    @property
    def interval_s(self) -> float:
        """Median step between rows (s)."""
        return float(np.median(np.diff(self.times))) if len(self.times) > 1 else 0.0


def load_corpus(root: Path = DEFAULT_ROOT) -> list[Series]:
    """Load every series listed in ``combined_windows.json`` under ``root``."""
    root = root.resolve()
    if not (root / "combined_windows.json").exists():
        raise FileNotFoundError(f"NAB data not found at {root}; it ships in the repository "
                                "(tests/data/nab): is the checkout complete?")
    windows = json.loads((root / "combined_windows.json").read_text())
    out = []
    for name in sorted(windows):
        _, times, values = read_series(root / "data" / name)
        wins = [(parse_timestamp(a), parse_timestamp(b)) for a, b in windows[name]]
        prep = prepare_series(name, times, wins)
        out.append(Series(name, root / "data" / name, np.asarray(times), np.asarray(values),
                          prep, wins))
    return out


def resampled(s: Series, interval_s: float) -> Series:
    """``s`` at ``interval_s``: the mean of each bucket ``[k, k+1) * interval_s`` (epoch
    aligned), stamped with the bucket's start; windows stay the same timestamps.

    A series already at ``interval_s`` or coarser is returned unchanged.
    """
    if s.interval_s >= interval_s:
        return s
    keys = np.floor(s.times / interval_s)
    # rows keep file order; a clock set back only merges into an earlier bucket
    uniq, inverse = np.unique(keys, return_inverse=True)
    sums = np.bincount(inverse, weights=s.values)
    counts = np.bincount(inverse)
    times = uniq * interval_s
    values = sums / counts
    prep = prepare_series(s.name, times.tolist(), s.windows)
    return Series(s.name, s.path, times, values, prep, s.windows)


def shortened(s: Series, rows: int) -> Series:
    """The first ``rows`` rows of ``s``; windows past the end are dropped, a window the
    cut falls in ends at the last row."""
    if len(s.times) <= rows:
        return s
    times, values = s.times[:rows], s.values[:rows]
    last = float(times[-1])
    wins = [(a, min(b, last)) for a, b in s.windows if a <= last]
    prep = prepare_series(s.name, times.tolist(), wins)
    return Series(s.name, s.path, times, values, prep, wins)


#: The scale-freedom variants: name -> (resample interval in s or None, rows kept or None).
VARIANTS: dict[str, tuple[float | None, int | None]] = {
    "10min": (600.0, None),
    "30min": (1800.0, None),
    "hourly": (3600.0, None),
    "first_1600_rows": (None, 1600),
}


def variant(corpus: list[Series], name: str) -> list[Series]:
    """The corpus as the variant ``name`` of :data:`VARIANTS` sees it."""
    interval_s, rows = VARIANTS[name]
    out = corpus
    if interval_s is not None:
        out = [resampled(s, interval_s) for s in out]
    if rows is not None:
        out = [shortened(s, rows) for s in out]
    return [s for s in out if math.isfinite(s.interval_s)]
