"""Actions that rules trigger: GPIO outputs, events in a local JSONL log, log lines.

Every action gets both edges of a rule (:class:`~edge_runtime.pipelines.rules.Transition`
with ``active`` True, then False). What they do with them:

- :class:`GpioOutputAction` (LED, buzzer, relay through gpiozero): ``follow`` turns the
  output on while the rule is active; ``pulse`` turns it on for ``pulse_s`` at activation.
- :class:`EventAction`: one JSON line per edge in the node's :class:`EventLog` (the seed
  of upstream reporting).
- :class:`LogAction`: one log line per edge.

:class:`EventLog` writes from one thread (ordering is kept), fsyncs each batch, and
rotates at ``max_bytes`` keeping ``keep`` old files, so the log is bounded on disk and a
power cut loses at most the batch being written.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Literal

import msgspec

from edge_runtime.errors import ActionError, FileWriteError
from edge_runtime.files import state_folder
from edge_runtime.pipelines.rules import Transition

log = logging.getLogger(__name__)

OutputKind = Literal["led", "buzzer", "relay"]


class Action:
    """Base class: something that happens when a rule changes state.

    Implementers **must** override :meth:`_handle` (one edge of a rule, see
    :meth:`handle`) and call ``super().__init__(action_id)``; they **may** override
    :meth:`close` (switch outputs off, release pins and files). :meth:`handle` itself is
    not overridden: it counts :attr:`fired`. A new kind is also a config struct in
    ``config.py`` and a line in ``build.py``'s ``build_runtime``.

    Threads: the constructor runs when the daemon builds a config (in an executor, so it
    may open pins and files). :meth:`handle` runs **on the event loop**, in rule order,
    from ``Pipeline.decide`` and from the daemon's health task: it must not block.
    Anything slow goes to a thread of the action's own (:class:`EventLog` queues lines
    for its writer thread; a GPIO pulse is switched off from another thread). An
    exception it raises is logged and the pipeline goes on. :meth:`close` runs once, in
    an executor, after the pipelines have stopped; it may block briefly (join its own
    threads).
    """

    def __init__(self, action_id: str) -> None:
        self.action_id = action_id
        self.fired = 0

    def handle(self, transition: Transition, context: dict[str, Any]) -> None:
        """React to one edge; ``context`` holds ``pipeline``, ``node`` and the ``result``."""
        self.fired += 1
        self._handle(transition, context)

    def _handle(self, transition: Transition, context: dict[str, Any]) -> None:
        """What the action does on one edge (``transition.active`` True, then False);
        on the event loop."""
        raise NotImplementedError

    def close(self) -> None:
        """Release hardware or files; outputs are switched off (in an executor)."""


class GpioOutputAction(Action):
    """An LED, buzzer or relay on a GPIO pin (gpiozero), in ``follow`` or ``pulse`` mode."""

    def __init__(
        self,
        action_id: str,
        *,
        device: OutputKind,
        pin: int | str,
        mode: Literal["follow", "pulse"] = "follow",
        pulse_s: float = 1.0,
        active_high: bool = True,
        factory: str | None = None,
    ) -> None:
        super().__init__(action_id)
        self.mode = mode
        self.pulse_s = pulse_s
        #: Counts pulses; a pulse's timer switches the output off only if no newer
        #: pulse has started since (a re-trigger restarts the pulse).
        self._pulses = 0
        self._timer: threading.Timer | None = None
        import gpiozero

        from edge_runtime.sources.gpio import pin_factory

        cls = {"led": gpiozero.LED, "buzzer": gpiozero.Buzzer,
               "relay": gpiozero.DigitalOutputDevice}[device]
        try:
            self.device = cls(pin, active_high=active_high, initial_value=False,
                              pin_factory=pin_factory(factory))
        except Exception as exc:  # gpiozero's pin errors have no common base we can name
            raise ActionError(f"action {action_id!r}: cannot drive {device} on pin {pin}: {exc}"
                              ) from exc

    @property
    def is_on(self) -> bool:
        """Whether the output is on now."""
        return bool(self.device.is_active)

    def _handle(self, transition: Transition, context: dict[str, Any]) -> None:
        if self.mode == "follow":
            if transition.active:
                self.device.on()
            else:
                self.device.off()
        elif transition.active:
            self._start_pulse()

    def _start_pulse(self) -> None:
        # Rules run on the event loop: a timer thread ends the pulse. gpiozero's own
        # blink(background=True) would join the previous pulse's thread here.
        self._pulses += 1
        if self._timer is not None:
            self._timer.cancel()  # never waits
        self.device.on()
        timer = threading.Timer(self.pulse_s, self._end_pulse, args=(self._pulses,))
        timer.name = f"pulse-{self.action_id}"
        timer.daemon = True
        self._timer = timer
        timer.start()

    def _end_pulse(self, pulse: int) -> None:
        if pulse == self._pulses:
            self.device.off()

    def close(self) -> None:
        """Switch off and release the pin (blocking: joins a pulse's timer)."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
            timer.join()
        try:
            self.device.off()
        finally:
            self.device.close()


class EventLog:
    """Append-only JSONL event file with fsync and a size bound (rotation).

    The file is created mode 0600 (events may say where things are; 0640 when the
    state folder belongs to a group the operator shares it with). At open a torn
    last line (a power cut mid-write) is cut off, so the next append starts on a line
    of its own. A write that fails leaves no partial line behind. When the disk is
    full, the oldest rotated files are deleted, then the current file rotated away, to
    make room for the newest event (deleting and renaming need no free space); an
    event that still cannot be written is counted in ``dropped``. Repeated errors are
    logged at most once a minute, with their count.
    """

    #: Longest gap between two log lines about the same repeated error (seconds).
    ERROR_LOG_INTERVAL_S = 60.0

    def __init__(self, path: str | Path, *, max_bytes: int = 10_000_000, keep: int = 3) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.keep = keep
        self.written = 0
        self.rotations = 0
        #: Events lost: the queue was full, or the disk stayed full after freeing space.
        self.dropped = 0
        self.last_error: str | None = None
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=10_000)
        self._encoder = msgspec.json.Encoder()
        self._error_log: dict[str, tuple[float, int]] = {}
        try:
            self._file_mode = state_folder(self.path.parent)
            self._fh = self._open_file()
        except OSError as exc:
            why = exc.message if isinstance(exc, FileWriteError) else exc.strerror
            raise ActionError(f"cannot open event log {self.path}: {why}",
                              hint="check that the state folder is writable") from exc
        self._thread = threading.Thread(target=self._run, name="event-log", daemon=True)
        self._thread.start()

    def _open_file(self) -> Any:
        """Open for appending (0600, or 0640 in a shared group's state folder), after
        cutting off a torn last line."""
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        fd = os.open(self.path, flags, self._file_mode)
        fh = os.fdopen(fd, "ab")
        size = os.fstat(fd).st_size
        good = _last_line_end(fd, size)
        if good < size:
            os.ftruncate(fd, good)
            log.warning("event log %s: cut off a torn last line (%d bytes, a power cut "
                        "mid-write)", self.path, size - good)
        self._size = good
        return fh

    def append(self, event: dict[str, Any]) -> None:
        """Queue one event for writing; never blocks the caller for disk I/O."""
        try:
            self._queue.put_nowait(self._encoder.encode(event) + b"\n")
        except queue.Full:
            self.dropped += 1
            self._error("queue", "event log queue full (the disk is too slow); events "
                        "dropped, the last for rule %r", event.get("rule"))

    def _error(self, key: str, msg: str, *args: object) -> None:
        """Log ``msg`` now if it was not logged in the last minute; count it otherwise."""
        now = time.monotonic()
        last, count = self._error_log.get(key, (-math.inf, 0))
        if now - last >= self.ERROR_LOG_INTERVAL_S:
            suffix = f" ({count} more since the last report)" if count else ""
            log.error(msg + suffix, *args)
            self._error_log[key] = (now, 0)
        else:
            self._error_log[key] = (last, count + 1)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch = [item]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            for line in batch:
                if line is not None:
                    self._write(line)
            try:
                self._fh.flush()
                os.fsync(self._fh.fileno())
            except OSError as exc:
                self._error("fsync", "event log %s: fsync failed: %s", self.path, exc)
            for _ in batch:
                self._queue.task_done()
            if stop:
                return

    def _write(self, line: bytes) -> None:
        if self._size + len(line) > self.max_bytes and self._size > 0:
            try:
                self._rotate()
            except OSError as exc:
                self._error("rotate", "event log %s: rotation failed: %s", self.path, exc)
        freed = self._rotated_oldest_first()
        while True:
            try:
                self._fh.write(line)
                self._fh.flush()
            except OSError as exc:
                self._undo_partial_write()
                if exc.errno == errno.ENOSPC and self._free_space(freed):
                    continue  # retry with the space just freed
                self.dropped += 1
                self.last_error = f"{exc.strerror or exc}"
                self._error(f"write-{exc.errno}", "event log %s: write failed (%s); the "
                            "event is dropped and counted", self.path, self.last_error)
                return
            self._size += len(line)
            self.written += 1
            return

    def _undo_partial_write(self) -> None:
        """Cut the file back to its last whole line after a failed write."""
        with contextlib.suppress(OSError):
            # Drop what the buffered writer still holds: it must not land later.
            self._fh.close()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
            os.ftruncate(fd, self._size)
            self._fh = os.fdopen(fd, "ab")
        except OSError as exc:
            self._error("reopen", "event log %s: cannot reopen: %s", self.path, exc)
            self._fh = open(os.devnull, "ab")  # noqa: SIM115 - replaced on next rotation

    def _rotated_oldest_first(self) -> list[Path]:
        names = [self.path.with_name(f"{self.path.name}.{i}") for i in range(self.keep, 0, -1)]
        return [p for p in names if p.exists()]

    def _free_space(self, candidates: list[Path]) -> bool:
        """Delete the oldest rotated file, else rotate the current one away; False when
        nothing is left to free. Neither needs free space on the disk."""
        if candidates:
            victim = candidates.pop(0)
            with contextlib.suppress(OSError):
                victim.unlink()
            self._error("full", "event log %s: the disk is full; deleted the oldest events "
                        "(%s) to keep the newest", self.path, victim.name)
            return True
        if self._size > 0:
            self._error("full", "event log %s: the disk is full; dropped the older events "
                        "of the current file to keep the newest", self.path)
            self._fh.close()
            self.path.unlink()
            self._fh = self._open_file()
            return True
        return False

    def _rotate(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        for i in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.keep > 0:
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()
        self._fh = self._open_file()
        self.rotations += 1

    def flush(self, timeout_s: float = 2.0) -> bool:
        """Wait until everything queued is on disk; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)
        return not self._queue.unfinished_tasks

    def close(self, timeout_s: float = 2.0) -> None:
        """Write what is queued, fsync and close."""
        if not self._thread.is_alive():
            return
        self._queue.put(None)
        self._thread.join(timeout=timeout_s)
        if not self._thread.is_alive():
            self._fh.close()


def _last_line_end(fd: int, size: int, chunk_bytes: int = 4096) -> int:
    """Offset just past the last newline of the file (0 when it has none)."""
    end = size
    while end > 0:
        start = max(0, end - chunk_bytes)
        data = os.pread(fd, end - start, start)
        cut = data.rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        end = start
    return 0


class EventAction(Action):
    """Writes one event per edge to the node's event log."""

    def __init__(self, action_id: str, *, event_log: EventLog, kind: str = "rule") -> None:
        super().__init__(action_id)
        self.event_log = event_log
        self.kind = kind

    def _handle(self, transition: Transition, context: dict[str, Any]) -> None:
        result = context.get("result") or {}
        self.event_log.append({
            "t_unix_s": round(time.time(), 6),
            "t_mono_s": round(transition.t_s, 6),
            "kind": self.kind,
            "node": context.get("node"),
            "pipeline": context.get("pipeline"),
            "rule": transition.rule_id,
            "active": transition.active,
            "field": transition.field,
            "value": transition.value,
            "result": {k: v for k, v in result.items()
                       if isinstance(v, str | int | float | bool) or v is None},
        })


class LogAction(Action):
    """Logs one line per edge at ``level``; ``message`` may use ``{rule}``, ``{value}``..."""

    def __init__(self, action_id: str, *, message: str = "rule {rule} {state} ({field}={value})",
                 level: str = "WARNING") -> None:
        super().__init__(action_id)
        self.message = message
        self.level = logging.getLevelName(level.upper())
        if not isinstance(self.level, int):
            raise ActionError(f"action {action_id!r}: unknown log level {level!r}")

    def _handle(self, transition: Transition, context: dict[str, Any]) -> None:
        fields = {"rule": transition.rule_id, "state": "active" if transition.active else "clear",
                  "field": transition.field, "value": transition.value,
                  "pipeline": context.get("pipeline"), "node": context.get("node")}
        try:
            text = self.message.format(**fields)
        except (KeyError, IndexError, ValueError):
            text = f"{self.message} {fields}"
        log.log(self.level, "%s", text)
