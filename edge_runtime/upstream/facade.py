"""The :class:`Upstream` facade: the one object the daemon owns for upstream reporting.

It owns the outbox, the snapshot folder, the sinks and one delivery driver per sink.
Publishing is cheap and never blocks the loop (a struct is built and put on the outbox
writer's queue); everything that touches the disk runs on the facade's own two-thread
executor (``upstream-io``) or the outbox writer thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_runtime.errors import OutboxClosedError, SinkError, SnapshotError
from edge_runtime.upstream.delivery import Delivery
from edge_runtime.upstream.ha_discovery import PipelineInfo
from edge_runtime.upstream.outbox import Outbox
from edge_runtime.upstream.schema import (
    MessageFactory,
    Snapshot,
    Status,
    Summary,
    read_boot_id,
)
from edge_runtime.upstream.sink import Sink
from edge_runtime.upstream.snapshots import Box, SnapshotStore
from edge_runtime.upstream.summary import SummaryWindow

if TYPE_CHECKING:
    from edge_runtime.config import UpstreamConfig

log = logging.getLogger(__name__)

#: Snapshots being encoded at once; more are dropped (counted) rather than queued.
MAX_SNAPSHOT_JOBS = 4


def _under(base: Path, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


class Upstream:
    """Outbox + sinks for one node. Use from one asyncio loop::

        up = Upstream(node="kitchen-pi", state_dir=Path("state"), config=cfg.upstream)
        await up.start()
        up.publish_event(type="rule", name="too-hot", state="active", pipeline="machine")
        ...
        await up.close(timeout_s=2.0)

    ``sinks`` replaces the sinks the config describes (tests, integrations);
    ``pipelines`` tells Home Assistant discovery which sensors and rules exist;
    ``base_dir`` resolves relative file paths of the config (certificates, password file).
    """

    def __init__(self, *, node: str, state_dir: Path, config: UpstreamConfig | None = None,
                 sinks: Sequence[Sink] | None = None,
                 pipelines: Sequence[PipelineInfo] = (), base_dir: Path | None = None
                 ) -> None:
        if config is None:
            from edge_runtime.config import UpstreamConfig

            config = UpstreamConfig()
        self.config = config
        self.node = node
        self.state_dir = Path(state_dir)
        self.base_dir = Path(base_dir) if base_dir is not None else self.state_dir
        self.pipelines = list(pipelines)
        self.factory = MessageFactory(node)
        self._given_sinks = list(sinks) if sinks is not None else None
        self.sinks: list[Sink] = []
        self.drivers: list[Delivery] = []
        self.outbox: Outbox | None = None
        self.snapshots = SnapshotStore(_under(self.state_dir, config.snapshots.path),
                                       max_bytes=config.snapshots.max_bytes,
                                       jpeg_quality=config.snapshots.jpeg_quality)
        self._io: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._snapshot_jobs: set[asyncio.Future[Any]] = set()
        #: Snapshot file name -> the id of the event that references it (set by
        #: :meth:`publish_event`, read when the JPEG is written).
        self._snapshot_events: dict[str, str] = {}
        self.snapshots_dropped = 0
        self.snapshot_errors = 0
        self._started = False
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open (and check) the outbox, start every sink and its delivery driver."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._io = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="upstream-io")
        self.factory.boot = await loop.run_in_executor(self._io, read_boot_id)
        self.sinks = self._given_sinks if self._given_sinks is not None else \
            await loop.run_in_executor(self._io, self._build_sinks)
        outbox = Outbox(_under(self.state_dir, self.config.outbox.path),
                        sinks=[s.name for s in self.sinks], factory=self.factory,
                        max_bytes=self.config.outbox.max_bytes,
                        commit_interval_s=self.config.outbox.commit_interval_s,
                        loss_report_interval_s=self.config.outbox.loss_report_interval_s,
                        on_commit=self._committed_on_writer)
        await loop.run_in_executor(self._io, outbox.open)
        self.outbox = outbox
        await loop.run_in_executor(self._io, self.snapshots.scan)
        for sink in self.sinks:
            retry = self.config.http if getattr(sink, "name", "") == "http" else None
            driver = Delivery(sink, outbox, loop=loop, executor=self._io,
                              retry_min_s=retry.retry_min_s if retry else 1.0,
                              retry_max_s=retry.retry_max_s if retry else 60.0)
            driver.start()
            self.drivers.append(driver)
            await sink.start(driver)
        self._started = True

    def _build_sinks(self) -> list[Sink]:
        """The sinks ``[upstream]`` describes (runs on the io thread: reads a password
        file)."""
        cfg = self.config
        sinks: list[Sink] = []
        if cfg.file.enabled:
            from edge_runtime.upstream.sink_file import FileSink

            assert self._io is not None
            sinks.append(FileSink(_under(self.state_dir, cfg.file.path), executor=self._io,
                                  max_bytes=cfg.file.max_bytes, keep=cfg.file.keep,
                                  fsync=cfg.file.fsync))
        if cfg.mqtt is not None:
            from edge_runtime.upstream.sink_mqtt import MqttSink
            from edge_runtime.upstream.topics import parse_broker_url

            m = cfg.mqtt
            tls, host, port = parse_broker_url(m.url)
            password = m.password
            if m.password_file:
                secret = _under(self.base_dir, m.password_file)
                try:
                    password = (secret.read_text().splitlines() or [""])[0]
                except (OSError, UnicodeDecodeError) as exc:
                    raise SinkError(f"upstream.mqtt.password_file: cannot read {secret} "
                                    f"({exc})", hint="make it a text file this user may "
                                    "read, the password on its first line") from exc

            def path(p: str | None) -> str | None:
                return str(_under(self.base_dir, p)) if p else None

            sinks.append(MqttSink(
                node=self.node, host=host, port=port, factory=self.factory, tls=tls,
                ca_file=path(m.ca_file), cert_file=path(m.cert_file),
                key_file=path(m.key_file), username=m.username, password=password,
                client_id=m.client_id, topic_prefix=m.topic_prefix,
                keepalive_s=m.keepalive_s, connect_timeout_s=m.connect_timeout_s,
                reconnect_min_s=m.reconnect_min_s, reconnect_max_s=m.reconnect_max_s,
                max_in_flight=m.max_in_flight, snapshot_dir=self.snapshots.folder,
                io_executor=self._io, home_assistant=m.home_assistant.enabled,
                ha_prefix=m.home_assistant.prefix, pipelines=self.pipelines,
                status_extra=self._status_extra))
        if cfg.http is not None:
            from edge_runtime.upstream.sink_http import HttpSink

            h = cfg.http
            sinks.append(HttpSink(url=h.url, node=self.node, headers=h.headers,
                                  timeout_s=h.timeout_s, max_batch=h.max_batch,
                                  ca_file=str(_under(self.base_dir, h.ca_file))
                                  if h.ca_file else None))
        return sinks

    async def close(self, timeout_s: float = 2.0) -> None:
        """Commit what was published, give connected sinks a moment to take it (the
        local file at least), stop the sinks (MQTT says offline), close the outbox.
        Bounded by ``timeout_s``; what is not delivered stays in the outbox and is sent
        after the next start."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout_s
        if self._snapshot_jobs:
            await asyncio.wait(set(self._snapshot_jobs), timeout=timeout_s / 4)
        if self.outbox is not None:
            try:
                await self.flush(timeout_s / 4)
            except TimeoutError:
                log.warning("upstream: the outbox did not commit within %.1f s", timeout_s / 4)
            await self._drain(deadline - timeout_s / 4)
        for driver in self.drivers:
            await driver.close()
        for sink in self.sinks:
            left_s = max(0.2, deadline - time.monotonic())
            try:
                await asyncio.wait_for(sink.close(left_s), left_s + 0.5)
            except TimeoutError:
                log.warning("upstream sink %s did not close within %.1f s", sink.name, left_s)
        loop = asyncio.get_running_loop()
        if self.outbox is not None:
            await loop.run_in_executor(self._io, self.outbox.close,
                                       max(0.5, deadline - time.monotonic()))
        if self._io is not None:
            io = self._io
            await loop.run_in_executor(None, lambda: io.shutdown(wait=True))

    async def _drain(self, until_mono_s: float) -> None:
        """Wait (until ``until_mono_s``) for every connected sink to confirm its backlog."""
        outbox = self.outbox
        assert outbox is not None

        def pending() -> bool:
            return any(d.sink.ready() and (outbox.backlog.get(d.name, 0)
                                           or d.status()["in_flight"])
                       for d in self.drivers)

        while pending() and time.monotonic() < until_mono_s:
            await asyncio.sleep(0.02)

    # -- publishing (loop, non-blocking) ---------------------------------------------------

    def _outbox(self) -> Outbox:
        if self.outbox is None or self._closed:
            raise OutboxClosedError("upstream is not running")
        return self.outbox

    def publish_event(self, *, type: str, name: str, state: str,
                      pipeline: str | None = None, data: dict[str, Any] | None = None,
                      snapshot: str | None = None) -> str:
        """Store an event to be sent at once; returns its id. ``type``: rule, health,
        source, security or upstream; ``snapshot``: a name from :meth:`attach_snapshot`."""
        event = self.factory.event(type=type, name=name, state=state, pipeline=pipeline,
                                   data=data, snapshot=snapshot)
        self._outbox().put(event)
        if snapshot is not None and snapshot in self._snapshot_events:
            self._snapshot_events[snapshot] = event.id  # its JPEG is still being written
        return event.id

    def publish_summary(self, summary: Summary | SummaryWindow) -> str:
        """Store a summary (or take one from a :class:`SummaryWindow` now); returns its id."""
        if isinstance(summary, SummaryWindow):
            summary = summary.take(self.factory, now_s=time.monotonic(), wall_s=time.time())
        self._outbox().put(summary)
        return summary.id

    def publish_status(self, *, peers: dict[str, Any] | None = None) -> str:
        """Store a status message (sinks' state, backlog, loss; the mesh's per-peer
        ``peers`` books when given) to be reported."""
        extra = self._status_extra()
        status = Status(**self.factory.header(), state="online", sinks=extra["sinks"],
                        lost=extra["lost"], version=extra["version"], peers=peers or {})
        self._outbox().put(status)
        return status.id

    def attach_snapshot(self, pipeline: str, frame: Any, boxes: Sequence[Box] = (), *,
                        event_id: str | None = None) -> str | None:
        """Encode ``frame`` (with ``boxes``) to a JPEG on the io thread and store a
        snapshot message when written. Returns the file name at once (for the event's
        ``snapshot``), or None when too many snapshots are already being encoded.
        ``frame`` must not be modified afterwards (pass a copy if it will be)."""
        self._outbox()
        if len(self._snapshot_jobs) >= MAX_SNAPSHOT_JOBS:
            self.snapshots_dropped += 1
            return None
        assert self._loop is not None and self._io is not None
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        name = f"{pipeline}-{stamp}-{uuid.uuid4().hex[:8]}.jpg"
        header = self.factory.header(pipeline)
        box_list = [list(b) for b in boxes]
        job = self._loop.run_in_executor(self._io, self.snapshots.write, name, frame,
                                         box_list)
        self._snapshot_jobs.add(job)
        self._snapshot_events[name] = event_id or ""

        def done(fut: asyncio.Future[tuple[int, int, int]]) -> None:
            self._snapshot_jobs.discard(fut)
            linked = self._snapshot_events.pop(name, "") or None
            if fut.cancelled():
                return
            exc = fut.exception()
            if exc is not None:
                self.snapshot_errors += 1
                log.warning("upstream: snapshot %s not written: %s", name,
                            exc if isinstance(exc, SnapshotError) else repr(exc))
                return
            size, width, height = fut.result()
            if self.outbox is not None:
                self.outbox.put(Snapshot(**header, file=name, event_id=event_id or linked,
                                         size_bytes=size, width=width, height=height,
                                         boxes=box_list))

        job.add_done_callback(done)
        return name

    async def flush(self, timeout_s: float = 5.0) -> None:
        """Wait until everything published so far is committed to disk."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def resolve() -> None:
            if not fut.done():
                fut.set_result(None)

        def committed() -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(resolve)

        self._outbox_any().flush(committed)
        await asyncio.wait_for(fut, timeout_s)

    def _outbox_any(self) -> Outbox:
        if self.outbox is None:
            raise OutboxClosedError("upstream is not running")
        return self.outbox

    def _committed_on_writer(self, last_seq: int) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed
            loop.call_soon_threadsafe(self._wake_drivers)

    def _wake_drivers(self) -> None:
        for driver in self.drivers:
            driver.wake()

    # -- status (loop, non-blocking) -------------------------------------------------------

    def _status_extra(self) -> dict[str, Any]:
        from edge_runtime._version import __version__

        return {"sinks": {d.name: {"state": d.status()["state"],
                                   "backlog": d.status()["backlog"],
                                   "last_error": d.last_error} for d in self.drivers},
                "lost": dict(self.outbox.lost) if self.outbox else {},
                "version": __version__}

    def status(self) -> dict[str, Any]:
        """Each sink's state, backlog and last error; the outbox's size, loss and bytes
        written (per day); the snapshot folder."""
        stats = self.outbox.stats() if self.outbox is not None else {}
        return {
            "node": self.node, "running": self._started and not self._closed,
            "sinks": {d.name: d.status() for d in self.drivers},
            "outbox": stats,
            "lost": stats.get("lost", {}),
            "written_bytes_per_day": stats.get("written_bytes_per_day", 0),
            "snapshots": {**self.snapshots.status(), "dropped": self.snapshots_dropped,
                          "errors": self.snapshot_errors},
        }
