"""Recorder: writes any source to a file that :mod:`~edge_runtime.sources.replay` (or a
camera source with ``path=``) plays back.

The format follows the suffix: ``.csv`` (``timestamp,value``, seconds), ``.npy``
(``(n, 2)`` float64, written on close via a temporary file and rename so a power cut
never leaves a truncated file), ``.avi``/``.mp4``/``.mkv`` (video; MJPG in AVI works
with every OpenCV build).
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path
from typing import IO, Any

import numpy as np

from edge_runtime.errors import RecordingError
from edge_runtime.sources.base import Sample, Source

VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv")
SCALAR_SUFFIXES = (".csv", ".npy")


class Recorder:
    """Appends samples of one source to ``path``; use as a context manager."""

    def __init__(self, path: str | Path, *, fps_hz: float = 15.0) -> None:
        self.path = Path(path)
        self.fps_hz = fps_hz
        self.count = 0
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_SUFFIXES + SCALAR_SUFFIXES:
            raise RecordingError(f"cannot record to {self.path}: unknown suffix {suffix!r}",
                                 hint="use .csv, .npy, .avi, .mp4 or .mkv")
        self._suffix = suffix
        self._csv_fh: IO[str] | None = None
        self._csv: Any = None
        self._rows: list[tuple[float, float]] = []
        self._video: Any = None

    @property
    def is_video(self) -> bool:
        """True when this recorder writes frames."""
        return self._suffix in VIDEO_SUFFIXES

    def write(self, sample: Sample) -> None:
        """Append one sample; frames need a video path, scalars a CSV/NPY path."""
        if sample.audio is not None:
            raise RecordingError(
                f"source {sample.source_id!r} gives audio windows; {self.path.name} cannot "
                "hold them", hint="record sound with arecord (alsa-utils): "
                "arecord -f S16_LE -c 1 -r 16000 -d 60 out.wav")
        if (sample.frame is not None) != self.is_video:
            raise RecordingError(
                f"source {sample.source_id!r} gives {sample.kind} samples; "
                f"{self.path.name} cannot hold them",
                hint="record frames to .avi and sensor values to .csv or .npy",
            )
        if sample.frame is not None:
            self._write_frame(sample.frame)
        else:
            value = float(sample.value) if sample.value is not None else float("nan")
            if self._suffix == ".csv":
                if self._csv is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._csv_fh = self.path.open("w", newline="")
                    self._csv = csv.writer(self._csv_fh)
                    self._csv.writerow(["timestamp", "value"])
                self._csv.writerow([f"{sample.t_mono_s:.6f}", repr(value)])
            else:
                self._rows.append((sample.t_mono_s, value))
        self.count += 1

    def _write_frame(self, frame: np.ndarray[Any, Any]) -> None:
        import cv2

        if self._video is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            height, width = frame.shape[:2]
            fourcc = cv2.VideoWriter.fourcc(*("MJPG" if self._suffix == ".avi" else "mp4v"))
            self._video = cv2.VideoWriter(str(self.path), fourcc, self.fps_hz, (width, height),
                                          frame.ndim == 3)
            if not self._video.isOpened():
                raise RecordingError(f"OpenCV cannot write video {self.path}",
                                     hint="use an .avi path (MJPG)")
        self._video.write(frame)

    def close(self) -> None:
        """Flush and close; NPY files are written here, atomically."""
        if self._csv_fh is not None:
            self._csv_fh.flush()
            os.fsync(self._csv_fh.fileno())
            self._csv_fh.close()
            self._csv_fh = None
        if self._video is not None:
            self._video.release()
            self._video = None
        if self._suffix == ".npy":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".npy.tmp")
            with tmp.open("wb") as fh:
                np.save(fh, np.asarray(self._rows, dtype=np.float64).reshape(-1, 2))
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(self.path)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def record_source(
    source: Source,
    path: str | Path,
    *,
    duration_s: float,
    max_samples: int | None = None,
    rate_hz: float | None = None,
) -> int:
    """Record ``source`` into ``path`` for ``duration_s`` (or ``max_samples``); returns count.

    ``rate_hz`` polls scalar sources at that rate (cameras deliver at their own rate).
    """
    deadline = time.monotonic() + duration_s
    period_s = 1.0 / rate_hz if rate_hz else 0.0
    with source, Recorder(path, fps_hz=rate_hz or 15.0) as rec:
        while time.monotonic() < deadline and not source.exhausted:
            if max_samples is not None and rec.count >= max_samples:
                break
            started = time.monotonic()
            sample = source.read(timeout_s=min(1.0, max(0.0, deadline - started)))
            if sample is not None:
                rec.write(sample)
            if period_s:
                time.sleep(max(0.0, min(period_s - (time.monotonic() - started),
                                        deadline - time.monotonic())))
        return rec.count
