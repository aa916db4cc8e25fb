"""What a model file is quantized to, read from the file itself (not the manifest).

``int8`` / ``uint8`` when the graph holds 8-bit weights or quantize operators,
``float16`` for half-precision weights, else ``float32``. Listings use this, so a float
model is never shown as ``int8`` because a manifest said so (or left it out).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: ONNX TensorProto data types we look for in initializers.
_ONNX_INT8, _ONNX_UINT8, _ONNX_FLOAT16 = 3, 2, 10
_ONNX_QUANT_OPS = (b"QuantizeLinear", b"QLinear", b"MatMulInteger", b"ConvInteger")


def _from_dtypes(dtypes: set[str]) -> str:
    for name in ("int8", "uint8", "float16"):
        if name in dtypes:
            return name
    return "float32"


def onnx_quantization(path: Path) -> str:
    """From the graph's initializers (``onnx`` package), else a scan for quantize ops."""
    try:
        import onnx
    except ImportError:
        data = path.read_bytes()
        return "int8" if any(op in data for op in _ONNX_QUANT_OPS) else "float32"
    graph = onnx.load(str(path), load_external_data=False).graph
    kinds = {_ONNX_INT8: "int8", _ONNX_UINT8: "uint8", _ONNX_FLOAT16: "float16"}
    found = {kinds[t.data_type] for t in graph.initializer if t.data_type in kinds}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].t.data_type in kinds:
            found.add(kinds[node.attribute[0].t.data_type])
    if not found and any(n.op_type in ("DynamicQuantizeLinear", "QuantizeLinear")
                         for n in graph.node):
        found.add("uint8")  # dynamic quantization computes uint8 zero points at run time
    return _from_dtypes(found)


def tflite_quantization(interpreter: Any) -> str:
    """From every tensor's dtype in the interpreter (weights included)."""
    dtypes = {np.dtype(d["dtype"]).name for d in interpreter.get_tensor_details()}
    return _from_dtypes(dtypes)


def file_quantization(model: Any) -> str:
    """The quantization of a loaded :class:`~edge_runtime.models.model.Model`'s file."""
    if model.format == "onnx":
        return onnx_quantization(Path(model.path))
    interpreter = getattr(model.backend, "interpreter", None)
    if interpreter is None:
        return _from_dtypes({s.dtype.name for s in (*model.inputs, *model.outputs)})
    return tflite_quantization(interpreter)
