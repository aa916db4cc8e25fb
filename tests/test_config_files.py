"""Reading a config file is bounded and every failure is one ConfigError: FIFOs and
devices never block or stream for ever, deep nesting and odd paths say what they are."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_runtime.config import MAX_CONFIG_BYTES, load_config
from edge_runtime.errors import ConfigError


@pytest.mark.parametrize("text", [
    "node = " + "{a = " * 490 + "1" + "}" * 490,
    "node = " + "[" * 490 + "]" * 490,
])
def test_deep_nesting_is_a_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "deep.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(path)


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_config(fifo)


def test_an_endless_device_is_refused() -> None:
    with pytest.raises(ConfigError, match="/dev/zero is not a regular file"):
        load_config("/dev/zero")


def test_a_huge_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    with path.open("wb") as fh:
        fh.truncate(MAX_CONFIG_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(ConfigError, match="over the 1048576 a config may be"):
        load_config(path)


def test_a_symlink_loop_says_so(tmp_path: Path) -> None:
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(ConfigError, match="Too many levels of symbolic links"):
        load_config(a)


def test_a_too_long_file_name_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="File name too long"):
        load_config(tmp_path / ("x" * 300 + ".toml"))


def test_check_on_a_fifo_exits_2_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    out = subprocess.run([sys.executable, "-m", "edge_runtime", "check", str(fifo)],
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "not a regular file" in out.stderr
