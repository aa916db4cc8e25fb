"""The bare engine call, with no edge-runtime code in the way.

Used as the reference that :class:`~edge_runtime.models.model.Model` must match
(tests, on an engine of their own) and must not be much slower than
(``edge-runtime bench`` and the benchmarks, on the model's own engine object, so
that only the wrapper differs). Engines are configured exactly as the backends
configure them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

BareRun = Callable[[Sequence[np.ndarray]], list[np.ndarray]]


def open_engine(path: Path, fmt: str, num_threads: int | None = None) -> Any:
    """A new onnxruntime session or LiteRT interpreter for ``path``, as the backends make them."""
    if fmt == "onnx":
        from edge_runtime.models.onnx_backend import new_session

        return new_session(path, num_threads)
    from edge_runtime.models.tflite_backend import new_interpreter

    return new_interpreter(path, num_threads)


def bare_call(engine: Any, fmt: str) -> BareRun:
    """The plain engine call on ``engine`` (inputs in model order), as a user would write it."""
    if fmt == "onnx":
        names = [i.name for i in engine.get_inputs()]

        def run_onnx(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
            out: list[np.ndarray] = engine.run(None, dict(zip(names, arrays, strict=True)))
            return out

        return run_onnx

    in_idx = [d["index"] for d in engine.get_input_details()]
    out_idx = [d["index"] for d in engine.get_output_details()]
    shapes = [tuple(d["shape"]) for d in engine.get_input_details()]

    def run_tflite(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        if any(a.shape != s for a, s in zip(arrays, shapes, strict=True)):
            for i, a in enumerate(arrays):
                engine.resize_tensor_input(in_idx[i], list(a.shape))
                shapes[i] = a.shape
            engine.allocate_tensors()
        for i, a in zip(in_idx, arrays, strict=True):
            engine.set_tensor(i, a)
        engine.invoke()
        return [engine.get_tensor(i) for i in out_idx]

    return run_tflite


def bare_runner(path: Path, fmt: str, num_threads: int | None = None) -> BareRun:
    """A function running the model on a new engine of its own (inputs in model order)."""
    return bare_call(open_engine(path, fmt, num_threads), fmt)
