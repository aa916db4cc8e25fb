"""Where the test data that ships in the repository lives."""

from __future__ import annotations

from pathlib import Path

DATA_ROOT = Path(__file__).resolve().parents[1] / "data"
#: 35 labelled NAB series (MIT licence, ``LICENSE.txt`` beside them) and their windows.
NAB_ROOT = DATA_ROOT / "nab"
