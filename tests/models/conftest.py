"""Fixtures for the model API tests: a private probe cache and small ONNX builders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
TFLITE_FIXTURES = REPO / "tests" / "fixtures" / "tflite"


@pytest.fixture(autouse=True)
def probe_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets an empty probe-verdict cache, so probing really happens."""
    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("EDGE_RUNTIME_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def cli_env(probe_cache: Path) -> Iterator[dict[str, str]]:
    """Environment for CLI subprocesses (same cache, no inherited model folders)."""
    env = dict(os.environ)
    env.pop("EDGE_RUNTIME_MODELS", None)
    env["EDGE_RUNTIME_CACHE_DIR"] = str(probe_cache)
    yield env
