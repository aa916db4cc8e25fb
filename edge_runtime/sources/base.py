"""The source interface: anything that yields timestamped samples (camera, sensor, replay).

A source is pulled, not pushed: the pipeline asks for the *newest* sample at the rate the
sampling controller chooses, so a slow consumer never makes a queue grow. Samples the
consumer never saw are counted as ``dropped`` ("latest frame wins").

``read`` blocks for at most ``timeout_s`` and is therefore called from an executor by the
daemon, never on the event loop. Implementers must override ``_open``, ``_read`` and
``_close``; they *may* set ``can_set_rate`` and override ``set_rate`` when the device can
change its own sampling rate (the firmware bridge does), which the rate controller then
calls whenever it changes the rate.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np
import numpy.typing as npt

SampleKind = Literal["frame", "scalar"]


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of one source.

    ``t_mono_s`` is on the :func:`time.monotonic` clock of this process (for a replay, the
    moment the sample was due); ``seq`` counts samples produced by the source, so gaps in
    it are samples this consumer did not see. Exactly one of ``value`` (scalar sensors)
    and ``frame`` (uint8 image, HxWx3 BGR or HxW gray) is set.

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

    @property
    def kind(self) -> SampleKind:
        """``"frame"`` for images, ``"scalar"`` for sensor values."""
        return "frame" if self.frame is not None else "scalar"


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

    #: What ``read`` returns: images or scalar values.
    kind: ClassVar[SampleKind] = "scalar"
    #: True when :meth:`set_rate` changes how often the device itself samples.
    can_set_rate: ClassVar[bool] = False
    #: False when ``read`` returns at once (a GPIO poll): the daemon then calls it on the
    #: event loop instead of paying for a hop to an executor thread.
    blocking_read: ClassVar[bool] = True

    def __init__(self, source_id: str) -> None:
        self.source_id = source_id
        self.stats = SourceStats()
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
