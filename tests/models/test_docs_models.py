"""The manifest examples in docs/models.md are valid manifests."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from edge_runtime.models.manifest import Manifest, WindowPreprocessing

DOC = Path(__file__).resolve().parents[2] / "docs" / "models.md"


def _toml_blocks() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_full_example_is_a_valid_manifest() -> None:
    full = _toml_blocks()[0]
    manifest = msgspec.toml.decode(full.encode(), type=Manifest)
    assert manifest.name == "digits-int8-tflite" and manifest.preprocessing is not None


def test_window_example_completes_a_valid_manifest() -> None:
    head = 'name = "x"\nfile = "x.onnx"\nsha256 = "0"\ntask = "regression"\ndescription = "d"\n'
    manifest = msgspec.toml.decode((head + _toml_blocks()[1]).encode(), type=Manifest)
    assert isinstance(manifest.preprocessing, WindowPreprocessing)
    assert manifest.preprocessing.length == 32
