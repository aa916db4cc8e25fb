"""The built-in demo config validates and its media are real."""

from __future__ import annotations

from pathlib import Path

from edge_runtime.config import load_config
from edge_runtime.pipelines.demo_config import write_demo
from edge_runtime.sources.camera import OpenCVCamera


def test_demo_config_validates_and_clip_plays(tmp_path: Path) -> None:
    config = load_config(write_demo(tmp_path / "demo"))
    assert [p.id for p in config.pipelines] == ["digits", "presence", "machine"]
    cam = OpenCVCamera("c", path=tmp_path / "demo" / "demo.avi", realtime=False, lossless=True)
    with cam:
        sample = cam.read(timeout_s=2.0)
    assert sample is not None and sample.frame is not None
    assert sample.frame.shape == (64, 64, 3)
    still = load_config(write_demo(tmp_path / "still", still=True))
    assert still.source("machine").path.endswith("sensor.csv")  # type: ignore[union-attr]
