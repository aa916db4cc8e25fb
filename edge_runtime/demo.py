"""The built-in demo: shipped models on generated camera frames and a real sensor recording.

Two parts, each printing what it sees with units:

1. *Camera*: frames are generated from held-out handwritten digits (never seen in
   training), scaled up to a 64x64 "camera" view with sensor noise and changing
   exposure, then preprocessed by the model's manifest and classified.
2. *Sensor*: a recording of an industrial machine's temperature (NAB, real data)
   is replayed through the int8 forecaster; points whose forecast residual exceeds
   the manifest's threshold are reported as unusual, and compared with the
   labelled anomaly window.
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import numpy as np

from edge_runtime.errors import ManifestError
from edge_runtime.models import Model, load_model
from edge_runtime.models.manifest import (
    ForecastPostprocessing,
    ImagePreprocessing,
    WindowPreprocessing,
)
from edge_runtime.models.preprocess import image_preprocessor, window_tensor
from edge_runtime.models.registry import data_file

Printer = Callable[[str], None]

#: Side of the generated camera view, in pixels.
FRAME_SIDE_PX = 64
#: Standard deviation of the simulated sensor noise, in 8-bit grey levels.
NOISE_SIGMA = 6.0


def generate_frames(count: int, seed: int = 0) -> Iterator[tuple[np.ndarray, int]]:
    """Yield ``(frame, true_digit)``: uint8 BGR frames of held-out digits, as a camera sees them."""
    with np.load(data_file("digits_heldout.npz")) as data:
        images, labels = data["images"], data["labels"]
    rng = np.random.default_rng(seed)
    scale = FRAME_SIDE_PX // images.shape[1]
    for _ in range(count):
        i = int(rng.integers(len(images)))
        big = np.kron(images[i].astype(np.float32), np.ones((scale, scale), np.float32))
        exposure = rng.uniform(0.85, 1.1)
        noisy = big * exposure + rng.normal(0.0, NOISE_SIGMA, big.shape)
        gray = np.clip(noisy, 0, 255).astype(np.uint8)
        yield np.repeat(gray[:, :, None], 3, axis=2), int(labels[i])


def _camera_part(model: Model, frames: int, seed: int, say: Printer) -> None:
    recipe = model.manifest.preprocessing if model.manifest is not None else None
    if not isinstance(recipe, ImagePreprocessing):
        raise ManifestError(f"model {model.name} has no image preprocessing in its manifest")
    prep = image_preprocessor(recipe, model.inputs[0])
    output = model.outputs[0].name
    labels = model.labels
    say(
        f"camera: {frames} generated {FRAME_SIDE_PX}x{FRAME_SIDE_PX} px frames of held-out "
        f"handwritten digits -> {model.name} ({model.backend_name})"
    )
    correct = 0
    latencies_ms: list[float] = []
    for n, (frame, truth) in enumerate(generate_frames(frames, seed), 1):
        start = time.perf_counter()
        scores = model.run(prep(frame))[output].reshape(-1)
        latencies_ms.append((time.perf_counter() - start) * 1e3)
        best = int(np.argmax(scores))
        ok = best == truth
        correct += ok
        say(
            f"  frame {n:3d}: saw {labels[best]} (p={float(scores[best]):.2f}), "
            f"truth {truth} {'ok' if ok else 'WRONG'}  {latencies_ms[-1]:.2f} ms"
        )
    say(
        f"  {correct}/{frames} frames right ({100.0 * correct / frames:.0f} %), "
        f"median latency {statistics.median(latencies_ms):.2f} ms per frame "
        "(preprocessing + inference)"
    )


def _read_recording(path: Path) -> tuple[list[str], np.ndarray]:
    stamps: list[str] = []
    values: list[float] = []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            stamps.append(row["timestamp"])
            values.append(float(row["value"]))
    return stamps, np.asarray(values, dtype=np.float32)


def _sensor_part(model: Model, say: Printer) -> None:
    manifest = model.manifest
    pre = manifest.preprocessing if manifest is not None else None
    post = manifest.postprocessing if manifest is not None else None
    if not isinstance(pre, WindowPreprocessing) or not isinstance(post, ForecastPostprocessing):
        raise ManifestError(f"model {model.name} lacks window/forecast settings in its manifest")
    stamps, values = _read_recording(data_file("machine_temperature_excerpt.csv"))
    span_h = (
        datetime.fromisoformat(stamps[-1]) - datetime.fromisoformat(stamps[0])
    ).total_seconds() / 3600.0
    say(
        f"sensor: replaying {len(values)} machine-temperature readings ({span_h:.0f} h of real "
        f"data, NAB) -> {model.name} ({model.backend_name})"
    )
    output = model.outputs[0].name
    spec = model.inputs[0]
    labels = json.loads(data_file("machine_temperature_excerpt.windows.json").read_text())
    window_start, window_end = labels["anomaly_windows"][0]
    threshold_degf = post.residual_threshold * pre.std
    flagged: list[tuple[str, float, float]] = []
    residuals_outside: list[float] = []
    start = time.perf_counter()
    for i in range(pre.length, len(values)):
        x = window_tensor(values[i - pre.length : i], pre, spec)
        forecast = float(model.run(x)[output].reshape(-1)[0]) * pre.std + pre.mean
        residual = float(values[i]) - forecast
        inside = window_start <= stamps[i] <= window_end
        if not inside:
            residuals_outside.append(abs(residual))
        if abs(residual) > threshold_degf:
            flagged.append((stamps[i], float(values[i]), forecast))
    elapsed_s = time.perf_counter() - start
    steps = len(values) - pre.length
    say(
        f"  {steps} one-step forecasts in {elapsed_s:.2f} s ({steps / elapsed_s:.0f} forecasts/s); "
        f"mean error outside the failure window {statistics.fmean(residuals_outside):.2f} degF"
    )
    inside_count = sum(window_start <= stamp <= window_end for stamp, _, _ in flagged)
    say(
        f"  {len(flagged)} readings off the forecast by more than {threshold_degf:.1f} degF: "
        f"{inside_count} inside NAB's labelled failure window ({window_start} .. {window_end}), "
        f"{len(flagged) - inside_count} outside it (false alarms)"
    )
    if flagged:
        failure = datetime.fromisoformat(labels["failure"])
        first_stamp, value, forecast = (
            next(f for f in flagged if window_start <= f[0] <= window_end)
            if inside_count
            else flagged[0]
        )
        lead_h = (failure - datetime.fromisoformat(first_stamp)).total_seconds() / 3600.0
        say(
            f"  first alarm in the window: {first_stamp}, {value:.1f} degF where "
            f"{forecast:.1f} degF was expected, {lead_h:.1f} h before the failure "
            f"({labels['failure']})"
        )


def run_demo(
    frames: int = 20, fmt: str = "onnx", seed: int = 0, say: Printer | None = None
) -> None:
    """Run both demo parts and print the results (to stdout unless ``say`` is given)."""
    out: Printer = say if say is not None else (lambda line: print(line, file=sys.stdout))
    start = time.perf_counter()
    digits = load_model(f"digits-int8-{fmt}", num_threads=1)
    _camera_part(digits, frames, seed, out)
    sensor = load_model(f"machine-temp-int8-{fmt}", num_threads=1)
    _sensor_part(sensor, out)
    out(f"demo finished in {time.perf_counter() - start:.1f} s")
