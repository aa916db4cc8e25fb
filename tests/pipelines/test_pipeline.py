"""Pipeline stages without the daemon: cleaning, detector, window model, image model,
rate changes told to a source that can set its own rate."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.config import decode_config
from edge_runtime.pipelines.build import build_runtime
from edge_runtime.pipelines.pipeline import Pipeline
from edge_runtime.pipelines.rules import Rule
from edge_runtime.sampling.controller import RateController
from edge_runtime.sampling.policy import ChangePolicy
from edge_runtime.sources.base import Sample, Source
from tests.helpers.media import frame_with_square, write_csv


class ScriptedRateSource(Source):
    """A scalar source that plays a list and records the rates it was asked for,
    like a microcontroller that samples at the rate it is told."""

    kind = "scalar"
    can_set_rate = True

    def __init__(self, values: list[float]) -> None:
        super().__init__("scripted")
        self.values = values
        self.rates: list[float] = []

    def _open(self) -> None:
        pass

    def _read(self, timeout_s: float) -> Sample | None:
        if self._seq >= len(self.values):
            return None
        seq = self._next_seq()
        return Sample(self.source_id, float(seq), seq, value=self.values[seq - 1])

    def _close(self) -> None:
        pass

    def set_rate(self, rate_hz: float) -> None:
        self.rates.append(rate_hz)


def _drive(pipe: Pipeline, n: int) -> list[dict[str, object]]:
    results = []
    for _ in range(n):
        s = pipe.source.read(0.1)
        if s is None:
            break
        step = pipe.infer(s)
        pipe.decide(s, step, now_s=s.t_mono_s + 0.001)
        if step.result is not None:
            results.append(step.result)
    return results


def test_rate_changes_reach_a_source_that_can_set_its_rate() -> None:
    values = [1.0] * 40 + [50.0] + [1.0] * 40
    src = ScriptedRateSource(values)
    ctl = RateController(0.5, 8.0, hold_s=3.0, decay_half_life_s=2.0)
    pipe = Pipeline("p", src, policy=ChangePolicy(), controller=ctl,
                    rules=[Rule.build("jump", field="value", above=10.0)], actions={})
    with src:
        _drive(pipe, len(values))
    assert src.rates[0] < 8.0  # calm: slowed down
    assert 8.0 in src.rates  # the jump brought it back to max
    assert src.stats.rate_hz == src.rates[-1]
    assert pipe.rules[0].activations == 1
    assert pipe.status()["sampling"]["rate_increases"] >= 1


def test_cleaning_and_anomaly_detector_from_config(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    values = list(10 + rng.normal(0, 0.1, 400))
    values[100] = math.nan
    values[200] = 1e6  # out of range: clipped
    write_csv(tmp_path / "s.csv", values, period_s=0.01)
    config = decode_config("""
[node]
state_dir = "st"
[budget]
enabled = false
[[sources]]
type = "replay"
id = "s"
path = "s.csv"
speed = 1000
lossless = true
min_rate_hz = 1000
max_rate_hz = 1000
[[pipelines]]
id = "p"
source = "s"
detector = "anomaly"
detector_params = { warmup_points = 50 }
cleaning = { valid_min = 0.0, valid_max = 100.0, spike_policy = "keep" }
""", base_dir=tmp_path)
    runtime = build_runtime(config)
    try:
        pipe = runtime.pipelines[0]
        with pipe.source:
            results = _drive(pipe, 1000)
        assert len(results) == 399
        assert all(0.0 <= float(r["score"]) <= 1.0 for r in results)  # type: ignore[arg-type]
        cleaning = pipe.status()["cleaning"]
        assert cleaning["non_finite"] == 1 and cleaning["clipped"] == 1
        assert pipe.stats.missing == 1
    finally:
        runtime.close()


SENSOR_RUNTIME = """
[budget]
enabled = false
[[sources]]
type = "replay"
id = "s"
path = "s.csv"
min_rate_hz = {min_rate_hz}
max_rate_hz = {max_rate_hz}
[[pipelines]]
id = "p"
source = "s"
detector = "anomaly"
"""


def _feed(pipe: Pipeline, t_s: float, seq: int, value: float,
          envelope: tuple[float, float] | None = None) -> dict[str, Any]:
    """One sample through infer and decide, as the daemon would; its result."""
    sample = Sample("s", t_s, seq, value=value, envelope=envelope)
    step = pipe.infer(sample)
    pipe.decide(sample, step, now_s=t_s)
    assert step.result is not None
    return step.result


def test_detector_pipeline_scores_the_envelope_and_reports_raw_score(tmp_path: Path) -> None:
    write_csv(tmp_path / "s.csv", [10.0] * 10, period_s=1.0)
    config = decode_config(SENSOR_RUNTIME.format(min_rate_hz=0.1, max_rate_hz=1.0) + """
