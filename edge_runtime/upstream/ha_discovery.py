"""Home Assistant MQTT discovery: each node is a device with sensors and binary sensors.

Configs go to ``<ha_prefix>/<component>/<node_id>/<object_id>/config`` (retained), on
every connect and whenever ``<ha_prefix>/status`` says ``online`` (Home Assistant
restarted). Every entity's availability is the node's status topic
(``value_json.state`` is ``online``/``offline``; the last will says offline).

Per pipeline (from its summary topic): samples and inferences per window, the top label,
the highest score, the highest anomaly score, health, the sampling rate. Per rule (from
its pipeline's event topic): a binary sensor, ON while the rule is active. The payload
keys are the ones documented in docs/reporting.md ("Home Assistant discovery").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from edge_runtime._version import __version__
from edge_runtime.upstream.topics import Topics


@dataclass(frozen=True)
class PipelineInfo:
    """What Home Assistant should show for one pipeline: its id and its rule ids."""

    id: str
    rules: Sequence[str] = field(default_factory=tuple)
    #: ``camera`` pipelines also get an MQTT camera entity on the snapshot topic.
    camera: bool = False


#: (key, name, value template, unit, state_class) of the per-pipeline sensors.
PIPELINE_SENSORS: tuple[tuple[str, str, str, str | None, str | None], ...] = (
    ("samples", "samples", "{{ value_json.samples }}", None, "measurement"),
    ("inferences", "inferences", "{{ value_json.inferences }}", None, "measurement"),
    ("label", "top label",
     "{{ (value_json.labels | dictsort(false, 'value') | last | default(['none']))[0] }}",
     None, None),
    ("score", "score max", "{{ value_json.score_max if value_json.score_max is not none "
     "else 'unknown' }}", None, "measurement"),
    ("anomaly", "anomaly score max", "{{ value_json.anomaly_score_max if "
     "value_json.anomaly_score_max is not none else 'unknown' }}", None, "measurement"),
    ("health", "health", "{{ value_json.health if value_json.health is not none "
     "else 'unknown' }}", None, "measurement"),
    ("rate", "sampling rate", "{{ (value_json.samples / value_json.window_s) | round(3) "
     "if value_json.window_s else 0 }}", "Hz", "measurement"),
)


def object_id(text: str) -> str:
    """``text`` made safe for a discovery topic level and a unique_id."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", text)


def discovery_configs(*, node: str, topics: Topics, pipelines: Sequence[PipelineInfo],
                      ha_prefix: str = "homeassistant") -> list[tuple[str, dict[str, Any]]]:
    """(config topic, payload) for every entity of this node."""
    node_id = object_id(f"edge_{node}")
    device = {"identifiers": [node_id], "name": node, "manufacturer": "edge-runtime",
              "model": "edge-runtime node", "sw_version": __version__}
    availability = {"availability_topic": topics.status,
                    "availability_template": "{{ value_json.state }}",
                    "payload_available": "online", "payload_not_available": "offline"}
    out: list[tuple[str, dict[str, Any]]] = []
    for pipe in pipelines:
        for key, label, template, unit, state_class in PIPELINE_SENSORS:
            oid = object_id(f"{pipe.id}_{key}")
            payload: dict[str, Any] = {
                "name": f"{pipe.id} {label}", "unique_id": f"{node_id}_{oid}",
                "object_id": f"{node_id}_{oid}", "state_topic": topics.summary(pipe.id),
                "value_template": template, "device": device, **availability}
            if unit:
                payload["unit_of_measurement"] = unit
            if state_class:
                payload["state_class"] = state_class
            out.append((f"{ha_prefix}/sensor/{node_id}/{oid}/config", payload))
        for rule in pipe.rules:
            oid = object_id(f"{pipe.id}_{rule}")
            # Events of the other rules of this pipeline render empty and are ignored.
            template = ("{% if value_json.type == 'rule' and value_json.name == '"
                        + rule.replace("'", "") + "' %}{{ 'ON' if value_json.state == "
                        "'active' else 'OFF' }}{% endif %}")
            out.append((f"{ha_prefix}/binary_sensor/{node_id}/{oid}/config", {
                "name": f"{pipe.id} {rule}", "unique_id": f"{node_id}_{oid}",
                "object_id": f"{node_id}_{oid}", "state_topic": topics.event(pipe.id),
                "value_template": template, "payload_on": "ON", "payload_off": "OFF",
                "device": device, **availability}))
        if pipe.camera:
            oid = object_id(f"{pipe.id}_snapshot")
            out.append((f"{ha_prefix}/camera/{node_id}/{oid}/config", {
                "name": f"{pipe.id} snapshot", "unique_id": f"{node_id}_{oid}",
                "object_id": f"{node_id}_{oid}", "topic": topics.snapshot(pipe.id),
                "device": device, **availability}))
    return out
