"""Pipeline and daemon benchmarks, side by side in one run (not timed tests).

Run: ``python benchmarks/pipeline_bench.py`` (about 22 minutes; ``--quick`` for a
shorter latency run and fewer shared-source rounds; ``--only PART,...`` runs some parts
and keeps the others' results in the file). Writes ``benchmarks/results/pipeline.json``
with the machine description. Parts:

1. **throughput**: the camera pipeline (OpenCV file source in lossless mode, the real
   ``Pipeline.infer`` in an executor, rules) against a hand-written bare loop
   (``cv2.VideoCapture.read`` -> resize -> onnxruntime session) on the same model and
   video; frames per second and the ratio, alternated over several rounds.
2. **latency**: frame-to-result p50/p99 per 30 s bucket over 5 minutes through the
   daemon, with a model 3x slower than the camera (the heavy digits model run as many
   times per frame as needed: real compute, not a sleep).
3. **adaptive sampling**: motion clips generated here with labelled events, and the NAB
   series in ``tests/data/nab`` with their labelled windows; inferences against a
   fixed maximum rate, and event recall.
4. **daemon footprint**: resident memory of ``edge-runtime run`` on the built-in demo
   config, and its CPU use on a still scene (nothing moves, calm sensor).
5. **shared source** (``--only shared``): a digits pipeline on a camera (a generated
   640x480 30 fps looping clip), the same plus a motion pipeline sharing that camera,
   and the old workaround (the motion pipeline on a second source on the same file);
   the two-pipeline setups with the motion pipeline at its minimum rate (still scene)
   and at its maximum (busy). Each setup is an ``edge-runtime run`` process, alternated
   over 5 rounds: CPU (% of one core, ``/proc/PID/stat``) over 15 s after a 15 s
   warm-up, peak RSS (``VmHWM``), frames and inferences per pipeline from the daemon's
   status; medians and the ratios of shared to one pipeline and to two sources.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import save  # noqa: E402

from edge_runtime.config import decode_config  # noqa: E402
from edge_runtime.health import read_process_cpu_s, read_rss_bytes  # noqa: E402
from edge_runtime.sources.base import Sample  # noqa: E402

# --- 1. throughput ----------------------------------------------------------------------


def make_clip(path: Path, frames: int, size: tuple[int, int], fps: float = 30.0) -> Path:
    """A moving-digit clip (MJPG .avi) of ``frames`` frames."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
    rng = np.random.default_rng(0)
    w, h = size
    for i in range(frames):
        frame = np.full((h, w, 3), 20, np.uint8)
        x = (i * 4) % (w - 60)
        cv2.putText(frame, str(i % 10), (x, h // 2 + 20), cv2.FONT_HERSHEY_SIMPLEX, 2.0,
                    (255, 255, 255), 4)
        frame = np.clip(frame + rng.normal(0, 3, frame.shape), 0, 255).astype(np.uint8)
        writer.write(frame)
    writer.release()
    return path


def bare_loop(video: Path, model_name: str) -> float:
    """Frames per second of cv2 read -> resize -> onnxruntime, nothing else."""
    import cv2
    import onnxruntime as ort

    from edge_runtime.models.registry import find_model

    manifest = find_model(model_name)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(manifest.model_path), sess_options=opts,
                                providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    in_type = sess.get_inputs()[0].type
    cap = cv2.VideoCapture(str(video))
    n = 0
    t_first = t_last = 0.0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA)
        x = (small.astype(np.float32) / 255.0)[None, None]
        if "int8" in in_type:  # quantized input: the bare loop quantizes by hand
            x = np.clip(np.round(x / (1 / 255.0)) - 128, -128, 127).astype(np.int8)
        sess.run(None, {name: x})
        n += 1
        t_last = time.perf_counter()
        if n == 1:
            t_first = t_last
    cap.release()
    return (n - 1) / (t_last - t_first)


