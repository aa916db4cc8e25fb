"""The reported messages: a versioned schema (msgspec), documented in docs/reporting.md.

Four kinds, told apart by ``kind``: :class:`Summary` (one per pipeline per window),
:class:`Event` (rule activations and clears, health alarms, source lost/back, security,
upstream losses; sent at once), :class:`Snapshot` (a JPEG of the frame that fired a rule,
kept on disk and referenced by its event) and :class:`Status` (the node's upstream state).

Every message carries the same header: ``v`` (schema version), ``id`` (unique, the
idempotency key), ``node``, ``seq`` (per-node sequence number, increasing in the order
messages were produced), ``ts_s`` (wall clock, Unix seconds) and ``mono_s`` (monotonic
seconds since boot ``boot``; comparable within one boot, immune to clock steps).

Compatibility rule: within one ``v``, fields are only ever *added* (with defaults);
consumers must ignore fields they do not know. A removed or retyped field bumps ``v``.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any, Literal

import msgspec

#: Version of the message schema (``v`` in every message).
SCHEMA_VERSION = 1

Kind = Literal["summary", "event", "snapshot", "status"]


class Message(msgspec.Struct, kw_only=True, tag_field="kind", omit_defaults=False):
    """Header shared by every message."""

    v: int = SCHEMA_VERSION
    #: Unique message id (32 hex digits); the idempotency key for consumers.
    id: str
    #: Node name (``node.name``).
    node: str
    #: Per-node sequence number, increasing in storage order (gaps: merged or lost).
    seq: int
    #: Wall-clock time the message was produced (Unix seconds).
    ts_s: float
    #: Monotonic time the message was produced (seconds since boot ``boot``).
    mono_s: float
    #: Boot id (``/proc/sys/kernel/random/boot_id``): ``mono_s`` compares within one boot.
    boot: str = ""
    #: The pipeline the message is about; None for node-wide messages.
    pipeline: str | None = None


class Summary(Message, tag="summary"):
    """Counters of one pipeline over one window (or several merged windows)."""

    #: Wall-clock start of the window (Unix seconds) and its length (s).
    window_start_s: float = 0.0
    window_s: float = 0.0
    #: How many original windows this summary covers (> 1 after the disk cap merged some).
    merged: int = 1
    samples: int = 0
    inferences: int = 0
    #: Inferences run on this node vs offloaded to a peer.
    local: int = 0
    offloaded: int = 0
    #: Classifier: label -> count; detector: class -> detections.
    labels: dict[str, int] = msgspec.field(default_factory=dict)
    detections: dict[str, int] = msgspec.field(default_factory=dict)
    #: Highest and mean top score of a classifier/detector result (None: no results).
    score_max: float | None = None
    score_mean: float | None = None
    #: Anomaly score over the window (None: no detector) and alarms that started.
    anomaly_score_max: float | None = None
    anomaly_score_mean: float | None = None
    anomaly_alarms: int = 0
    #: Forecast: shortest time to limit seen (s) and early warnings that started.
    time_to_limit_min_s: float | None = None
    early_warnings: int = 0
    #: Health score 0..100 at the end of the window (lowest when merged).
    health: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    dropped: int = 0
    gated: int = 0
    rate_changes: int = 0
    #: Sampling rate at the end of the window (Hz).
    rate_hz: float | None = None
    cleaning_corrections: int = 0
    #: Share of the window the source was connected (0..1), and disconnections.
    source_connected: float = 1.0
    source_disconnects: int = 0


EventType = Literal["rule", "health", "source", "security", "upstream"]


class Event(Message, tag="event"):
    """Something that happened, sent at once: a rule edge, an alarm, a source lost/back."""

    #: rule | health | source | security | upstream
    type: str = "rule"
    #: What it is about: the rule id, the source id, the peer, ``outbox_loss``...
    name: str = ""
    #: The edge: ``active``/``clear`` (rules, alarms), ``lost``/``back`` (sources), ...
    state: str = ""
    #: Free-form details (the result values that fired a rule, loss counters...).
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    #: File name of the snapshot in the snapshot folder (see :class:`Snapshot`), if any.
    snapshot: str | None = None


class Snapshot(Message, tag="snapshot"):
    """A JPEG kept in the snapshot folder; MQTT publishes its bytes retained per pipeline."""

    #: File name inside the snapshot folder.
    file: str = ""
    #: The event this frame belongs to (its ``id``), if any.
    event_id: str | None = None
    size_bytes: int = 0
    width: int = 0
    height: int = 0
    #: Boxes drawn, as ``[x0, y0, x1, y1, label, score]`` in pixels.
    boxes: list[list[Any]] = msgspec.field(default_factory=list)


class Status(Message, tag="status"):
    """The node's upstream state: ``online``/``offline``, and per sink backlog and errors."""

    state: str = "online"
    sinks: dict[str, Any] = msgspec.field(default_factory=dict)
    #: Messages the disk cap forced out, by kind (never silent).
    lost: dict[str, int] = msgspec.field(default_factory=dict)
    version: str = ""
    #: The mesh's books per peer (``consumed_*``: what the peer did for this node,
    #: ``served_*``: what this node did for it; totals since the books began).
    peers: dict[str, Any] = msgspec.field(default_factory=dict)


AnyMessage = Summary | Event | Snapshot | Status

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyMessage)


def encode(message: AnyMessage) -> bytes:
    """JSON bytes of a message (what every sink sends)."""
    return _encoder.encode(message)


def decode(data: bytes | str) -> AnyMessage:
    """A message from its JSON; unknown fields are ignored (forward compatible)."""
    return _decoder.decode(data)


def read_boot_id() -> str:
    """This boot's id (Linux), or an empty string (reads /proc: blocking)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


class MessageFactory:
    """Builds headers: unique id, node and both clocks. ``seq`` is left 0: the outbox's
    writer thread numbers messages as it stores them, so ``seq`` order is commit order
    (a sink reading "after the last seq it saw" can never skip a row). Thread-safe.
    """

    def __init__(self, node: str, *, boot: str = "") -> None:
        self.node = node
        #: The boot id; :func:`read_boot_id` (blocking: call it off the loop) gives it.
        self.boot = boot

    def header(self, pipeline: str | None = None) -> dict[str, Any]:
        """Keyword arguments for any :class:`Message` subclass."""
        return {"id": uuid.uuid4().hex, "node": self.node, "seq": 0,
                "ts_s": time.time(), "mono_s": time.monotonic(), "boot": self.boot,
                "pipeline": pipeline}

    def event(self, *, type: str, name: str, state: str, pipeline: str | None = None,
              data: dict[str, Any] | None = None, snapshot: str | None = None) -> Event:
        return Event(**self.header(pipeline), type=type, name=name, state=state,
                     data=data or {}, snapshot=snapshot)
