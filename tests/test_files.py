"""write_atomic: the one way files are replaced; odd targets are handled deliberately."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edge_runtime.cli import main
from edge_runtime.errors import FileWriteError
from edge_runtime.files import write_atomic


def test_a_new_file_gets_the_mode_and_a_replaced_one_keeps_its_own(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    write_atomic(path, b"one\n", mode=0o600)
    assert path.read_bytes() == b"one\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o640)
    write_atomic(path, b"two\n")
    assert path.read_bytes() == b"two\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_a_symlink_is_followed_and_stays_a_link(tmp_path: Path) -> None:
    real = tmp_path / "real.csv"
    real.write_bytes(b"old")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    write_atomic(link, b"new")
    assert link.is_symlink() and real.read_bytes() == b"new"


def test_a_symlink_loop_is_one_clear_error(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(FileWriteError, match="a"):
        write_atomic(a, b"x")


def test_a_fifo_is_written_through_and_stays_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []

    def read() -> None:
        with fifo.open("rb") as fh:  # blocks until the writer opens
            got.append(fh.read())

    reader = threading.Thread(target=read)
    reader.start()
    # A reader blocked in open() counts as a reader for the writer's non-blocking open.
    deadline = time.monotonic() + 5
    while True:
        try:
            write_atomic(fifo, b"hello\n")
            break
        except FileWriteError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    reader.join(5)
    assert got == [b"hello\n"]
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_a_fifo_without_a_reader_fails_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(FileWriteError, match="start its reader first"):
        write_atomic(fifo, b"x")


def test_a_device_is_written_through_not_replaced(tmp_path: Path) -> None:
    """As root, renaming over /dev/null would turn it into a regular file."""
    write_atomic("/dev/null", b"discarded")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileWriteError, match="is a folder"):
        write_atomic(tmp_path, b"x")


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    """A file size limit (as a full disk would) makes the write fail midway."""
    code = (
        "import resource, signal, sys\n"
        "from edge_runtime.files import write_atomic\n"
        "from edge_runtime.errors import FileWriteError\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))\n"
        "try:\n"
        "    write_atomic(sys.argv[1], b'x' * 100000)\n"
        "except FileWriteError as exc:\n"
        "    print(exc)\n"
    )
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    out = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True,
                         text=True, check=True, timeout=60)
    assert "cannot write" in out.stdout
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_detect_output_to_dev_null_keeps_dev_null(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("timestamp,value\n" + "".join(f"{i},{i % 7}\n" for i in range(50)))
    assert main(["detect", "--input", str(src), "--output", "/dev/null"]) == 0
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert main(["detect", "--input", str(src), "--output", str(tmp_path)]) == 2
