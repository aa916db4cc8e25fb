"""The Home Assistant discovery payload schema documented in docs/reporting.md, as a
strict msgspec struct (unknown keys refused), and the checks tests apply to payloads."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from edge_runtime.upstream.ha_discovery import PipelineInfo


class Device(msgspec.Struct, forbid_unknown_fields=True):
    identifiers: list[str]
    name: str
    manufacturer: str
    model: str
    sw_version: str


class Entity(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    unique_id: str
    object_id: str
    device: Device
    availability_topic: str
    availability_template: str
    payload_available: str
    payload_not_available: str
    state_topic: str | None = None
    topic: str | None = None  # camera
    value_template: str | None = None
    unit_of_measurement: str | None = None
    state_class: str | None = None
    payload_on: str | None = None
    payload_off: str | None = None


TOPIC = re.compile(r"^homeassistant/(sensor|binary_sensor|camera)/([A-Za-z0-9_-]+)/"
                   r"([A-Za-z0-9_-]+)/config$")


def check_discovery(configs: dict[str, Any], *, node: str,
                    pipelines: list[PipelineInfo]) -> None:
    unique: set[str] = set()
    kinds: dict[str, int] = {}
    for topic, payload in configs.items():
        m = TOPIC.match(topic)
        assert m, topic
        entity = msgspec.convert(payload, Entity)
        kinds[m[1]] = kinds.get(m[1], 0) + 1
        assert entity.unique_id not in unique
        unique.add(entity.unique_id)
        assert entity.availability_topic == f"edge/{node}/status"
        assert entity.device.identifiers == [f"edge_{node}"]
        if m[1] == "camera":
            assert entity.topic is not None and entity.topic.startswith(f"edge/{node}/snapshot/")
        else:
            assert entity.state_topic is not None and entity.value_template
            assert entity.state_topic.startswith(f"edge/{node}/")
        if m[1] == "binary_sensor":
            assert entity.payload_on == "ON" and entity.payload_off == "OFF"
    rules = sum(len(p.rules) for p in pipelines)
    assert kinds.get("binary_sensor") == rules
    assert kinds.get("camera") == sum(p.camera for p in pipelines)
    assert kinds.get("sensor") == 7 * len(pipelines)