detector_params = { warmup_points = 50 }
cleaning = { valid_min = 0.0, valid_max = 100.0, spike_policy = "keep" }
[pipelines.sampling]
policy = "score"
field = "raw_score"
threshold = 0.3
""", base_dir=tmp_path)
    runtime = build_runtime(config)
    try:
        pipe = runtime.pipelines[0]
        rng = np.random.default_rng(0)
        results, rates = [], []
        for i in range(200):
            value = 10.0 + float(rng.normal(0, 0.1))
            # At i == 150 a spike fell between this read and the one before: only
            # the envelope knows (its top, 1e6, is beyond the valid range: clamped).
            env = (value, 1e6) if i == 150 else None
            results.append(_feed(pipe, float(i), i, value, env))
            rates.append(pipe.controller.rate_hz)
        assert all(r.get("warming") for r in results[:49])  # learning ...
        assert rates[:49] == [1.0] * 49  # ... at the full rate
        assert "warming" not in results[60] and "raw_score" in results[60]
        assert {r["stuck"] for r in results} == {0.0}  # noisy: never frozen
        assert min(rates[60:150]) < 0.5  # calm: slowed down
        assert rates[150] == 1.0  # the spike brought it back
        assert float(results[150]["score"]) >= 0.3  # the spike between reads alarms
        # calm noise: at most one tail value beyond the 50-point warm-up's range alarms
        # (value novelty), and weaker than the spike
        calm = [float(r["score"]) for r in results[60:150]]
        assert sum(x >= 0.3 for x in calm) <= 1
        assert max(calm) < float(results[150]["score"])
    finally:
        runtime.close()


def test_device_health_falls_while_the_channel_keeps_misbehaving(tmp_path: Path) -> None:
    write_csv(tmp_path / "s.csv", [10.0] * 10, period_s=1.0)
    config = decode_config(SENSOR_RUNTIME.format(min_rate_hz=0.0333, max_rate_hz=0.0333) + """
detector_params = { warmup_points = 100 }
[[pipelines.rules]]
id = "unwell"
field = "health"
below = 50.0
clear_at = 70.0
""", base_dir=tmp_path)
    runtime = build_runtime(config)
    try:
        pipe = runtime.pipelines[0]
        rng = np.random.default_rng(0)
        health = []
        for i in range(1200):
            # every 30 s: calm for 5 h, then the level wanders off to values never seen
            value = 10.0 + float(rng.normal(0, 0.1)) + (0.0 if i < 600 else 0.05 * (i - 600))
            health.append(float(_feed(pipe, 30.0 * i, i, value)["health"]))
        assert min(health[:600]) >= 80.0  # calm: healthy
        assert min(health[600:800]) < 50.0  # the level runs away: unwell ...
        assert health[-1] > 70.0  # ... until the detector has learnt the new normal
        assert pipe.rules[0].activations == 1
        assert pipe.status()["health"] == health[-1]
    finally:
        runtime.close()


def test_window_model_forecast_scores(tmp_path: Path) -> None:
    csv = Path(__file__).resolve().parents[2] / "models" / "data" / \
        "machine_temperature_excerpt.csv"
    config = decode_config(f"""
[node]
state_dir = "st"
[[sources]]
type = "replay"
id = "t"
path = "{csv}"
speed = 1e6
lossless = true
[[pipelines]]
id = "p"
source = "t"
model = "machine-temp-int8-onnx"
""", base_dir=tmp_path)
    runtime = build_runtime(config)
    try:
        pipe = runtime.pipelines[0]
        with pipe.source:
            results = _drive(pipe, 100)
        warm = [r for r in results if r.get("warming")]
        scored = [r for r in results if "score" in r]
        assert len(warm) == 32 and len(scored) == 68
        assert np.median([abs(float(r["forecast"]) - float(r["value"]))  # type: ignore[arg-type]
                          for r in scored]) < 5.0  # degrees F
        assert pipe.stats.inferences == 68
    finally:
        runtime.close()


def test_window_model_gets_its_training_spacing_from_a_faster_source(tmp_path: Path) -> None:
    """The forecaster was trained on 5-minute data. Read once a minute, its window is
    resampled to 5 minutes, so it forecasts exactly what it forecasts on the 5-minute
    data; the last 32 one-minute reads (32 min instead of 160) would not."""
    from edge_runtime.anomaly.csvio import read_series
    from edge_runtime.pipelines.preprocess import SlidingWindow

    csv = Path(__file__).resolve().parents[2] / "models" / "data" / \
        "machine_temperature_excerpt.csv"
    _, times, values = read_series(csv)
    config = decode_config(f"""
