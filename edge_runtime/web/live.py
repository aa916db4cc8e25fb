"""What the page shows over time: the chart's ring of points, the camera JPEGs, events.

- :class:`History`: per pipeline, a bounded ring of ``(unix_s, value)`` points, one per
  ``chart_interval_s``, covering the last hour: the detection count of a detector
  model, else the anomaly/top score, else the raw value. Fed on the loop from the status.
- :class:`JpegCache`: the latest frame of a camera pipeline as JPEG with its boxes
  drawn, encoded only when someone asks and at most once per frame (concurrent viewers
  share one encode); nothing is done while nobody watches.
- :func:`read_events`: the most recent events of the upstream file sink's JSONL (blocking;
  only the file's tail is read), cached by size and mtime by :class:`EventTail`.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

#: Seconds of history the chart shows.
CHART_SPAN_S = 3600.0
#: Bytes read from the end of the event log for the recent events.
EVENTS_TAIL_BYTES = 256 * 1024
#: How many recent events the page gets.
RECENT_EVENTS = 30
#: JPEG quality of the live view (a LAN view, not an archive).
LIVE_JPEG_QUALITY = 75

Box = Sequence[Any]


def chart_value(pipe: dict[str, Any]) -> tuple[str, float] | None:
    """``(what, value)`` of a pipeline's last result for its chart, or None."""
    last = pipe.get("last_result") or {}
    for key, what in (("count", "detections"), ("score", "anomaly score"
                                                if pipe.get("model") is None else "score"),
                      ("value", "value")):
        value = last.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return what, float(value)
    return None


class History:
    """Rings of chart points per pipeline; see the module docstring."""

    def __init__(self, interval_s: float, span_s: float = CHART_SPAN_S) -> None:
        self.interval_s = interval_s
        self.maxlen = max(2, int(span_s / interval_s) + 1)
        self.points: dict[str, deque[tuple[float, float]]] = {}
        self.what: dict[str, str] = {}

    def add(self, now_unix_s: float, pipelines: dict[str, Any]) -> None:
        """One point per pipeline that has a value (pipelines gone are forgotten)."""
        for name in set(self.points) - set(pipelines):
            del self.points[name]
            self.what.pop(name, None)
        for name, pipe in pipelines.items():
            found = chart_value(pipe)
            if found is None:
                continue
            self.what[name], value = found
            ring = self.points.setdefault(name, deque(maxlen=self.maxlen))
            ring.append((round(now_unix_s, 3), value))

    def since(self, t_unix_s: float) -> dict[str, list[tuple[float, float]]]:
        """Points newer than ``t_unix_s`` per pipeline."""
        out = {}
        for name, ring in self.points.items():
            if ring and ring[-1][0] > t_unix_s:
                out[name] = [p for p in ring if p[0] > t_unix_s]
        return out


def encode_jpeg(frame: Any, boxes: Sequence[Box], quality: int = LIVE_JPEG_QUALITY) -> bytes:
    """Blocking (executor): ``frame`` (HxW or HxWx3 uint8 BGR) with ``boxes`` drawn, as
    JPEG bytes."""
    import cv2
    import numpy as np

    img = np.asarray(frame)
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif boxes:
        img = img.copy()
    h, w = img.shape[:2]
    thick = max(1, round(min(h, w) / 240))
    for box in boxes:
        x0, y0, x1, y1 = (float(v) for v in box[:4])
        if max(x0, y0, x1, y1) <= 1.0:  # fractions of the frame
            x0, x1, y0, y1 = x0 * w, x1 * w, y0 * h, y1 * h
        cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(y1)), (0, 255, 0), thick)
        label = " ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in box[4:6])
        if label.strip():
            cv2.putText(img, label, (int(x0), max(10, int(y0) - 4)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick, (0, 255, 0), thick)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("OpenCV could not encode the frame")
    return bytes(buf)


FrameView = tuple[float, Any, Sequence[Box]]


class JpegCache:
    """Latest JPEG per pipeline, encoded on demand once per frame key."""

    def __init__(self, frames: Callable[[str], FrameView | None], executor: Executor) -> None:
        self._frames = frames
        self._executor = executor
        self._cache: dict[str, tuple[float, bytes]] = {}
        self._encoding: dict[str, tuple[float, asyncio.Future[bytes]]] = {}
        #: Encodes done (a viewer at 4 Hz on a 2 Hz camera costs 2 a second, not 4).
        self.encodes = 0

    def has_frame(self, pipeline: str) -> bool:
        """Whether ``pipeline`` has a frame to show (cheap: no encoding)."""
        return self._frames(pipeline) is not None

    async def get(self, pipeline: str) -> tuple[float, bytes] | None:
        """``(frame key, JPEG)`` of the newest frame, or None when there is none."""
        view = self._frames(pipeline)
        if view is None:
            return None
        key, frame, boxes = view
        cached = self._cache.get(pipeline)
        if cached is not None and cached[0] == key:
            return cached
        pending = self._encoding.get(pipeline)
        if pending is not None and pending[0] == key:
            return key, await asyncio.shield(pending[1])
        future = asyncio.get_running_loop().run_in_executor(self._executor, encode_jpeg,
                                                            frame, list(boxes))
        self._encoding[pipeline] = (key, future)
        try:
            data = await asyncio.shield(future)
        finally:
            if self._encoding.get(pipeline, (None,))[0] == key:
                del self._encoding[pipeline]
        self.encodes += 1
        self._cache[pipeline] = (key, data)
        return key, data


def read_events(path: Path, limit: int = RECENT_EVENTS) -> list[dict[str, Any]]:
    """Blocking: the last ``limit`` events in the JSONL at ``path`` (newest first)."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            start = max(0, size - EVENTS_TAIL_BYTES)
            fh.seek(start)
            data = fh.read(EVENTS_TAIL_BYTES)
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    if start > 0:
        lines = lines[1:]  # the first line is cut
    events: list[dict[str, Any]] = []
    for line in reversed(lines):
        if b'"event"' not in line:
            continue
        try:
            msg = json.loads(line)
        except ValueError:
            continue  # a torn line
        if isinstance(msg, dict) and msg.get("kind") == "event":
            events.append({k: msg.get(k) for k in ("id", "ts_s", "pipeline", "type", "name",
                                                  "state", "data", "snapshot")})
            if len(events) >= limit:
                break
    return events


class EventTail:
    """:func:`read_events` cached until the file's size or mtime changes."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._events: list[dict[str, Any]] = []

    def read(self) -> list[dict[str, Any]]:
        """Blocking (executor): the recent events."""
        if self.path is None:
            return []
        try:
            st = self.path.stat()
        except OSError:
            return []
        stamp = (st.st_size, st.st_mtime_ns)
        if stamp != self._stamp:
            self._events = read_events(self.path)
            self._stamp = stamp
        return self._events
