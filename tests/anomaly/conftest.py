"""Shared fixtures: the NAB subset shipped in the repository (``tests/data/nab``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.data import NAB_ROOT


@pytest.fixture(scope="session")
def nab_root() -> Path:
    return NAB_ROOT
