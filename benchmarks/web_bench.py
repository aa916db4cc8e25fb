"""What the [web] server costs the daemon: extra CPU and RSS, side by side in one run.

Variants (each a fresh daemon subprocess on the same config: a replayed sensor under the
anomaly detector and the digits model on a looping generated video):

- ``off``: ``[web] enabled = false`` (the baseline);
- ``idle``: the web server on, nobody watching;
- ``camera_viewer``: one client polling the live camera JPEG at the page's rate (4 Hz)
  and the status once a second, as the page does;
- ``prometheus_5s``: a real Prometheus server (Debian's) scraping ``/metrics`` every 5 s.

Rounds alternate the variants; each variant's figure is the median over rounds of the
daemon's CPU (% of one core, from /proc/PID/stat) over ``--window-s`` after a warm-up,
and its RSS at the end. Targets: idle under 0.5 % of a core and under 15 MB.
Run it with ``nice``: ``nice python benchmarks/web_bench.py``. Writes
``benchmarks/results/web.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.machine import machine_info, save  # noqa: E402
from edge_runtime.health import read_process_cpu_s, read_rss_bytes  # noqa: E402
from tests.helpers.media import make_video  # noqa: E402
from tests.web.helpers import free_port, sensor_csv, stop_daemon  # noqa: E402

VARIANTS = ("off", "idle", "camera_viewer", "prometheus_5s")
FRAME_PERIOD_S = 0.25  # the page's live view (app.js FRAME_MS)


def _config(folder: Path, port: int, web: bool) -> Path:
    cfg = folder / f"cfg-{port}.toml"
    cfg.write_text(f"""
[node]
name = "bench"
state_dir = "state-{port}"
[budget]
enabled = false
[health]
interval_s = 10
check_throttling = false
[web]
enabled = {"true" if web else "false"}
listen = "127.0.0.1:{port}"
[[sources]]
type = "replay"
id = "sensor"
path = "sensor.csv"
speed = 1
loop = true
min_rate_hz = 2
max_rate_hz = 2
[[sources]]
type = "camera"
id = "cam"
path = "clip.avi"
loop = true
min_rate_hz = 2
max_rate_hz = 2
[[pipelines]]
id = "boiler"
source = "sensor"
detector = "anomaly"
[[pipelines]]
id = "door"
source = "cam"
model = "digits-int8-onnx"
""")
    return cfg


def _wait_up(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} never answered")


def _viewer(base: str, stop: threading.Event, counts: dict[str, int]) -> None:
    next_status = 0.0
    while not stop.is_set():
        for path in (["/api/frame/door.jpg"] + (["/api/status"] if time.monotonic()
                                                  >= next_status else [])):
            try:
                with urllib.request.urlopen(base + path, timeout=2) as r:
                    r.read()
                    counts[path] = counts.get(path, 0) + 1
            except OSError:
                counts["errors"] = counts.get("errors", 0) + 1
        if time.monotonic() >= next_status:
            next_status = time.monotonic() + 1.0
        stop.wait(FRAME_PERIOD_S)


def _run(folder: Path, variant: str, warmup_s: float, window_s: float) -> dict[str, Any]:
    port = free_port()
    cfg = _config(folder, port, web=variant != "off")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "edge_runtime", "run", str(cfg)],
                            cwd=folder, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    extra: list[Any] = []
    stop = threading.Event()
    counts: dict[str, int] = {}
    try:
        if variant == "off":
            time.sleep(3.0)
        else:
            _wait_up(f"http://127.0.0.1:{port}/api/status", 30)
        if variant == "camera_viewer":
            t = threading.Thread(target=_viewer, args=(f"http://127.0.0.1:{port}", stop,
                                                       counts))
            t.start()
            extra.append(t)
        elif variant == "prometheus_5s":
            prom_port = free_port()
            (folder / "prom.yml").write_text(json.dumps({
                "global": {"scrape_interval": "5s"},
                "scrape_configs": [{"job_name": "edge", "static_configs": [
                    {"targets": [f"127.0.0.1:{port}"]}]}]}))
            extra.append(subprocess.Popen(
                ["/usr/bin/prometheus", f"--config.file={folder / 'prom.yml'}",
                 f"--storage.tsdb.path={folder / f'tsdb-{port}'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(warmup_s)
        cpu0, t0 = read_process_cpu_s(proc.pid), time.monotonic()
        time.sleep(window_s)
        cpu1, t1 = read_process_cpu_s(proc.pid), time.monotonic()
        rss = read_rss_bytes(proc.pid)
        assert cpu0 is not None and cpu1 is not None and rss is not None
        return {"cpu_percent_of_core": 100.0 * (cpu1 - cpu0) / (t1 - t0),
                "rss_mb": rss / 1e6, "requests": counts}
    finally:
        stop.set()
        for e in extra:
            if isinstance(e, threading.Thread):
                e.join(5)
            else:
                e.terminate()
                e.wait(10)
        stop_daemon(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup-s", type=float, default=4.0)
    parser.add_argument("--window-s", type=float, default=12.0)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="web-bench-") as tmp:
        folder = Path(tmp)
        sensor_csv(folder / "sensor.csv")
        make_video(folder / "clip.avi", 120, fps=30.0, size=(320, 240))
        for r in range(args.rounds):
            order = VARIANTS if r % 2 == 0 else tuple(reversed(VARIANTS))
            for variant in order:
                runs[variant].append(_run(folder, variant, args.warmup_s, args.window_s))
                print(variant, json.dumps(runs[variant][-1]), flush=True)
    med = {v: {"cpu_percent_of_core": round(statistics.median(
                   x["cpu_percent_of_core"] for x in runs[v]), 3),
               "rss_mb": round(statistics.median(x["rss_mb"] for x in runs[v]), 2)}
           for v in VARIANTS}
    base = med["off"]
    extra = {v: {"extra_cpu_percent_of_core": round(med[v]["cpu_percent_of_core"]
                                                    - base["cpu_percent_of_core"], 3),
                 "extra_rss_mb": round(med[v]["rss_mb"] - base["rss_mb"], 2)}
             for v in VARIANTS if v != "off"}
    results = {
        "benchmark": "web", "rounds": args.rounds, "warmup_s": args.warmup_s,
        "window_s": args.window_s, "frame_period_s": FRAME_PERIOD_S,
        "median": med, "extra_over_off": extra,
        "targets": {"idle_extra_cpu_percent_of_core_below": 0.5,
                    "idle_extra_rss_mb_below": 15.0},
        "idle_meets_targets": extra["idle"]["extra_cpu_percent_of_core"] < 0.5
        and extra["idle"]["extra_rss_mb"] < 15.0,
        "runs": runs, "machine": machine_info(),
    }
    path = save("web", results)
    print(json.dumps({k: v for k, v in results.items() if k not in ("runs", "machine")},
                     indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
