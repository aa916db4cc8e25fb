"""TFLite models run by LiteRT (``ai-edge-litert``), falling back to ``tflite-runtime``.

Interpreter selection order, fixed and explained (like gpiozero's pin factories):

1. ``EDGE_RUNTIME_TFLITE`` environment variable: ``litert`` or ``tflite-runtime``
   forces one package (an error if it is not installed);
2. LiteRT (``ai_edge_litert.interpreter``), the maintained successor;
3. ``tflite_runtime.interpreter``, for old images where only that is installed
   (e.g. numpy 1.x); a :class:`InterpreterFallbackWarning` says so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from functools import cache
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

ENV_INTERPRETER = "EDGE_RUNTIME_TFLITE"
_CANDIDATES: dict[str, tuple[str, str]] = {
    # choice -> (module, distribution name shown to users)
    "litert": ("ai_edge_litert.interpreter", "ai-edge-litert"),
    "tflite-runtime": ("tflite_runtime.interpreter", "tflite-runtime"),
}


class InterpreterFallbackWarning(RuntimeWarning):
    """LiteRT is not installed and the older tflite-runtime is used instead."""


@cache
def _interpreter_module() -> tuple[Any, str]:
    """Import the TFLite interpreter module in the documented order; cached."""
    import importlib

    forced = os.environ.get(ENV_INTERPRETER)
    if forced:
        if forced not in _CANDIDATES:
            raise BackendUnavailableError(
                f"{ENV_INTERPRETER}={forced!r} is not one of {', '.join(_CANDIDATES)}"
            )
        module, dist = _CANDIDATES[forced]
        try:
            return importlib.import_module(module), dist
        except ImportError as exc:
            raise BackendUnavailableError(
                f"{ENV_INTERPRETER} asks for {dist}, not installed"
            ) from exc
    for position, (module, dist) in enumerate(_CANDIDATES.values()):
        try:
            imported = importlib.import_module(module)
        except ImportError:
            continue
        if position > 0:
            warnings.warn(
                f"LiteRT (ai-edge-litert) is not installed; using {dist}",
                InterpreterFallbackWarning,
                stacklevel=3,
            )
        return imported, dist
    raise BackendUnavailableError("no TFLite interpreter (ai-edge-litert or tflite-runtime)")


def engine_version() -> str:
    """``<package> <version>`` of the interpreter that would be used."""
    from importlib.metadata import PackageNotFoundError, version

    _, dist = _interpreter_module()
    try:
        return f"{dist} {version(dist)}"
    except PackageNotFoundError:
        return dist


@contextlib.contextmanager
def _native_stderr_to_log() -> Iterator[None]:
    """Route what the C++ interpreter prints on fd 2 during a call into our log.

    LiteRT announces "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on
    every interpreter it builds; on a device that is log noise. Lines are re-emitted
    through :mod:`logging` (INFO lines at debug level), so nothing is lost.
    """
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            for line in sink.read().decode(errors="replace").splitlines():
                if line.startswith("INFO:"):
                    log.debug("LiteRT: %s", line)
                elif line.strip():
                    log.warning("LiteRT: %s", line)


def new_interpreter(path: Path, num_threads: int | None) -> Any:
    """An allocated interpreter for ``path``; engine errors (``ValueError`` for an
    unreadable file, ``RuntimeError`` at allocation) are left for the caller."""
    module, _ = _interpreter_module()
    with _native_stderr_to_log():
        interpreter = module.Interpreter(model_path=str(path), num_threads=num_threads)
        interpreter.allocate_tensors()
    return interpreter


def _quant(detail: dict[str, Any]) -> QuantParams | None:
    params = detail.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", ()), dtype=float)
    zeros = np.asarray(params.get("zero_points", ()), dtype=int)
    if scales.size == 0:
        scale, zero = detail.get("quantization", (0.0, 0))
        if not scale:
            return None
        return QuantParams((float(scale),), (int(zero),))
    if zeros.size != scales.size:
        zeros = np.resize(zeros if zeros.size else np.zeros(1, int), scales.shape)
    axis = None if scales.size == 1 else int(params.get("quantized_dimension", 0))
    return QuantParams(tuple(scales.tolist()), tuple(int(z) for z in zeros), axis)


def _spec(detail: dict[str, Any]) -> TensorSpec:
    signature = detail.get("shape_signature")
    dims = signature if signature is not None and len(signature) else detail["shape"]
    shape = tuple(None if int(d) < 0 else int(d) for d in dims)
    dtype = np.dtype(detail["dtype"])
    quant = _quant(detail) if dtype.kind in "iu" else None
    return TensorSpec(detail["name"], shape, dtype, guess_layout(shape, "NHWC"), quant)


class TFLiteBackend(Backend):
    """A TFLite flatbuffer in a LiteRT (or tflite-runtime) ``Interpreter``."""

    @classmethod
    def engine_version(cls) -> str:
        return engine_version()

    def __init__(self, path: Path, *, num_threads: int | None = None) -> None:
        try:
            interpreter = new_interpreter(path, num_threads)
        except ValueError as exc:
            raise CorruptModelError(f"{path.name} is not a readable TFLite file: {exc}") from exc
        except RuntimeError as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else "unknown"
            lowered = text.lower()
            if "op" in lowered and (
                "custom" in lowered or "find" in lowered or "unsupported" in lowered
            ):
                raise UnsupportedModelError(f"{path.name}: unsupported operator: {text}") from exc
            raise CorruptModelError(
                f"{path.name}: LiteRT could not prepare the model: {text}"
            ) from exc
        self._interp = interpreter
        self.name = engine_version()
        try:
            in_details = interpreter.get_input_details()
            out_details = interpreter.get_output_details()
        except ValueError as exc:  # e.g. an output that names a tensor that does not exist
            raise CorruptModelError(f"{path.name}: its tensor table is damaged: {exc}") from exc
        self._in_index = [int(d["index"]) for d in in_details]
        self._out_index = [int(d["index"]) for d in out_details]
        self._in_shapes = [tuple(int(x) for x in d["shape"]) for d in in_details]
        self._inputs = [_spec(d) for d in in_details]
        self._outputs = [_spec(d) for d in out_details]
        self._lock = threading.Lock()

    @property
    def interpreter(self) -> Any:
        """The underlying interpreter (for benchmarks and experts)."""
        return self._interp

    def _resize(self, arrays: Sequence[np.ndarray]) -> None:
        interp = self._interp
        for i, arr in enumerate(arrays):
            if arr.shape != self._in_shapes[i]:
                interp.resize_tensor_input(self._in_index[i], list(arr.shape), strict=True)
                self._in_shapes[i] = arr.shape
        try:
            interp.allocate_tensors()
        except RuntimeError as exc:
            raise InputError(f"LiteRT cannot run the model at these input shapes: {exc}") from exc

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        interp = self._interp
        with self._lock:  # one interpreter holds one set of tensors: serialise callers
            for arr, shape in zip(arrays, self._in_shapes):  # noqa: B905 - lengths checked by Model
                if arr.shape != shape:
                    self._resize(arrays)
                    break
            try:
                for index, arr in zip(self._in_index, arrays, strict=True):
                    interp.set_tensor(index, arr)
                interp.invoke()
            except ValueError as exc:
                raise InputError(f"LiteRT rejected the input: {exc}") from exc
            except RuntimeError as exc:
                raise InferenceError(f"LiteRT failed to run the model: {exc}") from exc
            return [interp.get_tensor(index) for index in self._out_index]

    def close(self) -> None:
        self._interp = None
