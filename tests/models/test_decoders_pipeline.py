"""A camera pipeline whose rule fires on decoded detections: a generated video (black,
then a bright square) into the daemon, through a model in BlazeFace's layout whose face
appears only when the frame has something bright on it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tests.helpers.events import read_events, read_reports
from tests.helpers.media import frame_with_square, wait_for
from tests.models.test_decoders import _face_model

REPO = Path(__file__).resolve().parents[2]


def _video(path: Path, black: int, bright: int, size: tuple[int, int] = (64, 48)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, size)
    assert writer.isOpened()
    for i in range(black + bright):
        frame = np.zeros((size[1], size[0], 3), np.uint8) if i < black else \
            frame_with_square(i, size=size)
        writer.write(frame)
    writer.release()
    return path


def _events(state: Path) -> list[dict[str, Any]]:
    """The events the daemon reported to its file sink (``state/upstream.jsonl``)."""
    return read_events(state)


def test_a_decoded_face_fires_a_rule_in_a_camera_pipeline(tmp_path: Path) -> None:
    manifest = _face_model(tmp_path, [(200, (0.25, 0.25, 0.75, 0.75))])
    _video(tmp_path / "clip.avi", black=20, bright=20)
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f"""
[node]
name = "faces"
state_dir = "state"

[budget]
enabled = false

[[sources]]
type = "camera"
id = "cam"
path = "clip.avi"
loop = true
min_rate_hz = 10
max_rate_hz = 30

[[pipelines]]
id = "door"
source = "cam"
model = "{manifest}"
[pipelines.sampling]
policy = "fixed"
[[pipelines.rules]]
id = "face"
field = "count_face"
above = 1.0
actions = ["event"]
snapshot = true

[[actions]]
type = "event"
id = "event"
""")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "edge_runtime", "run", str(cfg)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    state = tmp_path / "state"
    try:
        # The face appears with the bright frames and goes with the black ones, in a loop.
        assert wait_for(lambda: [e["state"] for e in _events(state)][:2] == ["active", "clear"]
                        or proc.poll() is not None, 40.0, 0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err.decode()
    events = _events(state)
    on = events[0]
    assert on["name"] == "face" and on["state"] == "active" and on["data"]["value"] == 1
    assert on["data"]["result"]["count"] == 1 and on["data"]["result"]["max_score"] > 0.99
    assert events[1]["state"] == "clear" and events[1]["data"]["result"]["count_face"] == 0
    # The activation carries a JPEG of the frame that fired it, with the face's box.
    assert on["snapshot"] and events[1]["snapshot"] is None
    jpeg = (state / "snapshots" / on["snapshot"]).read_bytes()
    assert jpeg[:2] == b"\xff\xd8" and len(jpeg) > 500
    snaps = [m for m in read_reports(state / "upstream.jsonl") if m["kind"] == "snapshot"]
    first = next(m for m in snaps if m["file"] == on["snapshot"])
    assert first["event_id"] == on["id"] and first["pipeline"] == "door"
    assert first["boxes"] and first["boxes"][0][4] == "face" and first["width"] > 0
