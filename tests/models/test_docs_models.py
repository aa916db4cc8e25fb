"""The manifest examples in docs/models.md are valid manifests, and work."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import msgspec
import numpy as np
import pytest

from edge_runtime.models import load_model
from edge_runtime.models.decoders.base import DecodeContext
from edge_runtime.models.decoders.plugin import load_plugin
from edge_runtime.models.manifest import (
    Manifest,
    PluginPostprocessing,
    WindowPreprocessing,
    load_manifest,
    sha256_file,
)
from edge_runtime.models.preprocess import image_preprocessor_with_geometry
from edge_runtime.pipelines.postprocess import decoder_for_model
from tests.models.decoder_models import blazeface_outputs, derived_outputs

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


def _manifest_blocks() -> dict[str, str]:
    return {re.match(r'name = "([^"]+)"', b).group(1): b  # type: ignore[union-attr]
            for b in _toml_blocks() if b.startswith("name = ")}


def test_every_full_manifest_in_the_docs_loads(tmp_path: Path) -> None:
    blocks = _manifest_blocks()
    assert {"digits-int8-tflite", "face-short-range", "yolov8n", "water"} <= set(blocks)
    for name, text in blocks.items():
        path = tmp_path / f"{name}.toml"
        path.write_text(text)
        assert load_manifest(path).name == name


def test_plugin_example_and_its_function(tmp_path: Path) -> None:
    head = 'name = "x"\nfile = "x.onnx"\nsha256 = "0"\ntask = "detection"\ndescription = "d"\n'
    table = next(b for b in _toml_blocks() if 'type = "plugin"' in b)
    manifest = msgspec.toml.decode((head + table).encode(), type=Manifest)
    assert isinstance(manifest.postprocessing, PluginPostprocessing)
    assert manifest.postprocessing.options == {"min_chars": 5}
    code = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)[0]
    (tmp_path / "docs_plugin_example.py").write_text(code)
    sys.path.insert(0, str(tmp_path))
    try:
        function = load_plugin("docs_plugin_example:decode_plates")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("docs_plugin_example", None)
    context = DecodeContext(labels=["plate"], input_size=(320, 320))
    result = function({"scores": np.array([[0.9, 0.2, 0.7]], np.float32)}, context)
    assert result == {"count": 2, "max_score": pytest.approx(0.9)}


def test_the_face_detector_manifest_from_the_docs_decodes_a_face(tmp_path: Path) -> None:
    """A maker's manifest written from the docs alone, on a model in BlazeFace's layout."""
    onnx_path = derived_outputs(tmp_path / "face.onnx", [1, 128, 128, 3],
                                blazeface_outputs([(300, (0.3, 0.2, 0.6, 0.7))]),
                                input_name="input")
    text = _manifest_blocks()["face-short-range"]
    text = text.replace('"face_detection_short_range.tflite"', '"face.onnx"')
    text = text.replace('"<sha256sum of the file>"', f'"{sha256_file(onnx_path)}"')
    path = tmp_path / "face.toml"
    path.write_text(text)
    model = load_model(path)
    decoder = decoder_for_model(model)
    assert decoder is not None
    frame = np.full((480, 640, 3), 200, np.uint8)  # stretched to 128 x 128
    x, geometry = image_preprocessor_with_geometry(decoder.recipe,  # type: ignore[arg-type]
                                                   model.inputs[0])(frame)
    result = decoder.decoder.decode(model.run(x), geometry)
    assert result["count_face"] == 1
    np.testing.assert_allclose(result["detections"][0]["box_px"],
                               [0.3 * 640, 0.2 * 480, 0.6 * 640, 0.7 * 480], atol=0.2)
