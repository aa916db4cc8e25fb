"""Model cards, ``models/README.md``, the summary table and ``build_report.json``.

Everything here is generated from what the build measured, so re-running the build keeps
the cards honest.
"""

from __future__ import annotations

import inspect
import json
import os
import platform
from typing import Any

from common import BUILD_DIR, CARDS_DIR, MODELS_DIR, Variant, cpu_name, fmt_size
from image_family import FamilyResult
from sensor import SensorResult, make_model

REBUILD = "/work/venv-build/bin/python models/build/build_all.py"
REBUILD_NOTE = (
    "Rebuild (from the repository root, in an environment with the `build` extra: "
    "`pip install -e '.[build]'` plus `onnxruntime` and `ai-edge-litert`):\n\n"
    "```sh\npython models/build/build_all.py\n```\n\n"
    "The build is seeded (seed 0) and runs TensorFlow single-threaded with op determinism "
    "on; it rewrites the artefacts, manifests (with their sha256), these cards and "
    "`models/build/build_report.json`. Latencies depend on the machine and its load.\n"
)


def _env() -> dict[str, str]:
    import onnxruntime
    import tensorflow as tf

    try:
        from importlib.metadata import version

        litert = version("ai-edge-litert")
    except Exception:
        litert = "?"
    return {
        "cpu": cpu_name(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "onnxruntime": onnxruntime.__version__,
        "ai_edge_litert": litert,
        "load_average_1min_at_report": f"{os.getloadavg()[0]:.2f}",
    }


def _by(variants: list[Variant], backend: str, quant: str) -> Variant | None:
    return next((v for v in variants if v.backend == backend and v.quantization == quant), None)


def _ratio(variants: list[Variant], backend: str) -> float | None:
    fp, q = _by(variants, backend, "float32"), _by(variants, backend, "int8")
    if fp is None or q is None:
        return None
    return fp.latency_ms / q.latency_ms


def _variant_table(variants: list[Variant], metric: str, fmt: str) -> str:
    lines = [
        f"| model | file | backend | quantization | size | {metric} (held out) "
        "| latency, median, 1 thread, batch 1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        lines.append(
            f"| `{v.name}` | `{v.file}` | {v.backend} | {v.quantization} | "
            f"{fmt_size(v.size_bytes)} | {format(v.metric_value, fmt)} | {v.latency_ms:.3f} ms |"
        )
    return "\n".join(lines)


DIGITS_DATA = """## Training data

scikit-learn's bundled copy of the UCI "Optical Recognition of Handwritten Digits" test
set (`sklearn.datasets.load_digits`, 1797 images of 8x8 pixels, values 0..16, 10 classes;
UCI data, CC BY 4.0; no download: it ships inside scikit-learn). Split: stratified
`train_test_split(test_size=0.25, random_state=0)`: 1347 training images, 450 held out.
The held-out images are shipped as `models/data/digits_heldout.npz` (`images` uint8
0..255 = round(pixel * 255 / 16), `labels` int64).

Training inputs are pixel / 16 in [0, 1]; at inference the runtime feeds a uint8
grayscale image times 1/255 (manifest preprocessing `scale = 1/255`, mean 0, std 1).
The held-out accuracies below are measured through that uint8 path.
"""


def digits_card(res: FamilyResult, env: dict[str, str]) -> str:
    """Markdown card for one digits family."""
    spec, vs = res.spec, res.variants
    s = spec.size
    resize = (
        "" if s == 8 else
        f"\nThe 8x8 digits are enlarged to {s}x{s} with bilinear interpolation (half-pixel "
        "centres, like OpenCV `INTER_LINEAR`) for training; at inference the runtime "
        "resizes the frame the same way (manifest `size`)."
    )
    ort_r, tfl_r = _ratio(vs, "onnx"), _ratio(vs, "tflite")
    assert ort_r is not None and tfl_r is not None
    design = inspect.getdoc(inspect.getmodule(spec.make_model)) or ""
    if min(ort_r, tfl_r) < 1.0:
        speed_note = (
            "\n\nWhere int8 is slower than float32 the model is so small that the fixed "
            "cost per call (quantizing the input, int8 kernel set-up, the QDQ boundary) "
            "outweighs the arithmetic saved: for this model int8 buys file size, not speed."
        )
    else:
        speed_note = ""
    return f"""# Model card: `{spec.family}`

{spec.description}. Four variants of the same trained weights: ONNX (NCHW, input
`(N,1,{s},{s})` with a dynamic batch) and TFLite (NHWC, input `(1,{s},{s},1)`), each in
float32 and int8. Output: softmax probabilities over the labels "0".."9".

{DIGITS_DATA}{resize}

## Architecture

{design}

Layers: {res.spec.make_model.__doc__}

{res.params:,} parameters (float32 weights). Trained with Adam (lr {spec.learning_rate:g}),
{spec.epochs} epochs, batch {spec.batch_size}, sparse categorical cross-entropy.

The ONNX graph is written directly with `onnx.helper` from the Keras weights
(Conv/Relu/MaxPool/Gemm/Softmax, opset 17; the first dense layer's rows are permuted so the
NCHW flatten matches Keras' NHWC one). Max |ONNX fp32 - Keras| on the held-out
probabilities: {res.onnx_max_abs_diff:.2g}.

Quantization:
- ONNX int8: `onnxruntime.quantization.quantize_static`, QDQ, int8 activations, int8
  symmetric per-channel weights, MinMax calibration on the 1347 training images; the
  final Softmax stays float.
- TFLite int8: full-integer (int8 input and output; `Optimize.DEFAULT`, representative
  dataset = the training images, `TFLITE_BUILTINS_INT8`). Quantize the input with the
  input tensor's (scale, zero_point) and dequantize the output.

## Held-out accuracy and speed

Keras (reference) top-1: {res.keras_top1:.4f} on {res.heldout} held-out images.

{_variant_table(vs, "top-1", ".4f")}

int8 speed-up over float32 (fp32 latency / int8 latency): onnxruntime
{ort_r:.2f}x, LiteRT {tfl_r:.2f}x.{speed_note}

Latencies: median of alternating fp32/int8 rounds (15 rounds x 40 calls after 20 warm-up
calls), batch 1, one thread (`intra_op_num_threads=1` for onnxruntime {env["onnxruntime"]},
`num_threads=1` for LiteRT {env["ai_edge_litert"]} with its default XNNPACK delegate), on
{env["cpu"]} (x86-64, AVX2 without VNNI, 2 cores; the machine was shared with other jobs,
1-minute load average {env["load_average_1min_at_report"]} when the report was written, so
absolute numbers are noisy; the alternating rounds keep the ratios fair). A Raspberry Pi
is several times slower; ARM CPUs with dot-product instructions gain more from int8.

## Limitations

Trained on clean, centred, size-normalised 8x8 digits: real camera frames must be
cropped to one digit, dark-on-light images need `invert`. Not for anything that matters.

## Rebuild

{REBUILD_NOTE}"""


def sensor_card(res: SensorResult, env: dict[str, str]) -> str:
    """Markdown card for the machine-temperature forecaster."""
    d, vs = res.data, res.variants
    windows = "\n".join(
        f"| {w['window'][0]} .. {w['window'][1]} | {'yes' if w['fires'] else 'no'} | "
        f"{w['first_alarm'] or '-'} |" for w in res.detection["windows"]
    )
    ex = res.excerpt
    fp_onnx = _by(vs, "onnx", "float32")
    q_onnx = _by(vs, "onnx", "int8")
    q_tfl = _by(vs, "tflite", "int8")
    assert fp_onnx and q_onnx and q_tfl
    return f"""# Model card: `machine-temp`

Next-value forecaster for one industrial sensor: from the last 32 readings (5-minute
period, `rate_hz = 1/300`), normalised with the training mean and std, predict the next
normalised reading. The runtime scores an anomaly when |observed - forecast| exceeds
`residual_threshold` = {res.threshold:.2f} (in training stds, i.e.
{res.threshold * d.std:.2f} degF).
Three variants of the same weights: `machine-temp-fp32-onnx`, `machine-temp-int8-onnx`
(input `(N,32)`, dynamic batch, output `(N,1)`) and `machine-temp-int8-tflite` (input
`(1,32)`, full-integer int8 input and output).

## Training data

`realKnownCause/machine_temperature_system_failure.csv` of the Numenta Anomaly Benchmark
(NAB, MIT licence, copy in `models/data/NAB-LICENSE.txt`): temperature (degF) of an
internal component of a large industrial machine, 22,695 readings every 5 minutes from
2013-12-02 to 2014-02-19, with four labelled anomaly windows (the first is a planned
shutdown, the last a catastrophic failure). File order is used as time order (the file
has one 55-minute backwards timestamp step at row 10148, 2014-01-07; it is ignored).

- Only points outside the labelled windows are used: a training or evaluation example is
  a run of 33 consecutive readings none of which lies in a window.
- Split in time: the last 20 % of the non-anomalous points (from
  {res.series.rows[d.cutoff_row][0]}, row {d.cutoff_row}) are held out; {len(d.y_train):,}
  training windows, {len(d.y_eval):,} evaluation windows. The evaluation period reaches lower
  temperatures than training ever saw.
- Normalisation (training points only): mean {d.mean:.4f} degF, std {d.std:.4f} degF.

`models/data/machine_temperature_excerpt.csv` is a contiguous excerpt of {ex["rows"]} rows
(source rows {ex["source_rows"][0]}..{ex["source_rows"][1] - 1}, {ex["first_timestamp"]} ..
{ex["last_timestamp"]}) containing the last labelled window, the failure
({ex["window"][0]} .. {ex["window"][1]}); it lies in the held-out period.

## Architecture

{make_model.__doc__}

{res.params:,} parameters. Huber loss, Adam (lr 1e-3), 40 epochs, batch 128. The ONNX graph
is written with `onnx.helper` (Gemm/Relu/Slice/Add, opset 17); max |ONNX fp32 - Keras| on
the evaluation windows: {res.onnx_max_abs_diff:.2g}.

Quantization: ONNX static int8 QDQ (int8 activations, per-channel symmetric int8 weights,
MinMax calibration on every 4th training window); TFLite full-integer int8 (representative
dataset: every 8th training window). `float_model` of both int8 variants is
`machine-temp-fp32-onnx` (no float TFLite is shipped; one was built only to measure it).

## Held-out error (mean absolute error of the next reading, degF)

| forecaster | MAE (degF) |
|---|---|
| naive: next = last value | {res.naive_mae:.4f} |
| Keras float32 (reference) | {res.keras_mae:.4f} |
| float32 TFLite (not shipped) | {res.fp32_tflite_mae:.4f} |

{_variant_table(vs, "MAE degF", ".4f")}

Latency of the float32 TFLite export (not shipped) under the same conditions:
{res.fp32_tflite_latency_ms:.3f} ms. int8 speed-up (fp32 / int8): onnxruntime
{fp_onnx.latency_ms / q_onnx.latency_ms:.2f}x, LiteRT
{res.fp32_tflite_latency_ms / q_tfl.latency_ms:.2f}x: the model is so small that call
overhead dominates and int8 buys size, not speed.

Latencies: median of alternating rounds, batch 1, one thread, on {env["cpu"]} (x86-64,
AVX2, 2 cores, shared with other jobs: 1-minute load average
{env["load_average_1min_at_report"]}), onnxruntime {env["onnxruntime"]}, LiteRT
{env["ai_edge_litert"]}.

## Anomaly check (float32 ONNX over the whole series, threshold {res.threshold:.2f})

The threshold is the 99.9th percentile of the absolute training residuals, rounded up.

| labelled window | any residual over threshold | first alarm |
|---|---|---|
{windows}

Alarms on clean points in the evaluation period: {res.detection["false_alarm_rate_eval"]:.2%};
alarms outside every window over the whole series: {res.detection["alarms_outside_windows_total"]}.
This is a sanity check, not a NAB score.

## Rebuild

{REBUILD_NOTE}"""


def readme(digits: FamilyResult, heavy: FamilyResult, sensor: SensorResult) -> str:
    """``models/README.md``: the shipped models and the rebuild command."""
    rows = []
    for fam, card in ((digits, "digits"), (heavy, "digits-heavy")):
        for v in fam.variants:
            rows.append(f"| `{v.name}` | `{v.file}` | {fmt_size(v.size_bytes)} | top-1 "
                        f"{v.metric_value:.4f} | [card](cards/{card}.md) |")
    for v in sensor.variants:
        rows.append(f"| `{v.name}` | `{v.file}` | {fmt_size(v.size_bytes)} | MAE "
                    f"{v.metric_value:.3f} degF | [card](cards/machine-temp.md) |")
    table = "\n".join(rows)
    return f"""# Shipped models

Each model is a file plus a manifest `<name>.toml` next to it
(schema: `edge_runtime/models/manifest.py`, sha256 of the file included) and a model card
in `cards/`. Accuracies are on held-out data (see the cards for the splits).

| name | file | size | held-out accuracy | card |
|---|---|---|---|---|
{table}

- `digits-*`: small CNN on 8x8 handwritten digits ({digits.params:,} parameters).
- `digits-heavy-*`: the same task at 32x32 with a much bigger CNN ({heavy.params:,}
  parameters): the "heavy" job that can be offloaded to peers.
- `machine-temp-*`: next-value forecaster / anomaly scorer for the NAB machine-temperature
  sensor ({sensor.params:,} parameters).

Data for demos and benchmarks, in `data/`:
- `digits_heldout.npz`: the 450 held-out digits (`images` uint8 (n,8,8), `labels` int64).
- `machine_temperature_excerpt.csv`: 3000 contiguous NAB readings around the machine
  failure window, with `NAB-LICENSE.txt`.

## Rebuild

Everything here (artefacts, manifests, cards, `build/build_report.json`) is produced by
one deterministic command, run from the repository root with the `build` extra installed
(tensorflow-cpu, scikit-learn, onnx) plus onnxruntime and ai-edge-litert:

```sh
python models/build/build_all.py
```

On the project's build machine: `{REBUILD}`.
"""


def variant_dict(v: Variant) -> dict[str, Any]:
    """JSON-ready description of one variant."""
    return {
        "name": v.name, "file": v.file, "backend": v.backend, "quantization": v.quantization,
        "float_model": v.float_model, "metric_value": v.metric_value,
        "latency_ms_median_1thread": v.latency_ms, "size_bytes": v.size_bytes,
    }


def write_all(digits: FamilyResult, heavy: FamilyResult, sensor: SensorResult,
              seconds: float) -> dict[str, Any]:
    """Write the cards, README and JSON report; return the report."""
    env = _env()
    CARDS_DIR.mkdir(exist_ok=True)
    (CARDS_DIR / "digits.md").write_text(digits_card(digits, env))
    (CARDS_DIR / "digits-heavy.md").write_text(digits_card(heavy, env))
    (CARDS_DIR / "machine-temp.md").write_text(sensor_card(sensor, env))
    (MODELS_DIR / "README.md").write_text(readme(digits, heavy, sensor))

    report: dict[str, Any] = {"environment": env, "build_seconds": round(seconds, 1),
                              "families": {}}
    for fam in (digits, heavy):
        report["families"][fam.spec.family] = {
            "metric": "top1", "params": fam.params, "held_out_samples": fam.heldout,
            "keras_top1": fam.keras_top1, "onnx_fp32_vs_keras_max_abs_diff":
                fam.onnx_max_abs_diff,
            "int8_speedup_onnxruntime": _ratio(fam.variants, "onnx"),
            "int8_speedup_litert": _ratio(fam.variants, "tflite"),
            "variants": [variant_dict(v) for v in fam.variants],
        }
    fp_onnx = _by(sensor.variants, "onnx", "float32")
    q_onnx = _by(sensor.variants, "onnx", "int8")
    q_tfl = _by(sensor.variants, "tflite", "int8")
    assert fp_onnx and q_onnx and q_tfl
    report["families"]["machine-temp"] = {
        "metric": "mae_degF", "params": sensor.params,
        "held_out_samples": len(sensor.data.y_eval),
        "naive_last_value_mae_degF": sensor.naive_mae, "keras_mae_degF": sensor.keras_mae,
        "fp32_tflite_mae_degF_not_shipped": sensor.fp32_tflite_mae,
        "fp32_tflite_latency_ms_not_shipped": sensor.fp32_tflite_latency_ms,
        "onnx_fp32_vs_keras_max_abs_diff": sensor.onnx_max_abs_diff,
        "residual_threshold": sensor.threshold, "anomaly_check": sensor.detection,
        "int8_speedup_onnxruntime": fp_onnx.latency_ms / q_onnx.latency_ms,
        "int8_speedup_litert": sensor.fp32_tflite_latency_ms / q_tfl.latency_ms,
        "excerpt": sensor.excerpt,
        "normalisation": {"mean": sensor.data.mean, "std": sensor.data.std},
        "variants": [variant_dict(v) for v in sensor.variants],
    }
    (BUILD_DIR / "build_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def summary_table(report: dict[str, Any]) -> str:
    """Plain-text table printed at the end of the build."""
    lines = [
        f"{'model':28s} {'size':>10s} {'metric':>9s} {'value':>8s} {'fp32':>8s} "
        f"{'latency (ms, 1 thr)':>20s}",
    ]
    for fam in report["families"].values():
        fp = {v["backend"]: v["metric_value"] for v in fam["variants"]
              if v["quantization"] == "float32"}
        unit = "top1" if fam["metric"] == "top1" else "MAE degF"
        for v in fam["variants"]:
            ref = fp.get(v["backend"], next(iter(fp.values()), float("nan")))
            lines.append(
                f"{v['name']:28s} {fmt_size(v['size_bytes']):>10s} {unit:>9s} "
                f"{v['metric_value']:8.4f} {ref:8.4f} {v['latency_ms_median_1thread']:20.3f}"
            )
        lines.append(
            f"  int8 speed-up: onnxruntime {fam['int8_speedup_onnxruntime']:.2f}x, "
            f"LiteRT {fam['int8_speedup_litert']:.2f}x"
        )
    return "\n".join(lines)
