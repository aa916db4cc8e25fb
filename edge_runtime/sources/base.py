"""The source interface: anything that yields timestamped samples (camera, sensor, replay).

A source is pulled, not pushed: the pipeline asks for the *newest* sample at the rate the
sampling controller chooses, so a slow consumer never makes a queue grow. Samples the
consumer never saw are counted as ``dropped`` ("latest frame wins").

Every source has two faces. The daemon's event loop awaits the async one; worker
threads, ``edge-runtime record`` and tests call the blocking one. Which thread runs what:

====================  ===========================================  =========================
method                default                                      called from
====================  ===========================================  =========================
``open``/``close``    ``_open``/``_close`` under a lock            any thread but the loop
``read(timeout_s)``   ``_read``: waits at most ``timeout_s``       one reader thread at a
                                                                   time, never the loop
``set_rate(rate_hz)`` raises NotImplementedError                   any thread, the loop too:
                                                                   must return at once
``aopen``/``aclose``  ``open``/``close`` in :attr:`Source.executor`  awaited on the loop
``aread(timeout_s)``  ``read`` in the executor (inline when        awaited on the loop
                      ``blocking_read`` is False)
``aset_rate``         ``set_rate`` in the executor                 awaited on the loop
====================  ===========================================  =========================

Implementing a blocking source (camera, replay, audio, GPIO): you **must** override ``_open``,
``_read`` and ``_close``; they run in an executor or a worker thread, never on the loop,
so they may block (``_read`` for at most ``timeout_s``). You **may** set ``can_set_rate``
and override ``set_rate`` when the device can change its own sampling rate (the rate
controller calls it on the loop whenever it changes the rate, so it must not wait for
the device), set ``blocking_read = False`` when ``_read`` returns at once (a GPIO poll:
the loop then calls it inline instead of paying for a thread hop), and override
``exhausted`` for a finite recording. The async methods then work unchanged.

Implementing a natively async source (the firmware bridge): subclass
:class:`AsyncSource`. You **must** override the coroutines ``_aopen``, ``_aread`` and
``_aclose``, and **may** override ``_aset_rate``; they all run on the loop that opened
the source (the daemon's, through ``aopen``) and must never block it. The blocking face
comes with the class: ``read`` and ``close`` from another thread hand the work to that
loop and wait with a timeout, and ``open`` outside the daemon (``edge-runtime record``,
tests) runs the source on a private loop in a thread named ``<id>-sync-loop`` until
``close``: the thin sync adapter, which the daemon never uses.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from edge_runtime.errors import SourceUnavailableError

SampleKind = Literal["frame", "scalar", "audio"]
_T = TypeVar("_T")
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of one source.

    ``t_mono_s`` is on the :func:`time.monotonic` clock of this process (for a replay, the
    moment the sample was due); ``seq`` counts samples produced by the source, so gaps in
    it are samples this consumer did not see. Exactly one of ``value`` (scalar sensors),
    ``frame`` (uint8 image, HxWx3 BGR or HxW gray) and ``audio`` (one window of sound:
    float32 mono samples in [-1, 1], oldest first, at the source's ``rate_hz``; ``t_mono_s``
    is when its last sample arrived) is set. Audio has a field of its own rather than
    sharing ``frame``: everything that looks at frames (motion gate, recorder, image
    preprocessing) would otherwise have to tell a sound from a 1 x N image.

    ``envelope`` is ``(min, max)`` of every value the sensor measured since the previous
    sample this consumer got, this one included, when the source knows it (a bridge
    device in peak-hold mode, a replay read slower than its file): a spike that fell
    between two reads still shows in it. ``None`` means only ``value`` is known.
    """

    source_id: str
    t_mono_s: float
    seq: int
    value: float | None = None
    frame: npt.NDArray[np.uint8] | None = None
    envelope: tuple[float, float] | None = None
    audio: npt.NDArray[np.float32] | None = None

    @property
    def kind(self) -> SampleKind:
        """``"frame"`` for images, ``"audio"`` for sound windows, ``"scalar"`` for sensor
        values."""
        if self.frame is not None:
            return "frame"
        return "audio" if self.audio is not None else "scalar"


@dataclass(slots=True)
class SourceStats:
    """Counters a source keeps for health reports and summaries."""

    produced: int = 0  # samples the device gave us
    delivered: int = 0  # samples handed to the consumer
    dropped: int = 0  # produced but superseded before the consumer asked
    reconnects: int = 0
    errors: int = 0
    last_error: str | None = None
    connected: bool = False
    rate_hz: float | None = None  # rate last requested through set_rate

    def as_dict(self) -> dict[str, object]:
        """Plain-dict view for JSON status replies."""
        return {
            "produced": self.produced,
            "delivered": self.delivered,
            "dropped": self.dropped,
            "reconnects": self.reconnects,
            "errors": self.errors,
            "last_error": self.last_error,
            "connected": self.connected,
            "rate_hz": self.rate_hz,
        }


