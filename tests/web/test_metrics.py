"""The Prometheus collector over a status dict: conventional names, nothing global, and
every metric the Grafana dashboard queries exists."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from edge_runtime.web.metrics import make_registry, render

REPO = Path(__file__).resolve().parents[2]


def _status() -> dict[str, Any]:
    pipe = {"source": "sensor", "source_state": "up", "stale": False, "model": None,
            "last_sample_age_s": 0.1, "samples": 10, "inferences": 9, "gated": 1,
            "errors": 0, "latency_ms": {"p50": 2.0, "p99": 5.0, "max": 6.0},
            "inferences_per_s": 2.0, "sampling": {"rate_hz": 2.0, "min_rate_hz": 1.0,
                                                   "max_rate_hz": 10.0},
            "source_stats": {"dropped": 3, "reconnects": 1}, "health": 97.5,
            "rules": {"hot": {"active": True}}, "last_result": {"score": 0.4, "count": 2}}
    return {"node": "n1", "uptime_s": 12.0, "generation": 1, "reload_errors": 0,
            "health": {"cpu_percent": 50.0, "memory_percent": 20.0, "temperature_c": 51.5,
                       "throttled": False, "under_voltage": False, "rss_mb": 100.0},
            "health_rules": {}, "pipelines": {"boiler": pipe},
            "upstream": {"outbox": {"rows": 4, "stored_bytes": 900}, "lost": {"event": 0},
                         "sinks": {"mqtt": {"state": "connected", "backlog": 4,
                                            "delivered": 7}}},
            "mesh": {"peers": {"pi-2": {"rtt_ms": 12.0}}}}


def test_metrics_are_read_at_scrape_time_from_a_private_registry() -> None:
    status = _status()
    registry = make_registry(lambda: status)
    body, content_type = render(registry)
    assert content_type.startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(body.decode())
               for s in fam.samples}
    p = (("pipeline", "boiler"),)
    assert samples[("edge_runtime_inferences_total", p)] == 9
    assert samples[("edge_runtime_dropped_frames_total", p)] == 3
    assert samples[("edge_runtime_sampling_rate_hertz", p)] == 2.0
    assert samples[("edge_runtime_anomaly_score", p)] == 0.4
    assert samples[("edge_runtime_health_score", p)] == 97.5
    assert samples[("edge_runtime_cpu_temperature_celsius", ())] == 51.5
    assert samples[("edge_runtime_inference_latency_seconds",
                    (("pipeline", "boiler"), ("quantile", "0.99")))] == 0.005
    assert samples[("edge_runtime_sink_backlog_messages", (("sink", "mqtt"),))] == 4
    assert samples[("edge_runtime_sink_deliveries_total", (("sink", "mqtt"),))] == 7
    assert samples[("edge_runtime_peer_rtt_seconds", (("peer", "pi-2"),))] == 0.012
    # Scrape time: a changed status shows at the next scrape.
    status["pipelines"]["boiler"]["inferences"] = 11
    again = render(registry)[0].decode()
    assert 'edge_runtime_inferences_total{pipeline="boiler"} 11.0' in again
    # Nothing of ours in the global registry.
    assert "edge_runtime_inferences_total" not in REGISTRY._names_to_collectors
    # Unknown values are left out, not reported as 0.
    status["health"]["temperature_c"] = None
    assert "cpu_temperature_celsius" not in render(registry)[0].decode()


def test_every_metric_the_grafana_dashboard_queries_is_exposed() -> None:
    dash = json.loads((REPO / "deploy/grafana/edge-runtime.json").read_text())
    exprs = [t["expr"] for panel in dash["panels"] for t in panel["targets"]]
    wanted = {m for e in exprs for m in re.findall(r"edge_runtime_[a-z_]+", e)}
    body = render(make_registry(_status))[0].decode()
    exposed = {s.name for fam in text_string_to_metric_families(body) for s in fam.samples}
    assert wanted, "the dashboard queries no edge_runtime metric"
    assert not wanted - exposed, wanted - exposed
