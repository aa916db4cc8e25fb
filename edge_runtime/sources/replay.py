"""Replay of a recorded sensor stream (CSV ``timestamp,value`` or NPY) at real or faster speed.

The replay behaves like a live sensor: a sample becomes available when its recorded time
(divided by ``speed``) has passed since :meth:`open`; a consumer that asks less often gets
the newest due sample and the skipped ones count as dropped. Like a bridge device in
peak-hold mode, the sample then carries the skipped rows' ``(min, max)`` as its
``envelope``, so a detector still sees a spike it did not read. ``lossless`` hands out every
sample in order instead (for offline processing). Videos are replayed by
:class:`~edge_runtime.sources.camera.OpenCVCamera` with ``path=``.

Recording formats (what :mod:`edge_runtime.sources.recorder` writes):

- CSV with a header naming ``timestamp`` and ``value`` columns. Timestamps are seconds
  (float) or ISO 8601 date-times (as in the NAB corpus). An empty or ``nan`` value is a
  missing sample (``value`` is NaN; the cleaning stage fills it).
- NPY of shape ``(n, 2)`` (seconds, value), or ``(n,)`` values at ``rate_hz``.
"""

from __future__ import annotations

import csv
import logging
import math
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TextIO

import numpy as np
import numpy.typing as npt

from edge_runtime.errors import RecordingError
from edge_runtime.sources.base import Sample, Source

log = logging.getLogger(__name__)

#: Time may step back by up to this much (s): a clock set back by an hour does that in
#: real recordings (NAB's machine-temperature file steps back 55 min). Further is an error.
MAX_BACKSTEP_S = 3600.0

FloatArray = npt.NDArray[np.float64]


#: Longest CSV line read (characters): a recording's fields are numbers and date-times,
#: so a longer line is a damaged or wrong file (binary, or one endless field), refused
#: with its line number instead of read whole into memory.
MAX_LINE_CHARS = 65536


def _shown(text: str) -> str:
    """``text`` for an error message: short, control characters escaped."""
    return repr(text if len(text) <= 40 else text[:40] + "...")


