"""Real test media: generated video files, CSV recordings and a local MJPEG HTTP server."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np


def frame_with_square(index: int, *, size: tuple[int, int] = (64, 48), moving: bool = True,
                      digit: int | None = None) -> np.ndarray:
    """A BGR frame: dark background, a bright square that moves when ``moving``."""
    w, h = size
    frame = np.zeros((h, w, 3), np.uint8)
    x = (index * 3) % (w - 12) if moving else 4
    frame[10:22, x:x + 12] = 255
    if digit is not None:
        cv2.putText(frame, str(digit), (w // 2, h - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.8,
                    (255, 255, 255), 2)
    return frame


def make_video(path: Path, frames: int, *, fps: float = 30.0, size: tuple[int, int] = (64, 48),
               moving: bool = True, still_ranges: tuple[tuple[int, int], ...] = ()) -> Path:
    """Write an MJPG .avi with ``frames`` frames; frames inside ``still_ranges`` do not move."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    pos = 0
    for i in range(frames):
        still = not moving or any(a <= i < b for a, b in still_ranges)
        if not still:
            pos += 1
        writer.write(frame_with_square(pos, size=size))
    writer.release()
    return path


def write_csv(path: Path, values: list[float] | np.ndarray, *, period_s: float = 1.0) -> Path:
    """A ``timestamp,value`` CSV with one value per ``period_s`` (NaN written as empty)."""
    lines = ["timestamp,value"]
    for i, v in enumerate(values):
        lines.append(f"{i * period_s:.3f},{'' if np.isnan(v) else v}")
    path.write_text("\n".join(lines) + "\n")
    return path


class MJPEGServer:
    """An HTTP server on 127.0.0.1 that streams JPEG frames as multipart/x-mixed-replace.

    ``stop()`` closes the listening socket and every open stream (the camera sees the
    stream drop); ``start()`` again serves on the same port.
    """

    def __init__(self, fps: float = 20.0, port: int = 0) -> None:
        self.fps = fps
        self.port = port or _free_port()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._running = threading.Event()
        self.frames_sent = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> None:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while owner._running.is_set():
                        ok, jpg = cv2.imencode(".jpg", frame_with_square(i))
                        assert ok
                        data = jpg.tobytes()
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n")
                        self.wfile.write(f"Content-Length: {len(data)}\r\n\r\n".encode())
                        self.wfile.write(data + b"\r\n")
                        self.wfile.flush()
                        owner.frames_sent += 1
                        i += 1
                        time.sleep(1.0 / owner.fps)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._running.set()
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._running.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate, timeout_s: float, interval_s: float = 0.02) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until true or ``timeout_s``; returns its last result."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())
