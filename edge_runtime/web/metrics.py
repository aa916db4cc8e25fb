"""Prometheus metrics read from the daemon's status dict at scrape time.

:class:`StatusCollector` turns one status reply into metric families; the server keeps
its own :class:`prometheus_client.CollectorRegistry` (never the global one), so building
a server twice in a process (tests, reloads) registers nothing twice and importing this
module has no side effects. Names follow Prometheus conventions: base units in the name
(``_seconds``, ``_hertz``, ``_celsius``, ``_bytes``, ``_ratio``), ``_total`` for counters,
one ``pipeline`` label per pipeline. Metrics whose value is unknown on this machine (no
thermal zone) are left out rather than reported as 0.

Latency is a *summary* (quantiles 0.5 and 0.99 over the pipeline's recent window, and
the inference count), not a histogram: pipelines keep a window of recent latencies, not
cumulative buckets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

PREFIX = "edge_runtime_"


def _num(value: Any) -> float | None:
    """A finite-ish number from a status field, or None (bools count as 0/1)."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return None


def anomaly_score(pipe: dict[str, Any]) -> float | None:
    """The streaming detector's score in a pipeline's last result (None: no detector).

    A detector pipeline has no model and reports ``score`` (plus ``raw_score`` for the
    built-in detector)."""
    last = pipe.get("last_result") or {}
    if pipe.get("model") is None and "score" in last:
        return _num(last.get("score"))
    return None


class StatusCollector(Collector):
    """Metric families of the status that ``status_provider()`` returns when scraped."""

    def __init__(self, status_provider: Callable[[], dict[str, Any]]) -> None:
        self._status = status_provider

    def collect(self) -> Iterator[Metric]:
        status = self._status()
        yield from _node_metrics(status)
        yield from _pipeline_metrics(status.get("pipelines") or {})
        yield from _upstream_metrics(status.get("upstream") or {})
        mesh = status.get("mesh") or {}
        yield from _peer_metrics(mesh.get("peers") or {})
        yield from _offload_metrics(mesh.get("models") or {})


def _gauge(name: str, doc: str, value: float | None, unit: str = "") -> Iterator[Metric]:
    if value is not None:
        yield GaugeMetricFamily(PREFIX + name, doc, value=value, unit=unit)


def _node_metrics(status: dict[str, Any]) -> Iterator[Metric]:
    info = GaugeMetricFamily(PREFIX + "info", "Always 1; the node's name and config "
                             "generation as labels.", labels=["node"])
    info.add_metric([str(status.get("node", ""))], 1.0)
    yield info
    yield from _gauge("uptime_seconds", "Seconds since the daemon started.",
                      _num(status.get("uptime_s")))
    yield from _gauge("config_generation", "Config generation (1 + reloads that built).",
                      _num(status.get("generation")))
    yield CounterMetricFamily(PREFIX + "config_reload_errors", "Config reloads refused or "
                              "failed.", value=_num(status.get("reload_errors")) or 0.0)
    h = status.get("health") or {}
    cpu = _num(h.get("cpu_percent"))
    mem = _num(h.get("memory_percent"))
    disk = _num(h.get("disk_percent"))
    rss = _num(h.get("rss_mb"))
    yield from _gauge("cpu_usage_ratio", "CPU use of the whole machine (0..1).",
                      None if cpu is None else cpu / 100.0)
    yield from _gauge("load1", "One-minute load average.", _num(h.get("load_1m")))
    yield from _gauge("memory_usage_ratio", "Share of memory in use (0..1).",
                      None if mem is None else mem / 100.0)
    yield from _gauge("disk_usage_ratio", "Share of the state disk in use (0..1).",
                      None if disk is None else disk / 100.0)
    yield from _gauge("resident_memory_bytes", "Resident memory of the daemon.",
                      None if rss is None else rss * 1e6)
    yield from _gauge("cpu_temperature_celsius", "Hottest thermal zone.",
                      _num(h.get("temperature_c")))
    yield from _gauge("throttled", "1 while the firmware throttles the CPU (Raspberry Pi).",
                      _num(h.get("throttled")))
    yield from _gauge("under_voltage", "1 while the supply is under voltage (Raspberry Pi).",
                      _num(h.get("under_voltage")))
    rules = GaugeMetricFamily(PREFIX + "health_rule_active", "1 while a health rule is "
                              "active.", labels=["rule"])
    for rule_id, state in (status.get("health_rules") or {}).items():
        rules.add_metric([rule_id], 1.0 if state.get("active") else 0.0)
    yield rules


