"""Inputs a model has no answer for are refused with one clear error, never a raw one or
a confident-looking result; absurd shapes and thread counts never reach the engine."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.errors import InputError, WarmUpError
from edge_runtime.models.model import load_model
from tests.models.onnx_builders import image_identity


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_input_is_refused(bad: float) -> None:
    model = load_model("digits-fp32-onnx")
    x = np.zeros(tuple(d or 1 for d in model.inputs[0].shape), np.float32)
    x[0, 0, 3, 4] = bad
    with pytest.raises(InputError, match=r"holds 1 NaN or infinite value\(s\) of 64"):
        model.run(x)


def test_nan_is_refused_before_quantizing_too() -> None:
    model = load_model("digits-int8-onnx")
    x = np.full(tuple(d or 1 for d in model.inputs[0].shape), np.nan, np.float32)
    with pytest.raises(InputError, match="NaN or infinite"):
        model.run(x)


@pytest.mark.parametrize("name", ["digits-int8-onnx", "digits-int8-tflite"])
def test_a_0d_value_for_a_quantized_model_is_a_shape_error(name: str) -> None:
    model = load_model(name)
    with pytest.raises(InputError, match=r"expects shape .* but got \(\)"):
        model.run(np.array(0.5, np.float32))


def test_an_absurd_input_shape_is_refused_before_allocating(tmp_path: Path) -> None:
    """1x3x100000x100000 float32 is 120 GB: refused at warm-up with what it needs, not
    left to calloc (which may succeed) and the OOM killer."""
    path = image_identity(tmp_path / "huge.onnx", [1, 3, 100000, 100000])
    with pytest.raises(WarmUpError,
                       match=r"inputs \(1, 3, 100000, 100000\) need 120,000 MB, more than half"):
        load_model(path, probe=False)


def test_more_threads_than_cores_are_capped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="edge_runtime.models.model"):
        model = load_model("digits-int8-onnx", num_threads=100000)
    assert "num_threads=100000 is more than the" in caplog.text
    x = np.zeros(tuple(d or 1 for d in model.inputs[0].shape), np.float32)
    assert model.run(x)
