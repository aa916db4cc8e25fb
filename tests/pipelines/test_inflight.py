"""Several frames in the model at once (``inflight``): the pipeline's threads run the
model side by side, and the loop still decides every frame once, in frame order."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.config import load_config
from edge_runtime.errors import ConfigError
from edge_runtime.pipelines.build import Runtime, build_runtime
from edge_runtime.pipelines.daemon import Daemon
from tests.helpers.media import make_video


def _config(tmp_path: Path, *, inflight: int, extra: str = "") -> Path:
    make_video(tmp_path / "clip.avi", 90, fps=30.0)
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f"""
[node]
name = "lanes"
state_dir = "state"
[budget]
enabled = false
[[sources]]
type = "camera"
id = "cam"
path = "clip.avi"
loop = true
min_rate_hz = 60
max_rate_hz = 60
[[sources]]
type = "replay"
id = "sensor"
path = "sensor.csv"
[[pipelines]]
id = "digits"
source = "cam"
model = "digits-heavy-int8-onnx"
inflight = {inflight}
[pipelines.sampling]
policy = "fixed"
{extra}
""")
    (tmp_path / "sensor.csv").write_text("t,value\n0,1\n1,2\n")
    return cfg


def test_frames_run_side_by_side_and_are_decided_once_in_order(tmp_path: Path) -> None:
    cfg = _config(tmp_path, inflight=3)
    decided: list[float] = []
    in_model: list[int] = []
    peak = [0]
    lock = threading.Lock()

    def builder(config: Any) -> Runtime:
        runtime = build_runtime(config)
        pipe = runtime.pipelines[0]
        model = pipe.model
        assert model is not None
        run = model.run

        def counted_run(x: Any, **kw: Any) -> Any:
            with lock:
                in_model.append(1)
                peak[0] = max(peak[0], len(in_model))
            try:
                threading.Event().wait(0.1)  # slower than the camera: frames overlap
                return run(x, **kw)
            finally:
                with lock:
                    in_model.pop()

        model.run = counted_run  # type: ignore[method-assign]
        decide = pipe.decide

        def recorded(sample: Any, step: Any, now_s: float | None = None) -> Any:
            decided.append(sample.t_mono_s)
            return decide(sample, step, now_s)

        pipe.decide = recorded  # type: ignore[method-assign]
        return runtime

    daemon = Daemon(cfg, duration_s=2.0, builder=builder)
    assert asyncio.run(daemon.run()) == 0
    status = daemon.status()["pipelines"]["digits"]
    assert status["errors"] == 0 and status["inferences"] >= 20
    assert peak[0] >= 2  # frames really were in the model together
    assert decided == sorted(decided) and len(set(decided)) == len(decided)


def test_inflight_is_refused_where_frames_cannot_overlap(tmp_path: Path) -> None:
    """A camera read by two pipelines is paced by its shared reader: no lanes there."""
    cfg = _config(tmp_path, inflight=2, extra='[[pipelines]]\nid = "motion"\nsource = "cam"')
    with pytest.raises(ConfigError,
                       match=r"pipelines\[0\]\.inflight: 2 frames in the model at once need"):
        load_config(cfg)  # check refuses it, as run would