def pipeline_loop(video: Path, model_name: str, tmp: Path) -> tuple[float, dict[str, Any]]:
    """Frames per second of the daemon itself on a camera source (file, lossless)."""
    config = decode_config(f"""
[node]
state_dir = "{tmp / 'tp-state'}"
[budget]
enabled = false
[[sources]]
type = "camera"
id = "cam"
path = "{video}"
realtime = false
lossless = true
min_rate_hz = 1000
max_rate_hz = 1000
[[pipelines]]
id = "p"
source = "cam"
model = "{model_name}"
[pipelines.sampling]
policy = "fixed"
[[pipelines.rules]]
id = "r"
field = "score"
above = 0.99
""", base_dir=tmp)
    from edge_runtime.pipelines.daemon import Daemon

    daemon = Daemon(None, config=config)
    result: dict[str, Any] = {}

    async def run() -> None:
        task = asyncio.create_task(daemon.run())
        while not task.done():
            await asyncio.sleep(0.01)
            runtime = daemon.runtime
            if runtime is not None and runtime.pipelines[0].source.exhausted:
                pipe = runtime.pipelines[0]
                await asyncio.sleep(0.05)  # the last frame's decision
                result.update(fps=pipe.stats.inferences_per_s(), frames=pipe.stats.inferences,
                              dropped=pipe.source.stats.dropped)
                daemon.request_stop()
        await task

    asyncio.run(run())
    return float(result["fps"]), result


def bench_throughput(tmp: Path, rounds: int = 5) -> dict[str, Any]:
    """Camera pipeline vs bare loop, alternated ``rounds`` times per frame size; the
    median of the per-round ratios. 320x240 frames make decoding cheap, so per-frame
    overhead shows; 640x480 is a common camera size (decoding overlaps inference)."""
    model = "digits-heavy-int8-onnx"
    out: dict[str, Any] = {"model": model, "rounds": rounds, "target": ">= 0.95"}
    for width, height in ((320, 240), (640, 480)):
        video = make_clip(tmp / f"tp{width}.avi", 1500, (width, height))
        bare, piped, bare_cpu, piped_cpu = [], [], [], []
        info: dict[str, Any] = {}
        for _ in range(rounds):
            cpu0 = read_process_cpu_s() or 0.0
            bare.append(bare_loop(video, model))
            cpu1 = read_process_cpu_s() or 0.0
            fps, info = pipeline_loop(video, model, tmp)
            cpu2 = read_process_cpu_s() or 0.0
            piped.append(fps)
            bare_cpu.append((cpu1 - cpu0) * 1000 / 1500)
            piped_cpu.append((cpu2 - cpu1) * 1000 / 1500)
        ratios = [p / b for p, b in zip(piped, bare, strict=True)]
        out[f"{width}x{height}"] = {
            "video": f"1500 frames {width}x{height} MJPG",
            "bare_fps": [round(x, 1) for x in bare],
            "pipeline_fps": [round(x, 1) for x in piped],
            "ratios": [round(x, 3) for x in ratios],
            "ratio_median": round(float(np.median(ratios)), 3),
            # CPU time per frame (all threads; the pipeline's includes model loading and
            # daemon start-up): less sensitive than wall time to other load on the machine.
            "bare_cpu_ms_per_frame": round(float(np.median(bare_cpu)), 3),
            "pipeline_cpu_ms_per_frame": round(float(np.median(piped_cpu)), 3),
            "cpu_ratio_bare_over_pipeline": round(float(np.median(bare_cpu) /
                                                        np.median(piped_cpu)), 3),
            "pipeline_frames": info["frames"], "pipeline_dropped": info["dropped"],
        }
    return out


# --- 2. latency ------------------------------------------------------------------------


