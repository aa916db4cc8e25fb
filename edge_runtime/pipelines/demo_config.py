"""The built-in daemon config for demos and benchmarks, with the media it needs.

:func:`write_demo` writes into a folder: a camera clip made from held-out handwritten
digits (shipped with the models, never seen in training) that drift across a noisy
64x64 view, with still stretches in between; and ``demo.toml`` wiring that clip, a
mock-pin PIR sensor and a replay of the shipped machine-temperature recording into
pipelines with rules and actions (LED on mock pins, events, log lines).

``still=True`` makes a scene where nothing moves and the sensor is calm (for idle
CPU measurements).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

#: Side of the generated camera view, pixels; frames per second of the clip.
VIEW_PX = 64
CLIP_FPS = 15.0


def _digit_frames(n_frames: int, *, still: bool, seed: int = 0) -> list[np.ndarray]:
    import cv2

    from edge_runtime.models.registry import data_file

    data = np.load(data_file("digits_heldout.npz"))
    images = data[data.files[0]]
    rng = np.random.default_rng(seed)
    frames = []
    digit = cv2.resize(images[0].astype(np.uint8), (24, 24), interpolation=cv2.INTER_NEAREST)
    x = 20
    for i in range(n_frames):
        # Every 4 s a new digit enters and moves for 2 s; then the scene is still.
        phase = i % int(4 * CLIP_FPS)
        if not still and phase == 0:
            img = images[(i // int(4 * CLIP_FPS)) % len(images)].astype(np.uint8)
            digit = cv2.resize(img, (24, 24), interpolation=cv2.INTER_NEAREST)
            x = 4
        if not still and phase < int(2 * CLIP_FPS):
            x = 4 + int(32 * phase / (2 * CLIP_FPS))
        frame = np.full((VIEW_PX, VIEW_PX), 10, np.uint8)
        frame[20:44, x:x + 24] = np.maximum(frame[20:44, x:x + 24], digit)
        noise = rng.normal(0, 2.0, frame.shape)
        frame = np.clip(frame + noise, 0, 255).astype(np.uint8)
        frames.append(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    return frames


def write_clip(path: Path, *, seconds: float = 20.0, still: bool = False) -> Path:
    """An MJPG .avi of the demo scene."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), CLIP_FPS,
                             (VIEW_PX, VIEW_PX))
    for frame in _digit_frames(int(seconds * CLIP_FPS), still=still):
        writer.write(frame)
    writer.release()
    return path


def write_demo(folder: Path, *, still: bool = False, speed: float = 3000.0) -> Path:
    """Write the clip, a (calm, when ``still``) recording and ``demo.toml``; returns its path."""
    from edge_runtime.models.registry import data_file

    folder.mkdir(parents=True, exist_ok=True)
    write_clip(folder / "demo.avi", still=still)
    if still:
        lines = ["timestamp,value"] + [f"{i * 300},{70.0 + 0.01 * (i % 3)}" for i in range(3000)]
        (folder / "sensor.csv").write_text("\n".join(lines) + "\n")
        recording = folder / "sensor.csv"
    else:
        recording = data_file("machine_temperature_excerpt.csv")
    config = folder / "demo.toml"
    config.write_text(f"""# Built-in demo: generated camera, mock PIR, replayed recording.
[node]
name = "demo"
state_dir = "state"
gpio_pin_factory = "mock"

[health]
interval_s = 5.0

[[sources]]
type = "camera"
id = "camera"
path = "demo.avi"
loop = true
min_rate_hz = 1.0
max_rate_hz = 15.0

[[sources]]
type = "gpio"
id = "pir"
device = "motion_sensor"
pin = 17
min_rate_hz = 1.0
max_rate_hz = 10.0

[[sources]]
type = "replay"
id = "machine"
path = "{recording}"
speed = {speed}
loop = true
min_rate_hz = 1.0
max_rate_hz = 10.0

[[pipelines]]
id = "digits"
source = "camera"
model = "digits-int8-onnx"
[pipelines.sampling]
policy = "motion"
hold_s = 2.0
decay_half_life_s = 2.0
[[pipelines.rules]]
id = "digit-seen"
field = "score"
above = 0.7
actions = ["led", "event"]

[[pipelines]]
id = "presence"
source = "pir"
[pipelines.sampling]
policy = "change"
hold_s = 2.0
decay_half_life_s = 2.0
[[pipelines.rules]]
id = "someone"
field = "value"
above = 1.0
actions = ["relay", "event"]

[[pipelines]]
id = "machine"
source = "machine"
detector = "anomaly"
cleaning = {{ valid_min = -40.0, valid_max = 250.0, spike_policy = "keep" }}
[pipelines.sampling]
policy = "score"                 # the detector's raw score drives the rate
field = "raw_score"
threshold = 0.3
hold_s = 2.0
decay_half_life_s = 2.0
[[pipelines.rules]]
id = "machine-anomaly"
field = "score"
above = 0.5
clear_at = 0.2
actions = ["event", "log"]

[[actions]]
type = "gpio"
id = "led"
device = "led"
pin = 18
mode = "pulse"
pulse_s = 0.5

[[actions]]
type = "gpio"
id = "relay"
device = "relay"
pin = 23

[[actions]]
type = "event"
id = "event"

[[actions]]
type = "log"
id = "log"
""")
    return config


def run_daemon_demo(folder: Path, *, duration_s: float = 15.0) -> dict[str, Any]:
    """Run the built-in config through the real daemon for ``duration_s``; returns the
    final status (also in ``<folder>/state/summary.json``). GPIO runs on mock pins and a
    simulated visitor trips the PIR halfway, so the relay action fires."""
    import asyncio

    from edge_runtime.config import load_config
    from edge_runtime.pipelines.daemon import Daemon
    from edge_runtime.sources.gpio import pin_factory

    daemon = Daemon(write_demo(folder), duration_s=duration_s)
    config = load_config(folder / "demo.toml")

    async def visitor() -> None:
        await asyncio.sleep(duration_s / 2)
        pins = pin_factory(config.node.gpio_pin_factory)
        pins.pin(17).drive_high()
        await asyncio.sleep(min(3.0, duration_s / 4))
        pins.pin(17).drive_low()

    async def main() -> None:
        walk = asyncio.create_task(visitor())
        await daemon.run()
        walk.cancel()

    asyncio.run(main())
    summary: dict[str, Any] = json.loads((folder / "state" / "summary.json").read_text())
    return summary
