"""The machine-temperature forecaster, trained on NAB's real industrial sensor series.

A window of the last 32 normalised 5-minute readings predicts the next one; the runtime
flags an anomaly when the residual exceeds ``residual_threshold`` (training stds). The
MLP learns a correction on top of the last value (``y = x[-1] + mlp(x)``), so it starts
from the naive forecast and only has to learn the dynamics.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from common import (
    DATA_DIR,
    NAB_DIR,
    Variant,
    median_latencies_ms,
    ort_call,
    ort_predict,
    set_determinism,
    tflite_call,
    tflite_predict,
    write_manifest,
)
from onnx_export import GraphBuilder
from quantize import quantize_onnx_static, tflite_fp32, tflite_int8

SERIES = "realKnownCause/machine_temperature_system_failure.csv"
WINDOW = 32
PERIOD_S = 300.0
EXCERPT_ROWS = 3000
EXCERPT_CSV = DATA_DIR / "machine_temperature_excerpt.csv"


@dataclass
class Series:
    """The raw series, in file order, with the NAB anomaly-window mask."""

    rows: list[list[str]]  # original (timestamp, value) strings
    values: np.ndarray  # float64 degrees F
    anomalous: np.ndarray  # bool, inside a labelled window
    windows: list[tuple[int, int]]  # (first, last) row index of each labelled window


def load_series() -> Series:
    """Read the CSV and the labelled windows (file order is time order; see the card)."""
    with (NAB_DIR / "data" / SERIES).open() as fh:
        rows = list(csv.reader(fh))[1:]
    times = np.array([dt.datetime.fromisoformat(r[0]).timestamp() for r in rows])
    values = np.array([float(r[1]) for r in rows])
    spans = json.loads((NAB_DIR / "combined_windows.json").read_text())[SERIES]
    anomalous = np.zeros(len(rows), dtype=bool)
    windows = []
    for start, end in spans:
        t0 = dt.datetime.fromisoformat(start).timestamp()
        t1 = dt.datetime.fromisoformat(end).timestamp()
        idx = np.where((times >= t0) & (times <= t1))[0]
        anomalous[idx] = True
        windows.append((int(idx[0]), int(idx[-1])))
    return Series(rows, values, anomalous, windows)


@dataclass
class SensorData:
    """Windows of WINDOW+1 clean points, split in time, normalised with training stats."""

    mean: float
    std: float
    x_train: np.ndarray
    y_train: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray
    cutoff_row: int  # first row of the evaluation period
    extra: dict[str, Any] = field(default_factory=dict)


def make_data(series: Series) -> SensorData:
    """Training = clean windows before the cutoff; evaluation = clean windows after it.

    The cutoff is where the last 20 % of the non-anomalous points begin. A window is
    clean if none of its WINDOW inputs nor its target lies in a labelled window.
    """
    clean_rows = np.where(~series.anomalous)[0]
    cutoff = int(clean_rows[int(0.8 * len(clean_rows))])
    train_clean = series.values[clean_rows[clean_rows < cutoff]]
    mean, std = float(train_clean.mean()), float(train_clean.std())
    z = ((series.values - mean) / std).astype(np.float32)

    n = len(z) - WINDOW
    starts = np.arange(n)
    idx = starts[:, None] + np.arange(WINDOW + 1)[None, :]
    bad = series.anomalous[idx].any(axis=1)
    xs, ys = z[idx[:, :WINDOW]], z[idx[:, WINDOW]]
    train = ~bad & (idx[:, WINDOW] < cutoff)
    evaluate = ~bad & (idx[:, 0] >= cutoff)
    return SensorData(mean, std, xs[train], ys[train], xs[evaluate], ys[evaluate], cutoff)


def make_model() -> Any:
    """MLP 32 -> 64 -> 32 -> 1 (relu) plus the last input value (residual forecast)."""
    import keras
    from keras import layers

    inp = keras.Input((WINDOW,), name="window")
    h = layers.Dense(64, activation="relu")(inp)
    h = layers.Dense(32, activation="relu")(h)
    delta = layers.Dense(1)(h)
    last = layers.Lambda(lambda x: x[:, -1:], output_shape=(1,))(inp)
    out = layers.Add()([last, delta])
    return keras.Model(inp, out)


def export_onnx(model: Any, path: Path, doc: str) -> None:
    """NC ONNX graph (N,32) -> (N,1): three Gemms with Relu, plus Slice(x, 31:32)."""
    import keras
    import onnx

    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    gb = GraphBuilder("window", ["N", WINDOW])
    h = "window"
    for i, layer in enumerate(dense):
        kernel, bias = layer.get_weights()
        h = gb.gemm(h, kernel, bias)
        if i < len(dense) - 1:
            h = gb.op("Relu", [h], "relu")
    starts = gb.const("starts", np.array([WINDOW - 1], dtype=np.int64))
    ends = gb.const("ends", np.array([WINDOW], dtype=np.int64))
    axes = gb.const("axes", np.array([1], dtype=np.int64))
    last = gb.op("Slice", ["window", starts, ends, axes], "last")
    out = gb.op("Add", [last, h], "add")
    onnx.save(gb.model(out, "forecast", ["N", 1], doc), str(path))


@dataclass
class SensorResult:
    """Everything the card and the build report need."""

    data: SensorData
    series: Series
    params: int
    naive_mae: float
    keras_mae: float
    onnx_max_abs_diff: float
    threshold: float
    detection: dict[str, Any]
    variants: list[Variant]
    fp32_tflite_latency_ms: float
    fp32_tflite_mae: float
    excerpt: dict[str, Any]


def write_excerpt(series: Series) -> dict[str, Any]:
    """Copy ~3000 rows around the last labelled window (the failure) plus the licence."""
    first, last = series.windows[-1]
    start = max(0, first - 1200)
    stop = min(len(series.rows), start + EXCERPT_ROWS)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    with EXCERPT_CSV.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["timestamp", "value"])
        writer.writerows(series.rows[start:stop])
    shutil.copyfile(NAB_DIR / "LICENSE.txt", DATA_DIR / "NAB-LICENSE.txt")
    return {
        "rows": stop - start,
        "first_timestamp": series.rows[start][0],
        "last_timestamp": series.rows[stop - 1][0],
        "window": [series.rows[first][0], series.rows[last][0]],
        "source_rows": [start, stop],
    }


def _mae_degf(pred: np.ndarray, target: np.ndarray, std: float) -> float:
    return float(np.abs(pred.reshape(-1) - target.reshape(-1)).mean() * std)


def build() -> SensorResult:
    """Train, export (ONNX fp32 + int8 QDQ, TFLite int8), verify, write manifests."""
    set_determinism()
    import keras

    series = load_series()
    data = make_data(series)
    excerpt = write_excerpt(series)

    model = make_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="huber")
    model.fit(data.x_train, data.y_train, epochs=40, batch_size=128, shuffle=True, verbose=0)
    keras_pred = model.predict(data.x_eval, verbose=0, batch_size=1024)
    naive_mae = _mae_degf(data.x_eval[:, -1], data.y_eval, data.std)
    keras_mae = _mae_degf(keras_pred, data.y_eval, data.std)

    base = "machine-temp"
    v = {
        "fp32-onnx": Variant(f"{base}-fp32-onnx", f"{base}-fp32.onnx", "onnx", "float32"),
        "int8-onnx": Variant(f"{base}-int8-onnx", f"{base}-int8.onnx", "onnx", "int8",
                             float_model=f"{base}-fp32-onnx"),
        "int8-tflite": Variant(f"{base}-int8-tflite", f"{base}-int8.tflite", "tflite", "int8",
                               float_model=f"{base}-fp32-onnx"),
    }
    desc = ("Next-value forecaster for the NAB machine-temperature sensor "
            "(32 x 5-minute readings, normalised)")
    export_onnx(model, v["fp32-onnx"].path, desc + ". Input (N,32); output (N,1).")
    onnx_pred = ort_predict(v["fp32-onnx"].path, data.x_eval)
    max_diff = float(np.abs(onnx_pred - keras_pred).max())
    if max_diff > 1e-4:
        raise RuntimeError(f"machine-temp: ONNX export differs from Keras by {max_diff:g}")

    # Calibration: every 4th training window (covers the whole training period).
    calib = data.x_train[::4]
    quantize_onnx_static(v["fp32-onnx"].path, v["int8-onnx"].path, calib, exclude_ops=())
    tflite_int8(model, (1, WINDOW), v["int8-tflite"].path, calib[::2])

    preds = {
        "fp32-onnx": onnx_pred,
        "int8-onnx": ort_predict(v["int8-onnx"].path, data.x_eval),
        "int8-tflite": tflite_predict(v["int8-tflite"].path, data.x_eval),
    }
    for key, var in v.items():
        var.metric_value = _mae_degf(preds[key], data.y_eval, data.std)
        var.size_bytes = var.path.stat().st_size

    # Threshold: 99.9th percentile of the fp32 model's residuals on the training windows.
    train_res = np.abs(ort_predict(v["fp32-onnx"].path, data.x_train).reshape(-1) - data.y_train)
    threshold = float(np.ceil(np.percentile(train_res, 99.9) * 100) / 100)
    detection = _detection_check(series, data, v["fp32-onnx"].path, threshold)

    sample = data.x_eval[:1]
    with tempfile.TemporaryDirectory() as tmp:
        fp32_tfl = Path(tmp) / "fp32.tflite"  # not shipped: only for the int8/fp32 ratio
        tflite_fp32(model, (1, WINDOW), fp32_tfl)
        fp32_tfl_mae = _mae_degf(tflite_predict(fp32_tfl, data.x_eval), data.y_eval, data.std)
        ort_lat = median_latencies_ms({
            "fp32": ort_call(v["fp32-onnx"].path, sample),
            "int8": ort_call(v["int8-onnx"].path, sample),
        })
        tfl_lat = median_latencies_ms({
            "fp32": tflite_call(fp32_tfl, sample),
            "int8": tflite_call(v["int8-tflite"].path, sample),
        })
    v["fp32-onnx"].latency_ms = ort_lat["fp32"]
    v["int8-onnx"].latency_ms = ort_lat["int8"]
    v["int8-tflite"].latency_ms = tfl_lat["int8"]

    pre = {"type": "window", "length": WINDOW, "mean": round(data.mean, 6),
           "std": round(data.std, 6), "rate_hz": 1.0 / PERIOD_S}
    post = {"type": "forecast", "residual_threshold": threshold}
    for var in v.values():
        fp32_value = None if var.float_model is None else v["fp32-onnx"].metric_value
        layout = "(N,32)" if var.backend == "onnx" else "(1,32)"
        write_manifest(
            var,
            task="regression",
            description=f"{desc}; {var.quantization} {var.backend}, input {layout}.",
            card="cards/machine-temp.md",
            preprocessing=pre,
            postprocessing=post,
            metric="mae_degF",
            fp32_value=fp32_value,
            held_out=len(data.y_eval),
        )
    return SensorResult(data, series, int(model.count_params()), naive_mae, keras_mae, max_diff,
                        threshold, detection, list(v.values()), tfl_lat["fp32"], fp32_tfl_mae,
                        excerpt)


def _detection_check(series: Series, data: SensorData, path: Path,
                     threshold: float) -> dict[str, Any]:
    """Run the fp32 forecaster over the whole series: does each labelled window fire?

    Reports, per window, whether any residual exceeds the threshold, and the fraction
    of clean evaluation-period points that fire (false alarms).
    """
    z = ((series.values - data.mean) / data.std).astype(np.float32)
    idx = np.arange(len(z) - WINDOW)[:, None] + np.arange(WINDOW)[None, :]
    pred = ort_predict(path, z[idx]).reshape(-1)
    target_rows = np.arange(WINDOW, len(z))
    fired = np.abs(pred - z[target_rows]) > threshold
    per_window = []
    for first, last in series.windows:
        sel = (target_rows >= first) & (target_rows <= last)
        hits = np.where(fired & sel)[0]
        per_window.append({
            "window": [series.rows[first][0], series.rows[last][0]],
            "fires": bool(hits.size),
            "first_alarm": series.rows[int(target_rows[hits[0]])][0] if hits.size else None,
        })
    clean_eval = (~series.anomalous[target_rows]) & (target_rows >= data.cutoff_row)
    return {
        "windows": per_window,
        "false_alarm_rate_eval": float(fired[clean_eval].mean()),
        "alarms_outside_windows_total": int((fired & ~series.anomalous[target_rows]).sum()),
    }
