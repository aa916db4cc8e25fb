"""Camera source against real video files and a local MJPEG HTTP server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edge_runtime.errors import SourceUnavailableError
from edge_runtime.sources.camera import OpenCVCamera, Picamera2Camera, backoff_delays
from tests.helpers.media import MJPEGServer, make_video, wait_for


def test_file_plays_all_frames_losslessly(tmp_path: Path) -> None:
    video = make_video(tmp_path / "clip.avi", 20)
    cam = OpenCVCamera("cam", path=video, realtime=False, lossless=True)
    seqs = []
    with cam:
        while (s := cam.read(timeout_s=2.0)) is not None:
            assert s.frame is not None and s.frame.shape == (48, 64, 3)
            assert s.source_id == "cam" and s.kind == "frame"
            seqs.append(s.seq)
    assert seqs == list(range(1, 21))
    assert cam.exhausted and cam.stats.dropped == 0


def test_slow_consumer_gets_latest_frame_and_drops_are_counted(tmp_path: Path) -> None:
    video = make_video(tmp_path / "clip.avi", 60, fps=100.0)
    cam = OpenCVCamera("cam", path=video, realtime=True)
    got = []
    with cam:
        while not cam.exhausted:
            s = cam.read(timeout_s=1.0)
            if s is None:
                break
            got.append(s)
            # A consumer that is slower than the camera: latency must not build up.
            assert time.monotonic() - s.t_mono_s < 0.05
            time.sleep(0.03)
    assert cam.stats.dropped > 0
    assert cam.stats.produced == 60 == len(got) + cam.stats.dropped
    assert [s.seq for s in got] == sorted(s.seq for s in got)


def test_looping_file_does_not_end(tmp_path: Path) -> None:
    video = make_video(tmp_path / "clip.avi", 5)
    cam = OpenCVCamera("cam", path=video, realtime=False, lossless=True, loop=True)
    with cam:
        seqs = [cam.read(timeout_s=2.0) for _ in range(12)]
    assert all(s is not None for s in seqs)
    assert not cam.exhausted


def test_missing_file_retries_then_reports(tmp_path: Path) -> None:
    cam = OpenCVCamera("cam", path=tmp_path / "nope.avi", reconnect_min_s=0.01,
                       reconnect_max_s=0.02)
    with cam:
        assert cam.read(timeout_s=0.2) is None
    assert cam.stats.errors >= 2
    assert "nope.avi" in (cam.stats.last_error or "")


def test_camera_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        OpenCVCamera("cam", device=0, url="http://x")


def test_backoff_doubles_up_to_cap() -> None:
    gen = backoff_delays(1.0, 4.0, jitter=0.0)
    assert [next(gen) for _ in range(5)] == [1.0, 2.0, 4.0, 4.0, 4.0]


def test_backoff_jitter_never_exceeds_the_cap() -> None:
    """reconnect_max_s = 4.0 once printed 'retrying in 4.6 s': the cap holds, jitter
    included, and the jitter still spreads the delays (no lock step at the cap)."""
    for min_s, max_s in ((0.5, 4.0), (1.0, 1.0), (3.5, 4.0), (5.0, 4.0)):
        gen = backoff_delays(min_s, max_s, jitter=0.2)
        draws = [next(gen) for _ in range(5000)]
        assert max(draws) <= max_s, (min_s, max_s, max(draws))
        assert min(draws) >= 0.8 * min(min_s, max_s)
        at_cap = draws[10:]
        assert min(at_cap) < 0.9 * max_s  # still spread below the cap
        assert len(set(at_cap)) > 100


def test_mjpeg_stream_reconnects_after_server_restart() -> None:
    server = MJPEGServer(fps=30.0)
    server.start()
    cam = OpenCVCamera("net", url=server.url, reconnect_min_s=0.05, reconnect_max_s=0.2)
    try:
        with cam:
            assert cam.read(timeout_s=5.0) is not None
            server.stop()
            assert wait_for(lambda: not cam.stats.connected, 8.0)
            server.start()
            assert wait_for(lambda: cam.stats.reconnects >= 1, 10.0)
            # Frames flow again after the reconnect.
            first = cam.read(timeout_s=5.0)
            assert first is not None
            second = cam.read(timeout_s=5.0)
            assert second is not None and second.seq > first.seq
    finally:
        server.stop()


def test_picamera2_missing_is_a_typed_error() -> None:
    with pytest.raises(SourceUnavailableError, match="picamera2"):
        Picamera2Camera("pi").open()
