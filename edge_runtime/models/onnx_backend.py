"""ONNX models run by onnxruntime (CPU execution provider)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.errors import (
    BackendUnavailableError,
    CorruptModelError,
    InferenceError,
    InputError,
    UnsupportedModelError,
)
from edge_runtime.models.backend import Backend
from edge_runtime.models.types import QuantParams, TensorSpec, guess_layout

log = logging.getLogger(__name__)

_ONNX_DTYPES: dict[str, str] = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int16)": "int16",
    "tensor(uint16)": "uint16",
    "tensor(int32)": "int32",
    "tensor(uint32)": "uint32",
    "tensor(int64)": "int64",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
    "tensor(string)": "object",
}


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailableError("onnxruntime is not installed") from exc
    return onnxruntime


def engine_version() -> str:
    """``onnxruntime X.Y.Z`` of the installed engine."""
    return f"onnxruntime {_ort().__version__}"


def new_session(path: Path, num_threads: int | None) -> Any:
    """An ``InferenceSession`` configured the way edge-runtime runs models (CPU only).

    Engine errors are left for the caller to translate.
    """
    ort = _ort()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # The engine's own log lines (warnings about unused initializers, the error lines it
    # prints before raising what we translate anyway) only with -v: fatal-only otherwise.
    options.log_severity_level = 3 if log.isEnabledFor(logging.INFO) else 4
    options.inter_op_num_threads = 1
    if num_threads is not None:
        options.intra_op_num_threads = num_threads
    # Spinning worker threads burn a core while idle; a device on battery or a passive
    # heatsink cannot afford that between frames.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _clean(text: str, path: Path) -> str:
    """Drop onnxruntime's boilerplate prefix ('[ONNXRuntimeError] : 1 : FAIL : ...')."""
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    text = text.replace(f"Load model from {path} failed:", "")
    return text.replace("Fatal error: ", "").strip()


def _translate_load_error(path: Path, exc: Exception) -> Exception:
    """Turn an onnxruntime load exception into the matching typed error."""
    kind = type(exc).__name__
    text = _clean(str(exc).splitlines()[0], path) if str(exc) else kind
    lowered = text.lower()
    if (
        kind == "NotImplemented"
        or "could not find an implementation" in lowered
        or "is not a registered function/op" in lowered
    ):
        return UnsupportedModelError(f"{path.name}: onnxruntime cannot run this model: {text}")
    if "opset" in lowered and ("unsupported" in lowered or "not supported" in lowered):
        return UnsupportedModelError(f"{path.name}: unsupported ONNX opset: {text}")
    if kind == "InvalidProtobuf" or "protobuf parsing failed" in lowered:
        return CorruptModelError(f"{path.name} is not a readable ONNX file (truncated or damaged)")
    return CorruptModelError(f"{path.name}: onnxruntime refused the model: {text}")


class OnnxBackend(Backend):
    """An ONNX model in an onnxruntime ``InferenceSession`` on the CPU (thread-safe)."""

    @classmethod
    def engine_version(cls) -> str:
        return engine_version()

    def __init__(self, path: Path, *, num_threads: int | None = None) -> None:
        try:
            self._session = new_session(path, num_threads)
        except BackendUnavailableError:
            raise
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise _translate_load_error(path, exc) from exc
        self.name = engine_version()
        self._inputs = [self._spec(i) for i in self._session.get_inputs()]
        self._outputs = [self._spec(o) for o in self._session.get_outputs()]
        self._input_names = [s.name for s in self._inputs]
        self._output_names = [s.name for s in self._outputs]
        if any(
            s.dtype.kind in "iu" and s.dtype.itemsize == 1 for s in self._inputs + self._outputs
        ):
            self._attach_quant_params(path)

    @staticmethod
    def _spec(node: Any) -> TensorSpec:
        shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in (node.shape or []))
        dtype = np.dtype(_ONNX_DTYPES.get(node.type, "object"))
        return TensorSpec(node.name, shape, dtype, guess_layout(shape, "NCHW"))

    def _attach_quant_params(self, path: Path) -> None:
        """Read scale/zero point of 8-bit graph inputs and outputs from the graph.

        onnxruntime does not expose them; they sit on the DequantizeLinear that reads
        an input and on the QuantizeLinear that writes an output. This needs the
        ``onnx`` package; without it the tensors are reported unquantized.
        """
        try:
            import onnx
            from onnx import numpy_helper
        except ImportError:
            log.info("onnx not installed: quantization of 8-bit I/O of %s unknown", path.name)
            return
        graph = onnx.load(str(path), load_external_data=False).graph
        consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute:
                consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)

        def params(node: Any) -> QuantParams | None:
            if len(node.input) < 2 or node.input[1] not in consts:
                return None
            scale = np.atleast_1d(consts[node.input[1]]).astype(float)
            zp_arr = consts.get(node.input[2]) if len(node.input) > 2 else None
            zero = np.zeros(scale.shape, int) if zp_arr is None else np.atleast_1d(zp_arr)
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            return QuantParams(
                tuple(float(s) for s in scale),
                tuple(int(z) for z in zero),
                None if scale.size == 1 else int(axis),
            )

        def with_quant(specs: list[TensorSpec], op: str, slot: str) -> list[TensorSpec]:
            updated = []
            for spec in specs:
                quant = None
                if spec.dtype.itemsize == 1 and spec.dtype.kind in "iu":
                    for node in graph.node:
                        names = node.input[:1] if slot == "input" else node.output[:1]
                        if node.op_type == op and spec.name in names:
                            quant = params(node)
                            break
                updated.append(TensorSpec(spec.name, spec.shape, spec.dtype, spec.layout, quant))
            return updated

        self._inputs = with_quant(self._inputs, "DequantizeLinear", "input")
        self._outputs = with_quant(self._outputs, "QuantizeLinear", "output")

    @property
    def session(self) -> Any:
        """The underlying ``onnxruntime.InferenceSession`` (for benchmarks and experts)."""
        return self._session

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        try:
            result: list[np.ndarray] = self._session.run(
                self._output_names, dict(zip(self._input_names, arrays, strict=True))
            )
        except Exception as exc:
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if type(exc).__name__ == "InvalidArgument":
                raise InputError(f"onnxruntime rejected the input: {text}") from exc
            raise InferenceError(f"onnxruntime failed to run the model: {text}") from exc
        return result
