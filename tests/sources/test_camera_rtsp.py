"""Camera source against a real RTSP server (gst-rtsp-server on 127.0.0.1).

Most IP cameras a hub meets speak RTSP, usually H.264. These tests read such a stream
through :class:`OpenCVCamera`, the class a ``url = "rtsp://..."`` config builds, and
take the server away in the ways cameras do: a reboot (connection closed), power or
Wi-Fi loss (connection silent), and a long keyframe interval. The server needs Debian
packages that ``.ci/run`` installs; a missing one fails here with its name.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from edge_runtime.sources import camera as camera_module
from edge_runtime.sources.base import Sample
from edge_runtime.sources.camera import OpenCVCamera
from tests.helpers.media import wait_for
from tests.helpers.rtsp import RTSPServer, RTSPServerUnavailableError

#: Bounds that only a hang exceeds; the stream itself answers in 1-3 s on loopback.
FIRST_FRAME_TIMEOUT_S = 20.0


@pytest.fixture
def server() -> Iterator[RTSPServer]:
    """An H.264 camera, what most IP cameras send."""
    with RTSPServer(encoding="h264", width=320, height=240, fps=15) as srv:
        yield srv


@pytest.fixture
def jpeg_server() -> Iterator[RTSPServer]:
    """An RTP/JPEG camera: FFmpeg opens it in half the time of H.264 (no probing to a
    timeout), for tests about connections rather than codecs."""
    with RTSPServer(encoding="jpeg", width=320, height=240, fps=15) as srv:
        yield srv


def _reader_threads(source_id: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"camera-{source_id}" and t.is_alive()]


def _read(cam: OpenCVCamera, timeout_s: float = FIRST_FRAME_TIMEOUT_S) -> Sample:
    sample = cam.read(timeout_s=timeout_s)
    assert sample is not None, f"no frame within {timeout_s} s; stats: {cam.stats.as_dict()}"
    return sample


@pytest.mark.parametrize("encoding", ["h264", "jpeg"])
def test_rtsp_frames_arrive_with_the_stream_shape(encoding: str) -> None:
    with RTSPServer(encoding=encoding, width=320, height=240, fps=15) as srv:
        # The server only allows RTP interleaved over TCP: this also checks that the
        # camera asks for TCP (OpenCV's default, rtsp_flags=prefer_tcp).
        cam = OpenCVCamera("door", url=srv.url)
        with cam:
            frames = [_read(cam) for _ in range(5)]
            assert cam.stats.connected
        for s in frames:
            assert s.frame is not None
            assert s.frame.shape == (240, 320, 3) and s.frame.dtype == np.uint8
            assert s.source_id == "door" and s.kind == "frame"
        assert [s.seq for s in frames] == sorted({s.seq for s in frames})
        # Real decoded video: the test pattern's ball moves from frame to frame.
        first, last = frames[0].frame, frames[-1].frame
        assert first is not None and last is not None
        assert np.abs(first.astype(np.int16) - last.astype(np.int16)).mean() > 0.1
        assert cam.stats.errors == 0 and cam.stats.reconnects == 0


def test_rtsp_h264_with_a_long_keyframe_interval_delivers() -> None:
    # A decoder starts at a keyframe. With one every 6.7 s the first frame comes about one
    # keyframe interval after connecting, and a camera joining the running stream waits
    # up to that long: beyond the 3 s read timeout, which once made such a camera drop
    # and reconnect forever without a single frame.
    with RTSPServer(encoding="h264", fps=15, gop=100) as srv:
        first = OpenCVCamera("porch", url=srv.url)
        joining = OpenCVCamera("porch-2", url=srv.url)
        with first:
            s1 = _read(first)
            with joining:  # the stream is running now: it joins mid-way
                s2 = _read(joining)
                assert _read(first).seq > s1.seq
    for cam, s in ((first, s1), (joining, s2)):
        assert s.frame is not None and s.frame.shape == (240, 320, 3)
        assert cam.stats.errors == 0, cam.stats.last_error
        assert cam.stats.reconnects == 0


def test_rtsp_camera_reconnects_when_the_server_comes_back(server: RTSPServer) -> None:
    cam = OpenCVCamera("door", url=server.url, reconnect_min_s=0.05, reconnect_max_s=0.5)
    with cam:
        before = _read(cam)
        server.stop()  # the camera reboots: its connection closes
        assert wait_for(lambda: not cam.stats.connected, 10.0), cam.stats.as_dict()
        # While it is gone, reconnect attempts fail and are counted, with backoff.
        assert wait_for(lambda: cam.stats.errors >= 3, 10.0), cam.stats.as_dict()
        assert cam.stats.reconnects == 0
        server.start()
        assert wait_for(lambda: cam.stats.reconnects >= 1, 30.0), cam.stats.as_dict()
        assert cam.stats.connected
        after = _read(cam)
        again = _read(cam)
    assert after.frame is not None and after.frame.shape == (240, 320, 3)
    assert before.seq < after.seq < again.seq
    assert "cannot open" in (cam.stats.last_error or "")  # the tries while it was gone


def test_rtsp_close_while_the_server_is_down_returns_promptly(
    jpeg_server: RTSPServer
) -> None:
    cam = OpenCVCamera("door", url=jpeg_server.url, reconnect_min_s=0.05, reconnect_max_s=0.2)
    cam.open()
    try:
        _read(cam)
        jpeg_server.stop()
        assert wait_for(lambda: cam.stats.errors >= 2, 10.0), cam.stats.as_dict()
    finally:
        t0 = time.monotonic()
        cam.close()
        close_s = time.monotonic() - t0
    assert close_s < 2.0
    # The reader thread is gone too, not left retrying in the background.
    assert wait_for(lambda: not _reader_threads("door"), 5.0)
    assert not cam.stats.connected


def test_rtsp_silent_server_is_noticed_and_close_does_not_wait_for_it(
    jpeg_server: RTSPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A camera that loses power sends no TCP reset: reads just stop returning. The read
    # timeout must turn that into a dropped stream; close() must not wait for a reader
    # stuck in a network call, and opening again at once must not wake that reader up
    # next to the new one.
    monkeypatch.setattr(camera_module, "STREAM_READ_TIMEOUT_S", 1.0)
    cam = OpenCVCamera("yard", url=jpeg_server.url, reconnect_min_s=0.05, reconnect_max_s=0.2)
    cam.open()
    try:
        _read(cam)
        jpeg_server.freeze()
        assert wait_for(lambda: not cam.stats.connected, 10.0), cam.stats.as_dict()
        assert "dropped" in (cam.stats.last_error or "")
    finally:
        # The reader is now opening the stream again, from a server that never answers.
        t0 = time.monotonic()
        cam.close()
        close_s = time.monotonic() - t0
        jpeg_server.thaw()
    assert close_s < 2.0
    with cam:
        _read(cam)
        assert wait_for(lambda: len(_reader_threads("yard")) == 1, 20.0), _reader_threads("yard")
        assert cam.stats.connected
    assert wait_for(lambda: not _reader_threads("yard"), 20.0)


def test_missing_debian_package_is_named() -> None:
    # ``python3 -S`` hides Debian's dist-packages, as on a machine without python3-gi.
    srv = RTSPServer(python_flags=("-S",))
    with pytest.raises(RTSPServerUnavailableError, match=r"python3-gi.*apt-get install"):
        srv.start()
    srv.close()
