"""Replay of CSV/NPY recordings and the recorder that writes them."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.errors import RecordingError
from edge_runtime.sources.camera import OpenCVCamera
from edge_runtime.sources.recorder import Recorder, record_source
from edge_runtime.sources.replay import ReplaySource, load_recording
from tests.helpers.media import make_video, write_csv


def test_csv_with_iso_timestamps_and_missing_values(tmp_path: Path) -> None:
    p = tmp_path / "r.csv"
    p.write_text("timestamp,value\n2014-01-01 00:00:00,1.5\n2014-01-01 00:05:00,\n"
                 "2014-01-01 00:10:00,3\n")
    t, v = load_recording(p)
    assert list(t) == [0.0, 300.0, 600.0]
    assert v[0] == 1.5 and math.isnan(v[1]) and v[2] == 3.0


@pytest.mark.parametrize(
    ("content", "match"),
    [("a,b\n1,2\n", "lacks timestamp"), ("timestamp,value\n", "no samples"),
     ("timestamp,value\n9000,1\n1,1\n", "older than an earlier one"),
     ("timestamp,value\nx,1\n", ":2:")],
)
def test_bad_csv_is_refused_with_reason(tmp_path: Path, content: str, match: str) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(RecordingError, match=match):
        load_recording(p)


def test_clock_set_back_skips_the_repeated_stretch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A clock set back by up to an hour repeats times: those samples are skipped, not fatal."""
    p = tmp_path / "dst.csv"
    p.write_text(
        "timestamp,value\n"
        "2014-01-07 02:50:00,1\n2014-01-07 02:55:00,2\n"
        "2014-01-07 02:00:00,3\n2014-01-07 02:05:00,4\n"  # clock went back 55 min
        "2014-01-07 03:00:00,5\n"
    )
    with caplog.at_level("WARNING"):
        t, v = load_recording(p)
    assert list(v) == [1.0, 2.0, 5.0]
    assert list(t) == [0.0, 300.0, 600.0]
    assert "skipped 2 samples" in caplog.text


def test_lossless_accelerated_replay_keeps_timing(tmp_path: Path) -> None:
    p = write_csv(tmp_path / "r.csv", [float(i) for i in range(10)], period_s=1.0)
    src = ReplaySource("r", path=p, speed=100.0, lossless=True)
    t0 = time.monotonic()
    with src:
        samples = []
        while (s := src.read(timeout_s=1.0)) is not None:
            samples.append(s)
    elapsed = time.monotonic() - t0
    assert [s.value for s in samples] == [float(i) for i in range(10)]
    assert 0.08 <= elapsed < 1.0  # 9 recorded seconds at 100x
    assert np.allclose(np.diff([s.t_mono_s for s in samples]), 0.01)
    assert src.exhausted


def test_slow_reader_gets_newest_sample(tmp_path: Path) -> None:
    p = write_csv(tmp_path / "r.csv", [float(i) for i in range(100)], period_s=0.001)
    src = ReplaySource("r", path=p, speed=1.0)
    with src:
        time.sleep(0.2)
        s = src.read(timeout_s=1.0)
    assert s is not None and s.value == 99.0
    assert src.stats.dropped == 99


def test_slow_reader_gets_the_skipped_rows_envelope(tmp_path: Path) -> None:
    values = [1.0] * 100
    values[40] = 50.0  # a spike the slow reader never reads itself
    values[60] = math.nan  # missing rows do not poison the envelope
    p = write_csv(tmp_path / "r.csv", values, period_s=0.001)
    src = ReplaySource("r", path=p, speed=1.0)
    with src:
        time.sleep(0.2)
        s = src.read(timeout_s=1.0)
    assert s is not None and s.value == 1.0
    assert s.envelope == (1.0, 50.0)


def test_npy_roundtrip_through_recorder(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "in.csv", [1.0, 2.0, float("nan"), 4.0], period_s=0.01)
    out = tmp_path / "out.npy"
    n = record_source(ReplaySource("r", path=csv, speed=1.0, lossless=True), out,
                      duration_s=5.0)
    assert n == 4
    t, v = load_recording(out)
    assert np.allclose(t, [0, 0.01, 0.02, 0.03], atol=0.005)
    assert v[0] == 1.0 and math.isnan(v[2])


def test_csv_recorder_and_video_recorder(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "in.csv", [5.0, 6.0], period_s=0.01)
    out = tmp_path / "out.csv"
    assert record_source(ReplaySource("r", path=csv, lossless=True), out, duration_s=5.0) == 2
    assert list(load_recording(out)[1]) == [5.0, 6.0]

    video = make_video(tmp_path / "clip.avi", 8)
    copy = tmp_path / "copy.avi"
    cam = OpenCVCamera("c", path=video, realtime=False, lossless=True)
    assert record_source(cam, copy, duration_s=10.0) == 8
    again = OpenCVCamera("c", path=copy, realtime=False, lossless=True)
    with again:
        frames = [again.read(timeout_s=2.0) for _ in range(8)]
    assert all(f is not None for f in frames)


def test_recorder_refuses_mismatched_kind(tmp_path: Path) -> None:
    from edge_runtime.sources.base import Sample

    with pytest.raises(RecordingError, match="cannot hold"), Recorder(tmp_path / "x.avi") as r:
        r.write(Sample("s", 0.0, 1, value=1.0))
    with pytest.raises(RecordingError, match="unknown suffix"):
        Recorder(tmp_path / "x.txt")
