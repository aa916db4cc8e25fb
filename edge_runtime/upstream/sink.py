"""The one sink interface: where stored messages go (a file, an MQTT broker, a webhook).

A sink only moves rows; it never decides what is stored or when a row is gone. The
:class:`~.delivery.Delivery` driver (one per sink, on the loop) reads committed rows from
the outbox in ``seq`` order, hands them to :meth:`Sink.send` while :meth:`Sink.ready`,
and turns what the sink reports through its :class:`SinkLink` into outbox
acknowledgements, rewinds and retry delays. Implementations live beside this module
(``sink_file.py``, ``sink_mqtt.py``, ``sink_http.py``); the facade builds them from the
config, and a test or an integration may pass its own.

What an implementer **must** provide, and where each runs:

``name`` (attribute)
    Unique among the sinks; the outbox keeps one delivery bit per name, so renaming a
    sink drops its backlog.
``max_batch``, ``max_in_flight`` (attributes)
    Rows per :meth:`send` call, and rows sent but not yet confirmed at any time.
``async start(link)`` -- **loop**
    Keep ``link``; begin connecting in the background and return promptly. Never raise
    for network trouble: report it with ``link.disconnected(error)`` and retry on your
    own schedule (use :class:`~.backoff.Backoff`). Call ``link.connected()`` when
    :meth:`ready` becomes true.
``ready() -> bool`` -- **loop**, must not block
    True while :meth:`send` may be called (connected). The driver never sends while it
    is false, so nothing is queued in a client library's memory while disconnected.
``async send(rows)`` -- **loop**, must not block the loop (use an executor for files)
    Hand the rows over, in order. Report each row's fate exactly once, now or later:
    ``link.confirmed(rows)`` only when the far end has durably taken them (MQTT PUBACK
    with a success reason code, HTTP 2xx, a flushed and fsynced file);
    ``link.refused(rows, error)`` when the far end said no (the rows stay stored and are
    retried after a backoff). Rows of a connection that is lost need no report:
    ``link.disconnected`` forgets everything in flight and the driver resends it.
``async close(timeout_s)`` -- **loop**
    Stop within ``timeout_s``: no thread, task or socket of the sink may outlive it.

What it **may** override:

``status() -> dict`` -- **loop**, must not block
    Extra fields for ``edge-runtime status`` (broker URL, client id...).

:class:`SinkLink` methods are thread-safe: call them from the loop or from a client
library's network thread (paho's callbacks); they hop to the loop themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from edge_runtime.upstream.outbox import Row


class SinkLink(Protocol):
    """What a sink reports to its driver (thread-safe; see the module docstring)."""

    def connected(self) -> None: ...
    def disconnected(self, error: str | None) -> None: ...
    def confirmed(self, rows: Sequence[Row]) -> None: ...
    def refused(self, rows: Sequence[Row], error: str) -> None: ...


@runtime_checkable
class Sink(Protocol):
    """A destination for stored messages; see the module docstring for the contract."""

    name: str
    max_batch: int
    max_in_flight: int

    async def start(self, link: SinkLink) -> None: ...

    def ready(self) -> bool: ...

    async def send(self, rows: Sequence[Row]) -> None: ...

    async def close(self, timeout_s: float) -> None: ...

    def status(self) -> dict[str, Any]: ...