def _pipeline_metrics(pipes: dict[str, Any]) -> Iterator[Metric]:
    labels = ["pipeline"]
    fam: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
        "inferences": CounterMetricFamily(PREFIX + "inferences", "Inferences run.", labels=labels),
        "samples": CounterMetricFamily(PREFIX + "samples", "Samples taken.", labels=labels),
        "gated": CounterMetricFamily(PREFIX + "gated_samples", "Samples the sampling gate "
                                     "let through without inference.", labels=labels),
        "errors": CounterMetricFamily(PREFIX + "pipeline_errors", "Read and inference errors.",
                                      labels=labels),
        "dropped": CounterMetricFamily(PREFIX + "dropped_frames", "Samples or frames the "
                                       "source produced that the pipeline never saw.",
                                       labels=labels),
        "reconnects": CounterMetricFamily(PREFIX + "source_reconnects", "Source reconnects.",
                                          labels=labels),
        "rate": GaugeMetricFamily(PREFIX + "sampling_rate_hertz", "Current sampling rate.",
                                  labels=labels),
        "rate_min": GaugeMetricFamily(PREFIX + "sampling_rate_min_hertz", "Lowest rate the "
                                      "controller may choose.", labels=labels),
        "rate_max": GaugeMetricFamily(PREFIX + "sampling_rate_max_hertz", "Highest rate the "
                                      "controller may choose.", labels=labels),
        "up": GaugeMetricFamily(PREFIX + "source_up", "1 while the source delivers samples.",
                                labels=["pipeline", "source"]),
        "age": GaugeMetricFamily(PREFIX + "last_sample_age_seconds", "Seconds since the "
                                 "pipeline's last sample.", labels=labels),
        "anomaly": GaugeMetricFamily(PREFIX + "anomaly_score", "The streaming detector's "
                                     "latest score.", labels=labels),
        "health": GaugeMetricFamily(PREFIX + "health_score", "Device health score (0..100) of "
                                    "the pipeline's channel.", labels=labels),
        "detections": GaugeMetricFamily(PREFIX + "detections", "Detections in the latest "
                                        "result.", labels=labels),
        "rules": GaugeMetricFamily(PREFIX + "rule_active", "1 while a rule is active.",
                                   labels=["pipeline", "rule"]),
    }
    latency = SummaryMetricFamily(PREFIX + "inference_latency_seconds", "Sample-to-result "
                                  "latency over the recent window (quantiles) and the "
                                  "inference count.", labels=labels)
    for name, p in pipes.items():
        src = p.get("source_stats") or {}
        sampling = p.get("sampling") or {}
        last = p.get("last_result") or {}
        for key, value in (("inferences", p.get("inferences")), ("samples", p.get("samples")),
                           ("gated", p.get("gated")), ("errors", p.get("errors")),
                           ("dropped", src.get("dropped")),
                           ("reconnects", src.get("reconnects")),
                           ("rate", sampling.get("rate_hz")),
                           ("rate_min", sampling.get("min_rate_hz")),
                           ("rate_max", sampling.get("max_rate_hz")),
                           ("age", p.get("last_sample_age_s")),
                           ("anomaly", anomaly_score(p)), ("health", p.get("health")),
                           ("detections", last.get("count"))):
            number = _num(value)
            if number is not None:
                fam[key].add_metric([name], number)
        if "source_state" in p:
            fam["up"].add_metric([name, str(p.get("source"))],
                                 1.0 if p["source_state"] == "up" else 0.0)
        for rule_id, state in (p.get("rules") or {}).items():
            fam["rules"].add_metric([name, rule_id], 1.0 if state.get("active") else 0.0)
        lat = p.get("latency_ms") or {}
        count = _num(p.get("inferences")) or 0.0
        # No sum is kept; Prometheus accepts a summary's quantiles and count alone.
        latency.add_sample(latency.name + "_count", {"pipeline": name}, count)
        for q, key in (("0.5", "p50"), ("0.99", "p99")):
            v = _num(lat.get(key))
            if v is not None:
                latency.add_sample(latency.name, {"pipeline": name, "quantile": q}, v / 1000.0)
    yield from fam.values()
    yield latency


