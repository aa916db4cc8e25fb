"""Hand-built ONNX export of small Keras models (no tf2onnx needed).

Keras runs NHWC; the ONNX graphs we ship are NCHW with a dynamic batch dimension. The
builder walks the Keras layers and emits Conv / Relu / MaxPool / Gemm / Softmax nodes
(opset 17), permuting conv kernels to OIHW and the first dense layer after a flatten
so that the NCHW flatten order matches Keras' NHWC one (no Transpose node needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class GraphBuilder:
    """Accumulates nodes and initializers; each method returns the new tensor's name."""

    def __init__(self, input_name: str, input_shape: list[int | str]) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.input = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, input_shape)
        self._count = 0

    def _name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def const(self, prefix: str, array: np.ndarray) -> str:
        """Add an initializer and return its name."""
        name = self._name(prefix)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], prefix: str, **attrs: Any) -> str:
        """Add one single-output node."""
        out = self._name(prefix)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x: str, kernel_hwio: np.ndarray, bias: np.ndarray, padding: str,
             strides: tuple[int, int]) -> str:
        """Keras Conv2D (HWIO kernel) as an ONNX Conv (OIHW)."""
        w = self.const("conv_w", kernel_hwio.transpose(3, 2, 0, 1).astype(np.float32))
        b = self.const("conv_b", bias.astype(np.float32))
        kh, kw = kernel_hwio.shape[:2]
        attrs: dict[str, Any] = {"kernel_shape": [kh, kw], "strides": list(strides)}
        if padding == "same":
            if strides != (1, 1):
                raise NotImplementedError("same padding with stride > 1")
            attrs["pads"] = [(kh - 1) // 2, (kw - 1) // 2, kh // 2, kw // 2]
        return self.op("Conv", [x, w, b], "conv", **attrs)

    def gemm(self, x: str, kernel_io: np.ndarray, bias: np.ndarray) -> str:
        """Keras Dense kernel (in, out) as Gemm with transB=1 (weights stored out x in)."""
        w = self.const("fc_w", kernel_io.T.astype(np.float32))
        b = self.const("fc_b", bias.astype(np.float32))
        return self.op("Gemm", [x, w, b], "fc", transB=1)

    def model(self, output: str, output_name: str, out_shape: list[int | str],
              doc: str) -> onnx.ModelProto:
        """Finish: rename the last tensor to ``output_name`` and check the model."""
        self.nodes[-1].output[0] = output_name
        for node in self.nodes:  # rewire any consumer of the old name (none expected)
            for i, name in enumerate(node.input):
                if name == output:
                    node.input[i] = output_name
        out = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, out_shape)
        graph = helper.make_graph(self.nodes, "main", [self.input], [out], self.inits)
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edge-runtime"
        )
        model.ir_version = 8  # readable by onnxruntime >= 1.14
        model.doc_string = doc
        onnx.checker.check_model(model, full_check=True)
        return model


def _activation(gb: GraphBuilder, x: str, name: str) -> str:
    if name == "relu":
        return gb.op("Relu", [x], "relu")
    if name == "softmax":
        return gb.op("Softmax", [x], "softmax", axis=-1)
    if name == "linear":
        return x
    raise NotImplementedError(f"activation {name}")


def export_sequential(keras_model: Any, input_shape_nchw: tuple[int, int, int], path: Path,
                      doc: str) -> onnx.ModelProto:
    """Export a Keras Sequential CNN (Conv2D/MaxPooling2D/Flatten/Dense/Dropout) to NCHW ONNX.

    ``input_shape_nchw`` is (C, H, W) without the batch; the batch dimension is symbolic
    ("N"). The output is named ``probs`` (the last layer's activation, softmax here).
    """
    import keras

    c, h, w = input_shape_nchw
    gb = GraphBuilder("input", ["N", c, h, w])
    x = "input"
    shape_hwc: tuple[int, ...] = (h, w, c)
    flattened_from: tuple[int, ...] | None = None
    n_out = 0
    for layer in keras_model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel, bias = layer.get_weights()
            x = gb.conv(x, kernel, bias, layer.padding, tuple(layer.strides))
            x = _activation(gb, x, layer.activation.__name__)
            shape_hwc = tuple(layer.compute_output_shape((1, *shape_hwc))[1:])
        elif isinstance(layer, keras.layers.MaxPooling2D):
            if layer.padding != "valid":
                raise NotImplementedError("MaxPool padding")
            x = gb.op("MaxPool", [x], "pool", kernel_shape=list(layer.pool_size),
                      strides=list(layer.strides))
            shape_hwc = tuple(layer.compute_output_shape((1, *shape_hwc))[1:])
        elif isinstance(layer, keras.layers.GlobalAveragePooling2D):
            x = gb.op("GlobalAveragePool", [x], "gap")
            x = gb.op("Flatten", [x], "flat", axis=1)
            shape_hwc = (shape_hwc[-1],)
        elif isinstance(layer, keras.layers.Flatten):
            x = gb.op("Flatten", [x], "flat", axis=1)
            flattened_from = shape_hwc
            shape_hwc = (int(np.prod(shape_hwc)),)
        elif isinstance(layer, keras.layers.Dense):
            kernel, bias = layer.get_weights()
            if flattened_from is not None and len(flattened_from) == 3:
                fh, fw, fc = flattened_from
                # Keras flattens (h, w, c); ONNX NCHW flattens (c, h, w): permute rows.
                kernel = kernel.reshape(fh, fw, fc, -1).transpose(2, 0, 1, 3).reshape(
                    fh * fw * fc, -1)
                flattened_from = None
            x = gb.gemm(x, kernel, bias)
            x = _activation(gb, x, layer.activation.__name__)
            n_out = kernel.shape[1]
            shape_hwc = (n_out,)
        elif isinstance(layer, keras.layers.Dropout | keras.layers.InputLayer):
            continue
        else:
            raise NotImplementedError(f"layer {type(layer).__name__}")
    model = gb.model(x, "probs", ["N", n_out], doc)
    onnx.save(model, str(path))
    return model
