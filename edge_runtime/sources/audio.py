"""Audio: windows of sound from a WAV file or an ALSA capture device.

An :class:`AudioSource` delivers windows of ``window_s`` seconds every ``hop_s`` seconds
at ``rate_hz``, as :class:`~edge_runtime.sources.base.Sample` objects whose ``audio`` is
a float32 mono array in [-1, 1] (oldest sample first). Like every source it is pulled:
a consumer slower than the hop gets the newest window and the others count as dropped.

Where the sound comes from (exactly one of):

- ``path``: a WAV file (integer PCM of 8, 16, 24 or 32 bits, or IEEE float, plain or
  WAVE_FORMAT_EXTENSIBLE; several channels are averaged to mono), played like a replay:
  a window is due when its last sample would have been captured (``realtime``), every
  window in order with ``lossless``, or as fast as they are read with
  ``realtime = False``. A file at another rate is resampled linearly (said once in the
  log). Read by our own small RIFF reader: Python 3.11's :mod:`wave` reads integer PCM
  only, and many recorders write float or extensible WAV files.
- ``device``: an ALSA capture device (``default``, ``hw:1,0``, ``plughw:CARD=Mic``) read
  by ``arecord`` (Debian package alsa-utils) as a child process writing raw S16_LE mono at
  ``rate_hz`` to a pipe; ALSA converts rate and channels. A child process needs no Python
  audio binding (PyAudio, sounddevice: a C extension plus PortAudio to build or install
  on the Pi), and a pipe of 32 KB/s (16 kHz) costs little to read: the reader thread took
  0.8 % of a core for 31 windows of 32 ms a second, measured on this project's 2-core
  x86 CI machine (``/proc`` thread ticks over 10 s; not yet measured on a Pi).
- ``command``: any program that writes raw S16_LE mono at ``rate_hz`` to its stdout
  (``["parec", "--raw", "--format=s16le", "--channels=1", "--rate=16000"]`` for
  PulseAudio/PipeWire; tests use a Python stand-in).

A live capture is read in a reader thread (``audio-<id>``). :meth:`open` waits until the
child delivers its first bytes, so a missing program or device is a
:class:`~edge_runtime.errors.SourceUnavailableError` at once (the daemon retries opens
with backoff). A child that exits or goes silent for ``stall_timeout_s`` later is
killed, reaped and restarted with capped, jittered backoff, as the camera reconnects;
``stats.reconnects`` counts the restarts, and a pipeline resets a stateful model's state
when it changes (the first window after a reconnect follows no earlier one). ``close``
kills and reaps the child and joins the thread.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt

from edge_runtime.errors import RecordingError, SourceUnavailableError
from edge_runtime.sources.base import LatestSlot, Sample, Source
from edge_runtime.sources.camera import backoff_delays

log = logging.getLogger(__name__)

AudioArray = npt.NDArray[np.float32]

#: Longest WAV file read (seconds at its own rate): it is held in memory as float32,
#: 4 bytes per sample at ``rate_hz`` (30 min at 16 kHz: 115 MB).
MAX_FILE_S = 1800.0
#: How long :meth:`AudioSource.open` waits for a capture's first bytes.
OPEN_TIMEOUT_S = 3.0
#: How long a child may stay silent before it counts as stalled (killed, restarted).
STALL_TIMEOUT_S = 3.0
#: How long ``close`` waits for a killed child and the reader thread.
CLOSE_TIMEOUT_S = 2.0

_WAVE_FORMAT_PCM = 0x0001
_WAVE_FORMAT_FLOAT = 0x0003
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
_WAV_HINT = ("give a WAV file: integer PCM (8, 16, 24 or 32 bits) or float (32 or 64 bits), "
             "e.g. `sox in.ogg -b 16 out.wav`")


def load_wav(path: Path, rate_hz: int | None = None) -> tuple[AudioArray, int]:
    """Read a WAV file as float32 mono in [-1, 1]; returns (samples, the file's rate).

    Several channels are averaged. With ``rate_hz`` the samples are resampled linearly
    to it (the rate returned is still the file's). Anything wrong (not RIFF/WAVE, no
    ``fmt``/``data`` chunk, a compressed or unsupported sample format, longer than
    :data:`MAX_FILE_S`) is a one-line :class:`RecordingError` naming the file.
    """
    try:
        with path.open("rb") as fh:
            samples, file_rate_hz = _read_wav(fh, path)
    except FileNotFoundError as exc:
        raise RecordingError(f"no WAV file at {path}", hint="check the path in the config"
                             ) from exc
    except OSError as exc:
        raise RecordingError(f"cannot read {path}: {exc.strerror or exc}",
                             hint="check the file and the disk it is on") from exc
    if rate_hz is not None and rate_hz != file_rate_hz and samples.size:
        samples = resample_linear(samples, file_rate_hz, rate_hz)
    return samples, file_rate_hz


def resample_linear(samples: AudioArray, from_hz: int, to_hz: int) -> AudioArray:
    """``samples`` at ``from_hz`` linearly interpolated to ``to_hz`` (no anti-alias
    filter: fine for speech and level detectors, not for content above ``to_hz / 2``)."""
    n_out = max(1, int(samples.size * to_hz // from_hz))
    positions = np.arange(n_out, dtype=np.float64) * (from_hz / to_hz)
    out = np.interp(positions, np.arange(samples.size, dtype=np.float64), samples)
    return out.astype(np.float32)


def _read_wav(fh: IO[bytes], path: Path) -> tuple[AudioArray, int]:
    head = fh.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise RecordingError(f"{path} is not a WAV file (no RIFF/WAVE header)", hint=_WAV_HINT)
    fmt: tuple[int, int, int, int, int] | None = None
    while True:
        chunk = fh.read(8)
        if len(chunk) < 8:
            raise RecordingError(f"{path}: WAV file without a "
                                 f"{'data' if fmt else 'fmt'} chunk", hint=_WAV_HINT)
        chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(fh.read(size), path)
            if size % 2:
                fh.read(1)
        elif chunk_id == b"data":
            if fmt is None:
                raise RecordingError(f"{path}: WAV data before its fmt chunk", hint=_WAV_HINT)
            return _decode_data(fh, size, fmt, path), fmt[1]
        else:
            fh.seek(size + (size % 2), os.SEEK_CUR)


def _parse_fmt(body: bytes, path: Path) -> tuple[int, int, int, int, int]:
    """(format tag, rate, channels, block align, bits per sample) of a fmt chunk."""
    if len(body) < 16:
        raise RecordingError(f"{path}: WAV fmt chunk of {len(body)} bytes", hint=_WAV_HINT)
    tag, channels, rate, _, align, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == _WAVE_FORMAT_EXTENSIBLE and len(body) >= 26:
        tag = struct.unpack("<H", body[24:26])[0]  # the sub-format GUID's first two bytes
    if tag not in (_WAVE_FORMAT_PCM, _WAVE_FORMAT_FLOAT):
        raise RecordingError(f"{path}: WAV sample format {tag:#06x} is compressed or "
                             "unsupported (PCM or float only)", hint=_WAV_HINT)
    ok_bits = (8, 16, 24, 32) if tag == _WAVE_FORMAT_PCM else (32, 64)
    if bits not in ok_bits:
        kind = "integer PCM" if tag == _WAVE_FORMAT_PCM else "float"
        raise RecordingError(f"{path}: WAV {kind} of {bits} bits per sample is unsupported "
                             f"({', '.join(map(str, ok_bits))} are)", hint=_WAV_HINT)
    if channels < 1 or rate < 1 or align != channels * bits // 8:
        raise RecordingError(f"{path}: WAV fmt chunk is inconsistent ({channels} channels, "
                             f"{rate} Hz, {align}-byte frames of {bits}-bit samples)",
                             hint=_WAV_HINT)
    return tag, rate, channels, align, bits


def _decode_data(fh: IO[bytes], size: int, fmt: tuple[int, int, int, int, int],
                 path: Path) -> AudioArray:
    tag, rate, channels, align, bits = fmt
    frames = size // align
    if frames > MAX_FILE_S * rate:
        raise RecordingError(f"{path}: {frames / rate:.0f} s of audio; at most "
                             f"{MAX_FILE_S:.0f} s are read from a file",
                             hint="split the file (`sox in.wav out.wav trim 0 1800`)")
    raw = fh.read(frames * align)  # a truncated file (size too large) gives what is there
    frames = len(raw) // align
    raw = raw[:frames * align]
    if tag == _WAVE_FORMAT_FLOAT:
        data = np.frombuffer(raw, "<f4" if bits == 32 else "<f8").astype(np.float32)
    elif bits == 8:
        data = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif bits == 24:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        data = value.astype(np.float32) / float(1 << 23)
    else:
        dtype = "<i2" if bits == 16 else "<i4"
        data = np.frombuffer(raw, dtype).astype(np.float32) / float(1 << (bits - 1))
    if channels > 1:
        data = data.reshape(frames, channels).mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(data, dtype=np.float32)


class _WindowMaker:
    """Cuts a stream of samples into windows of ``window`` samples every ``hop``."""

    def __init__(self, window: int, hop: int) -> None:
        self.window = window
        self.hop = hop
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next window starts with the next sample."""
        self._tail: AudioArray = np.zeros(0, np.float32)
        self._tail_start = 0  # stream index of _tail[0]
        self._next_end = self.window  # stream index just past the next window

    def push(self, samples: AudioArray) -> list[AudioArray]:
        """Append samples; returns the windows they complete, oldest first."""
        tail = np.concatenate([self._tail, samples]) if self._tail.size else samples
        end = self._tail_start + tail.size
        out = []
        while end >= self._next_end:
            start = self._next_end - self.window - self._tail_start
            out.append(tail[start:start + self.window].copy())
            self._next_end += self.hop
        keep_from = max(0, min(tail.size, self._next_end - self.window - self._tail_start))
        self._tail = tail[keep_from:]
        self._tail_start += keep_from
        return out


class AudioSource(Source):
    """Windows of sound from a WAV file, an ALSA device or a capture command.

    See the module docstring. ``rate_hz`` is the sample rate of the windows (the model's),
    ``window_s`` their length and ``hop_s`` (default ``window_s``) the time from one
    window's start to the next. ``realtime``, ``lossless`` and ``loop`` apply to files.
    """

    kind = "audio"

    def __init__(
        self,
        source_id: str,
        *,
        path: str | Path | None = None,
        device: str | None = None,
        command: Sequence[str] | None = None,
        rate_hz: int = 16000,
        window_s: float = 1.0,
        hop_s: float | None = None,
        realtime: bool = True,
        lossless: bool = False,
        loop: bool = False,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 10.0,
        open_timeout_s: float = OPEN_TIMEOUT_S,
        stall_timeout_s: float = STALL_TIMEOUT_S,
    ) -> None:
        given = [k for k, v in (("path", path), ("device", device), ("command", command))
                 if v is not None]
        if len(given) != 1:
            raise ValueError("exactly one of path, device or command must be given for an "
                             f"audio source (got {', '.join(given) or 'none'})")
        if command is not None and not command:
            raise ValueError("an audio source's command must name a program")
        hop = window_s if hop_s is None else hop_s
        if not (rate_hz >= 1 and window_s > 0 and hop > 0):
            raise ValueError("an audio source needs rate_hz >= 1, window_s > 0 and hop_s > 0")
        self.window_samples = round(window_s * rate_hz)
        self.hop_samples = round(hop * rate_hz)
        if self.window_samples < 1 or self.hop_samples < 1:
            raise ValueError(f"window_s and hop_s must each hold at least one sample at "
                             f"{rate_hz} Hz")
        super().__init__(source_id)
        self.path = Path(path) if path is not None else None
        self.device = device
        self.command = list(command) if command is not None else None
        self.rate_hz = rate_hz
        self.window_s = window_s
        self.hop_s = hop
        self.realtime = realtime
        self.lossless = lossless
        self.loop = loop
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.open_timeout_s = open_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self._said_resampled = False
        # -- file playback (the consumer's thread) --
        self._samples: AudioArray = np.zeros(0, np.float32)
        self._start_mono = 0.0
        self._next_window = 0
        self._ended = False
        self._stop = threading.Event()
        # -- live capture (the reader thread) --
        self._slot = LatestSlot(self.stats)
        self._thread: threading.Thread | None = None
        self._proc_lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def exhausted(self) -> bool:
        return self._ended

    @property
    def argv(self) -> list[str]:
        """The capture command (``arecord ...`` for a device)."""
        if self.command is not None:
            return list(self.command)
        return ["arecord", "-q", "-t", "raw", "-f", "S16_LE", "-c", "1",
                "-r", str(self.rate_hz), "-D", str(self.device)]

    def describe(self) -> str:
        """Where the sound comes from, for logs."""
        if self.path is not None:
            return str(self.path)
        if self.device is not None:
            return f"ALSA device {self.device!r}"
        return " ".join(self.argv)

    @property
    def windows_in_file(self) -> int:
        """How many windows the loaded file gives (0 before open or for a live source)."""
        n = self._samples.size
        return 0 if n < self.window_samples else (n - self.window_samples) // self.hop_samples + 1

    # -- Source interface ---------------------------------------------------------------

    def _open(self) -> None:
        self._stop = threading.Event()
        self._ended = False
        if self.path is not None:
            self._open_file(self.path)
            return
        self._slot.reopen()
        proc, first = self._spawn(self.open_timeout_s)
        self._proc = proc
        self.stats.connected = True
        self._thread = threading.Thread(target=self._run, args=(self._stop, proc, first),
                                        name=f"audio-{self.source_id}", daemon=True)
        self._thread.start()

    def _read(self, timeout_s: float) -> Sample | None:
        if self.path is not None:
            return self._read_file(timeout_s)
        return self._slot.get(timeout_s)

    def _close(self) -> None:
        self._stop.set()
        self._slot.close()
        with self._proc_lock:
            proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            # The reader then sees the end of its pipe and reaps the child itself: closing
            # the pipe here, under its select, could hand its fd number to another file.
            proc.kill()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(CLOSE_TIMEOUT_S)
            if thread.is_alive():
                log.warning("audio %r: reader thread did not end within %g s",
                            self.source_id, CLOSE_TIMEOUT_S)
                proc = None  # still the reader's
        if proc is not None:
            _reap(proc)
        self.stats.connected = False

    # -- files ---------------------------------------------------------------------------

    def _open_file(self, path: Path) -> None:
        samples, file_rate_hz = load_wav(path, self.rate_hz)
        if file_rate_hz != self.rate_hz and not self._said_resampled:
            self._said_resampled = True
            log.info("audio %r: %s is %d Hz; resampled linearly to %d Hz", self.source_id,
                     path, file_rate_hz, self.rate_hz)
        if samples.size < self.window_samples:
            raise RecordingError(
                f"{path} holds {samples.size / self.rate_hz:.3f} s of audio, less than one "
                f"window of {self.window_s:g} s", hint="use a longer file or a shorter window_s")
        self._samples = samples
        self._start_mono = time.monotonic()
        self._next_window = 0
        self.stats.connected = True

    def _window_due_s(self, k: int) -> float:
        """Monotonic time window ``k`` is due: when its last sample was captured."""
        return self._start_mono + (k * self.hop_samples + self.window_samples) / self.rate_hz

    def _read_file(self, timeout_s: float) -> Sample | None:
        deadline = time.monotonic() + timeout_s
        while not self._stop.is_set() and not self._ended:
            count = self.windows_in_file
            now = time.monotonic()
            if not self.realtime:
                index = self._next_window
            else:
                elapsed = (now - self._start_mono) * self.rate_hz
                due = int((elapsed - self.window_samples) // self.hop_samples)
                due = min(due, count - 1)
                if due < self._next_window:
                    wait_s = min(self._window_due_s(self._next_window), deadline) - now
                    if wait_s <= 0:
                        return None
                    self._stop.wait(wait_s)
                    continue
                index = self._next_window if self.lossless else due
            skipped = index - self._next_window
            self.stats.produced += skipped + 1
            self.stats.dropped += skipped
            start = index * self.hop_samples
            window = self._samples[start:start + self.window_samples].copy()
            # The moment the window's last sample was (or, played faster, would have
            # been) captured: stream time on the monotonic clock, as a replay does.
            t_mono = self._window_due_s(index)
            self._next_window = index + 1
            if self._next_window >= count:
                if self.loop:
                    self._start_mono += count * self.hop_samples / self.rate_hz
                    self._next_window = 0
                else:
                    self._ended = True
                    self.stats.connected = False
            return Sample(self.source_id, t_mono, self._next_seq(), audio=window)
        return None

    # -- live capture ----------------------------------------------------------------------

    def _spawn(self, first_bytes_within_s: float, stop: threading.Event | None = None,
               ) -> tuple[subprocess.Popen[bytes], bytes]:
        """Start the capture child and wait for its first bytes (SourceUnavailableError
        when it cannot start, exits or stays silent)."""
        argv = self.argv
        program = argv[0]
        if shutil.which(program) is None and not Path(program).is_file():
            hint = ("install alsa-utils (apt install alsa-utils), which has arecord"
                    if program == "arecord" else "check the audio source's command")
            raise SourceUnavailableError(f"audio {self.source_id!r}: no program {program!r}",
                                         hint=hint)
        # Kept with the process and closed by _reap: a file, not a pipe, so a chatty child
        # never blocks on a full stderr pipe nobody reads.
        stderr = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=stderr, bufsize=0)
        except OSError as exc:
            stderr.close()
            raise SourceUnavailableError(
                f"audio {self.source_id!r}: cannot start {program!r}: {exc.strerror or exc}",
                hint="install alsa-utils (apt install alsa-utils)" if program == "arecord"
                else "check the audio source's command") from exc
        proc.stderr = stderr  # kept with the process; read when it ends
        assert proc.stdout is not None
        deadline = time.monotonic() + first_bytes_within_s
        ready: list[IO[bytes]] = []
        while not ready and (stop is None or not stop.is_set()):
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                break
            ready, _, _ = select.select([proc.stdout], [], [], min(left_s, 0.1))
        first = os.read(proc.stdout.fileno(), 65536) if ready else b""
        if first:
            return proc, first
        why = "exited" if ready else f"gave no sound within {first_bytes_within_s:g} s"
        detail = _reap(proc)
        raise SourceUnavailableError(
            f"audio {self.source_id!r}: {program} on {self.describe()} {why}"
            + (f": {detail}" if detail else ""),
            hint="list capture devices with `arecord -L` (alsa-utils) and set device to "
                 "one of them; the daemon retries" if self.device is not None
            else "check that the command writes raw S16_LE mono to its stdout")

    def _run(self, stop: threading.Event, proc: subprocess.Popen[bytes], first: bytes) -> None:
        windows = _WindowMaker(self.window_samples, self.hop_samples)
        delays = backoff_delays(self.reconnect_min_s, self.reconnect_max_s)
        pending = bytearray(first)
        current: subprocess.Popen[bytes] | None = proc
        try:
            while not stop.is_set():
                if current is None:
                    try:
                        current, first = self._spawn(self.stall_timeout_s, stop)
                    except SourceUnavailableError as exc:
                        self._note_error(str(exc))
                        delay = next(delays)
                        log.info("%s; retrying in %.1f s", exc, delay)
                        stop.wait(delay)
                        continue
                    with self._proc_lock:
                        if stop.is_set():
                            break
                        self._proc = current
                    self.stats.reconnects += 1
                    self.stats.connected = True
                    log.info("audio %r: capture restarted (%s)", self.source_id, self.describe())
                    windows.reset()
                    pending = bytearray(first)
                    delays = backoff_delays(self.reconnect_min_s, self.reconnect_max_s)
                usable = len(pending) - len(pending) % 2  # an odd byte waits for its pair
                if usable:
                    self._emit(windows, bytes(pending[:usable]))
                    del pending[:usable]
                chunk = self._read_chunk(current, stop)
                if chunk:
                    pending += chunk
                    continue
                if stop.is_set():
                    break
                # EOF (the child ended) or a stall: reap it and start another.
                detail = _reap(current)
                with self._proc_lock:
                    if self._proc is current:
                        self._proc = None
                current = None
                self.stats.connected = False
                self._note_error(f"capture {self.describe()} ended" +
                                 (f": {detail}" if detail else ""))
                delay = next(delays)
                log.info("audio %r: %s; restarting in %.1f s", self.source_id,
                         self.stats.last_error, delay)
                stop.wait(delay)
        finally:
            if current is not None:
                _reap(current)
            if self._stop is stop:
                self.stats.connected = False

    def _read_chunk(self, proc: subprocess.Popen[bytes], stop: threading.Event) -> bytes:
        """The child's next bytes; b"" at its end, after a stall or when stopped."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        silent_since = time.monotonic()
        want = max(2, self.hop_samples * 2)
        while not stop.is_set():
            try:
                ready, _, _ = select.select([fd], [], [], 0.25)
            except (OSError, ValueError):  # closed under us by close()
                return b""
            if ready:
                try:
                    return os.read(fd, want)
                except OSError:
                    return b""
            if time.monotonic() - silent_since > self.stall_timeout_s:
                self._note_error(f"capture {self.describe()} silent for "
                                 f"{self.stall_timeout_s:g} s")
                return b""
        return b""

    def _emit(self, windows: _WindowMaker, data: bytes) -> None:
        """Turn S16_LE bytes into samples and hand out the windows they complete."""
        samples = np.frombuffer(data, "<i2").astype(np.float32) / 32768.0
        now = time.monotonic()
        for window in windows.push(samples):
            self._slot.put(Sample(self.source_id, now, self._next_seq(), audio=window))

    def _note_error(self, text: str) -> None:
        self.stats.errors += 1
        self.stats.last_error = text


def _reap(proc: subprocess.Popen[bytes]) -> str:
    """Kill and reap a capture child (safe twice, and when it has ended already); returns
    the last line it wrote to stderr, shortened."""
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(CLOSE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        log.warning("capture child %d did not end within %g s after SIGKILL", proc.pid,
                    CLOSE_TIMEOUT_S)
    if proc.stdout is not None:
        proc.stdout.close()
    err = proc.stderr
    if err is None or err.closed:
        return ""
    try:
        err.seek(0)
        text = err.read(65536).decode("utf-8", "replace")
    except (OSError, ValueError):
        text = ""
    finally:
        err.close()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""
