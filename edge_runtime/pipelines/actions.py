"""Actions that rules trigger: GPIO outputs, events reported upstream, log lines.

Every action gets both edges of a rule (:class:`~edge_runtime.pipelines.rules.Transition`
with ``active`` True, then False). What they do with them:

- :class:`GpioOutputAction` (LED, buzzer, relay through gpiozero): ``follow`` turns the
  output on while the rule is active; ``pulse`` turns it on for ``pulse_s`` at activation.
- :class:`EventAction`: one event per edge through the node's durable upstream outbox
  (to the local JSONL file sink by default, and to MQTT/HTTP when configured; see
  docs/reporting.md).
- :class:`LogAction`: one log line per edge.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from typing import Any, Literal, Protocol

from edge_runtime.config import log_level
from edge_runtime.errors import ActionError
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
    Anything slow goes to another thread (:class:`EventAction` hands its event to the
    outbox's writer thread; a GPIO pulse is switched off from a timer thread). An
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


class EventReporter(Protocol):
    """Where :class:`EventAction` sends events: the daemon's upstream reporting (the
    durable outbox, see :mod:`edge_runtime.upstream`). Both methods run on the loop and
    never block."""

    def publish_event(self, *, type: str, name: str, state: str,
                      pipeline: str | None = None, data: dict[str, Any] | None = None,
                      snapshot: str | None = None) -> str: ...

    def attach_snapshot(self, pipeline: str, frame: Any,
                        boxes: Sequence[Sequence[Any]] = ()) -> str | None: ...


class EventAction(Action):
    """Publishes one event per edge through the node's upstream outbox.

    The event is stored durably (SQLite, committed within ``upstream.outbox
    .commit_interval_s``) and then written to every sink: the local JSONL file
    (``<state_dir>/upstream.jsonl`` by default) and MQTT/HTTP when configured. Nothing
    is dropped on the way: there is no bounded queue in front of the outbox.

    The daemon binds the reporter (:meth:`bind`) once its upstream has started; an edge
    before that, or with ``[upstream] enabled = false``, is counted in
    :attr:`unreported`. ``context`` may carry ``frame`` and ``boxes`` (a camera rule with
    ``snapshot = true``): the JPEG is then attached to the activation's event.
    """

    def __init__(self, action_id: str, *, kind: str = "rule",
                 reporter: EventReporter | None = None) -> None:
        super().__init__(action_id)
        self.kind = kind
        self.reporter = reporter
        #: Edges seen while no reporter was bound (reporting disabled or not started).
        self.unreported = 0

    def bind(self, reporter: EventReporter | None) -> None:
        """Send this action's events to ``reporter`` from now on (on the loop)."""
        self.reporter = reporter

    def _handle(self, transition: Transition, context: dict[str, Any]) -> None:
        reporter = self.reporter
        if reporter is None:
            self.unreported += 1
            return
        result = context.get("result") or {}
        health = bool(context.get("health"))
        pipeline = None if health else context.get("pipeline")
        data: dict[str, Any] = {
            # The edge's time on the sample clock (monotonic s), not when it was stored.
            "t_mono_s": round(transition.t_s, 6),
            "field": transition.field, "value": _plain(transition.value),
            "result": {k: _plain(v) for k, v in result.items()
                       if isinstance(v, str | int | float | bool) or v is None},
        }
        if self.kind != "rule":
            data["kind"] = self.kind
        snapshot = None
        frame = context.get("frame")
        if transition.active and frame is not None and pipeline is not None:
            snapshot = reporter.attach_snapshot(pipeline, frame, context.get("boxes", ()))
        reporter.publish_event(type="health" if health else "rule", name=transition.rule_id,
                               state="active" if transition.active else "clear",
                               pipeline=pipeline, data=data, snapshot=snapshot)


def _plain(value: Any) -> Any:
    """A JSON-friendly copy of a result value (NaN and inf become None)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class LogAction(Action):
    """Logs one line per edge at ``level``; ``message`` may use ``{rule}``, ``{value}``..."""

    def __init__(self, action_id: str, *, message: str = "rule {rule} {state} ({field}={value})",
                 level: str = "WARNING") -> None:
        super().__init__(action_id)
        self.message = message
        resolved = log_level(level)
        if resolved is None:
            raise ActionError(f"action {action_id!r}: unknown log level {level!r}")
        self.level = resolved

    def _handle(self, transition: Transition, context: dict[str, Any]) -> None:
        fields = {"rule": transition.rule_id, "state": "active" if transition.active else "clear",
                  "field": transition.field, "value": transition.value,
                  "pipeline": context.get("pipeline"), "node": context.get("node")}
        try:
            text = self.message.format(**fields)
        except (KeyError, IndexError, ValueError):
            text = f"{self.message} {fields}"
        log.log(self.level, "%s", text)