def _parse_time(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = datetime.fromisoformat(text.strip()).timestamp()
        except ValueError as exc:
            raise RecordingError(
                f"timestamp {_shown(text)} is neither seconds nor ISO 8601") from exc
    if not math.isfinite(seconds):
        raise RecordingError(f"timestamp {_shown(text)} is not a time")
    return seconds


def _parse_value(text: str) -> float:
    text = text.strip()
    if not text:
        return math.nan
    try:
        return float(text)
    except ValueError as exc:
        raise RecordingError(f"value {_shown(text)} is not a number") from exc


def load_recording(path: Path, *, rate_hz: float | None = None) -> tuple[FloatArray, FloatArray]:
    """Read a CSV or NPY recording; returns (seconds from the first sample, values).

    Anything wrong with the file (not there, unreadable, not UTF-8, binary, a field
    longer than :data:`MAX_LINE_CHARS`, a timestamp that is not a finite time, an
    array of strings) is a :class:`RecordingError` that names the file and, for a CSV,
    the line.
    """
    if not path.is_file():
        raise RecordingError(f"no recording at {path}", hint="check the path in the config")
    try:
        if path.suffix.lower() == ".npy":
            t, v = _load_npy(path, rate_hz)
        else:
            t, v = _load_csv(path)
    except OSError as exc:
        raise RecordingError(f"cannot read {path}: {exc.strerror or exc}",
                             hint="check the file and the disk it is on") from exc
    if t.size == 0:
        raise RecordingError(f"{path} holds no samples")
    latest = np.maximum.accumulate(t)
    behind = latest - t
    if behind.max() > MAX_BACKSTEP_S:
        line = int(np.argmax(behind > MAX_BACKSTEP_S))
        raise RecordingError(
            f"{path}: sample {line + 1} is {behind[line]:.0f} s older than an earlier one "
            f"(more than the {MAX_BACKSTEP_S:.0f} s a clock change explains)",
            hint="sort the recording by time",
        )
    keep = behind == 0
    if not keep.all():
        # A clock set back (daylight saving, NTP) repeats a stretch of time; replaying it
        # would run time backwards, so the repeated samples are skipped, and said so.
        log.warning(
            "%s: skipped %d samples whose time repeats an earlier stretch (clock set back)",
            path, int((~keep).sum()),
        )
        t, v = t[keep], v[keep]
    return t - t[0], v


def _load_npy(path: Path, rate_hz: float | None) -> tuple[FloatArray, FloatArray]:
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise RecordingError(f"{path} is not a readable .npy file: {exc}") from exc
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        kind = arr.dtype if isinstance(arr, np.ndarray) else type(arr).__name__
        raise RecordingError(f"{path} holds {kind}, not numbers",
                             hint="save the recording as float seconds and values")
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 1:
        if not rate_hz:
            raise RecordingError(f"{path} holds values only; give rate_hz for it")
        t = np.arange(arr.shape[0], dtype=np.float64) / rate_hz
        v = arr
    elif arr.ndim == 2 and arr.shape[1] == 2:
        t, v = arr[:, 0].copy(), arr[:, 1].copy()
    else:
        raise RecordingError(f"{path} has shape {arr.shape}; expected (n, 2) or (n,)")
    bad = ~np.isfinite(t)
    if bad.any():
        raise RecordingError(f"{path}: sample {int(np.argmax(bad)) + 1} has time {t[bad][0]}, "
                             "not a finite time")
    return t, v


def _load_csv(path: Path) -> tuple[FloatArray, FloatArray]:
    times: list[float] = []
    values: list[float] = []
    lineno = 1
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(_bounded_lines(fh))
            header = [h.strip().lower() for h in next(reader, [])]
            if "timestamp" not in header or "value" not in header:
                raise RecordingError(
                    f"{path}: header {[_shown(h) for h in header][:8]} lacks timestamp "
                    "and value columns", hint="the first line must name them: timestamp,value")
            ti, vi = header.index("timestamp"), header.index("value")
            for lineno, row in enumerate(reader, start=2):
                if not row:
                    continue
                try:
                    times.append(_parse_time(row[ti]))
                    values.append(_parse_value(row[vi]) if vi < len(row) else math.nan)
                except (RecordingError, IndexError) as exc:
                    raise RecordingError(f"{path}:{lineno}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise RecordingError(f"{path}: byte {exc.start} of a line near line {lineno + 1} is "
                             "not UTF-8: is this a CSV recording?") from exc
    except (csv.Error, _FieldTooLongError) as exc:
        raise RecordingError(f"{path}:{lineno + 1}: {exc}: is this a CSV recording?") from exc
    return np.asarray(times, dtype=np.float64), np.asarray(values, dtype=np.float64)


class _FieldTooLongError(ValueError):
    pass


def _bounded_lines(fh: TextIO) -> Iterator[str]:
    """Lines of ``fh``, each read with a bound (:data:`MAX_LINE_CHARS`)."""
    limit = MAX_LINE_CHARS
    while line := fh.readline(limit + 1):
        if len(line) > limit:
            raise _FieldTooLongError(f"a line longer than {limit} characters")
        if "\0" in line:
            raise _FieldTooLongError("a line holds a NUL byte")
        yield line


class ReplaySource(Source):
    """Plays a CSV/NPY recording as a live scalar sensor, ``speed`` times faster than recorded."""

    kind = "scalar"

    def __init__(
        self,
        source_id: str,
        *,
        path: str | Path,
        speed: float = 1.0,
        loop: bool = False,
        lossless: bool = False,
        rate_hz: float | None = None,
    ) -> None:
        if speed <= 0:
            raise ValueError("replay speed must be > 0")
        super().__init__(source_id)
        self.path = Path(path)
        self.speed = speed
        self.loop = loop
        self.lossless = lossless
        self.rate_hz = rate_hz
        self._t: FloatArray = np.zeros(0)
        self._v: FloatArray = np.zeros(0)
        self._start_mono = 0.0
        self._next_index = 0
        self._ended = False
        self._stop = threading.Event()

    @property
    def exhausted(self) -> bool:
        return self._ended

    @property
    def duration_s(self) -> float:
        """Length of the recording in recorded seconds (0 before open)."""
        return float(self._t[-1]) if self._t.size else 0.0

    def _open(self) -> None:
        self._t, self._v = load_recording(self.path, rate_hz=self.rate_hz)
        self._start_mono = time.monotonic()
        self._next_index = 0
        self._ended = False
        self._stop.clear()
        self.stats.connected = True

    def _due_index(self, now: float) -> int:
        """Index of the newest sample whose time has come (-1 if none yet)."""
        elapsed_rec_s = (now - self._start_mono) * self.speed
        return int(np.searchsorted(self._t, elapsed_rec_s, side="right")) - 1

    def _read(self, timeout_s: float) -> Sample | None:
        deadline = time.monotonic() + timeout_s
        while not self._stop.is_set():
            if self._ended:
                return None
            now = time.monotonic()
            due = self._due_index(now)
            if due >= self._next_index:
                index = self._next_index if self.lossless else due
                skipped = index - self._next_index
                self.stats.produced += skipped + 1
                self.stats.dropped += skipped
                self._next_index = index + 1
                t_mono = self._start_mono + float(self._t[index]) / self.speed
                envelope = None
                if skipped:
                    # Like a device in peak-hold mode: the rows read past still count.
                    rows = self._v[index - skipped:index + 1]
                    rows = rows[np.isfinite(rows)]
                    if rows.size:
                        envelope = (float(rows.min()), float(rows.max()))
                sample = Sample(self.source_id, t_mono, self._next_seq(),
                                value=float(self._v[index]), envelope=envelope)
                if self._next_index >= self._t.size:
                    self._wrap_or_end()
                return sample
            # Sleep until the next sample is due, or the caller's timeout.
            next_due = self._start_mono + float(self._t[self._next_index]) / self.speed
            wait_s = min(next_due, deadline) - now
            if wait_s <= 0 and now >= deadline:
                return None
            self._stop.wait(max(wait_s, 1e-4))
        return None

    def _wrap_or_end(self) -> None:
        if self.loop:
            period_s = self.duration_s / self.speed + (
                float(np.median(np.diff(self._t))) / self.speed if self._t.size > 1 else 1.0
            )
            self._start_mono += period_s
            self._next_index = 0
        else:
            self._ended = True
            self.stats.connected = False

    def _close(self) -> None:
        self._stop.set()
        self.stats.connected = False
