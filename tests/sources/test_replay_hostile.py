"""A bad recording is one clear RecordingError naming the file (and line), never a
crash: each of these escaped as a raw exception before and killed the daemon's task
group, so one bad file took every pipeline down."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.errors import RecordingError
from edge_runtime.sources.replay import MAX_LINE_CHARS, ReplaySource, load_recording

GOOD_HEAD = "timestamp,value\n0,1\n1,2\n"


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(("name", "data", "message"), [
    ("latin1.csv", GOOD_HEAD.encode() + b"2,3\xe9\n", r"not UTF-8"),
    ("binary.csv", bytes(range(256)) * 64, r"not UTF-8|NUL|longer than"),
    ("nul.csv", GOOD_HEAD.encode() + b"2,\x003\n", r"NUL"),
    ("field.csv", GOOD_HEAD.encode() + b"2," + b"9" * (128 * 1024) + b"\n",
     rf"longer than {MAX_LINE_CHARS}"),
    ("nan-first.csv", b"timestamp,value\nnan,1\n1,2\n", r":2: timestamp 'nan' is not a time"),
    ("inf.csv", b"timestamp,value\n0,1\ninf,2\n", r":3: timestamp 'inf' is not a time"),
    ("no-header.csv", b"", r"lacks timestamp and value"),
    ("control.csv", b"timestamp,value\n0,\x1b[2J\n", r"value '\\x1b\[2J' is not a number"),
])
def test_hostile_csv_recordings_are_one_clear_error(tmp_path: Path, name: str, data: bytes,
                                                     message: str) -> None:
    path = _write(tmp_path, name, data)
    with pytest.raises(RecordingError, match=message) as info:
        load_recording(path)
    assert str(path) in str(info.value)
    assert "\x1b" not in str(info.value)


def test_strings_in_an_npy_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "strings.npy"
    np.save(path, np.array([["0", "a"], ["1", "b"]]))
    with pytest.raises(RecordingError, match=r"holds <U1, not numbers"):
        load_recording(path)


def test_a_nan_time_in_an_npy_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nan.npy"
    np.save(path, np.array([[np.nan, 1.0], [1.0, 2.0]]))
    with pytest.raises(RecordingError, match=r"sample 1 has time nan"):
        load_recording(path)


def test_an_io_error_is_a_recording_error(tmp_path: Path) -> None:
    """A directory where the file should be reads as EISDIR; /proc/self/mem as EIO."""
    path = tmp_path / "rec.csv"
    path.mkdir()
    with pytest.raises(RecordingError, match="no recording at"):
        load_recording(path)
    # A real read error: /proc/self/mem refuses reads at offset 0 (EIO).
    link = tmp_path / "mem.csv"
    os.symlink("/proc/self/mem", link)
    with pytest.raises(RecordingError, match="cannot read") as info:
        load_recording(link)
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.EIO


def test_the_replay_source_reports_the_error_at_open(tmp_path: Path) -> None:
    source = ReplaySource("bad", path=_write(tmp_path, "bad.csv", b"timestamp,value\nnan,1\n"))
    with pytest.raises(RecordingError, match="not a time"):
        source.open()
