"""The daemon's side of upstream reporting: one :class:`~edge_runtime.upstream.Upstream`
per process, a summary window per pipeline, source and rule events.

:class:`Reporting` adapts the running pipelines to the upstream room (which knows
nothing of pipelines, see :mod:`edge_runtime.upstream`):

- :meth:`Reporting.start` builds and starts the ``Upstream`` from ``[upstream]`` after
  the runtime is built; :meth:`Reporting.refresh` after a reload keeps it, or closes it
  and starts a new one when ``[upstream]``, the node name or the pipelines and rules Home
  Assistant is told about changed (the outbox file is reopened: nothing is lost);
  :meth:`Reporting.close` publishes the windows in progress and closes it, bounded.
- Events: every :class:`~edge_runtime.pipelines.actions.EventAction` is bound to this
  object, which publishes at once through the outbox; the daemon calls
  :meth:`source_event` when a source drops out or is back.
- Summaries: each pipeline's :attr:`~edge_runtime.pipelines.pipeline.Pipeline.summary`
  window is fed by the pipeline itself on the loop (a few additions per sample);
  :meth:`run` (a task of each generation) publishes the windows that are due once a
  second, adding what is counted elsewhere (drops, cleaning corrections), and a status
  message once per window.

Everything here runs on the daemon's loop and never blocks: publishing is a struct on
the outbox writer's queue; the outbox, files and JPEGs are the upstream's own threads'.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_runtime.config import Config, EventsConfig, UpstreamConfig
from edge_runtime.errors import EdgeRuntimeError, OutboxClosedError

if TYPE_CHECKING:
    from edge_runtime.pipelines.build import Runtime
    from edge_runtime.pipelines.pipeline import Pipeline
    from edge_runtime.upstream import PipelineInfo, SummaryWindow, Upstream

log = logging.getLogger(__name__)

#: How often the summary task looks for windows that are due (seconds).
SUMMARY_TICK_S = 1.0


def pipeline_infos(runtime: Runtime) -> list[PipelineInfo]:
    """What Home Assistant discovery is told: each pipeline, its rules, camera or not."""
    from edge_runtime.upstream import PipelineInfo

    return [PipelineInfo(p.pipeline_id, tuple(r.rule_id for r in p.rules),
                         camera=p.source.kind == "frame") for p in runtime.pipelines]


class Reporting:
    """See the module docstring. One per daemon; use from its loop."""

    def __init__(self) -> None:
        self.up: Upstream | None = None
        self.windows: dict[str, SummaryWindow] = {}
        #: Events published by this process (rule edges, health alarms, sources).
        self.events_published = 0
        self.summaries_published = 0
        #: Publishing that failed (the upstream closed under a late edge), counted.
        self.publish_errors = 0
        self._key: tuple[Any, ...] | None = None
        self._config: Config | None = None
        #: pipeline id -> (the Pipeline object, its drop and cleaning totals so far).
        self._totals: dict[str, tuple[Pipeline, int, int]] = {}
        self._next_status_s = 0.0
        self._description = "nowhere (not started)"
        #: The status of the last upstream closed (what summary.json shows at exit).
        self.final_status: dict[str, Any] | None = None
        #: The mesh's per-peer books for the periodic status (set by the daemon).
        self.peer_books: Callable[[], dict[str, Any]] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @staticmethod
    def _key_of(config: Config, state_dir: Path, runtime: Runtime) -> tuple[Any, ...]:
        return (config.node.name, state_dir, config.base_dir, config.upstream,
                tuple(pipeline_infos(runtime)))

    async def start(self, config: Config, runtime: Runtime) -> None:
        """Start the upstream ``config`` describes and bind ``runtime`` to it.

        Raises an :class:`~edge_runtime.errors.UpstreamError` when the outbox cannot be
        opened (nothing is left running then). With ``[upstream] enabled = false`` no
        upstream runs and event actions count their edges as unreported.
        """
        # Resolving the state folder reads the filesystem (symlinks): not on the loop.
        state_dir, report_file = await asyncio.get_running_loop().run_in_executor(
            None, lambda: (config.state_dir, config.event_log_path))
        self._config = config
        self._key = self._key_of(config, state_dir, runtime)
        self._description = describe_upstream(config.upstream, report_file)
        if config.events != EventsConfig():
            log.warning("[events] is deprecated and ignored: events go through the upstream "
                        "outbox to the file sink, %s (set [upstream.file] path, max_bytes, "
                        "keep instead)", report_file)
        if not config.upstream.enabled:
            if runtime.event_actions:
                log.warning("[upstream] enabled = false: the events of action(s) %s are not "
                            "recorded anywhere", ", ".join(a.action_id
                                                          for a in runtime.event_actions))
            self.bind(runtime)
            return
        from edge_runtime.upstream import Upstream

        up = Upstream(node=config.node.name, state_dir=state_dir,
                      config=config.upstream, base_dir=config.base_dir,
                      pipelines=pipeline_infos(runtime))
        try:
            await up.start()
        except BaseException:
            await up.close(config.node.shutdown_timeout_s)
            raise
        self.up = up
        self._next_status_s = time.monotonic() + config.upstream.summary_interval_s
        self.bind(runtime)

    async def refresh(self, config: Config, runtime: Runtime) -> None:
        """After a reload: keep the upstream if nothing it depends on changed, else close
        it and start the new one (falling back to the old config if that fails)."""
        state_dir = await asyncio.get_running_loop().run_in_executor(
            None, lambda: config.state_dir)
        if self._key == self._key_of(config, state_dir, runtime) and self._config is not None:
            self._config = config
            self.bind(runtime)
            return
        old = self._config
        await self.close(old.node.shutdown_timeout_s if old else 2.0, final=False)
        try:
            await self.start(config, runtime)
            log.info("upstream restarted for the new config")
        except EdgeRuntimeError as exc:
            log.error("upstream of the new config failed to start (%s); starting the old "
                      "one", exc)
            if old is None:
                return
            try:
                await self.start(old, runtime)
            except EdgeRuntimeError as again:
                log.error("upstream not running: %s", again)
                self.bind(runtime)

    def bind(self, runtime: Runtime) -> None:
        """Point ``runtime``'s event actions and pipelines at this reporting."""
        up = self.up
        for action in runtime.event_actions:
            action.bind(self if up is not None else None)
        if up is None:
            for pipe in runtime.pipelines:
                pipe.summary = None
            return
        from edge_runtime.upstream import SummaryWindow

        window_s = up.config.summary_interval_s
        now, wall = time.monotonic(), time.time()
        ids = {p.pipeline_id for p in runtime.pipelines}
        for gone in [pid for pid in self.windows if pid not in ids]:
            self._publish_window(self.windows.pop(gone))
            self._totals.pop(gone, None)
        for pipe in runtime.pipelines:
            w = self.windows.get(pipe.pipeline_id)
            if w is None or w.window_s != window_s:
                if w is not None:
                    self._publish_window(w)
                w = SummaryWindow(pipe.pipeline_id, window_s=window_s, now_s=now, wall_s=wall)
                self.windows[pipe.pipeline_id] = w
            pipe.summary = w
            old = self._totals.get(pipe.pipeline_id)
            if old is not None and old[0] is not pipe:
                self._add_deltas(pipe.pipeline_id, old)  # the last generation's tail
            if old is None or old[0] is not pipe:
                self._totals[pipe.pipeline_id] = (pipe, *_totals_of(pipe))

    async def close(self, timeout_s: float, *, final: bool = True) -> None:
        """Publish the windows in progress, then close the upstream within ``timeout_s``
        (after the pipelines stopped, so their last events are in)."""
        up, self.up = self.up, None
        if up is None:
            return
        for pid, w in list(self.windows.items()):
            entry = self._totals.get(pid)
            if entry is not None:
                self._add_deltas(pid, entry)
            if w.samples or w.inferences or final:
                self._publish_with(up, w)
        self.windows.clear()
        self._totals.clear()
        await up.close(timeout_s)
        self.final_status = self._status_of(up)

    # -- events and summaries (loop) -------------------------------------------------------

    def publish_event(self, *, type: str, name: str, state: str,
                      pipeline: str | None = None, data: dict[str, Any] | None = None,
                      snapshot: str | None = None) -> str:
        """:class:`~edge_runtime.pipelines.actions.EventReporter`: store an event now."""
        up = self.up
        if up is None:
            raise OutboxClosedError("upstream reporting is not running")
        event_id = up.publish_event(type=type, name=name, state=state, pipeline=pipeline,
                                    data=data, snapshot=snapshot)
        self.events_published += 1
        return event_id

    def attach_snapshot(self, pipeline: str, frame: Any,
                        boxes: Sequence[Sequence[Any]] = ()) -> str | None:
        """JPEG of ``frame`` (encoded on the upstream's io thread); its file name."""
        up = self.up
        return up.attach_snapshot(pipeline, frame, boxes) if up is not None else None

    def source_event(self, source_id: str, pipes: Sequence[Pipeline], state: str,
                     data: dict[str, Any]) -> None:
        """A source dropped out (``lost``), is ``back`` or has ``ended``: an event now,
        and the connectivity of each of its pipelines' windows."""
        now = time.monotonic()
        for pipe in pipes:
            if pipe.summary is not None:
                pipe.summary.set_source_connected(state == "back", now)
        if self.up is None:
            return
        try:
            self.publish_event(type="source", name=source_id, state=state, data=data)
        except OutboxClosedError:
            self.publish_errors += 1

    def _add_deltas(self, pid: str, entry: tuple[Pipeline, int, int]) -> None:
        """What the pipeline counted outside :meth:`Pipeline.decide` since last time."""
        pipe, dropped0, fixed0 = entry
        w = self.windows.get(pid)
        if w is None:
            return
        dropped, fixed = _totals_of(pipe)
        if dropped > dropped0:
            w.add_dropped(dropped - dropped0)
        if fixed > fixed0:
            w.add_cleaning_corrections(fixed - fixed0)
        self._totals[pid] = (pipe, dropped, fixed)

    def _publish_window(self, w: SummaryWindow) -> None:
        if self.up is not None:
            self._publish_with(self.up, w)

    def _publish_with(self, up: Upstream, w: SummaryWindow) -> None:
        try:
            up.publish_summary(w)
            self.summaries_published += 1
        except OutboxClosedError:
            self.publish_errors += 1

    def tick(self, now_s: float) -> None:
        """Publish every window that is due, and a status once per window length."""
        up = self.up
        if up is None:
            return
        for pid, w in self.windows.items():
            if w.due(now_s):
                entry = self._totals.get(pid)
                if entry is not None:
                    self._add_deltas(pid, entry)
                self._publish_with(up, w)
        if now_s >= self._next_status_s:
            self._next_status_s = now_s + up.config.summary_interval_s
            try:
                up.publish_status(peers=self.peer_books() if self.peer_books else None)
            except OutboxClosedError:
                self.publish_errors += 1

    async def run(self, sleep_unless_stopped: Callable[[float], Awaitable[bool]]) -> None:
        """The generation's summary task: :meth:`tick` once a second until stopped."""
        while not await sleep_unless_stopped(SUMMARY_TICK_S):
            self.tick(time.monotonic())

    # -- status (loop) ---------------------------------------------------------------------

    def status(self) -> dict[str, Any] | None:
        """``Upstream.status()`` plus this process's counts; after a close, the last
        status of the closed one; None when not reporting."""
        up = self.up
        if up is None:
            return self.final_status
        return self._status_of(up)

    def _status_of(self, up: Upstream) -> dict[str, Any]:
        return {**up.status(), "events_published": self.events_published,
                "summaries_published": self.summaries_published,
                "publish_errors": self.publish_errors,
                "summary_interval_s": up.config.summary_interval_s}

    def describe(self) -> str:
        """Where reports go, for the line ``run`` prints when it is up."""
        return self._description


def describe_upstream(cfg: UpstreamConfig, report_file: Path) -> str:
    """``file <path>, mqtt <url>`` (or ``nowhere ([upstream] enabled = false)``);
    ``report_file``: the file sink's path (``Config.event_log_path``)."""
    if not cfg.enabled:
        return "nowhere ([upstream] enabled = false)"
    where = []
    if cfg.file.enabled:
        where.append(f"file {report_file}")
    if cfg.mqtt is not None:
        where.append(f"mqtt {cfg.mqtt.url}")
    if cfg.http is not None:
        where.append(f"http {cfg.http.url}")
    return ", ".join(where) or "the outbox only (no sink enabled)"


def _totals_of(pipe: Pipeline) -> tuple[int, int]:
    """(samples dropped, cleaning corrections) of a pipeline so far."""
    dropped = pipe.tap.dropped if pipe.tap is not None else pipe.source.stats.dropped
    fixed = pipe.cleaner.counters.fixed_or_dropped if pipe.cleaner is not None else 0
    return int(dropped), int(fixed)
