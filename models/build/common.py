"""Shared helpers for the model build scripts: paths, seeds, evaluation, timing, manifests.

Only the build scripts import this (and through it tensorflow); the runtime never does.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BUILD_DIR = Path(__file__).resolve().parent
MODELS_DIR = BUILD_DIR.parent
DATA_DIR = MODELS_DIR / "data"
CARDS_DIR = MODELS_DIR / "cards"
# The NAB subset ships with the test data; EDGE_NAB_DIR points elsewhere if needed.
NAB_DIR = Path(os.environ.get("EDGE_NAB_DIR", str(MODELS_DIR.parent / "tests" / "data" / "nab")))

SEED = 0


def set_determinism(seed: int = SEED) -> None:
    """Fix every seed and make TensorFlow single-threaded and deterministic.

    Must be called before any model is built; call again before each model so that
    each build does not depend on what was built before it.
    """
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.config.threading.set_intra_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised: the first call took effect


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file (same as the runtime's ``sha256_file``)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cpu_name() -> str:
    """CPU model name from /proc/cpuinfo, for the latency figures in the cards."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# --------------------------------------------------------------------------- runners


def ort_session(path: Path, threads: int = 1) -> Any:
    """An onnxruntime CPU session limited to ``threads`` threads, full graph optimisation."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def ort_predict(path: Path, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """Run a whole float32 array through an ONNX model in batches; returns output 0."""
    sess = ort_session(path)
    name = sess.get_inputs()[0].name
    outs = [sess.run(None, {name: x[i : i + batch]})[0] for i in range(0, len(x), batch)]
    return np.concatenate(outs, axis=0)


class TFLiteRunner:
    """One LiteRT interpreter at 1 thread; quantizes inputs / dequantizes outputs if int8."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interp = Interpreter(model_path=str(path), num_threads=threads)
        self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """Float model input -> the tensor dtype the interpreter wants."""
        dtype = self.inp["dtype"]
        if dtype == np.float32:
            return x.astype(np.float32)
        scale, zero = self.inp["quantization"]
        info = np.iinfo(dtype)
        q = np.round(x / scale + zero)
        return np.clip(q, info.min, info.max).astype(dtype)

    def dequantize_output(self, y: np.ndarray) -> np.ndarray:
        """Interpreter output -> float32."""
        if self.out["dtype"] == np.float32:
            return y
        scale, zero = self.out["quantization"]
        return ((y.astype(np.float32) - zero) * scale).astype(np.float32)

    def invoke_raw(self, xq: np.ndarray) -> np.ndarray:
        """One invocation on an already-quantized single-sample input."""
        self.interp.set_tensor(self.inp["index"], xq)
        self.interp.invoke()
        return self.interp.get_tensor(self.out["index"])

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Run every sample of ``x`` (batch 1 each, the model's fixed shape)."""
        outs = []
        for sample in x:
            xq = self.quantize_input(sample[None, ...])
            outs.append(self.dequantize_output(self.invoke_raw(xq))[0])
        return np.stack(outs)


def tflite_predict(path: Path, x: np.ndarray) -> np.ndarray:
    """Run a whole float32 array through a TFLite model (one sample per invoke)."""
    return TFLiteRunner(path).predict(x)


# --------------------------------------------------------------------------- timing


def median_latencies_ms(
    fns: dict[str, Callable[[], object]], rounds: int = 15, per_round: int = 40, warmup: int = 20
) -> dict[str, float]:
    """Median per-call latency (ms) of each function, measured in alternating rounds.

    Alternating (A, B, A, B, ...) keeps slow drift of the machine (other jobs, turbo)
    from favouring whichever variant happened to run first.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(per_round):
                fn()
            samples[key].append((time.perf_counter() - t0) / per_round * 1e3)
    return {k: statistics.median(v) for k, v in samples.items()}


def ort_call(path: Path, sample: np.ndarray) -> Callable[[], object]:
    """A zero-argument closure running one batch-1 ORT inference (for timing)."""
    sess = ort_session(path)
    name = sess.get_inputs()[0].name
    feed = {name: sample.astype(np.float32)}
    return lambda: sess.run(None, feed)


def tflite_call(path: Path, sample: np.ndarray) -> Callable[[], object]:
    """A zero-argument closure running one LiteRT invoke (for timing)."""
    runner = TFLiteRunner(path)
    xq = runner.quantize_input(sample)
    return lambda: runner.invoke_raw(xq)


# --------------------------------------------------------------------------- manifests


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(float(value))
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic strings
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def to_toml(data: dict[str, Any]) -> str:
    """Tiny TOML writer for manifests: scalars and lists at top level, one level of tables."""
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for key, table in tables:
        lines.append("")
        lines.append(f"[{key}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None)
    return "\n".join(lines) + "\n"


@dataclass
class Variant:
    """One shipped model file and what the build measured about it."""

    name: str
    file: str
    backend: str  # "onnx" or "tflite"
    quantization: str  # "float32" or "int8"
    float_model: str | None = None
    metric_value: float = float("nan")
    latency_ms: float = float("nan")
    size_bytes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        """Where the artefact lives."""
        return MODELS_DIR / self.file


def write_manifest(
    variant: Variant,
    *,
    task: str,
    description: str,
    card: str,
    preprocessing: dict[str, Any],
    postprocessing: dict[str, Any],
    metric: str,
    fp32_value: float | None,
    held_out: int,
    labels: Iterable[str] = (),
) -> Path:
    """Write ``models/<name>.toml`` for a variant whose artefact is already in place."""
    data: dict[str, Any] = {
        "name": variant.name,
        "file": variant.file,
        "sha256": sha256_file(variant.path),
        "task": task,
        "description": description,
        "version": "1",
        "labels": list(labels),
        "card": card,
        "quantization": variant.quantization,
        "float_model": variant.float_model,
        "preprocessing": preprocessing,
        "postprocessing": postprocessing,
        "accuracy": {
            "metric": metric,
            "value": round(float(variant.metric_value), 6),
            "fp32_value": None if fp32_value is None else round(float(fp32_value), 6),
            "held_out_samples": held_out,
        },
    }
    if not data["labels"]:
        del data["labels"]
    path = MODELS_DIR / f"{variant.name}.toml"
    path.write_text(to_toml(data))
    return path


def fmt_size(n: int) -> str:
    """Human file size (KiB with one decimal)."""
    return f"{n / 1024:.1f} KiB"