class Source(ABC):
    """Base class of every source; see the module docstring for the contract."""

    #: What ``read`` returns: images, sound windows or scalar values.
    kind: ClassVar[SampleKind] = "scalar"
    #: True when :meth:`set_rate` changes how often the device itself samples.
    can_set_rate: ClassVar[bool] = False
    #: False when ``read`` returns at once (a GPIO poll): the daemon then calls it on the
    #: event loop instead of paying for a hop to an executor thread.
    blocking_read: ClassVar[bool] = True
    #: True for an :class:`AsyncSource`: its async methods run on the loop itself.
    async_native: ClassVar[bool] = False

    def __init__(self, source_id: str) -> None:
        self.source_id = source_id
        self.stats = SourceStats()
        #: Where the default async methods run the blocking ones; None: the loop's
        #: default executor. The daemon gives its own pool, so that a device stuck in
        #: ``open`` cannot hold up the process at exit.
        self.executor: concurrent.futures.Executor | None = None
        self._seq = 0
        self._opened = False
        self._lock = threading.Lock()

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def open(self) -> None:
        """Acquire the device or file; may raise :class:`SourceUnavailableError`."""
        with self._lock:
            if not self._opened:
                self._open()
                self._opened = True

    def close(self) -> None:
        """Release the device; safe to call twice and from any thread."""
        with self._lock:
            if self._opened:
                self._opened = False
                self._close()

    def read(self, timeout_s: float) -> Sample | None:
        """Newest sample not yet returned, waiting at most ``timeout_s``; None on timeout.

        Returns None for good (``exhausted`` becomes True) when a finite recording ends.
        """
        sample = self._read(timeout_s)
        if sample is not None:
            self.stats.delivered += 1
        return sample

    @property
    def exhausted(self) -> bool:
        """True when the source will never produce another sample (end of a recording)."""
        return False

    def set_rate(self, rate_hz: float) -> None:
        """Ask the device to sample at ``rate_hz``; only when ``can_set_rate`` is True."""
        raise NotImplementedError(f"source {self.source_id!r} cannot change its own rate")

    # -- the async face (awaited on the event loop) -----------------------------------

    async def aopen(self) -> None:
        """:meth:`open`, awaited on the loop (by default in :attr:`executor`)."""
        await asyncio.get_running_loop().run_in_executor(self.executor, self.open)

    async def aread(self, timeout_s: float) -> Sample | None:
        """:meth:`read`, awaited on the loop: in :attr:`executor`, or inline when
        ``blocking_read`` is False (the read returns at once)."""
        if not self.blocking_read:
            return self.read(timeout_s)
        return await asyncio.get_running_loop().run_in_executor(
            self.executor, self.read, timeout_s)

    async def aclose(self) -> None:
        """:meth:`close`, awaited on the loop (by default in :attr:`executor`)."""
        await asyncio.get_running_loop().run_in_executor(self.executor, self.close)

    async def aset_rate(self, rate_hz: float) -> None:
        """:meth:`set_rate`, awaited on the loop; may raise the device's refusal."""
        await asyncio.get_running_loop().run_in_executor(self.executor, self.set_rate, rate_hz)

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def _open(self) -> None: ...

    @abstractmethod
    def _read(self, timeout_s: float) -> Sample | None: ...

    @abstractmethod
    def _close(self) -> None: ...


