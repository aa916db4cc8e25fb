"""Fixtures for the model API tests: a private probe cache and small ONNX builders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
TFLITE_FIXTURES = REPO / "tests" / "fixtures" / "tflite"


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("probe-cache")


@pytest.fixture(autouse=True)
def probe_cache(_session_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A probe-verdict cache private to the test session (never the user's ~/.cache)."""
    monkeypatch.setenv("EDGE_RUNTIME_CACHE_DIR", str(_session_cache))
    return _session_cache


@pytest.fixture
def fresh_probe_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty verdict cache, for tests that check what the probe records."""
    folder = tmp_path / "fresh-cache"
    monkeypatch.setenv("EDGE_RUNTIME_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def cli_env(probe_cache: Path) -> Iterator[dict[str, str]]:
    """Environment for CLI subprocesses (same cache, no inherited model folders)."""
    env = dict(os.environ)
    env.pop("EDGE_RUNTIME_MODELS", None)
    env["EDGE_RUNTIME_CACHE_DIR"] = str(probe_cache)
    yield env