def bench_latency(tmp: Path, duration_s: float) -> dict[str, Any]:
    """p99 frame-to-result latency per bucket, model 3x slower than the camera."""
    from edge_runtime.models import load_model
    from edge_runtime.pipelines import daemon as daemon_mod

    fps = 30.0
    video = make_clip(tmp / "lat.avi", 300, (160, 120), fps=fps)
    base = load_model("digits-heavy-int8-onnx", num_threads=1)
    x = np.zeros([d or 1 for d in base.inputs[0].shape], np.float32)
    base.run(x)
    t0 = time.perf_counter()
    for _ in range(20):
        base.run(x)
    one_s = (time.perf_counter() - t0) / 20
    repeats = max(1, round(3.0 / fps / one_s))

    class SlowModel:
        """The heavy model, run ``repeats`` times per frame: 3x the frame period."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner
            self.manifest = inner.manifest
            self.inputs = inner.inputs
            self.outputs = inner.outputs
            self.labels = inner.labels

        def run(self, x: Any) -> dict[str, np.ndarray]:
            for _ in range(repeats - 1):
                self.inner.run(x)
            out: dict[str, np.ndarray] = self.inner.run(x)
            return out

        def close(self) -> None:
            self.inner.close()

    config_text = f"""
[node]
state_dir = "{tmp / 'lat-state'}"
[budget]
enabled = false
[health]
interval_s = 5
check_throttling = false
[[sources]]
type = "camera"
id = "cam"
path = "{video}"
loop = true
min_rate_hz = 30
max_rate_hz = 30
[[pipelines]]
id = "p"
source = "cam"
model = "digits-heavy-int8-onnx"
[pipelines.sampling]
policy = "fixed"
"""
    config = decode_config(config_text, base_dir=tmp)
    import edge_runtime.models as models_pkg

    original = models_pkg.load_model
    models_pkg.load_model = lambda name, **kw: SlowModel(original(name, **kw))  # type: ignore[assignment]
    buckets: list[dict[str, Any]] = []
    try:
        d = daemon_mod.Daemon(None, config=config, duration_s=duration_s)

        async def main() -> None:
            task = asyncio.create_task(d.run())
            bucket_s = min(30.0, duration_s / 5)
            start = time.monotonic()
            while not task.done():
                await asyncio.sleep(bucket_s)
                if d.runtime is None or not d.runtime.pipelines:
                    continue
                pipe = d.runtime.pipelines[0]
                lat = list(pipe.stats.latencies_s)
                pipe.stats.latencies_s.clear()
                if lat:
                    arr = np.asarray(lat) * 1000
                    buckets.append({
                        "t_s": round(time.monotonic() - start, 1), "n": len(arr),
                        "p50_ms": round(float(np.percentile(arr, 50)), 1),
                        "p99_ms": round(float(np.percentile(arr, 99)), 1),
                        "dropped": pipe.source.stats.dropped})
            await task

        asyncio.run(main())
    finally:
        models_pkg.load_model = original
    buckets = [b for b in buckets if b["n"] >= 10]  # drop the partial bucket at the end
    p99 = [b["p99_ms"] for b in buckets]
    half = len(p99) // 2
    first, second = float(np.median(p99[:half] or p99)), float(np.median(p99[half:] or p99))
    return {
        "camera_fps": fps, "model_run_ms": round(one_s * repeats * 1000, 1),
        "model_vs_frame_period": round(one_s * repeats * fps, 2), "duration_s": duration_s,
        "buckets": buckets,
        "p99_first_ms": p99[0] if p99 else None, "p99_last_ms": p99[-1] if p99 else None,
        "p99_max_over_min": round(max(p99) / min(p99), 3) if p99 else None,
        "p99_median_first_half_ms": first, "p99_median_second_half_ms": second,
        "flat": bool(p99) and second <= 1.25 * first,
        "flat_rule": "median p99 of the second half of the buckets <= 1.25 x the first half",
    }


# --- 3. adaptive sampling -----------------------------------------------------------------


def motion_clip_frames(seconds: float, fps: float, seed: int
                       ) -> tuple[Any, list[tuple[float, float]]]:
    """A generated scene (160x120 gray, sensor noise, slow light drift) with labelled
    motion events of 1-6 s; returns a frame generator and the event windows (s)."""
    rng = np.random.default_rng(seed)
    events: list[tuple[float, float]] = []
    t = rng.uniform(5, 20)
    while t < seconds - 8:
        dur = rng.uniform(1.0, 6.0)
        events.append((t, t + dur))
        t += dur + rng.uniform(8, 40)
    background = rng.integers(40, 120, (120, 160)).astype(np.float32)
    background = (background + np.roll(background, 1, 0) + np.roll(background, 1, 1)) / 3

    def frames() -> Any:
        n = int(seconds * fps)
        ev = 0
        for i in range(n):
            ts = i / fps
            light = 1.0 + 0.05 * np.sin(2 * np.pi * ts / 120.0)  # slow light drift
            frame = background * light + rng.normal(0, 3.0, background.shape)
            while ev < len(events) and events[ev][1] < ts:
                ev += 1
            if ev < len(events) and events[ev][0] <= ts <= events[ev][1]:
                a, b = events[ev]
                x = int(10 + 120 * (ts - a) / (b - a))
                frame[40:80, x:x + 25] = 230.0  # a person-sized object walks across
            yield ts, np.clip(frame, 0, 255).astype(np.uint8)

    return frames(), events


def bench_sampling_motion(minutes: float = 20.0, fps: float = 15.0) -> dict[str, Any]:
    """Rate controller + motion gate on generated clips vs every frame at max rate."""
    from edge_runtime.sampling.controller import RateController
    from edge_runtime.sampling.policy import MotionGate

    total_frames = inferences = samples = 0
    n_events = hit = 0
    for seed in range(3):
        frames, events = motion_clip_frames(minutes * 60 / 3, fps, seed)
        gate = MotionGate()
        ctl = RateController(1.0, fps, hold_s=2.0, decay_half_life_s=2.0)
        next_t = 0.0
        inferred_at: list[float] = []
        for ts, frame in frames:
            total_frames += 1
            if ts + 1e-9 < next_t:
                continue
            samples += 1
            sample = Sample("cam", ts, total_frames, frame=frame)
            activity = gate.observe(sample)
            if gate.wants_inference(sample, activity):
                inferences += 1
                inferred_at.append(ts)
            next_t = ts + 1.0 / ctl.update(ts, activity)
        arr = np.asarray(inferred_at)
        for a, b in events:
            n_events += 1
            hit += bool(((arr >= a) & (arr <= b)).any())
    return {
        "clips": 3, "minutes": minutes, "fps": fps, "events": n_events,
        "fixed_rate_inferences": total_frames, "frames_sampled": samples,
        "adaptive_inferences": inferences,
        "fewer_inferences": round(1 - inferences / total_frames, 4),
        "event_recall": round(hit / n_events, 4),
        "target": ">= 0.70 fewer at >= 0.99 recall",
    }


def bench_sampling_nab() -> dict[str, Any]:
    """NAB series: two ways to spend fewer inferences, both with event recall.

    - ``gate`` (``policy = "detector"``): every read goes through the streaming anomaly
      detector (microseconds per point) and the *model* runs only around activity, plus
      a heartbeat; the counterpart of the camera's motion gate.
    - ``rate``: the controller lowers the read rate itself when calm (novelty and the
      detector's own score raise it); the detector then sees only the samples taken.

    An event is a labelled NAB window outside the detector's warm-up (its first 300
    points score 0, for a fixed-rate system as well). ``event_recall`` counts events
    during which the model ran; ``triggered_recall`` only those where activity (not
    the heartbeat) made it run.
    """
    from nab.corpus import load_corpus

    from edge_runtime.anomaly import AnomalyDetector, DetectorConfig
    from edge_runtime.sampling.controller import RateController
    from edge_runtime.sampling.policy import DetectorGate, NoveltyPolicy

    corpus = load_corpus()
    warmup = DetectorConfig().warmup_points
    threshold, hold, heartbeat = 0.05, 6, 48
    total = gate_inf = rate_taken = 0
    events = gate_hit = gate_trig = rate_hit = fixed_hit = 0
    for s in corpus:
        t = s.times - s.times[0]
        dt = float(np.median(np.diff(t)))
        gate = DetectorGate(threshold=threshold, hold_samples=hold, heartbeat_samples=heartbeat)
        inferred = np.zeros(len(t), bool)
        triggered = np.zeros(len(t), bool)
        scores = np.zeros(len(t))
        for i in range(len(t)):
            sample = Sample("s", float(s.times[i]), i, value=float(s.values[i]))
            activity = gate.observe(sample)
            scores[i] = gate.last_score
            triggered[i] = activity >= 1.0
            inferred[i] = gate.wants_inference(sample, activity)
        ctl = RateController(1 / (6 * dt), 1 / dt, hold_s=48 * dt, decay_half_life_s=24 * dt)
        pol = NoveltyPolicy()
        det2 = AnomalyDetector()
        rate_scores = np.full(len(t), np.nan)
        next_t = 0.0
        for i in range(len(t)):
            if t[i] + 1e-9 < next_t:
                continue
            sc = det2.update(float(s.times[i]), float(s.values[i]))
            rate_scores[i] = sc
            act = max(pol.observe(Sample("s", t[i], i, value=float(s.values[i]))), sc / 0.05)
            next_t = t[i] + 1 / ctl.update(t[i], act)
        total += len(t)
        gate_inf += int(inferred.sum())
        rate_taken += int((~np.isnan(rate_scores)).sum())
        for w in range(s.prep.n_windows):
            in_w = s.prep.window_of == w
            if np.flatnonzero(in_w).max() < warmup:
                continue  # entirely inside the warm-up: no system can score it
            events += 1
            gate_hit += bool((inferred & in_w).any())
            gate_trig += bool((triggered & in_w).any())
            fixed_hit += bool((scores[in_w] >= 0.3).any())
            rate_hit += bool((np.nan_to_num(rate_scores[in_w]) >= 0.3).any())
    return {
        "series": len(corpus), "points": total, "events": events,
        "gate": {"threshold": threshold, "hold_samples": hold, "heartbeat_samples": heartbeat,
                 "inferences": gate_inf, "fewer_inferences": round(1 - gate_inf / total, 4),
                 "event_recall": round(gate_hit / events, 4),
                 "triggered_recall": round(gate_trig / events, 4)},
        "rate": {"min_over_max": round(1 / 6, 4), "samples": rate_taken,
                 "fewer_inferences": round(1 - rate_taken / total, 4),
                 "alarm_recall": round(rate_hit / events, 4),
                 "fixed_rate_alarm_recall": round(fixed_hit / events, 4)},
        "target": ">= 0.70 fewer at >= 0.99 recall",
    }


# --- 4. footprint ---------------------------------------------------------------------------


def _proc_sample(pid: int) -> tuple[float | None, float | None]:
    rss = read_rss_bytes(pid)
    return (rss / 1e6 if rss else None), read_process_cpu_s(pid)


def bench_footprint(tmp: Path, run_s: float = 20.0, idle_s: float = 30.0) -> dict[str, Any]:
    """RSS of 'edge-runtime run' on the demo config; CPU on a still scene."""
    from edge_runtime.pipelines.demo_config import write_demo

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out: dict[str, Any] = {}
    for name, still, seconds in (("demo", False, run_s), ("still", True, idle_s)):
        cfg = write_demo(tmp / name, still=still)
        proc = subprocess.Popen([sys.executable, "-m", "edge_runtime", "run", str(cfg)],
                                cwd=cfg.parent, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            time.sleep(15.0)  # start-up and the first decay to the minimum rates
            _, cpu0 = _proc_sample(proc.pid)
            t0 = time.monotonic()
            peak = 0.0
            while time.monotonic() - t0 < seconds:
                rss, _ = _proc_sample(proc.pid)
                peak = max(peak, rss or 0.0)
                time.sleep(0.5)
            _, cpu1 = _proc_sample(proc.pid)
            elapsed = time.monotonic() - t0
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
        summary = json.loads((cfg.parent / "state" / "summary.json").read_text())
        out[name] = {
            "peak_rss_mb": round(peak, 1),
            "cpu_percent_of_one_core": round(100 * ((cpu1 or 0) - (cpu0 or 0)) / elapsed, 2),
            "seconds": round(elapsed, 1),
            "pipelines": {k: {"samples": p["samples"], "inferences": p["inferences"],
                              "rate_hz": p["sampling"]["rate_hz"]}
                          for k, p in summary["pipelines"].items()},
        }
    out["targets"] = {"demo_peak_rss_mb": "<= 150", "still_cpu_percent_of_one_core": "<= 2"}
    return out


# --- 5. shared source -----------------------------------------------------------------------

#: The setups of part 5, in the order of the first round: one pipeline; two sharing a
#: source; two on two sources on the same file; the last two again on a busy scene.
SHARED_SETUPS = ("one", "shared", "two_sources", "shared_busy", "two_sources_busy")


def _shared_configs(tmp: Path, video: Path) -> dict[str, Path]:
    """Config files for part 5: a digits pipeline on a camera (``one``); plus a motion
    pipeline on the same camera (``shared``); the old workaround, the motion pipeline
    on a second camera source on the same file (``two_sources``). ``_busy``: the motion
    pipeline held at the maximum rate, as on a scene that keeps moving."""
    head = """
