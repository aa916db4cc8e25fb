"""Sources that several pipelines read: one reader, a :class:`Tap` per pipeline.

:class:`SharedSource` opens a source once and offers each sample it reads to every
pipeline's :class:`Tap`; the source is read at the highest rate its pipelines' rate
controllers want. The daemon runs the reader (``Daemon._run_shared``); a source with a
single pipeline does not go through here at all.

Who builds what (``build.py``): a pipeline on a shared source gets its :class:`Tap` as
a constructor argument (``Pipeline(..., tap=Tap(pipeline_id, controller))``); the
:class:`SharedSource` is then built over those pipelines, reads their taps and listens
to their rate controllers. Nothing here writes attributes onto a pipeline.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Any

from edge_runtime.errors import EdgeRuntimeError
from edge_runtime.sources.base import Sample, Source, SourceStats

if TYPE_CHECKING:
    from edge_runtime.pipelines.pipeline import Pipeline
    from edge_runtime.sampling.controller import RateController

__all__ = ["SharedSource", "Tap"]

log = logging.getLogger(__name__)


class Tap:
    """One pipeline's share of a :class:`SharedSource`: the newest sample that is due at
    the pipeline's own rate ("latest wins, never queue", per pipeline).

    The source's one reader offers every sample it reads. A sample is *due* when this
    pipeline's rate is the rate the source is read at (then it takes every sample, as if
    it read the source alone), or when the sample's time is at least one period of the
    pipeline (1 / the rate its controller wants now) after the *slot* of the last sample
    it took. Taking a sample moves the slot on by one period, so on average the pipeline
    gets its own rate although the source's samples do not line up with its period. A
    pipeline that had fallen behind (a slow model) gets its slot moved to one period
    before the sample it took: like a lone pipeline that is late, it may take the next
    sample at once, but it never catches up on what it missed.

    Counters: ``skipped`` (offered but not due: the pipeline wants fewer samples than the
    source delivers), ``dropped`` (due, but replaced by a newer sample before the pipeline
    was free to take it: a slow pipeline), ``delivered`` (taken).

    A scalar sample's ``envelope`` keeps its meaning per pipeline: the values of the
    samples this pipeline skipped or dropped (and their envelopes) are folded into the
    envelope of the next sample it takes, so a spike between two of its reads still
    reaches its detector. Only then is the sample copied; frames never are.
    """

    def __init__(self, pipeline_id: str, controller: RateController) -> None:
        self.pipeline_id = pipeline_id
        self.controller = controller
        self.delivered = 0
        self.skipped = 0
        self.dropped = 0
        self._sample: Sample | None = None
        self._slot_t_s: float | None = None
        #: (min, max) of the values offered since the last take but not taken.
        self._missed: tuple[float, float] | None = None
        self._closed = False
        self._ended = False
        self._cond = threading.Condition()

    def due(self, t_s: float, source_rate_hz: float) -> bool:
        """Whether a sample taken at ``t_s`` is wanted, the source being read at
        ``source_rate_hz``."""
        rate_hz = self.controller.rate_hz
        if self._slot_t_s is None or rate_hz >= source_rate_hz:
            return True
        return t_s >= self._slot_t_s + 1.0 / rate_hz

    def offer(self, sample: Sample, source_rate_hz: float) -> bool:
        """Keep ``sample`` if it is due (replacing an untaken one); True if kept.

        While a due sample waits to be taken, every newer one is due too (the pipeline
        gets the newest, even if its rate dropped in between)."""
        with self._cond:
            if self._sample is None and not self.due(sample.t_mono_s, source_rate_hz):
                self.skipped += 1
                self._miss(sample)
                return False
            if self._sample is not None:
                self.dropped += 1
                self._miss(self._sample)
            self._sample = sample
            self._cond.notify_all()
            return True

    def get(self, timeout_s: float) -> Sample | None:
        """Take the kept sample, waiting up to ``timeout_s``; None on timeout, close or end."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._sample is None and not self._closed and not self._ended:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            sample, self._sample = self._sample, None
            if sample is not None:
                self.delivered += 1
                if self._missed is not None:
                    sample = self._with_missed(sample, self._missed)
                    self._missed = None
                period_s = 1.0 / self.controller.rate_hz
                t_s = sample.t_mono_s
                self._slot_t_s = t_s if self._slot_t_s is None else max(
                    self._slot_t_s + period_s, t_s - period_s)
            return sample

    def _miss(self, sample: Sample) -> None:
        """Remember the range of a sample this pipeline will never see."""
        if sample.value is None:
            return  # a frame: nothing to fold
        # A non-finite end never wins over a number (as in the bridge's envelopes).
        ends = [x for x in (sample.envelope or (sample.value,)) if math.isfinite(x)]
        if not ends:
            return
        lo, hi = min(ends), max(ends)
        if self._missed is not None:
            lo, hi = min(lo, self._missed[0]), max(hi, self._missed[1])
        self._missed = (lo, hi)

    @staticmethod
    def _with_missed(sample: Sample, missed: tuple[float, float]) -> Sample:
        """``sample`` with the missed range folded into its envelope."""
        if sample.value is None:
            return sample
        own = [x for x in (*(sample.envelope or ()), sample.value) if math.isfinite(x)]
        lo, hi = min([missed[0], *own]), max([missed[1], *own])
        return dataclasses.replace(sample, envelope=(lo, hi))

    @property
    def ended(self) -> bool:
        """True when the source has ended and the last sample has been taken."""
        return self._ended and self._sample is None

    def end(self) -> None:
        """The source has ended: wake the taker; a kept sample can still be taken."""
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def close(self) -> None:
        """Wake the taker for a stop; later ``get`` calls return at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def as_dict(self, source: SourceStats) -> dict[str, object]:
        """The pipeline's ``source_stats``: its own share, plus the source's connection."""
        return {"shared": True, "delivered": self.delivered, "skipped": self.skipped,
                "dropped": self.dropped, "connected": source.connected,
                "reconnects": source.reconnects}


class SharedSource:
    """A source that several pipelines read: opened once, read by one reader at the
    highest rate its pipelines' controllers want (:attr:`rate_hz`; a source that
    ``can_set_rate`` is told that rate, by :meth:`rate_changed`, which listens to every
    pipeline's controller), each sample offered to every pipeline's :class:`Tap`.

    Every pipeline must read ``source`` and have been built with its own tap
    (``Pipeline(..., tap=...)``); ValueError otherwise.

    Frames are shared, not copied: they are made read-only before they are offered, so
    a stage that changed one in place would fail loudly instead of changing what the
    other pipelines see (the motion gate and preprocessing make new arrays).
    """

    def __init__(self, source: Source, pipelines: list[Pipeline]) -> None:
        self.source = source
        self.pipelines = pipelines
        self.read = 0
        self._set_rate_hz: float | None = None
        #: Every pipeline's tap, in config order (built once: publish runs per sample).
        self.taps: list[Tap] = []
        for pipe in pipelines:
            if pipe.source is not source or pipe.tap is None:
                raise ValueError(f"pipeline {pipe.pipeline_id!r} does not read "
                                 f"{source.source_id!r} through a tap of its own")
            self.taps.append(pipe.tap)
            pipe.controller.listeners.append(self._on_rate_change)

    @property
    def rate_hz(self) -> float:
        """The rate to read the source at: the highest its pipelines want now (Hz)."""
        return max(pipe.controller.rate_hz for pipe in self.pipelines)

    @property
    def period_s(self) -> float:
        """Seconds between two reads at :attr:`rate_hz`."""
        return 1.0 / self.rate_hz

    def publish(self, sample: Sample) -> None:
        """Offer one sample the reader got to every pipeline (no copies)."""
        self.read += 1
        for array in (sample.frame, sample.audio):
            if array is not None:
                array.flags.writeable = False
        rate_hz = self.rate_hz
        for tap in self.taps:
            tap.offer(sample, rate_hz)

    def _on_rate_change(self, old_hz: float, new_hz: float, reason: str) -> None:
        self.rate_changed()

    def rate_changed(self) -> None:
        """A pipeline's rate changed: tell a source that can set its rate the highest."""
        if not self.source.can_set_rate:
            return
        rate_hz = self.rate_hz
        if rate_hz == self._set_rate_hz:
            return
        try:
            self.source.set_rate(rate_hz)
        except EdgeRuntimeError as exc:
            log.warning("source %r refused rate %.3g Hz: %s", self.source.source_id, rate_hz,
                        exc)
            return
        self._set_rate_hz = rate_hz
        self.source.stats.rate_hz = rate_hz
        log.info("source %r: rate %.3g Hz (the highest of pipelines %s)",
                 self.source.source_id, rate_hz,
                 ", ".join(pipe.pipeline_id for pipe in self.pipelines))

    def end(self) -> None:
        """The source has ended: every tap hands out what it holds, then ends."""
        for tap in self.taps:
            tap.end()

    def close(self) -> None:
        """Wake every pipeline waiting on its tap (for a stop)."""
        for tap in self.taps:
            tap.close()

    def status(self) -> dict[str, Any]:
        """The source once: its counters, its pipelines and the rate it is read at."""
        return {**self.source.stats.as_dict(), "read": self.read,
                "read_rate_hz": round(self.rate_hz, 4),
                "pipelines": [pipe.pipeline_id for pipe in self.pipelines]}
