"""Fixtures: the C core compiled on the host, and a simulated device on a real pty.

``SimDevice`` is a real test double (see STYLE.md): the reference firmware core runs
in a child process whose UART is a pseudo-terminal, and the bridge talks to it through
the pty slave exactly as it would to /dev/ttyACM0. Killing the process is unplugging
the cable; starting a new one is plugging it back (the by-id style symlink follows).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import firmware_bridge

FIRMWARE = Path(firmware_bridge.__file__).parent / "firmware"
CORE_SOURCES = sorted((FIRMWARE / "EdgeBridge" / "src").glob("*.c"))
CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", f"-I{FIRMWARE / 'EdgeBridge' / 'src'}"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]


def compile_c(out: Path, main_source: Path, extra: list[str] | None = None) -> Path:
    """Compile the core plus one host main into ``out`` with the project's C flags."""
    cmd = ["gcc", *CFLAGS, *(extra or []), str(main_source), *map(str, CORE_SOURCES), "-lm"]
    subprocess.run([*cmd, "-o", str(out)], check=True, capture_output=True, text=True)
    return out


class Binaries:
    """Paths of the host builds of the C core, compiled once per session."""

    def __init__(self, root: Path) -> None:
        self.sim = compile_c(root / "fb_sim", FIRMWARE / "host" / "sim_main.c")
        self.vectors = compile_c(root / "vectors_test", FIRMWARE / "host" / "vectors_test.c")
        self.script = compile_c(root / "fb_script", FIRMWARE / "host" / "script_main.c")
        self.root = root

    def variant(self, name: str, source: str, defines: list[str]) -> Path:
        """Build (once) ``host/source`` with extra ``-D`` flags, e.g. the AVR sizes or a
        core without the envelope mode (``-DFB_ENVELOPE=0``: an older firmware)."""
        out = self.root / name
        if not out.exists():
            compile_c(out, FIRMWARE / "host" / source, defines)
        return out

    @property
    def old_sim(self) -> Path:
        """The simulator as a firmware from before the envelope mode."""
        return self.variant("fb_sim_old", "sim_main.c", ["-DFB_ENVELOPE=0"])

    def sanitized(self, name: str) -> Path:
        """Build (once) an ASan/UBSan variant of ``sim`` or ``vectors``."""
        out = self.root / f"{name}_asan"
        if not out.exists():
            source = {"sim": "sim_main.c", "vectors": "vectors_test.c"}[name]
            compile_c(out, FIRMWARE / "host" / source, SANITIZE)
        return out


@pytest.fixture(scope="session")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> Binaries:
    return Binaries(tmp_path_factory.mktemp("fb_build"))


class SimDevice:
    """A simulated microcontroller on a pty; ``link`` is its stable by-id style path."""

    def __init__(self, binary: Path, link: Path, args: list[str] | None = None) -> None:
        self.binary = binary
        self.link = link
        self.args = list(args or [])
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.pty_path = ""
        self._reader: threading.Thread | None = None
        self.boots = 0

    def start(self) -> SimDevice:
        """Power the device on (new process, new pty; the link is updated)."""
        assert self.proc is None, "already running"
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0")
        self.proc = subprocess.Popen(
            [str(self.binary), "--link", str(self.link), *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline().strip()
        assert first.startswith("PTY "), f"simulator did not start: {first!r}"
        self.pty_path = first.split(" ", 1)[1]
        self.boots += 1
        self._reader = threading.Thread(target=self._read_lines, args=(self.proc,), daemon=True)
        self._reader.start()
        return self

    def _read_lines(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line.strip())

    def glitch(self) -> None:
        """Tear the next frame and put garbage on the wire."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGUSR1)

    def reboot(self) -> None:
        """Reset the firmware behind the open port (the tty stays)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGUSR2)

    def spike(self) -> None:
        """Put a one-measurement spike (1e6) on the counter, between two reports when
        the envelope decimates; the simulator prints "SPIKE 0 <index>"."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGWINCH)

    def step(self) -> None:
        """Toggle a +100 level step on the accel and temperature values (activity)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def unplug(self) -> None:
        """Kill -9: the cable is yanked mid-frame."""
        self._stop(signal.SIGKILL)

    def stop(self) -> str:
        """Clean stop; returns the simulator's stderr (sanitizer reports land there)."""
        return self._stop(signal.SIGTERM)

    def _stop(self, sig: int) -> str:
        if self.proc is None:
            return ""
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if self._reader is not None:
            self._reader.join(timeout=5)
        return err

    def wait_line(self, prefix: str, timeout_s: float = 5.0) -> str:
        """Wait for a stdout line starting with ``prefix`` (e.g. "GPIO 13 1")."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if line.startswith(prefix):
                    return line
            time.sleep(0.01)
        raise AssertionError(f"simulator never printed {prefix!r}; got {self.lines[-10:]}")


@pytest.fixture
def sim(binaries: Binaries, tmp_path: Path) -> Iterator[SimDevice]:
    device = SimDevice(binaries.sim, tmp_path / "ttyEDGE").start()
    yield device
    device.stop()


@pytest.fixture(autouse=True)
def _no_thread_outlives_a_test() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        extra = [
            t
            for t in set(threading.enumerate()) - before
            if t.is_alive() and not t.name.startswith("asyncio_")
        ]
        if not extra:
            return
        time.sleep(0.02)
    raise AssertionError(f"threads outlived the test: {extra}")
