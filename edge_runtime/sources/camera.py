"""Camera sources: OpenCV (V4L2 index, video file, RTSP/HTTP MJPEG URL) and picamera2.

A background thread reads frames as the device delivers them and keeps only the newest
(:class:`~edge_runtime.sources.base.LatestSlot`), so a model slower than the camera never
makes latency grow: superseded frames are dropped and counted. When a stream drops, the
thread reconnects with capped, jittered exponential backoff. A video file plays at its
own frame rate (``realtime``) and optionally loops; ``lossless`` makes the reader wait
for the consumer instead of dropping (for benchmarks and offline processing).

OpenCV and picamera2 are imported only when a camera is opened.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.errors import SourceUnavailableError
from edge_runtime.sources.base import LatestSlot, Sample, Source

log = logging.getLogger(__name__)

#: How long OpenCV may wait for a network stream to open or deliver a frame.
STREAM_TIMEOUT_S = 3.0


def backoff_delays(min_s: float, max_s: float, *, jitter: float = 0.2) -> Any:
    """Endless generator of reconnect delays: doubling from ``min_s`` up to ``max_s``.

    Each delay gets +-``jitter`` (fraction) of random spread so that many devices that
    lost the same server do not reconnect in lock step.
    """
    delay = min_s
    while True:
        yield delay * (1.0 + random.uniform(-jitter, jitter))
        delay = min(max_s, delay * 2.0)


class OpenCVCamera(Source):
    """A camera, video file or network stream read through ``cv2.VideoCapture``.

    Exactly one of ``device`` (V4L2 index), ``path`` (video file) and ``url``
    (``rtsp://``, ``http://`` MJPEG...) must be given.
    """

    kind = "frame"

    def __init__(
        self,
        source_id: str,
        *,
        device: int | None = None,
        path: str | Path | None = None,
        url: str | None = None,
        width: int | None = None,
        height: int | None = None,
        fps_hz: float | None = None,
        loop: bool = False,
        realtime: bool = True,
        lossless: bool = False,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 10.0,
    ) -> None:
        given = [x for x in (device, path, url) if x is not None]
        if len(given) != 1:
            raise ValueError("exactly one of device, path or url must be given for a camera")
        super().__init__(source_id)
        self.device = device
        self.path = Path(path) if path is not None else None
        self.url = url
        self.width = width
        self.height = height
        self.fps_hz = fps_hz
        self.loop = loop
        self.realtime = realtime
        self.lossless = lossless
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self._slot = LatestSlot(self.stats)
        self._stop = threading.Event()
        self._consumed = threading.Event()
        self._thread: threading.Thread | None = None
        self._ended = False

    @property
    def is_file(self) -> bool:
        """True for a video file (finite, may loop), False for a live device or stream."""
        return self.path is not None

    @property
    def exhausted(self) -> bool:
        return self._ended and self._slot.empty

    def describe(self) -> str:
        """Where frames come from, for logs."""
        if self.path is not None:
            return str(self.path)
        if self.url is not None:
            return self.url
        return f"/dev/video{self.device}"

    # -- device access (reader thread only) --------------------------------------------

    def _capture(self) -> Any:
        import cv2

        timeout_ms = int(STREAM_TIMEOUT_S * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                  timeout_ms]
        if self.path is not None:
            if not self.path.is_file():
                raise SourceUnavailableError(f"camera {self.source_id!r}: no file {self.path}")
            cap = cv2.VideoCapture(str(self.path))
        elif self.url is not None:
            cap = cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)
        else:
            assert self.device is not None
            cap = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise SourceUnavailableError(
                f"camera {self.source_id!r}: cannot open {self.describe()}"
            )
        if self.device is not None:
            if self.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            if self.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            if self.fps_hz:
                cap.set(cv2.CAP_PROP_FPS, self.fps_hz)
        return cap

    def _frame_period_s(self, cap: Any) -> float:
        import cv2

        fps = self.fps_hz or float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not fps or fps > 1000:
            fps = 25.0
        return 1.0 / fps

    def _run(self) -> None:
        delays = backoff_delays(self.reconnect_min_s, self.reconnect_max_s)
        cap: Any = None
        first = True
        period_s = 0.0
        next_due = 0.0
        try:
            while not self._stop.is_set():
                if cap is None:
                    try:
                        cap = self._capture()
                    except SourceUnavailableError as exc:
                        self.stats.errors += 1
                        self.stats.last_error = str(exc)
                        self.stats.connected = False
                        delay = next(delays)
                        log.warning("%s; retrying in %.1f s", exc, delay)
                        self._stop.wait(delay)
                        continue
                    if not first and not self.is_file:
                        self.stats.reconnects += 1
                        log.info("camera %r reconnected to %s", self.source_id, self.describe())
                    first = False
                    self.stats.connected = True
                    delays = backoff_delays(self.reconnect_min_s, self.reconnect_max_s)
                    period_s = self._frame_period_s(cap) if self.is_file else 0.0
                    next_due = time.monotonic()
                ok, frame = cap.read()
                if not ok or frame is None:
                    cap.release()
                    cap = None
                    self.stats.connected = False
                    if self.is_file:
                        if self.loop:
                            continue
                        self._ended = True
                        self._slot.close()
                        return
                    self.stats.errors += 1
                    self.stats.last_error = f"stream {self.describe()} dropped"
                    log.warning("camera %r: stream dropped; reconnecting", self.source_id)
                    continue
                if self.is_file and self.realtime:
                    # Play a file at its own frame rate, as a camera would deliver it.
                    wait_s = next_due - time.monotonic()
                    if wait_s > 0 and self._stop.wait(wait_s):
                        break
                    next_due = max(next_due + period_s, time.monotonic() - period_s)
                self._deliver(frame)
        finally:
            if cap is not None:
                cap.release()
            self.stats.connected = False

    def _deliver(self, frame: npt.NDArray[np.uint8]) -> None:
        sample = Sample(self.source_id, time.monotonic(), self._next_seq(), frame=frame)
        if self.lossless:
            # Back-pressure instead of dropping: wait until the consumer took the last one.
            while not self._stop.is_set():
                if self._consumed.wait(0.1):
                    break
            self._consumed.clear()
        self._slot.put(sample)

    # -- Source interface ---------------------------------------------------------------

    def _open(self) -> None:
        self._stop.clear()
        self._ended = False
        self._slot.reopen()
        self._consumed.set()
        self._thread = threading.Thread(
            target=self._run, name=f"camera-{self.source_id}", daemon=True
        )
        self._thread.start()

    def _read(self, timeout_s: float) -> Sample | None:
        sample = self._slot.get(timeout_s)
        if sample is not None:
            self._consumed.set()
        return sample

    def _close(self) -> None:
        self._stop.set()
        self._slot.close()
        thread, self._thread = self._thread, None
        if thread is not None:
            # A network read can block up to STREAM_TIMEOUT_S; the thread is a daemon, so a
            # slow one does not hold up shutdown.
            thread.join(timeout=1.0)


class Picamera2Camera(Source):
    """The Raspberry Pi camera through picamera2, where that package is installed."""

    kind = "frame"

    def __init__(self, source_id: str, *, width: int = 640, height: int = 480) -> None:
        super().__init__(source_id)
        self.width = width
        self.height = height
        self._slot = LatestSlot(self.stats)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cam: Any = None

    def _open(self) -> None:
        try:
            from picamera2 import Picamera2  # type: ignore[import-not-found]
        except ImportError as exc:
            raise SourceUnavailableError(
                f"camera {self.source_id!r}: picamera2 is not installed",
                hint="install python3-picamera2 (apt) or use type = 'camera' with a device",
            ) from exc
        try:
            cam = Picamera2()
            cam.configure(
                cam.create_video_configuration(
                    main={"size": (self.width, self.height), "format": "BGR888"}
                )
            )
            cam.start()
        except Exception as exc:  # picamera2 raises plain RuntimeError/IndexError
            raise SourceUnavailableError(f"camera {self.source_id!r}: {exc}") from exc
        self._cam = cam
        self.stats.connected = True
        self._stop.clear()
        self._slot.reopen()
        self._thread = threading.Thread(target=self._run, name=f"picam-{self.source_id}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            frame = self._cam.capture_array()
            self._slot.put(Sample(self.source_id, time.monotonic(), self._next_seq(),
                                  frame=np.ascontiguousarray(frame[:, :, :3])))

    def _read(self, timeout_s: float) -> Sample | None:
        return self._slot.get(timeout_s)

    def _close(self) -> None:
        self._stop.set()
        self._slot.close()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        if self._cam is not None:
            self._cam.stop()
            self._cam.close()
        self.stats.connected = False
