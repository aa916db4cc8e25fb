"""Models: one API over ONNX Runtime and LiteRT (see :func:`load_model`)."""

from edge_runtime.models.model import Model, load_model
from edge_runtime.models.types import QuantParams, TensorSpec

__all__ = ["Model", "QuantParams", "TensorSpec", "load_model"]
