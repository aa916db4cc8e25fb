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

import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Literal

import msgspec

from edge_runtime.errors import ActionError
from edge_runtime.pipelines.rules import Transition

log = logging.getLogger(__name__)

OutputKind = Literal["led", "buzzer", "relay"]


class Action:
    """Base class: something that happens when a rule changes state."""

    def __init__(self, action_id: str) -> None:
        self.action_id = action_id
        self.fired = 0

    def handle(self, transition: Transition, context: dict[str, Any]) -> None:
        """React to one edge; ``context`` holds ``pipeline``, ``node`` and the ``result``."""
        self.fired += 1
        self._handle(transition, context)

    def _handle(self, transition: Transition, context: dict[str, Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release hardware or files; outputs are switched off."""


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
            # gpiozero times the pulse in its own thread; the loop is not held.
            self.device.blink(on_time=self.pulse_s, off_time=0.0, n=1, background=True)

    def close(self) -> None:
        try:
            self.device.off()
        finally:
            self.device.close()


class EventLog:
    """Append-only JSONL event file with fsync and a size bound (rotation)."""

    def __init__(self, path: str | Path, *, max_bytes: int = 10_000_000, keep: int = 3) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.keep = keep
        self.written = 0
        self.rotations = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=10_000)
        self._encoder = msgspec.json.Encoder()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("ab")
        except OSError as exc:
            raise ActionError(f"cannot open event log {self.path}: {exc.strerror}") from exc
        self._thread = threading.Thread(target=self._run, name="event-log", daemon=True)
        self._thread.start()

    def append(self, event: dict[str, Any]) -> None:
        """Queue one event for writing; never blocks the caller for disk I/O."""
        try:
            self._queue.put_nowait(self._encoder.encode(event) + b"\n")
        except queue.Full:
            log.error("event log queue full; event dropped: %s", event.get("rule"))

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
                log.error("event log %s: fsync failed: %s", self.path, exc)
            for _ in batch:
                self._queue.task_done()
            if stop:
                return

    def _write(self, line: bytes) -> None:
        try:
            if self._fh.tell() + len(line) > self.max_bytes and self._fh.tell() > 0:
                self._rotate()
            self._fh.write(line)
            self.written += 1
        except OSError as exc:
            log.error("event log %s: write failed: %s", self.path, exc)

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
        self._fh = self.path.open("ab")
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
