"""The cascade: a small local classifier answers the frames it is sure of, and only the
others reach the pipeline's heavy model (which may then be offloaded)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.config import load_config
from edge_runtime.errors import ConfigError
from edge_runtime.pipelines.build import Runtime, build_runtime
from edge_runtime.pipelines.daemon import Daemon
from tests.helpers.media import make_video


def _config(tmp_path: Path, cascade: str) -> Path:
    make_video(tmp_path / "clip.avi", 60, fps=30.0)
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f"""
[node]
name = "cascade"
state_dir = "state"
[budget]
enabled = false
[[sources]]
type = "camera"
id = "cam"
path = "clip.avi"
loop = true
min_rate_hz = 30
max_rate_hz = 30
[[pipelines]]
id = "digits"
source = "cam"
model = "digits-heavy-int8-onnx"
[pipelines.sampling]
policy = "fixed"
{cascade}
""")
    return cfg


@pytest.mark.parametrize("threshold", [0.0, 0.5, 1.0])
def test_only_frames_the_small_model_is_unsure_of_reach_the_heavy_one(
        tmp_path: Path, threshold: float) -> None:
    cfg = _config(tmp_path, f'[pipelines.cascade]\nmodel = "digits-int8-onnx"\n'
                            f"threshold = {threshold}")
    heavy_runs = [0]
    small_scores: list[float] = []

    def builder(config: Any) -> Runtime:
        runtime = build_runtime(config)
        pipe = runtime.pipelines[0]
        assert pipe.model is not None and pipe.cascade is not None
        heavy, small = pipe.model.run, pipe.cascade.small.run

        def counted(x: Any, **kw: Any) -> Any:
            heavy_runs[0] += 1
            return heavy(x, **kw)

        def scored(x: Any, **kw: Any) -> Any:
            out = small(x, **kw)
            small_scores.append(float(next(iter(out.values())).max()))
            return out

        pipe.model.run = counted  # type: ignore[method-assign]
        pipe.cascade.small.run = scored  # type: ignore[method-assign]
        return runtime

    daemon = Daemon(cfg, duration_s=1.5, builder=builder)
    assert asyncio.run(daemon.run()) == 0
    status = daemon.status()["pipelines"]["digits"]
    cascade = status["cascade"]
    assert status["errors"] == 0 and status["inferences"] > 5
    assert cascade["answered_small"] + cascade["escalated"] == status["inferences"]
    assert heavy_runs[0] == cascade["escalated"]  # the heavy model ran for those only
    # Each frame went where its small-model score says.
    assert cascade["escalated"] == sum(score < threshold for score in small_scores)
    if threshold == 0.0:
        assert cascade["escalated"] == 0 and status["last_result"]["cascade"] == "small"


def test_a_cascade_needs_a_classifier_and_a_camera(tmp_path: Path) -> None:
    cfg = _config(tmp_path, '[pipelines.cascade]\nmodel = "machine-temp-int8-onnx"')
    with pytest.raises(ConfigError, match=r"pipelines\[0\]\.cascade\.model: cascade model "
                                          r"machine-temp-int8-onnx is not a classifier"):
        build_runtime(load_config(cfg))
