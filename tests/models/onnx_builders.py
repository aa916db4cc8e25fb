"""Small ONNX models for the odd cases a user's file may have, built with onnx.helper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def save(graph: onnx.GraphProto, path: Path) -> Path:
    """Save ``graph`` as a checked model at ``path``."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def dynamic_batch_linear(path: Path) -> Path:
    """x: float[N, 4] -> y = x @ W + b: float[N, 3]."""
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.normal(size=(3,)).astype(np.float32), "B")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "B"], ["y"]),
        ],
        "dynamic_batch",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        initializer=[w, b],
    )
    return save(graph, path)


def multi_io_int64(path: Path) -> Path:
    """Inputs a: float[2], ids: int64[N], scale: float scalar; outputs s=a*scale, n=ids+ids."""
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["a", "scale"], ["s"]),
            helper.make_node("Add", ["ids", "ids"], ["n"]),
        ],
        "multi_io",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("scale", TensorProto.FLOAT, []),
        ],
        [
            helper.make_tensor_value_info("s", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("n", TensorProto.INT64, ["N"]),
        ],
    )
    return save(graph, path)


def stateful(path: Path) -> Path:
    """A running sum: inputs x: float[1,3], state: float[1,3]; outputs y and new_state."""
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["x", "state"], ["new_state"]),
            helper.make_node("ReduceSum", ["new_state"], ["y"], keepdims=1),
        ],
        "stateful",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3]),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [1, 3]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1]),
            helper.make_tensor_value_info("new_state", TensorProto.FLOAT, [1, 3]),
        ],
    )
    return save(graph, path)


def quantized_io(path: Path, dtype: int, zero_point: int, scale: float = 0.05) -> Path:
    """8-bit input and output (int8 or uint8) around a float Relu, QDQ style.

    q_in -> DequantizeLinear -> Relu -> QuantizeLinear -> q_out, with the same
    (scale, zero point) on both ends.
    """
    np_dtype = np.int8 if dtype == TensorProto.INT8 else np.uint8
    inits = [
        numpy_helper.from_array(np.array(scale, dtype=np.float32), "scale"),
        numpy_helper.from_array(np.array(zero_point, dtype=np_dtype), "zp"),
    ]
    graph = helper.make_graph(
        [
            helper.make_node("DequantizeLinear", ["q_in", "scale", "zp"], ["x"]),
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("QuantizeLinear", ["r", "scale", "zp"], ["q_out"]),
        ],
        "qio",
        [helper.make_tensor_value_info("q_in", dtype, [1, 6])],
        [helper.make_tensor_value_info("q_out", dtype, [1, 6])],
        initializer=inits,
    )
    return save(graph, path)


def image_identity(path: Path, shape: list[int | str]) -> Path:
    """An image-shaped identity model (for layout detection)."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["image"], ["out"])],
        "image",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, shape)],
    )
    return save(graph, path)


def unsupported_op(path: Path) -> Path:
    """A model with an operator no onnxruntime build implements (custom domain)."""
    graph = helper.make_graph(
        [helper.make_node("FancyOp", ["x"], ["y"], domain="com.example")],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.example", 1)],
    )
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
