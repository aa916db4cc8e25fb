"""Foundation benchmarks: Model.run overhead, int8 vs fp32, cold start.

Run: ``python benchmarks/models_bench.py [--seconds S]``; writes
``benchmarks/results/models.json``. Every comparison is measured side by side in
alternating blocks within one run and reported by medians, because the machine is
shared and noisy.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import save

from edge_runtime import load_model
from edge_runtime.models.benchmark import compare_with_bare
from edge_runtime.models.manifest import ImagePreprocessing
from edge_runtime.models.preprocess import image_preprocessor
from edge_runtime.models.registry import data_file, list_models

OVERHEAD_PCT = 3.0
OVERHEAD_US = 20.0


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def overhead(seconds: float) -> list[dict[str, Any]]:
    """Model.run vs the bare engine for every shipped model, 1 thread."""
    rows = []
    models = list_models()
    for i, manifest in enumerate(models, 1):
        progress(f"[overhead {i}/{len(models)}] {manifest.name} ({seconds:g} s)")
        model = load_model(manifest.name, num_threads=1)
        r = compare_with_bare(model, seconds=seconds)
        mine, bare = r["runtime"], r["bare"]
        limit_us = max(OVERHEAD_PCT / 100 * bare.p50_ms * 1e3, OVERHEAD_US)  # type: ignore[union-attr]
        rows.append(
            {
                "model": manifest.name,
                "backend": model.backend_name,
                "bare_p50_ms": round(bare.p50_ms, 5),  # type: ignore[union-attr]
                "runtime_p50_ms": round(mine.p50_ms, 5),  # type: ignore[union-attr]
                "ratio_runtime_over_bare": round(mine.p50_ms / bare.p50_ms, 4),  # type: ignore[union-attr]
                "overhead_us": round(float(r["overhead_us"]), 2),  # type: ignore[arg-type]
                "overhead_pct": round(float(r["overhead_pct"]), 2),  # type: ignore[arg-type]
                "limit_us": round(limit_us, 2),
                "target_met": float(r["overhead_us"]) <= limit_us,  # type: ignore[arg-type]
                "runs_each": mine.runs,  # type: ignore[union-attr]
            }
        )
    return rows


def _accuracy(model: Any) -> float:
    assert model.manifest is not None and isinstance(
        model.manifest.preprocessing, ImagePreprocessing
    )
    prep = image_preprocessor(model.manifest.preprocessing, model.inputs[0])
    with np.load(data_file("digits_heldout.npz")) as data:
        images, labels = data["images"], data["labels"]
    out = model.outputs[0].name
    hits = sum(
        int(np.argmax(model.run(prep(np.repeat(im[:, :, None], 3, axis=2)))[out]) == lab)
        for im, lab in zip(images, labels, strict=True)
    )
    return hits / len(labels)


def _alternate(calls: list[Any], seconds: float) -> list[float]:
    """Median latency (s) of each call, alternating call by call.

    The order is shuffled every round (fixed seed), so on average each call follows
    each other call equally often; what precedes a call changes its cache state.
    """
    times: list[list[float]] = [[] for _ in calls]
    order = list(range(len(calls)))
    rng = random.Random(0)
    clock = time.perf_counter
    deadline = clock() + seconds
    while clock() < deadline:
        for i in order:
            t0 = clock()
            calls[i]()
            times[i].append(clock() - t0)
        rng.shuffle(order)
    return [statistics.median(t) for t in times]


def int8_vs_fp32(seconds: float) -> list[dict[str, Any]]:
    """Latency and held-out accuracy of each int8 image model vs its fp32 source.

    Two int8 figures: *engine* feeds already-quantized int8 input and takes raw
    output (what the engine itself costs), *float I/O* feeds float input and takes
    dequantized output (what a caller with float data pays, numpy (de)quantization
    included). Both fp32 and int8 run through Model.run, alternating call by call.
    """
    rows = []
    pairs = [m for m in list_models() if m.quantization == "int8" and m.float_model]
    for i, manifest in enumerate(pairs, 1):
        if not isinstance(manifest.preprocessing, ImagePreprocessing):
            continue
        progress(f"[int8 vs fp32 {i}/{len(pairs)}] {manifest.name} vs {manifest.float_model}")
        q = load_model(manifest.name, num_threads=1)
        f = load_model(str(manifest.float_model), num_threads=1)

        def batch1(model: Any) -> np.ndarray:
            shape = tuple(1 if d is None else d for d in model.inputs[0].shape)
            return np.random.default_rng(0).random(shape).astype(np.float32)

        xq, xf = batch1(q), batch1(f)
        xq_raw = q.prepare(xq)[0]  # quantized once, outside the timing
        t_float, t_engine, t_io = _alternate(
            [
                partial(f.run, xf),
                partial(q.run, xq_raw, dequantize=False),
                partial(q.run, xq),
            ],
            seconds,
        )
        acc_q, acc_f = _accuracy(q), _accuracy(f)
        speedup = t_float / t_engine
        rows.append({
            "int8_model": manifest.name,
            "fp32_model": manifest.float_model,
            "backend": q.backend_name,
            "fp32_p50_ms": round(t_float * 1e3, 4),
            "int8_engine_p50_ms": round(t_engine * 1e3, 4),
            "int8_float_io_p50_ms": round(t_io * 1e3, 4),
            "speedup_engine": round(speedup, 3),
            "speedup_float_io": round(t_float / t_io, 3),
            "int8_accuracy_pct": round(100 * acc_q, 2),
            "fp32_accuracy_pct": round(100 * acc_f, 2),
            "accuracy_loss_points": round(100 * (acc_f - acc_q), 2),
            "target_met": speedup >= 1.5 and 100 * (acc_f - acc_q) <= 1.0,
        })
    return rows


COLD = """
import time, sys
t0 = time.perf_counter()
import edge_runtime
t_import = time.perf_counter()
heavy = [m for m in ('cv2', 'zeroconf', 'paho') if m in sys.modules]
import numpy as np
model = edge_runtime.load_model(sys.argv[1], num_threads=1)
x = np.zeros([1 if d is None else d for d in model.inputs[0].shape], np.float32)
model.run(x)
t_done = time.perf_counter()
print(t_import - t0, t_done - t0, ",".join(heavy))
"""


def cold_start(repeats: int) -> list[dict[str, Any]]:
    """Wall time of a new process: interpreter start, import, load, first result."""
    rows = []
    for name in (
        "digits-int8-onnx",
        "digits-int8-tflite",
        "digits-heavy-int8-onnx",
        "digits-heavy-int8-tflite",
    ):
        walls, imports, in_proc = [], [], []
        heavy = ""
        for r in range(repeats):
            progress(f"[cold start] {name} {r + 1}/{repeats}")
            t0 = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", COLD, name], capture_output=True, text=True, check=True
            )
            walls.append(time.perf_counter() - t0)
            parts = out.stdout.split()
            imports.append(float(parts[0]))
            in_proc.append(float(parts[1]))
            heavy = parts[2] if len(parts) > 2 else ""
        rows.append(
            {
                "model": name,
                "process_wall_p50_s": round(statistics.median(walls), 3),
                "import_edge_runtime_p50_s": round(statistics.median(imports), 4),
                "import_to_first_result_p50_s": round(statistics.median(in_proc), 3),
                "heavy_modules_imported_by_import": heavy or "none",
                "target_met": statistics.median(walls) <= 1.0 and not heavy,
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per model")
    parser.add_argument("--repeats", type=int, default=7, help="cold starts per model")
    args = parser.parse_args()
    results = {
        "overhead": overhead(args.seconds),
        "int8_vs_fp32": int8_vs_fp32(args.seconds),
        "cold_start": cold_start(args.repeats),
        "targets": {
            "overhead": f"<= {OVERHEAD_PCT}% of bare median or <= {OVERHEAD_US} us",
            "int8_vs_fp32": ">= 1.5x faster, <= 1 accuracy point lost",
            "cold_start": "<= 1.0 s process start to first result; no cv2/zeroconf/paho on import",
        },
    }
    path = save("models", results)
    for section in ("overhead", "int8_vs_fp32", "cold_start"):
        print(f"\n== {section}")
        for row in results[section]:  # type: ignore[attr-defined]
            print("  " + ", ".join(f"{k}={v}" for k, v in row.items()))
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