[node]
state_dir = "{state}"
[budget]
enabled = false
[health]
interval_s = 5
check_throttling = false
"""
    cam = f"""
[[sources]]
type = "camera"
id = "{{id}}"
path = "{video}"
loop = true
min_rate_hz = 2
max_rate_hz = 30
"""
    digits = """
[[pipelines]]
id = "digits"
source = "cam"
model = "digits-int8-onnx"
[pipelines.sampling]
policy = "fixed"
"""
    # The scene is still to the motion gate. A short hold and decay: the motion pipeline
    # has settled at its minimum rate before the window starts. Busy: a rate starts at
    # the maximum, and a hold longer than the run keeps it there.
    motion = """
[[pipelines]]
id = "motion"
source = "{src}"
[pipelines.sampling]
policy = "motion"
hold_s = {hold_s}
decay_half_life_s = 1.0
"""
    texts = {"one": cam.format(id="cam") + digits}
    for suffix, hold_s in (("", 2.0), ("_busy", 86400.0)):
        texts["shared" + suffix] = (cam.format(id="cam") + digits
                                    + motion.format(src="cam", hold_s=hold_s))
        texts["two_sources" + suffix] = (cam.format(id="cam") + cam.format(id="cam2") + digits
                                         + motion.format(src="cam2", hold_s=hold_s))
    paths = {}
    for name, text in texts.items():
        path = tmp / f"shared-{name}.toml"
        path.write_text(head.format(state=tmp / f"shared-{name}-state") + text)
        paths[name] = path
    return paths


def _read_hwm_mb(pid: int) -> float | None:
    """Peak resident set size of a process so far (VmHWM), in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
    except (OSError, ValueError, IndexError):
        return None
    return None