class AsyncSource(Source):
    """Base of a source whose real implementation is async (see the module docstring).

    Everything it does runs on one loop: the one that awaited :meth:`aopen`, or, when
    :meth:`open` was called outside any loop, a private loop in a thread that lives until
    :meth:`close`. :meth:`run_soon` schedules work on that loop from anywhere.
    """

    async_native = True
    #: Longest the blocking ``open``/``close`` wait for the source's loop (seconds).
    sync_timeout_s: float = 30.0
    #: Added to ``timeout_s`` when a blocking ``read`` waits for the source's loop.
    read_grace_s: float = 1.0

    def __init__(self, source_id: str) -> None:
        super().__init__(source_id)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._private: _PrivateLoop | None = None

    @abstractmethod
    async def _aopen(self) -> None:
        """Acquire the device on the running loop; clean up before raising."""

    @abstractmethod
    async def _aread(self, timeout_s: float) -> Sample | None:
        """Newest sample not yet returned, waiting at most ``timeout_s`` without
        blocking the loop."""

    @abstractmethod
    async def _aclose(self) -> None:
        """Release the device (called once per successful open)."""

    async def _aset_rate(self, rate_hz: float) -> None:
        """Ask the device for ``rate_hz`` and wait for its answer."""
        raise NotImplementedError(f"source {self.source_id!r} cannot change its own rate")

    # -- async face: on the loop ----------------------------------------------------------

    async def aopen(self) -> None:
        if self._opened:
            return
        self._loop = asyncio.get_running_loop()
        try:
            await self._aopen()
        except BaseException:
            self._loop = None
            raise
        self._opened = True

    async def aread(self, timeout_s: float) -> Sample | None:
        sample = await self._aread(timeout_s)
        if sample is not None:
            self.stats.delivered += 1
        return sample

    async def aclose(self) -> None:
        if not self._opened:
            return
        if self._loop is not asyncio.get_running_loop():
            raise RuntimeError(f"source {self.source_id!r} was opened on another loop "
                               "(with open()): close it with close()")
        self._opened = False
        await self._aclose()

    async def aset_rate(self, rate_hz: float) -> None:
        await self._aset_rate(rate_hz)

    def run_soon(self, coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        """Schedule ``coro`` on the source's loop from any thread (the loop's too) and
        return at once; the future says how it ended."""
        loop = self._loop
        if loop is None:
            coro.close()
            raise SourceUnavailableError(f"source {self.source_id!r} is not open")
        return asyncio.run_coroutine_threadsafe(coro, loop)

    # -- blocking face: the thin sync adapter ----------------------------------------------

    def _open(self) -> None:
        private = _PrivateLoop(f"{self.source_id}-sync-loop")
        self._private, self._loop = private, private.loop
        try:
            private.run(self._aopen(), self.sync_timeout_s, self.source_id)
        except BaseException:
            self._stop_private_loop()
            raise

    def _read(self, timeout_s: float) -> Sample | None:
        return self._wait_on_loop(self._aread(timeout_s), timeout_s + self.read_grace_s)

    def _close(self) -> None:
        try:
            self._wait_on_loop(self._aclose(), self.sync_timeout_s)
        finally:
            self._stop_private_loop()

    def _wait_on_loop(self, coro: Coroutine[Any, Any, _T], timeout_s: float) -> _T:
        loop = self._loop
        if loop is None or loop.is_closed():
            coro.close()
            raise SourceUnavailableError(f"source {self.source_id!r} is not open")
        if _running_loop() is loop:
            coro.close()
            raise RuntimeError(f"source {self.source_id!r}: a blocking call on its own loop; "
                               "await the a... method instead")
        return _wait(asyncio.run_coroutine_threadsafe(coro, loop), timeout_s, self.source_id)

    def _stop_private_loop(self) -> None:
        private, self._private = self._private, None
        if private is not None:
            self._loop = None
            private.stop()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _wait(future: concurrent.futures.Future[_T], timeout_s: float, source_id: str) -> _T:
    try:
        return future.result(timeout_s)
    except concurrent.futures.TimeoutError as exc:
        future.cancel()
        raise SourceUnavailableError(
            f"source {source_id!r}: its event loop did not answer within {timeout_s:g} s",
            hint="the loop that opened the source is blocked or has stopped") from exc


class _PrivateLoop:
    """An event loop in a thread of its own, from ``open`` to ``close`` of an
    :class:`AsyncSource` used without the daemon. Stopping it ends its tasks, its
    executor threads and the thread itself, as :func:`asyncio.run` would."""

    def __init__(self, name: str) -> None:
        self._stopped = asyncio.Event()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._main, args=(ready,), name=name,
                                        daemon=True)
        self._thread.start()
        ready.wait()
        self.loop: asyncio.AbstractEventLoop = self._runner_loop

    def _main(self, ready: threading.Event) -> None:
        with asyncio.Runner() as runner:
            self._runner_loop = runner.get_loop()
            ready.set()
            runner.run(self._stopped.wait())

    def run(self, coro: Coroutine[Any, Any, _T], timeout_s: float, source_id: str) -> _T:
        """Run ``coro`` on this loop and wait for it at most ``timeout_s``."""
        return _wait(asyncio.run_coroutine_threadsafe(coro, self.loop), timeout_s, source_id)

    def stop(self, timeout_s: float = 5.0) -> None:
        """End the loop and join its thread."""
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                _log.warning("thread %s did not end within %g s", self._thread.name, timeout_s)


@dataclass
class LatestSlot:
    """A one-sample mailbox for producer threads: a new sample replaces an unread one.

    The replaced sample counts as dropped in ``stats``. ``get`` waits with a timeout.
    """

    stats: SourceStats
    _sample: Sample | None = None
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _closed: bool = False

    def put(self, sample: Sample) -> None:
        """Store ``sample``, dropping an unread older one."""
        with self._cond:
            self.stats.produced += 1
            if self._sample is not None:
                self.stats.dropped += 1
            self._sample = sample
            self._cond.notify_all()

    def get(self, timeout_s: float) -> Sample | None:
        """Take the stored sample, waiting up to ``timeout_s`` for one."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._sample is None and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            sample, self._sample = self._sample, None
            return sample

    @property
    def empty(self) -> bool:
        """True when no unread sample is waiting."""
        return self._sample is None

    def close(self) -> None:
        """Wake every waiter; later ``get`` calls return at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        """Allow waiting again after :meth:`close`."""
        with self._cond:
            self._closed = False
            self._sample = None
