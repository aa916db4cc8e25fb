"""Upstream reporting: summaries, events and snapshots through a durable outbox to sinks.

The room (one job per module; schema, topics and durability in docs/reporting.md):

- ``schema.py``: the versioned messages (summary, event, snapshot, status).
- ``summary.py``: :class:`SummaryWindow` (pure per-pipeline counters) and the merge the
  disk cap uses.
- ``outbox.py``: the SQLite outbox (WAL, ``synchronous=FULL``, group commit from one
  writer thread, per-sink delivery bits, disk cap, integrity check and recovery).
- ``sink.py``: the one :class:`Sink` interface (what to implement, on which thread);
  ``sink_file.py`` (JSONL, the default), ``sink_mqtt.py`` (paho, MQTT v5, QoS 1),
  ``sink_http.py`` (aiohttp webhook); ``ha_discovery.py`` (Home Assistant configs);
  ``delivery.py`` (one driver per sink: outbox -> sink, in order, retries).
- ``snapshots.py``: JPEGs within a byte cap. ``facade.py``: :class:`Upstream`.

Importing this package imports nothing heavy (no sqlite3, paho, aiohttp, cv2): the names
below load their module on first use.

How the daemon wires it (nothing else in the daemon needs to know about sinks):

1. **Build** (in ``Daemon.start``, on the loop, after the config is loaded)::

       from edge_runtime.upstream import PipelineInfo, SummaryWindow, Upstream
       up = Upstream(node=config.node.name, state_dir=config.state_dir,
                     config=config.upstream, base_dir=config.base_dir,
                     pipelines=[PipelineInfo(p.id, [r.id for r in p.rules],
                                             camera=<source is a camera>)
                                for p in config.pipelines])
       await up.start()          # opens/checks the outbox off the loop, starts the sinks

   Skip it when ``config.upstream.enabled`` is false. Keep one ``Upstream`` across SIGHUP
   reloads unless ``[upstream]`` itself changed (then ``close`` the old one first: the
   outbox file is reopened by the new one and nothing is lost).

2. **Events, at once** (on the loop, where rule transitions are handled today, i.e. the
   ``EventAction`` in ``pipelines/actions.py``, which replaces the EventLog's
   drop-on-full queue): ``up.publish_event(type="rule", name=rule_id, state="active" |
   "clear", pipeline=pipeline_id, data={field: value, ...}, snapshot=name)``. Health
   rules: ``type="health"``; a source lost/back (the camera/bridge reconnect path):
   ``type="source", name=source_id, state="lost" | "back"``; the mesh: ``type="security",
   name=peer, state="quarantined"``. For a camera rule, first
   ``name = up.attach_snapshot(pipeline_id, frame, boxes)`` (frame: the BGR ndarray that
   fired it; boxes: ``(x0, y0, x1, y1, label, score)``), then pass ``snapshot=name``.

3. **Summaries** (on the loop): one :class:`SummaryWindow` per pipeline, created with
   ``window_s=config.upstream.summary_interval_s``. Feed it where the pipeline already
   counts: ``add_sample()`` per sample read, ``add_inference(latency_ms, offloaded=...)``
   per model/detector run, ``add_result(result)`` with the result dict, ``add_gated()`` /
   ``add_dropped()``, ``add_rate_change(rate_hz)``, ``add_cleaning_corrections(n)``,
   ``add_alarm()`` / ``add_early_warning()`` when those rules go active, ``set_health``,
   ``set_source_connected(bool, time.monotonic())``. A once-per-second daemon task
   calls ``if w.due(time.monotonic()): up.publish_summary(w)`` for each window, and every
   ``summary_interval_s`` ``up.publish_status()``.

4. **Status**: ``Daemon.status()`` adds ``"upstream": up.status()`` (each sink's state,
   backlog, last error; outbox loss and bytes written per day); it never blocks.

5. **Stop** (``Daemon._finish``, on the loop, after the pipelines stopped so their last
   events are in): ``await up.close(timeout_s=config.node.shutdown_timeout_s)``.

All ``publish_*`` calls are cheap (a struct on a queue) and never block; SQLite runs on
the outbox's writer thread, files and JPEG encoding on the ``upstream-io`` threads, paho
on its network thread; none of them calls back into pipelines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_runtime.upstream.facade import Upstream
    from edge_runtime.upstream.ha_discovery import PipelineInfo
    from edge_runtime.upstream.outbox import Outbox, Row
    from edge_runtime.upstream.schema import Event, Snapshot, Status, Summary
    from edge_runtime.upstream.sink import Sink, SinkLink
    from edge_runtime.upstream.summary import SummaryWindow

__all__ = ["Event", "Outbox", "PipelineInfo", "Row", "Sink", "SinkLink", "Snapshot",
           "Status", "Summary", "SummaryWindow", "Upstream"]

_LAZY = {
    "Upstream": "facade", "PipelineInfo": "ha_discovery", "Outbox": "outbox",
    "Row": "outbox", "Event": "schema", "Snapshot": "schema", "Status": "schema",
    "Summary": "schema", "Sink": "sink", "SinkLink": "sink", "SummaryWindow": "summary",
}


def __getattr__(name: str) -> Any:
    # PEP 562: 'import edge_runtime.upstream' stays free of sqlite3, paho and aiohttp.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edge_runtime.upstream' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"edge_runtime.upstream.{module}"), name)
