"""Side-by-side latency measurement of :meth:`Model.run` and the bare engine call.

The machine may be shared and noisy, so the two alternate call by call within
one run and are compared by medians.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_runtime.errors import EdgeRuntimeError, InputError, WarmUpError
from edge_runtime.models.bare import bare_call
from edge_runtime.models.model import Model
from edge_runtime.models.types import TensorSpec, format_shape


@dataclass(frozen=True, slots=True)
class Timing:
    """Latency figures of one contender, in milliseconds, and throughput per second."""

    runs: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    throughput_per_s: float


def _timing(samples_s: list[float]) -> Timing:
    arr = np.asarray(samples_s)
    p50, p95, p99 = (float(np.percentile(arr, q)) * 1e3 for q in (50, 95, 99))
    return Timing(len(arr), p50, p95, p99, len(arr) / float(arr.sum()))


def resolve_shapes(specs: Sequence[TensorSpec],
                   overrides: Mapping[str, tuple[int, ...]] | None = None
                   ) -> list[tuple[int, ...]]:
    """The concrete shape of each input: ``overrides`` by input name, else the model's
    shape with open dimensions set to 1. An override must keep the rank and fixed sizes."""
    overrides = dict(overrides or {})
    unknown = [n for n in overrides if n not in {s.name for s in specs}]
    if unknown:
        raise InputError(f"no input named {unknown[0]!r} (the model's inputs: "
                         f"{', '.join(s.name for s in specs)})")
    shapes = []
    for spec in specs:
        shape = overrides.get(spec.name)
        if shape is None:
            shapes.append(tuple(1 if d is None else d for d in spec.shape))
            continue
        fits = len(shape) == len(spec.shape) and all(
            d is None or d == g for d, g in zip(spec.shape, shape, strict=True))
        if not fits:
            raise InputError(f"input {spec.name!r} is {format_shape(spec.shape)} (? = any "
                             f"size); {format_shape(shape)} does not fit it")
        shapes.append(tuple(shape))
    return shapes


def sample_inputs(specs: Sequence[TensorSpec], seed: int = 0,
                  shapes: Sequence[tuple[int, ...]] | None = None) -> list[np.ndarray]:
    """Random arrays in each input's own dtype (8-bit inputs as raw integers), at
    ``shapes`` (default: open dimensions set to 1)."""
    rng = np.random.default_rng(seed)
    arrays = []
    concrete = list(shapes) if shapes is not None else resolve_shapes(specs)
    for spec, shape in zip(specs, concrete, strict=True):
        if spec.dtype.kind in "iu":
            info = np.iinfo(spec.dtype)  # type: ignore[type-var]
            low, high = max(info.min, -100), min(info.max, 100)
            arrays.append(rng.integers(low, high, size=shape).astype(spec.dtype))
        elif spec.dtype.kind == "b":
            arrays.append(rng.integers(0, 2, size=shape).astype(bool))
        else:
            arrays.append(rng.random(shape).astype(spec.dtype))
    return arrays


def compare_with_bare(
    model: Model,
    *,
    seconds: float = 5.0,
    progress: Callable[[float], None] | None = None,
    arrays: Sequence[np.ndarray] | None = None,
) -> dict[str, Timing | float]:
    """Time ``model.run`` against the bare call of the model's own engine, call by call.

    The two alternate on every call, and which goes first swaps every round, so
    drift and position effects of a noisy machine hit both alike. Returns
    ``{"runtime": Timing, "bare": Timing, "overhead_us": ..., "overhead_pct": ...}``
    comparing medians. ``progress`` gets the fraction done, about ten times a second.
    ``arrays`` are the inputs, in input order, in the inputs' own dtypes (default: random
    at :func:`resolve_shapes`). A model that fails on them raises
    :class:`~edge_runtime.errors.WarmUpError` before any timing.
    """
    arrays = list(arrays) if arrays is not None else sample_inputs(model.inputs)
    feed = dict(zip([s.name for s in model.inputs], arrays, strict=True))
    # The same engine object on both sides: two sessions of one model can differ by a
    # few percent through memory placement alone, which is not our overhead.
    backend: Any = model.backend
    engine = backend.session if model.format == "onnx" else backend.interpreter
    bare = bare_call(engine, model.format)
    try:
        for _ in range(3):
            model.run(feed, dequantize=False)
            bare(arrays)
    except Exception as exc:  # the bare engine call raises the engine's own errors
        shapes = ", ".join(f"{s.name}={'x'.join(map(str, a.shape))}"
                           for s, a in zip(model.inputs, arrays, strict=True))
        text = exc.message if isinstance(exc, EdgeRuntimeError) else str(exc).strip()
        first_line = (text.splitlines() or [type(exc).__name__])[0]
        raise WarmUpError(f"{model.name} fails on its warm-up input ({shapes}): "
                          f"{first_line}") from exc
    ours: list[float] = []
    theirs: list[float] = []
    clock = time.perf_counter
    start = clock()
    deadline = start + seconds
    next_report = start
    now = start
    while now < deadline:
        t0 = clock()
        model.run(feed, dequantize=False)
        t1 = clock()
        bare(arrays)
        t2 = clock()
        bare(arrays)
        t3 = clock()
        model.run(feed, dequantize=False)
        now = clock()
        ours += (t1 - t0, now - t3)
        theirs += (t2 - t1, t3 - t2)
        if progress is not None and now >= next_report:
            progress(min(1.0, (now - start) / seconds))
            next_report = now + 0.1
    mine, base = _timing(ours), _timing(theirs)
    overhead_ms = mine.p50_ms - base.p50_ms
    return {
        "runtime": mine,
        "bare": base,
        "overhead_us": overhead_ms * 1e3,
        "overhead_pct": 100.0 * overhead_ms / base.p50_ms if base.p50_ms else math.nan,
    }
