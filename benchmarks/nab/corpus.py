"""Load the NAB subset shipped in ``tests/data/nab`` with its anomaly windows."""

from __future__ import annotations

import json
from dataclasses import dataclass
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
        out.append(Series(name, root / "data" / name, np.asarray(times), np.asarray(values), prep))
    return out
