"""``edge-runtime serve`` as a child process, the way a peer runs it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def serving(config: Path, *, timeout_s: float = 60.0
            ) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Start ``edge-runtime serve CONFIG``; yields its URL and the process; SIGTERM after
    (and checks that it stopped cleanly, exit code 0)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "edge_runtime", "serve", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r" at (https?://\S+)", line)
        if found is None:
            proc.kill()
            _out, err = proc.communicate(timeout=timeout_s)
            raise AssertionError(f"serve did not start: {line!r} {err[-2000:]}")
        yield found[1], proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    assert proc.returncode == 0, proc.returncode
