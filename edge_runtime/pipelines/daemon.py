"""The ``edge-runtime run`` daemon: an asyncio core that only coordinates.

One task group per *generation* (one loaded config) holds a task per pipeline, a health
task, a stopper and a reload watcher. Work that may block never runs on the loop:

- each pipeline with a camera, a model, a detector or a replay reads and infers in its
  own worker thread (``workers.Worker``), paced by the rate controller, and hands
  results to the loop in batches; the loop runs rules and actions in sample order;
- sources are used through their async face (``sources.base``): the daemon awaits
  ``aopen``/``aread``/``aset_rate``/``aclose``. A blocking source (camera, replay) runs
  them in the read pool; an async-native one (the firmware bridge) runs on this loop,
  its client included: no private loop, no thread per device. A worker thread reads an
  async-native source with the blocking ``read``, which hands the read to the loop;
- GPIO polls and bridge channels without a model (plain arithmetic) run on the loop
  itself, which is cheaper than a thread hop;
- a source that several pipelines read (a ``shared.SharedSource``) is opened once and
  read by one reader (``workers.SharedReader``, a thread; a GPIO poll or a bridge
  channel is read by a task on the loop) at the highest rate its pipelines want; each
  sample goes to every pipeline's tap, and each pipeline's worker takes from its tap
  the newest sample due at its own rate, so a slow pipeline drops samples without
  slowing the others;
- blocking sources' open/close, health snapshots and the CPU/thermal budget's readings run in a
  small executor (the read pool); so do the control socket's filesystem work and the
  summary. The budget's factor, used on the loop, only takes those readings.

Signals:

- SIGTERM / SIGINT: stop taking samples, let work in flight finish (its result still
  goes through rules and actions), close sources, switch outputs off, flush the event
  log, write ``<state_dir>/summary.json``. Bounded end to end: work in flight (and the
  worker threads' end), closing the runtime, and the read pool's last threads each get
  at most ``node.shutdown_timeout_s``; what is stuck past that is logged and abandoned.
  Worker threads are joined before the models are closed, and a model whose worker is
  still running is left open rather than closed under it.
- SIGHUP: reload the config file. A config that does not validate is refused and the
  old one keeps running untouched; one that validates replaces the old generation. If
  the new one then fails to build (a pin in use, a model that will not load, or any
  exception at all: a user's detector that raises), the old config is built again
  (retried with backoff until it builds or a stop comes). Either way the failure is one
  log line and ``last_reload_error`` in the status.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from edge_runtime.config import Config, load_config, one_line
from edge_runtime.control import remove_socket_file, start_server
from edge_runtime.errors import ConfigError, EdgeRuntimeError, FileWriteError, OutboxClosedError
from edge_runtime.files import state_folder, write_atomic
from edge_runtime.health import HealthMonitor
from edge_runtime.mesh.node import mesh_wanted
from edge_runtime.mesh.service import MeshService, mesh_folder
from edge_runtime.notify import Notifier, run_watchdog, wedged_workers
from edge_runtime.pipelines.build import Runtime, build_runtime
from edge_runtime.pipelines.pipeline import Pipeline, snapshot_boxes
from edge_runtime.pipelines.reporting import Reporting
from edge_runtime.pipelines.shared import SharedSource
from edge_runtime.pipelines.workers import READ_TIMEOUT_S, RateLimitedLog, SharedReader, Worker
from edge_runtime.sampling.controller import Budget
from edge_runtime.sources.base import Sample, Source
from edge_runtime.web import start_web

if TYPE_CHECKING:
    from edge_runtime.web.server import WebServer

log = logging.getLogger(__name__)
#: What ``edge-runtime run`` prints at its default verbosity (cli/run.py turns it on at
#: INFO): one line when the daemon is up, one when a source drops out or comes back.
NOTICE_LOGGER = "edge_runtime.run"
notice = logging.getLogger(NOTICE_LOGGER)
#: How often the daemon looks for sources that dropped out or came back (seconds).
SOURCE_WATCH_INTERVAL_S = 0.5

#: First and longest pause between attempts to open a source that failed to open.
OPEN_RETRY_MIN_S = 0.5
OPEN_RETRY_MAX_S = 10.0
#: Shortest pause between two budget readings (``budget.interval_s = 0`` must not spin).
BUDGET_MIN_INTERVAL_S = 0.1


#: How long closing the mesh (goodbyes, server, peers, books) may take at a stop (s).
MESH_CLOSE_TIMEOUT_S = 10.0


class Daemon:
    """Runs a config until stopped; see the module docstring."""

    def __init__(self, config_path: str | Path | None, *, config: Config | None = None,
                 duration_s: float | None = None,
                 early_signals: Callable[[], list[int]] | None = None,
                 builder: Callable[[Config], Runtime] = build_runtime) -> None:
        if config_path is None and config is None:
            raise ValueError("give config_path or config")
        #: How a config becomes a runtime (blocking, run in an executor); tests give one
        #: that fails the way a broken build does.
        self._build = builder
        #: Signals that arrived before the loop's handlers were installed (the CLI
        #: catches them from its first line on); replayed as soon as :meth:`run` starts.
        self._early_signals = early_signals
        self.config_path = Path(config_path) if config_path is not None else None
        self.config = config if config is not None else load_config(self.config_path or "")
        self.duration_s = duration_s
        self.runtime: Runtime | None = None
        self.generation = 0
        self.reloads = 0
        self.reload_errors = 0
        self.last_reload_error: str | None = None
        self.health: dict[str, Any] = {}
        self.started_mono = time.monotonic()
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        self._gen_stop = asyncio.Event()
        self._pending: Config | None = None
        #: The generation's stop, for worker threads (set together with _gen_stop).
        self._thread_stop = threading.Event()
        self._health = HealthMonitor(disk_path=Path(self.config.health.disk_path),
                                     check_throttling=self.config.health.check_throttling)
        self._errors = RateLimitedLog()
        workers = max(2, len(self.config.pipelines) + 2)
        self._read_pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="read")
        #: This generation's worker threads, joined before its models are closed.
        self._workers: list[Worker] = []
        #: When the current stop began (monotonic s); the shutdown steps count from it.
        self._stop_started_s: float | None = None
        #: Upstream reporting (one Upstream per process, kept across reloads).
        self.reporting = Reporting()
        #: systemd's notification socket (READY, watchdog pings; nothing without one).
        self.notifier = Notifier.from_env()
        #: The [web] page and /metrics (one per process, kept across reloads), and each
        #: camera pipeline's newest frame with its result, for its live view.
        self.web: WebServer | None = None
        self._frames: dict[str, tuple[Sample, dict[str, Any] | None]] = {}
        #: The mesh (serving, discovery, offloading), when [mesh] or a pipeline wants it.
        self.mesh: MeshService | None = None

    # -- public ------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask for a clean stop (what SIGTERM does)."""
        self._stop.set()
        self._gen_stop.set()

    def request_reload(self) -> None:
        """Ask for a config reload (what SIGHUP does); a bad config is refused."""
        self._reload.set()

    async def run(self) -> int:
        """Run until stopped; returns the process exit code (0 on a clean stop)."""
        loop = asyncio.get_running_loop()
        for sig, handler in ((signal.SIGTERM, self.request_stop),
                             (signal.SIGINT, self.request_stop),
                             (signal.SIGHUP, self.request_reload)):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, handler)
        for early in self._early_signals() if self._early_signals is not None else []:
            log.info("%s arrived while starting; handled now", signal.Signals(early).name)
            (self.request_reload if early == signal.SIGHUP else self.request_stop)()
        self.runtime = await loop.run_in_executor(None, self._build, self.config)
        config = self.config
        try:
            # Resolving the path reads the filesystem (symlinks): not on the loop.
            socket_path = await loop.run_in_executor(None, lambda: config.control_socket)
            # Upstream before the socket: a node that cannot keep its outbox does not start.
            await self.reporting.start(config, self.runtime)
            if mesh_wanted(config):
                folder = await loop.run_in_executor(None, mesh_folder, config)
                self.mesh = MeshService(config, folder, on_security_event=self._security_event)
                await self.mesh.start()
                self.mesh.attach(self.runtime)
                self.reporting.peer_books = self.mesh.ledger.as_dict
            self.web = await start_web(config, status_provider=self.status,
                                       frame_provider=self.latest_frame,
                                       reload=self.request_reload)
            server = await start_server(socket_path, self._handle_request)
        except BaseException:
            if self.web is not None:
                await self.web.close()
            if self.mesh is not None:
                await self.mesh.aclose()
            await self.reporting.close(config.node.shutdown_timeout_s)
            await self._close_runtime(self.runtime)
            self._read_pool.shutdown(wait=False)
            raise
        deadline_task = None
        if self.duration_s is not None:
            deadline_task = loop.call_later(self.duration_s, self.request_stop)
        runtime = self.runtime
        notice.info("%s", await loop.run_in_executor(None, _up_line, runtime,
                                                     self.reporting.describe()))
        self.notifier.send("READY=1", f"STATUS=node {self.config.node.name!r}: "
                           f"{len(runtime.pipelines)} pipeline(s) running")
        watchdog = loop.create_task(run_watchdog(self.notifier, self._stop, self._wedged),
                                    name="systemd-watchdog")
        log.info("daemon %r running %d pipeline(s); control socket %s", self.config.node.name,
                 len(self.runtime.pipelines), socket_path)
        try:
            while True:
                self.generation += 1
                await self._run_generation(self.runtime)
                if self._stop.is_set():
                    break
                if self._pending is not None:
                    await self._switch_to(self._pending)
                    self._pending = None
                    if self._stop.is_set():  # a stop came while the runtime was built
                        await self._close_runtime(self.runtime)  # safe twice
                        break
                    await self.reporting.refresh(self.config, self.runtime)
                    if self.mesh is not None:
                        self.mesh.reconfigure(self.config)
                        self.mesh.attach(self.runtime)
        finally:
            if deadline_task is not None:
                deadline_task.cancel()
            watchdog.cancel()  # after STOPPING=1 (it sends that when the stop is set)
            server.close()
            if self.web is not None:
                await self.web.close()
            await loop.run_in_executor(None, remove_socket_file, socket_path)
            if self.mesh is not None:
                try:  # bounded: the outbox must still be closed after it
                    async with asyncio.timeout(MESH_CLOSE_TIMEOUT_S):
                        await self.mesh.aclose()
                except TimeoutError:
                    log.warning("mesh: closing took longer than %.0f s; left behind",
                                MESH_CLOSE_TIMEOUT_S)
            await self._finish()
        return 0

    # -- generations -------------------------------------------------------------------

    async def _run_generation(self, runtime: Runtime) -> None:
        """Run every pipeline and the health task until a stop or an accepted reload."""
        self._gen_stop.clear()
        self._thread_stop = threading.Event()
        self._workers = []
        self._stop_started_s = None
        if self._stop.is_set():
            self._gen_stop.set()
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(self._run_pipeline(pipe),
                                        name=f"pipeline-{pipe.pipeline_id}")
                         for pipe in runtime.pipelines if pipe.tap is None]
                tasks += [tg.create_task(self._run_shared(shared), name=f"source-{source_id}")
                          for source_id, shared in runtime.shared.items()]
                tg.create_task(self._run_health(runtime), name="health")
                if runtime.budget.enabled:
                    tg.create_task(self._run_budget(runtime.budget), name="budget")
                tg.create_task(self._stopper(runtime, tasks), name="stopper")
                tg.create_task(self._watch_reload(), name="reload-watcher")
                tg.create_task(self._watch_sources(runtime), name="source-watch")
                if self.reporting.up is not None:
                    tg.create_task(self.reporting.run(self._sleep_unless_stopped),
                                   name="upstream-summaries")
        finally:
            busy = await self._join_workers(runtime)
            await self._close_runtime(runtime, busy)

    async def _join_workers(self, runtime: Runtime) -> set[str]:
        """Wait for this generation's worker threads, until the stop's deadline (or one
        read timeout at least); returns the ids of pipelines whose worker still runs."""
        workers = list(self._workers)
        started_s = self._stop_started_s if self._stop_started_s is not None \
            else time.monotonic()
        deadline_s = max(started_s + runtime.config.node.shutdown_timeout_s,
                         time.monotonic() + READ_TIMEOUT_S)

        def join_all() -> None:
            for worker in workers:
                worker.join(max(0.0, deadline_s - time.monotonic()))

        if workers:
            # Bounded by the deadline, so it may take a read-pool thread.
            await asyncio.get_running_loop().run_in_executor(self._read_pool, join_all)
        busy = {w.pipe.pipeline_id for w in workers if w.alive}
        for pipeline_id in sorted(busy):
            log.warning("pipeline %r: worker still busy in a read or the model; abandoned",
                        pipeline_id)
        return busy

    async def _close_runtime(self, runtime: Runtime, busy: Collection[str] = ()) -> None:
        """``runtime.close`` in the read pool, for at most ``node.shutdown_timeout_s``
        (a source or an output stuck in close is logged and abandoned)."""
        timeout_s = runtime.config.node.shutdown_timeout_s
        close = functools.partial(runtime.close, busy=busy)
        try:
            await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(self._read_pool, close), timeout_s)
        except TimeoutError:
            log.warning("closing sources, outputs and models did not finish in %.1f s; "
                        "abandoned", timeout_s)

    async def _stopper(self, runtime: Runtime, tasks: list[asyncio.Task[None]]) -> None:
        """On stop: wake blocked readers, give work in flight a bounded time to finish."""
        await self._gen_stop.wait()
        self._stop_started_s = time.monotonic()
        self._thread_stop.set()
        timeout_s = runtime.config.node.shutdown_timeout_s
        # Closing sources wakes readers blocked in executors (camera slots, replay waits).
        # (aclose: a blocking source closes in the read pool, the bridge on this loop.)
        closing = {asyncio.ensure_future(src.aclose()): src.source_id
                   for src in runtime.sources.values()}
        if closing:
            done, stuck = await asyncio.wait(closing, timeout=timeout_s)
            for future in done:
                if (exc := future.exception()) is not None:
                    log.warning("closing source %r: %s", closing[future], exc)
            for future in stuck:
                log.warning("source %r: close did not return in %.1f s; abandoned",
                            closing[future], timeout_s)
        for shared in runtime.shared.values():
            shared.close()  # wakes the pipelines waiting on their taps
        pending = [t for t in tasks if not t.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=timeout_s)
            for task in still:
                log.warning("%s: work in flight did not finish in %.1f s; abandoned",
                            task.get_name(), timeout_s)
                task.cancel()

    async def _watch_reload(self) -> None:
        """Validate a new config on SIGHUP; only a valid one ends this generation."""
        loop = asyncio.get_running_loop()
        while not self._gen_stop.is_set():
            reload_wait = asyncio.ensure_future(self._reload.wait())
            stop_wait = asyncio.ensure_future(self._gen_stop.wait())
            await asyncio.wait({reload_wait, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            reload_wait.cancel()
            stop_wait.cancel()
            if self._gen_stop.is_set():
                return
            self._reload.clear()
            try:
                if self.config_path is None:
                    raise EdgeRuntimeError("this daemon was started without a config file")
                new_config = await loop.run_in_executor(None, load_config, self.config_path)
                moved = await loop.run_in_executor(None, _moved_paths, self.config,
                                                   new_config)
                if moved:
                    raise ConfigError(
                        f"{moved} changed; a reload does not move the daemon's state folder "
                        "or control socket (another process may own the new path)",
                        hint="restart the daemon to use the new path")
            except Exception as exc:  # whatever it is, the running generation goes on
                self._reload_failed(exc)
                log.error("reload refused, the running config stays: %s",
                          self.last_reload_error)
                continue
            log.info("reloading config from %s", self.config_path)
            self._pending = new_config
            self._gen_stop.set()
            return

    async def _sleep_unless_stopped(self, seconds: float) -> bool:
        """Sleep; True if a stop/reload came first."""
        if seconds <= 0:
            return self._gen_stop.is_set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._gen_stop.wait(), seconds)
        return self._gen_stop.is_set()

    async def _unless_stopped(self, work: Awaitable[None]) -> bool:
        """Await ``work`` unless this generation stops first: then cancel it and return
        False. Opening a device that never answers must not hold a stop up. (A blocking
        open in the read pool finishes in its thread; the source's lock makes the
        stopper's close wait for it.)"""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self._gen_stop.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            stop.cancel()
        if task.done():
            task.result()  # its error, if any
            return True
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return False

    async def _open_source(self, pipes: list[Pipeline]) -> bool:
        """Open the source of ``pipes`` (retrying with backoff); False if stopped first.

        An open error counts against every pipeline that reads the source.
        """
        source = pipes[0].source
        # A blocking source's async methods run in the read pool, not the loop's default
        # executor; an async-native one (the bridge) runs on this loop itself.
        source.executor = self._read_pool
        names = ", ".join(repr(p.pipeline_id) for p in pipes)
        retry_s = OPEN_RETRY_MIN_S
        while not self._gen_stop.is_set():
            try:
                # False: stopped while opening (a device that never answers).
                return await self._unless_stopped(source.aopen())
            except Exception as exc:  # any failure stays with this source, and is retried
                message = str(exc) if isinstance(exc, EdgeRuntimeError) else (
                    f"opening source {source.source_id!r} failed: {type(exc).__name__}: {exc}")
                for pipe in pipes:
                    pipe.stats.errors += 1
                    pipe.stats.last_error = message
                self._errors.error(f"open-{source.source_id}", "pipeline %s: %s", names,
                                   message)
                if await self._sleep_unless_stopped(retry_s):
                    return False
                retry_s = min(OPEN_RETRY_MAX_S, retry_s * 2)
        return False

    async def _run_pipeline(self, pipe: Pipeline) -> None:
        source = pipe.source
        if not await self._open_source([pipe]):
            return
        if source.can_set_rate and not self._gen_stop.is_set():
            # The device starts at its own default rate (maybe 0: off); the controller
            # only reports changes, so give it the controller's current rate now.
            try:
                await source.aset_rate(pipe.controller.rate_hz)
            except EdgeRuntimeError as exc:
                log.warning("source %r refused rate %.3g Hz: %s", source.source_id,
                            pipe.controller.rate_hz, exc)
        if pipe.cheap and (not source.blocking_read or source.async_native):
            await self._run_on_loop(pipe)
        else:
            await self._run_in_worker(pipe)

    async def _run_on_loop(self, pipe: Pipeline) -> None:
        """Plain arithmetic on a GPIO poll or an async-native source (the bridge): cheaper
        on the loop than any thread hop."""
        source = pipe.source
        while not self._gen_stop.is_set():
            started = time.monotonic()
            try:
                sample = await source.aread(0.0)
            except Exception as exc:  # a bad read must not end a 24/7 pipeline
                self._read_failed(source, [pipe], exc)
                sample = None
            if sample is not None:
                self._step_on_loop(pipe, sample)
            wait_s = pipe.controller.period_s - (time.monotonic() - started)
            if await self._sleep_unless_stopped(wait_s):
                return

    async def _run_shared(self, shared: SharedSource) -> None:
        """A source several pipelines read: open it once, read it with one reader at the
        highest rate its pipelines want, and run each pipeline from its own tap."""
        loop = asyncio.get_running_loop()
        source = shared.source
        if not await self._open_source(shared.pipelines):
            return
        if self._gen_stop.is_set():
            return
        # The device starts at its own default rate: give it the highest wanted now.
        await loop.run_in_executor(self._read_pool, shared.rate_changed)
        log.info("source %r is read once for pipelines %s", source.source_id,
                 ", ".join(repr(p.pipeline_id) for p in shared.pipelines))
        if not source.blocking_read or source.async_native:
            # A GPIO poll or the bridge: read on the loop; plain-arithmetic pipelines
            # decide right here, the others in their workers from their taps.
            inline = [p for p in shared.pipelines if p.cheap]
            threaded = [p for p in shared.pipelines if not p.cheap]
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._poll_shared(shared, inline), name=f"source-{source.source_id}")
                for pipe in threaded:
                    tg.create_task(self._run_in_worker(pipe), name=f"pipeline-{pipe.pipeline_id}")
            return
        reader = SharedReader(shared, self._thread_stop, self._errors)
        reader.start()
        try:
            async with asyncio.TaskGroup() as tg:
                for pipe in shared.pipelines:
                    tg.create_task(self._run_in_worker(pipe), name=f"pipeline-{pipe.pipeline_id}")
        finally:
            # Workers end on a stop or at the end of the source; the reader ends with them.
            await loop.run_in_executor(None, reader.join, READ_TIMEOUT_S * 2)
            if reader.alive:
                log.warning("source %r: reader still blocked in read after %.1f s; "
                            "abandoned", source.source_id, READ_TIMEOUT_S * 2)

    async def _poll_shared(self, shared: SharedSource, inline: list[Pipeline]) -> None:
        """Poll a non-blocking shared source on the loop at the highest wanted rate."""
        source = shared.source
        while not self._gen_stop.is_set():
            started = time.monotonic()
            try:
                sample = await source.aread(0.0)
            except Exception as exc:  # a bad read must not end the source's pipelines
                self._read_failed(source, shared.pipelines, exc)
                sample = None
            if sample is not None:
                shared.publish(sample)
                for pipe in inline:
                    assert pipe.tap is not None
                    due = pipe.tap.get(0.0)
                    if due is not None:
                        self._step_on_loop(pipe, due)
            if await self._sleep_unless_stopped(shared.period_s - (time.monotonic() - started)):
                return

    def _step_on_loop(self, pipe: Pipeline, sample: Sample) -> None:
        """Infer and decide one sample on the loop; an error (a detector that overflows
        on a value of 1e308, a bug in a user's detector) is counted against this
        pipeline and logged rate-limited, and the pipeline goes on with the next."""
        try:
            pipe.decide(sample, pipe.infer(sample))
        except Exception as exc:
            self._pipeline_failed(pipe, exc)

    def _pipeline_failed(self, pipe: Pipeline, exc: BaseException) -> None:
        pipe.stats.errors += 1
        pipe.stats.last_error = f"{type(exc).__name__}: {exc}"
        self._errors.error(f"infer-{pipe.pipeline_id}", "pipeline %r: %s", pipe.pipeline_id,
                           pipe.stats.last_error)

    def _read_failed(self, source: Source, pipes: list[Pipeline], exc: Exception) -> None:
        """Count a failed read on the loop against the source and each pipeline reading it
        (as ``workers.SharedReader`` does), and log it, rate-limited."""
        message = f"{type(exc).__name__}: {exc}"
        source.stats.errors += 1
        source.stats.last_error = message
        for pipe in pipes:
            pipe.stats.errors += 1
            pipe.stats.last_error = message
        self._errors.error(f"read-{source.source_id}", "source %r: %s", source.source_id,
                           message)

    async def _run_in_worker(self, pipe: Pipeline) -> None:
        """Read + infer in the pipeline's own worker thread; decide here, in order.

        A pipeline on a shared source reads from its tap instead of the source.
        """
        worker = Worker(pipe, asyncio.get_running_loop(), self._thread_stop, tap=pipe.tap)
        self._workers.append(worker)
        worker.start()
        while True:
            for kind, sample, step, exc in await worker.next_batch():
                if kind == "result":
                    assert sample is not None and step is not None
                    if sample.frame is not None:  # the live view's newest frame
                        self._frames[pipe.pipeline_id] = (sample, step.result)
                    try:
                        pipe.decide(sample, step)
                    except Exception as error:  # a bad result must not end the pipeline
                        self._pipeline_failed(pipe, error)
                elif kind == "error":
                    assert exc is not None
                    self._pipeline_failed(pipe, exc)
                elif kind == "end":
                    log.info("pipeline %r: source %r has ended", pipe.pipeline_id,
                             pipe.source.source_id)
                    return
                else:  # "stopped": everything in flight has been decided
                    return

    async def _run_health(self, runtime: Runtime) -> None:
        loop = asyncio.get_running_loop()
        interval_s = runtime.config.health.interval_s
        while True:
            snapshot = await loop.run_in_executor(self._read_pool, self._health.snapshot)
            snapshot.update(self._pipeline_totals(runtime))
            self.health = snapshot
            now = time.monotonic()
            for rule in runtime.health_rules:
                tr = rule.update(now, snapshot)
                if tr is None:
                    continue
                context = {"pipeline": "health", "node": runtime.config.node.name,
                           "result": snapshot, "health": True}
                for action_id in tr.actions:
                    try:
                        runtime.actions[action_id].handle(tr, context)
                    except Exception as exc:
                        log.error("health action %r failed: %s", action_id, exc)
            log.debug("health: %s", snapshot)
            if await self._sleep_unless_stopped(interval_s):
                return

    async def _run_budget(self, budget: Budget) -> None:
        """Read temperature and CPU use for the budget every ``interval_s``, in the read
        pool; the rate controllers use the factor on the loop without reading a file."""
        loop = asyncio.get_running_loop()
        interval_s = max(budget.interval_s, BUDGET_MIN_INTERVAL_S)
        while True:
            temperature_c, cpu_percent = await loop.run_in_executor(self._read_pool,
                                                                    budget.measure)
            factor = budget.observe(temperature_c, cpu_percent)
            if factor < 1.0:
                log.debug("budget: %.2f of the rate range (%s C, %s %% CPU)", factor,
                          temperature_c, cpu_percent)
            if await self._sleep_unless_stopped(interval_s):
                return

    @staticmethod
    def _pipeline_totals(runtime: Runtime) -> dict[str, float]:
        """Whole-node counters that health rules may test (drops, errors).

        ``dropped`` counts each source once, plus what each pipeline on a shared source
        dropped from its tap while it was busy.
        """
        read = {p.source.source_id: p.source for p in runtime.pipelines}
        return {
            "dropped": float(sum(src.stats.dropped for src in read.values())
                             + sum(p.tap.dropped for p in runtime.pipelines
                                   if p.tap is not None)),
            "pipeline_errors": float(sum(p.stats.errors for p in runtime.pipelines)),
            "inferences": float(sum(p.stats.inferences for p in runtime.pipelines)),
        }

    def _reload_failed(self, exc: BaseException) -> None:
        """Count a reload that failed and keep its reason, one line, for the status."""
        self.reload_errors += 1
        self.last_reload_error = str(exc) if isinstance(exc, EdgeRuntimeError) \
            else one_line(exc)

    async def _switch_to(self, new_config: Config) -> None:
        """Build the runtime of a validated new config; fall back to the old one.

        Any exception from the build counts: a reload never takes the daemon down.
        """
        loop = asyncio.get_running_loop()
        try:
            self.runtime = await loop.run_in_executor(None, self._build, new_config)
        except Exception as exc:
            self._reload_failed(exc)
            log.error("new config failed to start (%s); restarting the old one",
                      self.last_reload_error)
            runtime = await self._rebuild_running_config()
            if runtime is not None:
                self.runtime = runtime
            return
        self.config = new_config
        self.reloads += 1
        log.info("config reloaded from %s", self.config_path)

    async def _rebuild_running_config(self) -> Runtime | None:
        """Build the config that ran before a failed reload again; retried with backoff
        (a pin or a device not yet released) until it builds. None if a stop came first."""
        loop = asyncio.get_running_loop()
        retry_s = OPEN_RETRY_MIN_S
        while True:
            try:
                return await loop.run_in_executor(None, self._build, self.config)
            except Exception as exc:
                self._errors.error("rebuild", "the running config failed to start again "
                                   "(%s); retrying in %.1f s", one_line(exc), retry_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), retry_s)
            if self._stop.is_set():
                return None
            retry_s = min(OPEN_RETRY_MAX_S, retry_s * 2)

    def _wedged(self, limit_s: float) -> str | None:
        """Why the systemd watchdog must not be pinged (a worker stuck for longer than
        ``limit_s``), or None (see :mod:`edge_runtime.notify`)."""
        return wedged_workers([(w.pipe.pipeline_id, w.busy_since_mono_s)
                               for w in self._workers if w.alive], limit_s)

    # -- status and shutdown -------------------------------------------------------------

    def latest_frame(self, pipeline_id: str) -> tuple[float, Any, list[Any]] | None:
        """The web live view's frame provider: ``(key, frame, boxes)`` of a camera
        pipeline's newest frame (boxes of the newest result when it was gated), or None."""
        got = self._frames.get(pipeline_id)
        runtime = self.runtime
        if got is None or runtime is None:
            return None
        sample, result = got
        if result is None:
            pipe = next((p for p in runtime.pipelines if p.pipeline_id == pipeline_id), None)
            result = pipe.last_result if pipe is not None else None
        return sample.t_mono_s, sample.frame, snapshot_boxes(result or {})

    def status(self) -> dict[str, Any]:
        """The reply to ``edge-runtime status`` (also written to summary.json at exit)."""
        runtime = self.runtime
        return {
            "node": self.config.node.name,
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self.started_mono, 3),
            "config": str(self.config_path) if self.config_path else None,
            "generation": self.generation,
            "reloads": self.reloads,
            "reload_errors": self.reload_errors,
            "last_reload_error": self.last_reload_error,
            "health": self.health,
            "health_rules": {r.rule_id: r.state() for r in runtime.health_rules}
            if runtime else {},
            "pipelines": {p.pipeline_id: p.status() for p in runtime.pipelines}
            if runtime else {},
            # A source several pipelines read, once (the others: under their pipeline).
            "sources": {sid: {**shared.status(), **source_liveness(shared.pipelines)}
                        for sid, shared in runtime.shared.items()}
            if runtime else {},
            "actions": {a.action_id: a.fired for a in runtime.actions.values()}
            if runtime else {},
            # Events this process stored in the upstream outbox (rules, health, sources).
            "events_written": self.reporting.events_published,
            "upstream": self.reporting.status(),
            "mesh": self.mesh.status() if self.mesh is not None else None,
        }

    def _security_event(self, peer: str, state: str, data: dict[str, Any]) -> None:
        """The mesh caught a peer (quarantined): an event through the upstream outbox."""
        if self.reporting.up is None:
            log.error("security: peer %s %s (%s); no upstream to report it to", peer, state,
                      data.get("reason"))
            return
        try:
            self.reporting.publish_event(type="security", name=peer, state=state, data=data)
        except OutboxClosedError:
            self.reporting.publish_errors += 1

    async def _watch_sources(self, runtime: Runtime) -> None:
        """Say once when a source drops out (or never delivers) and once when it is back.

        A source is up while any of its pipelines gets samples (see
        :meth:`Pipeline.liveness`); one that never came up is reported once its
        pipelines' ``stale_after_s`` has passed, so a slow first connection stays quiet.
        """
        by_source: dict[str, list[Pipeline]] = {}
        for pipe in runtime.pipelines:
            by_source.setdefault(pipe.source.source_id, []).append(pipe)
        reported: dict[str, str] = {}  # source id -> "up", "down" or "ended"
        down_since: dict[str, float] = {}
        while not await self._sleep_unless_stopped(SOURCE_WATCH_INTERVAL_S):
            now = time.monotonic()
            for sid, pipes in by_source.items():
                live = source_liveness(pipes, now)
                state, was = live["source_state"], reported.get(sid)
                if was is None and any(p.last_sample_mono_s is not None for p in pipes):
                    was = "up"  # it delivered before this watch first looked
                names = ", ".join(repr(p.pipeline_id) for p in pipes)
                if state == "up":
                    if was == "down":
                        down_s = now - down_since.pop(sid, now)
                        notice.info("source %r is back after %.1f s", sid, down_s)
                        self.reporting.source_event(sid, pipes, "back",
                                                    {"down_s": round(down_s, 3)})
                    reported[sid] = "up"
                elif state == "ended":
                    if was != "ended":
                        notice.info("source %r has ended; pipeline(s) %s keep their last "
                                    "results", sid, names)
                        self.reporting.source_event(sid, pipes, "ended", {})
                    reported[sid] = "ended"
                elif was == "up" or (was is None and now - min(
                        p.started_mono_s for p in pipes) > live["stale_after_s"]):
                    age = live["last_sample_age_s"]
                    why = state if age is None else f"{state}, last sample {age:.1f} s ago"
                    error = pipes[0].source.stats.last_error
                    notice.warning("source %r %s (%s%s); the rules of pipeline(s) %s are stale "
                                   "until it is back", sid,
                                   "dropped out" if was == "up" else "is not delivering",
                                   why, f": {error}" if error else "", names)
                    reported[sid] = "down"
                    down_since[sid] = now if age is None else now - age
                    self.reporting.source_event(sid, pipes, "lost", {
                        "state": state, "last_sample_age_s": age, "error": error})

    async def _handle_request(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request.get("cmd")
        if cmd == "status":
            return self.status()
        if cmd == "reload":
            self.request_reload()
            return {"ok": True}
        return {"error": f"unknown command {cmd!r} (known: status, reload)"}

    async def _finish(self) -> None:
        """Close upstream reporting (the windows in progress are published, bounded by
        ``node.shutdown_timeout_s``), write summary.json, log the summary lines, stop
        the read pool (bounded)."""
        loop = asyncio.get_running_loop()
        await self.reporting.close(self.config.node.shutdown_timeout_s)
        summary = self.status()
        summary["stopped"] = True
        await loop.run_in_executor(self._read_pool, _write_summary, self.config, summary)
        for name, pipe in summary["pipelines"].items():
            log.info("summary %s: %d samples, %d inferences, %d gated, %d dropped, "
                     "%d rate changes, latency p99 %s ms", name, pipe["samples"],
                     pipe["inferences"], pipe["gated"], pipe["source_stats"]["dropped"],
                     pipe["sampling"]["rate_changes"], pipe["latency_ms"]["p99"])
        timeout_s = self.config.node.shutdown_timeout_s
        if not await loop.run_in_executor(None, _shutdown_pool, self._read_pool, timeout_s):
            log.warning("a read-pool thread is still blocked after %.1f s; abandoned",
                        timeout_s)


def _moved_paths(old: Config, new: Config) -> str:
    """Blocking (resolves paths): which of ``node.state_dir`` and ``node.control_socket``
    a reload from ``old`` to ``new`` would move ("" when neither)."""
    moved = [key for key, a, b in (
        ("node.state_dir", old.state_dir, new.state_dir),
        ("node.control_socket", old.control_socket, new.control_socket)) if a != b]
    return " and ".join(moved)


def _write_summary(config: Config, summary: dict[str, Any]) -> None:
    """Blocking (executor): write ``<state_dir>/summary.json`` atomically, mode 0600
    (0640 when the state folder belongs to a shared group); a failure (a full disk) is
    logged, never raised: the stop goes on."""
    path = config.state_dir / "summary.json"
    try:
        mode = state_folder(config.state_dir)
        write_atomic(path, msgspec.json.format(msgspec.json.encode(summary)), mode=mode)
    except FileWriteError as exc:
        log.warning("cannot write %s: %s", path, exc)


def _shutdown_pool(pool: ThreadPoolExecutor, timeout_s: float) -> bool:
    """Blocking, for at most ``timeout_s``: shut ``pool`` down and join its threads;
    False if one is still stuck (its joiner, a daemon thread, is then abandoned too)."""
    joiner = threading.Thread(target=pool.shutdown, kwargs={"cancel_futures": True},
                              name="read-pool-join", daemon=True)
    joiner.start()
    joiner.join(timeout_s)
    return not joiner.is_alive()


def source_liveness(pipes: list[Pipeline], now_s: float | None = None) -> dict[str, Any]:
    """:meth:`Pipeline.liveness` of a source read by ``pipes``: up while any of them gets
    samples; the age of the freshest sample; the most patient pipeline's ``stale_after_s``."""
    now = time.monotonic() if now_s is None else now_s
    lives = [p.liveness(now) for p in pipes]
    up = [live for live in lives if live["source_state"] == "up"]
    ages = [live["last_sample_age_s"] for live in lives if live["last_sample_age_s"] is not None]
    state = "up" if up else lives[0]["source_state"]
    return {"source_state": state, "stale": state != "up",
            "last_sample_age_s": min(ages) if ages else None,
            "stale_after_s": max(live["stale_after_s"] for live in lives)}


def _up_line(runtime: Runtime, reports: str) -> str:
    """The line ``run`` prints when it is up (blocking: resolving paths reads the disk);
    ``reports``: where events and summaries go."""
    config = runtime.config
    sources = sorted({p.source.source_id for p in runtime.pipelines})
    return (f"node {config.node.name!r} up: {len(runtime.pipelines)} pipeline(s) "
            f"({', '.join(p.pipeline_id for p in runtime.pipelines)}) on {len(sources)} "
            f"source(s) ({', '.join(sources)}); state in {config.state_dir}, reports to "
            f"{reports}; see it with 'edge-runtime status --socket {config.control_socket}'")


def run_daemon(config_path: str | Path, *, duration_s: float | None = None,
               early_signals: Callable[[], list[int]] | None = None) -> int:
    """Blocking entry point of ``edge-runtime run``."""
    daemon = Daemon(config_path, duration_s=duration_s, early_signals=early_signals)
    return asyncio.run(daemon.run())
