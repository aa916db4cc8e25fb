"""The daemon offloads: two camera pipelines on one slow node share one model and a
static peer (``edge-runtime serve``, a real process); the runs the peer answers are
counted in the pipelines, the summaries sent upstream and the books, which outlive the
daemon and ``edge-runtime peers`` shows."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from edge_runtime.pipelines.build import Runtime, build_runtime
from edge_runtime.pipelines.daemon import Daemon
from tests.helpers.media import make_video

from .heavy import Slowed, write_heavy
from .serve_helpers import ROOT, serving


def test_two_pipelines_offload_to_a_static_peer_and_the_books_outlive_the_daemon(
        tmp_path: Path) -> None:
    manifest = write_heavy(tmp_path / "heavy", convs=2)
    peer_cfg = tmp_path / "peer.toml"
    peer_cfg.write_text(f"""
[node]
name = "garage"
state_dir = "peer-state"
[mesh]
listen = "127.0.0.1:0"
models = ["{manifest}"]
insecure_plaintext = true
""")
    for cam in ("a", "b"):
        make_video(tmp_path / f"{cam}.avi", 60, fps=30.0)
    with serving(peer_cfg) as (url, _proc):
        cfg = tmp_path / "node.toml"
        pipelines = "".join(f"""
[[sources]]
type = "camera"
id = "cam-{cam}"
path = "{cam}.avi"
loop = true
min_rate_hz = 30
max_rate_hz = 30
[[pipelines]]
id = "watch-{cam}"
source = "cam-{cam}"
model = "{manifest}"
offload = true
inflight = 2
[pipelines.sampling]
policy = "fixed"
""" for cam in ("a", "b"))
        cfg.write_text(f"""
[node]
name = "hall"
state_dir = "state"
[budget]
enabled = false
[upstream]
summary_interval_s = 1.0
{pipelines}
[mesh]
peers = ["{url}"]
insecure_plaintext = true
verify_fraction = 0.1
""")

        def slow_builder(config: Any) -> Runtime:
            runtime = build_runtime(config)
            for pipe in runtime.pipelines:
                assert pipe.model is not None
                pipe.model.replace_backend(Slowed(pipe.model.backend, 0.05))
            return runtime

        daemon = Daemon(cfg, duration_s=4.0, builder=slow_builder)
        assert asyncio.run(daemon.run()) == 0
    status = daemon.status()
    mesh = status["mesh"]
    heavy = mesh["models"]["heavy-test"]
    assert heavy["failed"] == 0 and heavy["offloaded"] > 0 and heavy["local"] > 0
    offloaded = sum(p["offloaded"] for p in status["pipelines"].values())
    inferences = sum(p["inferences"] for p in status["pipelines"].values())
    assert offloaded == heavy["offloaded"] and inferences == heavy["local"] + heavy["offloaded"]
    assert all(p["errors"] == 0 for p in status["pipelines"].values())
    books = json.loads((tmp_path / "state" / "mesh" / "ledger.json").read_text())["peers"][url]
    assert books["consumed_requests"] >= offloaded and books["consumed_compute_s"] > 0
    lines = [json.loads(x) for x in (tmp_path / "state" / "upstream.jsonl").read_text()
             .splitlines()]
    summaries = [x for x in lines if x["kind"] == "summary"]
    assert summaries and sum(s["offloaded"] for s in summaries) > 0
    assert all(s["local"] + s["offloaded"] == s["inferences"] for s in summaries)
    statuses = [x for x in lines if x["kind"] == "status" and x.get("peers")]
    assert statuses and statuses[-1]["peers"][url]["consumed_requests"] > 0
    # The books outlive the daemon: `peers` shows them from disk.
    out = subprocess.run([sys.executable, "-m", "edge_runtime", "peers", str(cfg)],
                         capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
                         env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert "no daemon answers" in out.stdout and f"{books['consumed_requests']} req" in out.stdout
    # Clearing a peer that is not quarantined is a usage error, exit 2, one line.
    bad = subprocess.run([sys.executable, "-m", "edge_runtime", "peers", str(cfg), "--clear",
                          "nobody"], capture_output=True, text=True, timeout=60, cwd=ROOT,
                         check=False)
    assert bad.returncode == 2 and "is not quarantined" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