def _upstream_metrics(up: dict[str, Any]) -> Iterator[Metric]:
    if not up:
        return
    box = up.get("outbox") or {}
    yield from _gauge("outbox_messages", "Messages waiting in the durable outbox.",
                      _num(box.get("rows")))
    yield from _gauge("outbox_bytes", "Bytes stored in the outbox.",
                      _num(box.get("stored_bytes")))
    lost = CounterMetricFamily(PREFIX + "outbox_lost_messages", "Messages the outbox's "
                               "disk cap dropped, by kind.", labels=["kind"])
    for kind, n in (up.get("lost") or {}).items():
        if (v := _num(n)) is not None:
            lost.add_metric([kind], v)
    yield lost
    labels = ["sink"]
    backlog = GaugeMetricFamily(PREFIX + "sink_backlog_messages", "Messages a sink has yet "
                                "to deliver.", labels=labels)
    delivered = CounterMetricFamily(PREFIX + "sink_deliveries", "Messages a sink delivered.",
                                    labels=labels)
    connected = GaugeMetricFamily(PREFIX + "sink_connected", "1 while a sink is connected.",
                                  labels=labels)
    for name, sink in (up.get("sinks") or {}).items():
        for fam, value in ((backlog, sink.get("backlog")), (delivered, sink.get("delivered"))):
            if (v := _num(value)) is not None:
                fam.add_metric([name], v)
        connected.add_metric([name], 1.0 if sink.get("state") == "connected" else 0.0)
    yield from (backlog, delivered, connected)


def _peer_metrics(peers: dict[str, Any]) -> Iterator[Metric]:
    """Peer round-trip times (the status's ``mesh.peers``, ``rtt_ms`` each)."""
    if not peers:
        return
    rtt = GaugeMetricFamily(PREFIX + "peer_rtt_seconds", "Round-trip time to a peer.",
                            labels=["peer"])
    for name, peer in peers.items():
        if (v := _num(peer.get("rtt_ms") if isinstance(peer, dict) else None)) is not None:
            rtt.add_metric([name], v / 1000.0)
    yield rtt


def _offload_metrics(models: dict[str, Any]) -> Iterator[Metric]:
    """Where the runs of offloaded models went, once the mesh routes them."""
    if not models:
        return
    runs = CounterMetricFamily(PREFIX + "offload_runs", "Runs of an offloaded model, by "
                               "where they were answered.", labels=["model", "where"])
    disagreements = CounterMetricFamily(PREFIX + "offload_disagreements", "Spot checks "
                                        "where a peer's answer disagreed.", labels=["model"])
    for name, m in models.items():
        for where in ("local", "offloaded", "failed"):
            if (v := _num(m.get(where))) is not None:
                runs.add_metric([name, where], v)
        if (v := _num(m.get("disagreements"))) is not None:
            disagreements.add_metric([name], v)
    yield runs
    yield disagreements


def make_registry(status_provider: Callable[[], dict[str, Any]]) -> CollectorRegistry:
    """A private registry holding one :class:`StatusCollector` (nothing global)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(status_provider))
    return registry


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The text exposition of ``registry`` and its content type."""
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(registry), CONTENT_TYPE_LATEST
