"""Worker threads of the daemon: where reads and inference happen, off the event loop.

- :class:`Worker`: one pipeline's thread; reads (or takes from its shared-source tap)
  and infers at the rate controller's pace, and hands results to the loop in batches
  (one wake-up per batch, not per result), so the loop decides in sample order.
- :class:`SharedReader`: the one reader of a blocking source that several pipelines
  read; it publishes every sample to each pipeline's tap and never waits for a pipeline.
  (An async-native shared source is read by a task on the loop instead.)

Both read with the source's blocking ``read`` (they are off the loop). For an
async-native source (``Source.async_native``: the firmware bridge) that ``read`` hands
the read to the loop the source runs on and waits for its sample, so the sample is
produced on the loop and only the inference runs here. The daemon
(:mod:`edge_runtime.pipelines.daemon`) starts and stops them; nothing here touches the
loop except through ``call_soon_threadsafe`` (and that hand-off).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque

from edge_runtime.pipelines.pipeline import Pipeline, Step
from edge_runtime.pipelines.shared import SharedSource, Tap
from edge_runtime.sources.base import Sample

log = logging.getLogger(__name__)

#: Longest a pipeline waits for a sample before checking for a stop (seconds).
READ_TIMEOUT_S = 0.25


class RateLimitedLog:
    """Logs the first occurrence of a repeated error, then every ``every``-th."""

    def __init__(self, every: int = 100) -> None:
        self.every = every
        self.counts: dict[str, int] = {}

    def error(self, key: str, msg: str, *args: object) -> None:
        n = self.counts.get(key, 0) + 1
        self.counts[key] = n
        if n == 1 or n % self.every == 0:
            log.error(msg + (" (%d times)" if n > 1 else ""), *args, *((n,) if n > 1 else ()))


_Item = tuple[str, Sample | None, Step | None, BaseException | None]


class Worker:
    """One pipeline's executor: a thread that reads and infers at the controller's rate
    and hands results to the loop.

    Wake-ups of the loop are coalesced (one per batch, not one per result), so a model
    that is the bottleneck keeps the thread busy without a thread hop per sample. On a
    stop the sample in flight is finished and handed over before ``stopped``.
    """

    def __init__(self, pipe: Pipeline, loop: asyncio.AbstractEventLoop,
                 stop: threading.Event, *, tap: Tap | None = None) -> None:
        self.pipe = pipe
        self.loop = loop
        self.stop = stop
        #: A shared source's tap: its reader paces the reads and the tap picks the
        #: samples due at this pipeline's rate, so the worker does not pace itself.
        self.tap = tap
        self._items: deque[_Item] = deque()
        self._lock = threading.Lock()
        self._wake = asyncio.Event()
        self._wake_scheduled = False
        # Several frames in the model at once (pipe.inflight > 1): that many threads,
        # reading and gating one at a time, running the model side by side.
        lanes = pipe.inflight if pipe.inflight > 1 and tap is None and \
            pipe.concurrent_frames else 1
        target = self._run if lanes == 1 else self._run_lane
        self._threads = [threading.Thread(target=target, daemon=True,
                                          name=f"pipeline-{pipe.pipeline_id}"
                                          + (f"-{i}" if lanes > 1 else ""))
                         for i in range(lanes)]
        self._busy: dict[int, float] = {}
        self._busy_lock = threading.Lock()
        # The lanes' shared state: reads in turn, paced together; results in order.
        self._read_lock = threading.Lock()
        self._next_read_s = 0.0
        self._seq = 0
        self._order_lock = threading.Lock()
        self._held: dict[int, _Item] = {}
        self._next_post = 0
        self._lanes_left = lanes
        self._ended = False

    @property
    def busy_since_mono_s(self) -> float | None:
        """When the oldest step in progress (one read + inference) began (monotonic s);
        None between steps. The systemd watchdog stops while a step takes too long."""
        with self._busy_lock:
            return min(self._busy.values(), default=None)

    @busy_since_mono_s.setter
    def busy_since_mono_s(self, value: float | None) -> None:
        key = threading.get_ident()
        with self._busy_lock:
            if value is None:
                self._busy.pop(key, None)
            else:
                self._busy[key] = value

    def start(self) -> None:
        """Start the thread(s)."""
        for t in self._threads:
            t.start()

    def join(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the thread(s) to end (blocking: not on the loop)."""
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    @property
    def alive(self) -> bool:
        """True while a thread runs (after a join: it is stuck in a read or the model)."""
        return any(t.is_alive() for t in self._threads)

    def _post(self, item: _Item) -> None:
        with self._lock:
            self._items.append(item)
            if self._wake_scheduled:
                return
            self._wake_scheduled = True
        # RuntimeError: the loop is closed, nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._wake.set)

    async def next_batch(self) -> list[_Item]:
        """Everything posted since the last call (waits for at least one item)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            with self._lock:
                self._wake_scheduled = False
                items = list(self._items)
                self._items.clear()
            if items:
                return items

    def _run(self) -> None:
        pipe = self.pipe
        while not self.stop.is_set():
            started = time.monotonic()
            self.busy_since_mono_s = started
            try:
                sample, step = _read_and_infer(pipe, self.tap)
            except Exception as exc:  # a bad sample must not kill a 24/7 pipeline
                self.busy_since_mono_s = None
                self._post(("error", None, None, exc))
                self.stop.wait(pipe.controller.period_s)
                continue
            self.busy_since_mono_s = None
            if sample is None or step is None:
                if self.tap.ended if self.tap is not None else pipe.source.exhausted:
                    self._post(("end", None, None, None))
                    return
                continue
            self._post(("result", sample, step, None))
            if self.tap is not None:
                continue
            wait_s = pipe.controller.period_s - (time.monotonic() - started)
            if wait_s > 0:
                self.stop.wait(wait_s)
        self._post(("stopped", None, None, None))


    # -- several frames in flight (pipe.inflight > 1) ------------------------------------

    def _release(self, seq: int, item: _Item) -> None:
        """Hand ``item`` (the ``seq``-th) to the loop once every earlier one is."""
        with self._order_lock:
            self._held[seq] = item
            while self._next_post in self._held:
                self._post(self._held.pop(self._next_post))
                self._next_post += 1

    def _run_lane(self) -> None:
        """One of the pipeline's threads: read and gate in turn (paced together at the
        controller's rate), run the model beside the others, results in frame order."""
        pipe = self.pipe
        try:
            while not self.stop.is_set():
                with self._read_lock:
                    if self._ended:
                        return
                    # Bounded: no new read while as many results as lanes wait for an
                    # earlier one (a stalled peer must not pile frames up in memory).
                    while self._seq - self._next_post >= len(self._threads):
                        if self.stop.wait(0.005):
                            return
                    wait_s = self._next_read_s - time.monotonic()
                    if wait_s > 0 and self.stop.wait(wait_s):
                        return
                    started = time.monotonic()
                    self.busy_since_mono_s = started
                    try:
                        sample = pipe.source.read(READ_TIMEOUT_S)
                        if sample is None:
                            self.busy_since_mono_s = None
                            if pipe.source.exhausted:
                                self._ended = True
                                seq, self._seq = self._seq, self._seq + 1
                                self._release(seq, ("end", None, None, None))
                                return
                            continue
                        begun = pipe.begin(sample)
                    except Exception as exc:  # a bad sample must not kill the pipeline
                        self.busy_since_mono_s = None
                        seq, self._seq = self._seq, self._seq + 1
                        self._release(seq, ("error", None, None, exc))
                        self._next_read_s = time.monotonic() + pipe.controller.period_s
                        continue
                    seq, self._seq = self._seq, self._seq + 1
                    self._next_read_s = max(started, self._next_read_s) + \
                        pipe.controller.period_s
                try:
                    step = begun if isinstance(begun, Step) else pipe.finish(sample, begun)
                except Exception as exc:
                    self._release(seq, ("error", None, None, exc))
                    continue
                finally:
                    self.busy_since_mono_s = None
                self._release(seq, ("result", sample, step, None))
        finally:
            with self._order_lock:
                self._lanes_left -= 1
                last = self._lanes_left == 0
            if last:
                with self._read_lock:
                    seq, self._seq = self._seq, self._seq + 1
                self._release(seq, ("stopped", None, None, None))


