"""A real Prometheus server (Debian's) scrapes the daemon's /metrics every second, and its
HTTP API then answers with the node's values."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

from tests.web.helpers import (
    free_port,
    get_json,
    start_daemon,
    stop_daemon,
    wait_json,
    write_config,
)


def _query(prom: str, expr: str) -> list[dict[str, object]]:
    url = f"{prom}/api/v1/query?query={urllib.parse.quote(expr)}"
    reply = get_json(url)
    return [] if reply is None or reply.get("status") != "success" else \
        reply["data"]["result"]


def test_prometheus_scrapes_metrics_and_answers_queries(tmp_path: Path) -> None:
    web_port, prom_port = free_port(), free_port()
    cfg = write_config(tmp_path, port=web_port)
    (tmp_path / "prometheus.yml").write_text(json.dumps({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [{"job_name": "edge", "static_configs": [
            {"targets": [f"127.0.0.1:{web_port}"]}]}]}))
    proc = start_daemon(cfg)
    prom = subprocess.Popen(
        ["/usr/bin/prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{prom_port}"
    try:
        wait_json(f"http://127.0.0.1:{web_port}/api/status",
                  lambda d: d["status"]["pipelines"]["boiler"]["inferences"] > 0, 30)
        deadline = time.monotonic() + 40
        found: list[dict[str, object]] = []
        while time.monotonic() < deadline and not found:
            found = _query(base, 'edge_runtime_inferences_total{pipeline="boiler"} > 0')
            time.sleep(0.5)
        assert found, "Prometheus never had edge_runtime_inferences_total"
        value = float(found[0]["value"][1])  # type: ignore[index]
        assert value > 0
        # The target is healthy and the other families are there with their labels.
        targets = get_json(f"{base}/api/v1/targets")
        assert targets is not None
        assert targets["data"]["activeTargets"][0]["health"] == "up"
        rate = _query(base, "edge_runtime_sampling_rate_hertz")
        assert rate and float(rate[0]["value"][1]) == 10.0  # type: ignore[index]
        assert _query(base, 'edge_runtime_health_score{pipeline="boiler"}')
        assert _query(base, "edge_runtime_anomaly_score")
        assert _query(base, 'edge_runtime_info{node="shelf-node"}')
        # Counters grow between scrapes.
        time.sleep(2.5)
        later = float(_query(base, 'edge_runtime_inferences_total{pipeline="boiler"}')
                      [0]["value"][1])  # type: ignore[index]
        assert later > value
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/metrics", timeout=2) as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=")
    finally:
        prom.terminate()
        try:
            prom.wait(timeout=10)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait(timeout=5)
        assert prom.stderr is not None
        prom.stderr.close()
        code, err = stop_daemon(proc)
    assert code == 0, err