[[sources]]
type = "replay"
id = "t"
path = "{csv}"
[[pipelines]]
id = "p"
source = "t"
model = "machine-temp-int8-onnx"
""", base_dir=tmp_path)

    def forecasts(t_s: list[float], v: list[float], *, resample: bool = True
                  ) -> dict[int, float]:
        runtime = build_runtime(config)
        try:
            pipe = runtime.pipelines[0]
            if not resample:
                pipe._window = SlidingWindow(32)  # the last 32 reads, as before
            out = {}
            for k, (t, value) in enumerate(zip(t_s, v, strict=True)):
                result = _feed(pipe, t, k, value)
                if "forecast" in result:
                    out[round(t)] = float(result["forecast"])
            return out
        finally:
            runtime.close()

    t5 = np.asarray(times[:300]) - times[0]
    v5 = np.asarray(values[:300])
    at_5_min = forecasts(t5.tolist(), v5.tolist())
    t1 = np.arange(0.0, t5[-1] + 1.0, 60.0)  # the same signal, read every minute
    v1 = np.interp(t1, t5, v5)
    resampled = forecasts(t1.tolist(), v1.tolist())
    by_count = forecasts(t1.tolist(), v1.tolist(), resample=False)
    common = [t for t in at_5_min if t in resampled and t in by_count]
    assert len(common) > 200
    assert max(abs(resampled[t] - at_5_min[t]) for t in common) < 1e-3  # degrees F
    assert np.mean([abs(by_count[t] - at_5_min[t]) for t in common]) > 0.2


def test_image_model_classifies_frames(tmp_path: Path) -> None:
    from edge_runtime.models.registry import data_file

    data = np.load(data_file("digits_heldout.npz"))
    images, labels = data[data.files[0]], data[data.files[1]]
    from tests.helpers.media import make_video

    make_video(tmp_path / "c.avi", 3)
    config = decode_config("""
[node]
state_dir = "st"
[[sources]]
type = "camera"
id = "c"
path = "c.avi"
[[pipelines]]
id = "p"
source = "c"
model = "digits-int8-tflite"
[pipelines.sampling]
heartbeat_s = 0
""", base_dir=tmp_path)
    runtime = build_runtime(config)
    try:
        pipe = runtime.pipelines[0]
        hits = 0
        for i in range(40):
            img = images[i].astype(np.uint8)
            frame = np.repeat(img[:, :, None], 3, axis=2)
            step = pipe.infer(Sample("c", float(i), i + 1, frame=frame))
            assert step.result is not None and step.inferred
            hits += step.result["label"] == str(int(labels[i]))
        assert hits >= 36
        moving = pipe.infer(Sample("c", 100.0, 100, frame=frame_with_square(5)))
        assert moving.result is not None and "motion" in moving.result
    finally:
        runtime.close()


def test_time_window_interpolates_holds_past_a_gap_and_stays_bounded() -> None:
    from edge_runtime.pipelines.preprocess import SlidingWindow

    window = SlidingWindow(3, interval_s=10.0, max_points=50)
    for t in range(0, 25, 5):  # samples every 5 s: 0, 5, ..., 20
        window.push(float(t), float(t))
    assert not window.ready(29.0) and window.ready(30.0)  # needs 3 intervals of history
    assert window.array(30.0).tolist() == [0.0, 10.0, 20.0]  # t = 0, 10, 20
    assert window.array(33.0).tolist() == [3.0, 13.0, 20.0]  # interpolated; held past 20 s
    for t in range(25, 100_000, 5):  # a fast source: memory bounded in time and count
        window.push(float(t), float(t))
    assert len(window._values) <= 8  # 30 s of 5 s samples, plus one before
    count_window = SlidingWindow(3)
    for t in range(5):
        count_window.push(float(t), float(t))
    assert count_window.array(99.0).tolist() == [2.0, 3.0, 4.0]  # by count: the last 3
