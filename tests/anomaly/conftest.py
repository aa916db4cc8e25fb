"""Shared fixtures: the NAB data beside the repository (``<repo>/../shared``)."""

from __future__ import annotations

from pathlib import Path

import pytest

NAB_ROOT = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "nab"


@pytest.fixture(scope="session")
def nab_root() -> Path:
    root = NAB_ROOT.resolve()
    if not (root / "combined_windows.json").is_file():
        pytest.fail(f"NAB data missing at {root}: CI must provide shared/ beside the clone")
    return root