def _machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores, from /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _status(sock: Path, timeout_s: float = 3.0) -> dict[str, Any]:
    from edge_runtime.control import request

    return request(sock, "status", timeout_s=timeout_s)


def _shared_run(config: Path, warmup_s: float, window_s: float) -> dict[str, Any]:
    """One ``edge-runtime run`` of ``config``: CPU (% of one core) over ``window_s``
    after ``warmup_s``, peak RSS, and per-pipeline counts over the window from status."""
    from edge_runtime.config import load_config
    from edge_runtime.errors import DaemonError

    sock = load_config(config).control_socket
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log_path = config.with_suffix(".log")
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "edge_runtime", "run", str(config)],
                                cwd=config.parent, env=env, stdout=subprocess.DEVNULL,
                                stderr=log_file)
    try:
        started = time.monotonic()
        while True:  # the control socket answers once the pipelines run
            if proc.poll() is not None:
                raise RuntimeError(f"edge-runtime run {config.name} exited with "
                                   f"{proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                _status(sock, timeout_s=1.0)
                break
            except DaemonError:
                if time.monotonic() - started > 30.0:
                    raise
                time.sleep(0.2)
        time.sleep(max(0.0, warmup_s - (time.monotonic() - started)))
        before = _status(sock)
        cpu0, busy0, t0 = read_process_cpu_s(proc.pid), _machine_busy_s(), time.monotonic()
        time.sleep(window_s)
        cpu1, busy1, t1 = read_process_cpu_s(proc.pid), _machine_busy_s(), time.monotonic()
        after = _status(sock)
        peak_mb = _read_hwm_mb(proc.pid)
        if proc.poll() is not None or cpu0 is None or cpu1 is None or peak_mb is None:
            raise RuntimeError(f"edge-runtime run {config.name} ended during the window: "
                               f"{log_path.read_text()[-2000:]}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    elapsed = t1 - t0
    cpu = 100 * (cpu1 - cpu0) / elapsed
    pipelines = {}
    for pid_, p1 in after["pipelines"].items():
        p0 = before["pipelines"][pid_]
        pipelines[pid_] = {
            "source": p1["source"],
            "frames_per_s": round((p1["samples"] - p0["samples"]) / elapsed, 2),
            "inferences_per_s": round((p1["inferences"] - p0["inferences"]) / elapsed, 2),
            "gated_per_s": round((p1["gated"] - p0["gated"]) / elapsed, 2),
            "dropped": p1["source_stats"]["dropped"] - p0["source_stats"]["dropped"],
            "errors": p1["errors"] - p0["errors"],
            "rate_hz_end": p1["sampling"]["rate_hz"],
        }
    return {
        "cpu_percent_of_one_core": round(cpu, 2),
        "peak_rss_mb": round(peak_mb, 1),
        # Everything else the machine did meanwhile (2 cores: up to 200 %): the noise.
        "other_cpu_percent": round(100 * (busy1 - busy0) / elapsed - cpu, 1),
        "window_s": round(elapsed, 2),
        "pipelines": pipelines,
    }


def bench_shared(tmp: Path, rounds: int = 5, warmup_s: float = 15.0,
                 window_s: float = 15.0) -> dict[str, Any]:
    """Two pipelines sharing one camera vs one pipeline vs two sources on the same file.

    Each setup is its own ``edge-runtime run`` on a generated 640x480 30 fps looping
    clip; the setups alternate within each round, the order rotated by one each round
    so none always runs first. Medians over rounds; ratios are per round, then median.
    ``one``/``shared``/``two_sources``: the motion pipeline at its minimum rate (the scene
    is still to its gate); ``*_busy``: at the maximum, every frame.
    """
    from tests.helpers.media import make_video

    video = make_video(tmp / "shared.avi", 300, fps=30.0, size=(640, 480))
    configs = _shared_configs(tmp, video)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in SHARED_SETUPS}
    orders = []
    for r in range(rounds):
        k = r % len(SHARED_SETUPS)
        order = SHARED_SETUPS[k:] + SHARED_SETUPS[:k]
        orders.append(" ".join(order))
        for name in order:
            runs[name].append(_shared_run(configs[name], warmup_s, window_s))
            print(f"shared round {r + 1} {name}", json.dumps(runs[name][-1]), flush=True)

    def med(values: list[float]) -> float:
        return float(np.median(values))

    out: dict[str, Any] = {
        "video": "300 frames 640x480 MJPG at 30 fps, looped (tests/helpers/media.make_video: "
                 "a 12 px square moving, too small for the motion gate: a still scene)",
        "pipelines": {"digits": "digits-int8-onnx, fixed policy (30 Hz)",
                      "motion": "motion gate, no model, 2-30 Hz (hold 2 s, half-life 1 s; "
                                "busy: hold 1 day, so 30 Hz)"},
        "dropped": "a lone source's pipeline counts as dropped the frames it did not take "
                   "(read below 30 fps); a pipeline on a shared source counts those as "
                   "skipped, and only frames due but replaced while busy as dropped",
        "rounds": rounds, "warmup_s": warmup_s, "window_s": window_s,
        "orders": orders, "setups": {},
    }
    for name in SHARED_SETUPS:
        rs = runs[name]
        per_pipe = {pid_: {key: med([r["pipelines"][pid_][key] for r in rs])
                           for key in ("frames_per_s", "inferences_per_s", "gated_per_s")}
                    for pid_ in rs[0]["pipelines"]}
        for pid_, figures in per_pipe.items():
            figures["dropped_total"] = sum(r["pipelines"][pid_]["dropped"] for r in rs)
            figures["errors_total"] = sum(r["pipelines"][pid_]["errors"] for r in rs)
        out["setups"][name] = {
            "cpu_percent_of_one_core": [r["cpu_percent_of_one_core"] for r in rs],
            "cpu_percent_median": round(med([r["cpu_percent_of_one_core"] for r in rs]), 2),
            "peak_rss_mb": [r["peak_rss_mb"] for r in rs],
            "peak_rss_mb_median": round(med([r["peak_rss_mb"] for r in rs]), 1),
            "other_cpu_percent": [r["other_cpu_percent"] for r in rs],
            "pipelines_median": per_pipe,
            "runs": rs,
        }
    cpu = {n: [r["cpu_percent_of_one_core"] for r in runs[n]] for n in SHARED_SETUPS}
    rss = {n: [r["peak_rss_mb"] for r in runs[n]] for n in SHARED_SETUPS}

    def ratio(series: dict[str, list[float]], a: str, b: str) -> float:
        return round(med([x / y for x, y in zip(series[a], series[b], strict=True)]), 3)

    def added(name: str) -> float:
        """What the second pipeline adds to one (% of one core), per round, median."""
        return round(med([x - o for x, o in zip(cpu[name], cpu["one"], strict=True)]), 2)

    out["rule"] = "per-round ratio or difference, then the median over rounds"
    for scene, suffix in (("still", ""), ("busy", "_busy")):
        shared, two = "shared" + suffix, "two_sources" + suffix
        out[f"ratios_{scene}"] = {
            "cpu_shared_over_one": ratio(cpu, shared, "one"),
            "cpu_shared_over_two_sources": ratio(cpu, shared, two),
            "rss_shared_over_one": ratio(rss, shared, "one"),
            "rss_shared_over_two_sources": ratio(rss, shared, two),
            "cpu_added_by_second_pipeline_shared": added(shared),
            "cpu_added_by_second_pipeline_two_sources": added(two),
        }
    return out


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="60 s latency run, shorter clips, 3 shared-source rounds")
    parser.add_argument("--only", default=None,
                        help="comma list: throughput,latency,motion,nab,footprint,shared")
    args = parser.parse_args()
    parts = set((args.only or "throughput,latency,motion,nab,footprint,shared").split(","))
    results: dict[str, Any] = {}
    previous = ROOT / "benchmarks" / "results" / "pipeline.json"
    if args.only and previous.exists():
        # A partial run updates its parts and keeps the others (each part has its time).
        results = {k: v for k, v in json.loads(previous.read_text()).items() if k != "machine"}
    results["quick"] = args.quick
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if "throughput" in parts:
            results["throughput"] = {**bench_throughput(tmp), "at": _now()}
            print("throughput", json.dumps(results["throughput"]), flush=True)
        if "motion" in parts:
            results["sampling_motion"] = {**bench_sampling_motion(6.0 if args.quick else 20.0),
                                          "at": _now()}
            print("motion", json.dumps(results["sampling_motion"]), flush=True)
        if "nab" in parts:
            results["sampling_nab"] = {**bench_sampling_nab(), "at": _now()}
            print("nab", json.dumps(results["sampling_nab"]), flush=True)
        if "footprint" in parts:
            results["footprint"] = {**bench_footprint(tmp), "at": _now()}
            print("footprint", json.dumps(results["footprint"]), flush=True)
        if "shared" in parts:
            results["shared_source"] = {**bench_shared(tmp, rounds=3 if args.quick else 5),
                                        "at": _now()}
            print("shared", json.dumps({k: v for k, v in results["shared_source"].items()
                                        if k != "setups"}), flush=True)
        if "latency" in parts:
            results["latency"] = {**bench_latency(tmp, 60.0 if args.quick else 300.0),
                                  "at": _now()}
            print("latency", json.dumps({k: v for k, v in results["latency"].items()
                                         if k != "buckets"}), flush=True)
    path = save("pipeline", results)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
