"""Reading what a node reported: its events, from the file sink or from a recorder.

:class:`RecordingReporter` is a real
:class:`~edge_runtime.pipelines.actions.EventReporter` that keeps the events in a list,
for tests that drive pipelines without a daemon (and so without an upstream outbox).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_runtime.pipelines.build import Runtime


def read_reports(path: Path) -> list[dict[str, Any]]:
    """Every message of a node's upstream JSONL file (``<state>/upstream.jsonl``)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_events(state_dir: Path) -> list[dict[str, Any]]:
    """The event messages a daemon with the default file sink reported."""
    return [m for m in read_reports(state_dir / "upstream.jsonl") if m["kind"] == "event"]


class RecordingReporter:
    """Keeps each published event as a dict shaped like the event message."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.snapshots: list[tuple[str, Any, list[Sequence[Any]]]] = []

    def publish_event(self, *, type: str, name: str, state: str,
                      pipeline: str | None = None, data: dict[str, Any] | None = None,
                      snapshot: str | None = None) -> str:
        event_id = uuid.uuid4().hex
        self.events.append({"kind": "event", "id": event_id, "type": type, "name": name,
                            "state": state, "pipeline": pipeline, "data": data or {},
                            "snapshot": snapshot})
        return event_id

    def attach_snapshot(self, pipeline: str, frame: Any,
                        boxes: Sequence[Sequence[Any]] = ()) -> str | None:
        name = f"{pipeline}-{len(self.snapshots)}.jpg"
        self.snapshots.append((name, frame, list(boxes)))
        return name


def record_events(runtime: Runtime) -> RecordingReporter:
    """Bind every event action of ``runtime`` to a new recorder."""
    recorder = RecordingReporter()
    for action in runtime.event_actions:
        action.bind(recorder)
    return recorder
