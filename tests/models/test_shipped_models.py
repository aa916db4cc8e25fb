"""Every shipped model: loads, matches its manifest, equals the bare engine, is accurate."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime import load_model
from edge_runtime.models.bare import bare_runner
from edge_runtime.models.manifest import ImagePreprocessing
from edge_runtime.models.preprocess import image_preprocessor
from edge_runtime.models.registry import data_file, list_models

SHIPPED = list_models()
IMAGE_MODELS = [m.name for m in SHIPPED if isinstance(m.preprocessing, ImagePreprocessing)]


def test_the_required_models_ship() -> None:
    names = {m.name for m in SHIPPED}
    for required in (
        "digits-int8-onnx",
        "digits-int8-tflite",
        "digits-heavy-int8-onnx",
        "digits-heavy-int8-tflite",
        "machine-temp-int8-onnx",
    ):
        assert required in names
    for m in SHIPPED:
        assert m.model_path.is_file(), m.name
        assert m.card_path is not None and m.card_path.is_file(), m.name


@pytest.mark.parametrize("name", [m.name for m in SHIPPED])
def test_runtime_equals_bare_engine(name: str) -> None:
    """Raw outputs are bit-identical to the engine's, dequantized ones follow scale/zero point."""
    model = load_model(name, num_threads=1)
    bare = bare_runner(model.path, model.format, num_threads=1)
    rng = np.random.default_rng(7)
    for _ in range(5):
        arrays = []
        for spec in model.inputs:
            shape = tuple(2 if d is None else d for d in spec.shape)
            if spec.dtype.kind in "iu":
                info = np.iinfo(spec.dtype)
                arrays.append(rng.integers(info.min, info.max, size=shape).astype(spec.dtype))
            else:
                arrays.append(rng.random(shape).astype(spec.dtype))
        feed = {s.name: a for s, a in zip(model.inputs, arrays, strict=True)}
        raw = model.run(feed, dequantize=False)
        expected = bare(arrays)
        deq = model.run(feed)
        for spec, want in zip(model.outputs, expected, strict=True):
            np.testing.assert_array_equal(raw[spec.name], want)
            if spec.quant is not None:
                manual = (want.astype(np.float32) - spec.quant.zero_point[0]) * spec.quant.scale[0]
                np.testing.assert_allclose(deq[spec.name], manual, rtol=0, atol=1e-6)
                assert deq[spec.name].dtype == np.float32
            else:
                np.testing.assert_array_equal(deq[spec.name], want)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_held_out_accuracy_matches_manifest(name: str) -> None:
    """Frames preprocessed by the manifest reach the accuracy the model card claims."""
    model = load_model(name, num_threads=1)
    manifest = model.manifest
    assert manifest is not None and manifest.accuracy is not None
    assert isinstance(manifest.preprocessing, ImagePreprocessing)
    prep = image_preprocessor(manifest.preprocessing, model.inputs[0])
    with np.load(data_file("digits_heldout.npz")) as data:
        images, labels = data["images"], data["labels"]
    out = model.outputs[0].name
    # A camera frame is BGR; the manifest's preprocessing does the rest.
    batch = [prep(np.repeat(image[:, :, None], 3, axis=2)) for image in images]
    if model.inputs[0].shape[0] is None:  # dynamic batch: one call for the whole set
        predicted = np.argmax(model.run(np.concatenate(batch))[out], axis=1)
    else:
        predicted = np.array([np.argmax(model.run(x)[out]) for x in batch])
    correct = int(np.sum(predicted == labels))
    accuracy = correct / len(labels)
    # The card was measured on the build's float data; uint8 frames round pixel
    # values, which may flip a borderline digit or two.
    assert accuracy >= manifest.accuracy.value - 0.01
    assert accuracy > 0.95


def test_int8_accuracy_within_one_point_of_fp32() -> None:
    for m in SHIPPED:
        if m.quantization == "int8" and m.accuracy is not None and m.accuracy.metric == "top1":
            assert m.accuracy.fp32_value is not None
            assert m.accuracy.value >= m.accuracy.fp32_value - 0.01, m.name


def test_float_input_is_quantized_for_int8_tflite() -> None:
    model = load_model("digits-int8-tflite", num_threads=1)
    spec = model.inputs[0]
    assert spec.dtype == np.int8 and spec.quant is not None and spec.layout == "NHWC"
    x = np.random.default_rng(3).random(spec.shape).astype(np.float32)  # type: ignore[arg-type]
    scale, zero = spec.quant.scale[0], spec.quant.zero_point[0]
    q = np.clip(np.rint(x / scale) + zero, -128, 127).astype(np.int8)
    np.testing.assert_array_equal(
        model.run(x, dequantize=False)["Identity"], model.run(q, dequantize=False)["Identity"]
    )


def test_latency_stats_are_recorded() -> None:
    model = load_model("digits-int8-onnx", num_threads=1)
    x = np.zeros((1, 1, 8, 8), np.float32)
    for _ in range(30):
        model.run(x)
    summary = model.stats.summary()
    assert summary.count == 30
    assert 0 < summary.p50_ms <= summary.p95_ms <= summary.p99_ms <= summary.max_ms
    assert summary.ewma_ms > 0
