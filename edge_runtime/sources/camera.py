"""Camera sources: OpenCV (V4L2 index, video file, RTSP/HTTP MJPEG URL) and picamera2.

A background thread reads frames as the device delivers them and keeps only the newest
(:class:`~edge_runtime.sources.base.LatestSlot`), so a model slower than the camera never
makes latency grow: superseded frames are dropped and counted. When a stream drops, the
thread reconnects with capped, jittered exponential backoff. A video file plays at its
own frame rate (``realtime``) and optionally loops; ``lossless`` makes the reader wait
for the consumer instead of dropping (for benchmarks and offline processing).

Network streams (``rtsp://``, HTTP MJPEG) go through OpenCV's bundled FFmpeg. Notes from
testing RTSP against a real server (``tests/sources/test_camera_rtsp.py``):

- RTP comes interleaved in the RTSP TCP connection: OpenCV asks FFmpeg for
  ``rtsp_flags=prefer_tcp`` unless ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` is set (then those
  options apply instead, e.g. ``rtsp_transport;udp`` for a camera that only does UDP).
  TCP loses no packets to Wi-Fi and crosses NAT and firewalls.
- Every open and read is bounded (:data:`STREAM_OPEN_TIMEOUT_S`,
  :data:`STREAM_READ_TIMEOUT_S`): a camera that loses power mid-stream sends no TCP
  reset, so without the read timeout the reader would wait forever.
- A new connection's first frame waits for the camera's next keyframe, which can be
  seconds away: until :data:`STREAM_FIRST_FRAME_TIMEOUT_S`, reads that time out are
  retried on the same connection instead of counting as a dropped stream.
- OpenCV serializes FFmpeg opens process-wide, so a camera whose open hangs delays
  other cameras' opens (and reconnects) by up to :data:`STREAM_OPEN_TIMEOUT_S`.
- ``close()`` waits at most a second for the reader. One stuck in a network call ends
  on its own within the timeouts above and stops as soon as that call returns, even if
  the camera has been opened again meanwhile (each reader has its own stop event).

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

#: How long opening a network stream may take. FFmpeg probes a live H.264 stream until
#: this runs out (it would go on for 3-5 s) and keeps what it learnt, so it is also how
#: long such an open takes. Longer only delays opens; 1 s was too short on loopback.
STREAM_OPEN_TIMEOUT_S = 3.0
#: How long a network stream may stay silent before it counts as dropped (reconnect).
STREAM_READ_TIMEOUT_S = 3.0
#: How long after connecting the first frame may take. A decoder starts at a keyframe,
#: and cameras send one every 1-10 s (longer with "smart" codecs), so reads that time out
#: before the first frame are retried until this runs out. Counted from the open.
STREAM_FIRST_FRAME_TIMEOUT_S = 15.0
#: Largest frame delivered by default (pixels): 4096 x 4096, well above a 4K camera.
#: A larger frame (a hostile or broken stream sending a 50 MB JPEG) is dropped and
#: counted as an error: each one held would cost hundreds of MB on a 512 MB board.
DEFAULT_MAX_FRAME_PIXELS = 4096 * 4096


def backoff_delays(min_s: float, max_s: float, *, jitter: float = 0.2) -> Any:
    """Endless generator of reconnect delays: doubling from ``min_s`` up to ``max_s``.

    Each delay gets +-``jitter`` (fraction) of random spread so that many devices that
    lost the same server do not reconnect in lock step. ``max_s`` bounds the delay with
    its jitter: once the doubling reaches it, delays spread below it, never above.
    """
    delay = min(min_s, max_s)
    while True:
        high_s = min(max_s, delay * (1.0 + jitter))
        yield random.uniform(min(delay * (1.0 - jitter), high_s), high_s)
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
        max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS,
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
        self.max_frame_pixels = max_frame_pixels
        self._oversized = 0
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

        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(STREAM_OPEN_TIMEOUT_S * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(STREAM_READ_TIMEOUT_S * 1000)]
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

    def _run(self, stop: threading.Event) -> None:
        # ``stop`` belongs to this reader alone: a reader that close() gave up waiting for
        # (stuck in a network call) must not run on when the camera is opened again.
        delays = backoff_delays(self.reconnect_min_s, self.reconnect_max_s)
        cap: Any = None
        first = True
        period_s = 0.0
        next_due = 0.0
        #: Until a new stream's first frame: when to stop waiting for its first keyframe.
        first_frame_due: float | None = None
        try:
            while not stop.is_set():
                if cap is None:
                    opened_at = time.monotonic()
                    try:
                        cap = self._capture()
                    except SourceUnavailableError as exc:
                        if stop.is_set():
                            break
                        self.stats.errors += 1
                        self.stats.last_error = str(exc)
                        self.stats.connected = False
                        delay = next(delays)
                        # INFO: the daemon says once that the source dropped out (and
                        # when it is back) instead of a line per attempt.
                        log.info("%s; retrying in %.1f s", exc, delay)
                        stop.wait(delay)
                        continue
                    if stop.is_set():
                        break
                    if not first and not self.is_file:
                        self.stats.reconnects += 1
                        log.info("camera %r reconnected to %s", self.source_id, self.describe())
                    first = False
                    self.stats.connected = True
                    period_s = self._frame_period_s(cap) if self.is_file else 0.0
                    next_due = time.monotonic()
                    if self.url is not None:
                        first_frame_due = opened_at + STREAM_FIRST_FRAME_TIMEOUT_S
                read_at = time.monotonic()
                ok, frame = cap.read()
                if stop.is_set():
                    break
                if not ok or frame is None:
                    now = time.monotonic()
                    if (first_frame_due is not None and now < first_frame_due
                            and now - read_at >= STREAM_READ_TIMEOUT_S / 2):
                        # Timed out (not closed) before the first keyframe: keep waiting.
                        continue
                    first_frame_due = None
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
                    # The backoff resets only when a frame arrives: a server that
                    # accepts and drops at once is retried ever more slowly, not in a
                    # tight loop of connections and log lines.
                    delay = next(delays)
                    log.info("camera %r: stream dropped; reconnecting in %.1f s",
                                self.source_id, delay)
                    stop.wait(delay)
                    continue
                if self.is_file and self.realtime:
                    # Play a file at its own frame rate, as a camera would deliver it.
                    wait_s = next_due - time.monotonic()
                    if wait_s > 0 and stop.wait(wait_s):
                        break
                    next_due = max(next_due + period_s, time.monotonic() - period_s)
                first_frame_due = None
                if frame.shape[0] * frame.shape[1] > self.max_frame_pixels:
                    self._refuse_oversized(frame.shape)
                    continue
                delays = backoff_delays(self.reconnect_min_s, self.reconnect_max_s)
                self._deliver(frame, stop)
        finally:
            if cap is not None:
                cap.release()
            if self._stop is stop:  # not when a newer reader owns the stats
                self.stats.connected = False

    def _refuse_oversized(self, shape: tuple[int, ...]) -> None:
        """Count a frame larger than ``max_frame_pixels``; say so once per 100."""
        self._oversized += 1
        self.stats.errors += 1
        self.stats.last_error = (f"frame of {shape[1]}x{shape[0]} pixels is over the "
                                 f"{self.max_frame_pixels} pixel limit; dropped")
        if self._oversized == 1 or self._oversized % 100 == 0:
            log.warning("camera %r: %s (%d so far; raise max_frame_pixels if this camera "
                        "really sends such frames)", self.source_id, self.stats.last_error,
                        self._oversized)

    def _deliver(self, frame: npt.NDArray[np.uint8], stop: threading.Event) -> None:
        sample = Sample(self.source_id, time.monotonic(), self._next_seq(), frame=frame)
        if self.lossless:
            # Back-pressure instead of dropping: wait until the consumer took the last one.
            while not stop.is_set():
                if self._consumed.wait(0.1):
                    break
            self._consumed.clear()
        self._slot.put(sample)

    # -- Source interface ---------------------------------------------------------------

    def _open(self) -> None:
        self._stop = threading.Event()
        self._ended = False
        self._slot.reopen()
        self._consumed.set()
        self._thread = threading.Thread(
            target=self._run, args=(self._stop,), name=f"camera-{self.source_id}", daemon=True
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
            # A network open or read can block up to STREAM_OPEN/READ_TIMEOUT_S; the thread
            # is a daemon with its own stop event, so a slow one holds up nothing.
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
