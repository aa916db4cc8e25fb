"""A hostile network camera cannot flood the node: a server that accepts and drops at
once is retried with a growing delay (the backoff resets only when a frame arrives), and
a frame larger than ``max_frame_pixels`` is dropped and counted, not delivered."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from edge_runtime.sources.camera import OpenCVCamera
from tests.helpers.media import MJPEGServer, _free_port, frame_with_square, wait_for


class AcceptAndDropServer:
    """An HTTP MJPEG server that sends a few undecodable JPEG parts, then hangs up:
    FFmpeg opens the stream, and the first read fails. Counts connections."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.connections = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                owner.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                junk = b"\xff\xd8" + b"x" * 500
                part = (b"--frame\r\nContent-Type: image/jpeg\r\n"
                        + f"Content-Length: {len(junk)}\r\n\r\n".encode() + junk + b"\r\n")
                self.wfile.write(part * 20)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def __enter__(self) -> AcceptAndDropServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def test_a_server_that_accepts_and_drops_is_retried_with_backoff() -> None:
    with AcceptAndDropServer() as server:
        camera = OpenCVCamera("cam", url=server.url, reconnect_min_s=0.2, reconnect_max_s=0.8)
        camera.open()
        try:
            time.sleep(3.0)
        finally:
            camera.close()
    # Delays 0.2, 0.4, 0.8, 0.8 ... (+-20 %): about 5 connections in 3 s. Before, the
    # backoff reset on every successful open: hundreds of connections a second.
    assert 2 <= server.connections <= 8, server.connections
    assert camera.stats.errors >= 2
    assert camera.stats.delivered == 0


@pytest.fixture
def mjpeg() -> Iterator[MJPEGServer]:
    server = MJPEGServer(fps=30.0)
    server.start()
    yield server
    server.stop()


def test_a_frame_over_the_pixel_limit_is_dropped_and_counted(mjpeg: MJPEGServer) -> None:
    pixels = frame_with_square(0).shape[0] * frame_with_square(0).shape[1]
    camera = OpenCVCamera("cam", url=mjpeg.url, max_frame_pixels=pixels - 1)
    camera.open()
    try:
        assert wait_for(lambda: camera.stats.errors >= 3, 10.0)
        assert camera.read(0.2) is None
        assert "pixel limit" in (camera.stats.last_error or "")
    finally:
        camera.close()
    assert camera.stats.delivered == 0
    # The same stream within the limit delivers its frames.
    camera = OpenCVCamera("cam2", url=mjpeg.url, max_frame_pixels=pixels)
    camera.open()
    try:
        sample = camera.read(5.0)
        assert sample is not None and sample.frame is not None
        assert sample.frame.shape[:2] == frame_with_square(0).shape[:2]
    finally:
        camera.close()