def _read_and_infer(pipe: Pipeline, tap: Tap | None = None
                    ) -> tuple[Sample | None, Step | None]:
    """Executor side of one pipeline iteration: the newest sample, processed."""
    sample = tap.get(READ_TIMEOUT_S) if tap is not None else pipe.source.read(READ_TIMEOUT_S)
    if sample is None:
        return None, None
    return sample, pipe.infer(sample)


class SharedReader:
    """The one reader of a shared source: a thread that reads it at the highest rate its
    pipelines want and offers each sample to every pipeline's tap.

    It never waits for a pipeline: a tap keeps only the newest due sample.
    """

    def __init__(self, shared: SharedSource, stop: threading.Event,
                 errors: RateLimitedLog) -> None:
        self.shared = shared
        self.stop = stop
        self.errors = errors
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"source-{shared.source.source_id}")

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def join(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the thread to end."""
        self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        """True while the thread runs (after a join: it is stuck in the source)."""
        return self._thread.is_alive()

    def _run(self) -> None:
        shared = self.shared
        source = shared.source
        try:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    sample = source.read(READ_TIMEOUT_S)
                    if sample is not None:
                        shared.publish(sample)
                except Exception as exc:  # a bad read must not end a 24/7 source
                    message = f"{type(exc).__name__}: {exc}"
                    source.stats.errors += 1
                    source.stats.last_error = message
                    # Each pipeline reading the source counts it, as a lone one would.
                    for pipe in shared.pipelines:
                        pipe.stats.errors += 1
                        pipe.stats.last_error = message
                    self.errors.error(f"read-{source.source_id}", "source %r: %s",
                                      source.source_id, message)
                    self.stop.wait(shared.period_s)
                    continue
                if sample is None:
                    if source.exhausted:
                        log.info("source %r has ended", source.source_id)
                        return
                    continue
                wait_s = shared.period_s - (time.monotonic() - started)
                if wait_s > 0:
                    self.stop.wait(wait_s)
        finally:
            if not self.stop.is_set():
                # The source ended (or the reader failed): each pipeline takes what its
                # tap holds, then ends. On a stop the stopper closes the taps instead.
                shared.end()
