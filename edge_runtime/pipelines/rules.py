"""Rules: threshold, hysteresis and debounce on any result field, as composable transforms.

A rule watches one field of each result (``score``, ``label``, ``count``, ``value``,
``temperature_c``...) and has two states, clear and active. The pieces:

- :class:`Threshold`: result -> bool | None (None when the field is missing);
- :class:`Hysteresis`: activates on one threshold, clears only past another
  (``clear_at``), so a value hovering at the threshold does not flap;
- :class:`Debounce`: a new state must persist ``on_s`` / ``off_s`` seconds first;
- :class:`Rule`: chains them, adds a ``cooldown_s`` between activations and reports
  :class:`Transition` objects that the pipeline turns into actions.

All take the time as an argument: nothing here sleeps or reads the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Op = Literal["above", "below", "equals"]


@dataclass(frozen=True)
class Threshold:
    """``result[field]`` compared to ``value``: ``above`` (>=), ``below`` (<=) or ``equals``."""

    field: str
    op: Op
    value: float | str | bool

    def __call__(self, result: Mapping[str, Any]) -> bool | None:
        x = result.get(self.field)
        if x is None:
            return None
        if self.op == "equals":
            if isinstance(self.value, str):
                return str(x) == self.value
            return bool(x == self.value)
        if isinstance(x, bool) or not isinstance(x, int | float):
            return None
        if isinstance(self.value, str | bool):
            return None
        return x >= self.value if self.op == "above" else x <= self.value


@dataclass
class Hysteresis:
    """Activate when ``on`` holds; once active, stay until ``off`` holds.

    With no ``off`` condition the state simply follows ``on``.
    """

    on: Threshold
    off: Threshold | None = None
    active: bool = False

    def __call__(self, result: Mapping[str, Any]) -> bool | None:
        on = self.on(result)
        if on is None:
            return None
        if not self.active or self.off is None:
            self.active = on
        else:
            off = self.off(result)
            if off:
                self.active = False
        return self.active


@dataclass
class Debounce:
    """A raw bool stream becomes a state that changes only after persisting."""

    on_s: float = 0.0
    off_s: float = 0.0
    state: bool = False
    _pending: bool | None = None
    _since_t: float = 0.0

    def __call__(self, t_s: float, raw: bool) -> bool:
        if raw == self.state:
            self._pending = None
            return self.state
        if self._pending != raw:
            self._pending = raw
            self._since_t = t_s
        needed = self.on_s if raw else self.off_s
        if t_s - self._since_t >= needed:
            self.state = raw
            self._pending = None
        return self.state


@dataclass(frozen=True)
class Transition:
    """A rule changed state at ``t_s``; ``value`` is the field's value that caused it."""

    rule_id: str
    active: bool
    t_s: float
    field: str
    value: Any
    actions: tuple[str, ...]


@dataclass
class Rule:
    """One rule: threshold (+ optional hysteresis) -> debounce -> cooldown -> transitions.

    ``actions`` see both edges: activation and clear (an output in ``follow`` mode
    switches on, then off; an event is written for each; see actions).
    """

    rule_id: str
    condition: Hysteresis
    debounce: Debounce = field(default_factory=Debounce)
    cooldown_s: float = 0.0
    actions: tuple[str, ...] = ()
    activations: int = 0
    suppressed: int = 0
    _last_activation_t: float | None = None

    @classmethod
    def build(
        cls,
        rule_id: str,
        *,
        field: str,
        above: float | None = None,
        below: float | None = None,
        equals: float | str | bool | None = None,
        clear_at: float | None = None,
        debounce_s: float = 0.0,
        clear_debounce_s: float = 0.0,
        cooldown_s: float = 0.0,
        actions: tuple[str, ...] = (),
    ) -> Rule:
        """A rule from config-style keywords; exactly one of above/below/equals."""
        given = [(op, v) for op, v in (("above", above), ("below", below), ("equals", equals))
                 if v is not None]
        if len(given) != 1:
            raise ValueError(f"rule {rule_id!r}: give exactly one of above, below or equals")
        op, value = given[0]
        on = Threshold(field, op, value)  # type: ignore[arg-type]
        off = None
        if clear_at is not None:
            if op == "equals":
                raise ValueError(f"rule {rule_id!r}: clear_at needs above or below")
            off = Threshold(field, "below" if op == "above" else "above", clear_at)
        return cls(rule_id, Hysteresis(on, off), Debounce(debounce_s, clear_debounce_s),
                   cooldown_s, tuple(actions))

    @property
    def active(self) -> bool:
        """Current (debounced) state."""
        return self.debounce.state

    def update(self, t_s: float, result: Mapping[str, Any]) -> Transition | None:
        """Feed one result; returns a transition when the debounced state changes."""
        raw = self.condition(result)
        if raw is None:
            return None
        before = self.debounce.state
        after = self.debounce(t_s, raw)
        if after == before:
            return None
        if after:
            if (self._last_activation_t is not None
                    and t_s - self._last_activation_t < self.cooldown_s):
                # Too soon after the last activation: stay clear, count it.
                self.debounce.state = False
                self.condition.active = False
                self.suppressed += 1
                return None
            self._last_activation_t = t_s
            self.activations += 1
        value = result.get(self.condition.on.field)
        return Transition(self.rule_id, after, t_s, self.condition.on.field, value,
                          self.actions)

    def state(self) -> dict[str, Any]:
        """Counters for status and summaries."""
        return {"active": self.active, "activations": self.activations,
                "suppressed": self.suppressed}
