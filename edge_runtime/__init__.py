"""edge-runtime: run quantized ONNX and TFLite models on local camera and sensor input.

Importing this package is cheap: nothing heavy (numpy, onnxruntime, LiteRT, OpenCV,
zeroconf, paho) is imported until it is used. The public entry point is
:func:`load_model`::

    import edge_runtime
    model = edge_runtime.load_model("digits-int8-onnx")
    result = model.run(image)          # dict: output name -> ndarray
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edge_runtime._version import __version__
from edge_runtime.errors import EdgeRuntimeError

if TYPE_CHECKING:
    from edge_runtime.models import Model, QuantParams, TensorSpec, load_model

__all__ = [
    "EdgeRuntimeError",
    "Model",
    "QuantParams",
    "TensorSpec",
    "__version__",
    "load_model",
]

_LAZY = {"Model", "QuantParams", "TensorSpec", "load_model"}


def __getattr__(name: str) -> Any:
    # PEP 562 lazy attributes keep 'import edge_runtime' free of numpy and backends.
    if name in _LAZY:
        from edge_runtime import models

        return getattr(models, name)
    raise AttributeError(f"module 'edge_runtime' has no attribute {name!r}")
