"""Export and quantization steps shared by every model family.

- ONNX int8: ``onnxruntime.quantization.quantize_static`` in QDQ format with per-channel
  weights, calibrated on training inputs (after ``quant_pre_process``).
- TFLite fp32 and full-integer int8 (int8 input and output) with LiteRT's converter.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np


class _ArrayReader:
    """CalibrationDataReader over a float32 array, one batch-1 sample at a time."""

    def __init__(self, input_name: str, samples: np.ndarray) -> None:
        self.input_name = input_name
        self.samples = samples.astype(np.float32)
        self._it: Iterator[np.ndarray] = iter(self.samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        sample = next(self._it, None)
        return None if sample is None else {self.input_name: sample[None, ...]}

    def rewind(self) -> None:
        self._it = iter(self.samples)


def quantize_onnx_static(fp32_path: Path, int8_path: Path, calibration: np.ndarray,
                         exclude_ops: Sequence[str] = ("Softmax",)) -> None:
    """Static int8 QDQ quantization of an ONNX model.

    Activations int8 (asymmetric) and weights int8 symmetric per channel (S8S8, ORT's
    recommended default). Not U8S8: on x86 CPUs without VNNI (AVX2 only, like the
    build machine) onnxruntime's U8S8 kernels can saturate their int16 intermediate
    sums, which we measured: the machine-temp MAE went from 0.74 to 1.15 degF. The
    ops in ``exclude_ops`` (the final Softmax) stay float so the probabilities keep full
    precision.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = onnx.load(str(fp32_path))
    input_name = model.graph.input[0].name
    excluded = [n.name for n in model.graph.node if n.op_type in exclude_ops]
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(int8_path),
            _ArrayReader(input_name, calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=excluded,
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
        )
    # Keep the same documentation string as the float model.
    q = onnx.load(str(int8_path))
    q.doc_string = model.doc_string + " Static int8 QDQ (per-channel weights)."
    onnx.save(q, str(int8_path))


def _concrete_function(keras_model: Any, input_shape: tuple[int, ...]) -> Any:
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec(input_shape, tf.float32, name="input")])
    def serve(x: Any) -> Any:
        return keras_model(x, training=False)

    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    # Freeze the Keras 3 variables into constants: the TFLite calibrator cannot read
    # resource variables of a plain concrete function.
    return convert_variables_to_constants_v2(serve.get_concrete_function())


def tflite_fp32(keras_model: Any, input_shape: tuple[int, ...], path: Path) -> None:
    """Plain float32 TFLite export with a fixed input shape (batch 1)."""
    import tensorflow as tf

    fn = _concrete_function(keras_model, input_shape)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn])
    path.write_bytes(converter.convert())


def tflite_int8(keras_model: Any, input_shape: tuple[int, ...], path: Path,
                representative: np.ndarray) -> None:
    """Full-integer int8 TFLite export: int8 weights, activations, input and output."""
    import tensorflow as tf

    fn = _concrete_function(keras_model, input_shape)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    reps = representative.astype(np.float32)

    def gen() -> Iterator[list[np.ndarray]]:
        for sample in reps:
            yield [sample[None, ...]]

    converter.representative_dataset = gen
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    path.write_bytes(converter.convert())
