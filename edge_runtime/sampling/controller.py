"""The rate controller and the CPU/thermal budget that caps it.

:class:`RateController` turns activity (see :mod:`~edge_runtime.sampling.policy`) into a
sampling rate between ``min_rate_hz`` and ``max_rate_hz``: activity jumps the rate to the
(budget-capped) maximum at once, it stays there for ``hold_s``, then decays towards the
minimum with half-life ``decay_half_life_s``. Time is passed in, never read, so the
controller runs as well over a recording as live.

:class:`Budget` turns the hottest thermal zone and whole-machine CPU use into a factor in
[0, 1] that shrinks the maximum: 1 when cool and idle, 0 (minimum rate only) at
``temp_hard_c`` or a saturated CPU. Reading the machine and using the factor are split
by thread: :meth:`Budget.measure` reads ``/sys`` and ``/proc`` (blocking: the daemon
calls it in an executor every ``interval_s``) and :meth:`Budget.observe` takes those
readings; :meth:`Budget.factor`, which the controller calls on the event loop, never
reads a file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edge_runtime import health
from edge_runtime.sampling import constants

log = logging.getLogger(__name__)


@dataclass
class Budget:
    """CPU and thermal budget; :meth:`factor` is in [0, 1] (see the module docstring)."""

    temp_soft_c: float = constants.TEMP_SOFT_C
    temp_hard_c: float = constants.TEMP_HARD_C
    cpu_high_percent: float = constants.CPU_HIGH_PERCENT
    #: How often the owner should :meth:`measure` (seconds).
    interval_s: float = constants.BUDGET_INTERVAL_S
    thermal_root: Path = health.THERMAL_ROOT
    enabled: bool = True
    #: The latest readings given to :meth:`observe` (None: unknown on this machine).
    temperature_c: float | None = None
    cpu_percent: float | None = None
    _cpu: health.CpuMeter = field(default_factory=health.CpuMeter)
    _factor: float = 1.0

    def measure(self) -> tuple[float | None, float | None]:
        """Read (temperature_c, cpu_percent) from the machine: blocking, executor only.

        CPU use is over the time since the previous call (None on the first one).
        """
        return health.read_temperature_c(self.thermal_root), self._cpu.read()

    def observe(self, temperature_c: float | None, cpu_percent: float | None) -> float:
        """Take new readings (from :meth:`measure`); returns the new factor. Cheap."""
        self.temperature_c = temperature_c
        self.cpu_percent = cpu_percent
        self._factor = self.compute(temperature_c, cpu_percent)
        return self._factor

    def factor(self, t_s: float) -> float:
        """Fraction of the rate range allowed now, from the latest readings (1.0 before
        the first, or when disabled). Never reads the machine: safe on the event loop."""
        return self._factor if self.enabled else 1.0

    def compute(self, temperature_c: float | None, cpu_percent: float | None) -> float:
        """Pure budget rule, for tests: the smaller of the thermal and CPU factors."""
        factor = 1.0
        if temperature_c is not None and temperature_c > self.temp_soft_c:
            span = max(self.temp_hard_c - self.temp_soft_c, 1e-9)
            factor = min(factor, max(0.0, 1.0 - (temperature_c - self.temp_soft_c) / span))
        if cpu_percent is not None and cpu_percent > self.cpu_high_percent:
            span = max(100.0 - self.cpu_high_percent, 1e-9)
            factor = min(factor, max(0.0, 1.0 - (cpu_percent - self.cpu_high_percent) / span))
        return factor


RateListener = Callable[[float, float, str], None]


@dataclass
class RateController:
    """Activity in, rate out; counts and reports significant rate changes.

    ``listeners`` are called as ``(old_rate_hz, new_rate_hz, reason)`` on each reported
    change; the pipeline logs them and tells a source that ``can_set_rate``.
    """

    min_rate_hz: float
    max_rate_hz: float
    hold_s: float = constants.HOLD_S
    decay_half_life_s: float = constants.DECAY_HALF_LIFE_S
    budget: Budget | None = None
    listeners: list[RateListener] = field(default_factory=list)
    rate_hz: float = 0.0
    changes: int = 0
    increases: int = 0
    decreases: int = 0
    _reported_hz: float = 0.0
    _last_active_t: float | None = None
    _last_t: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.min_rate_hz <= self.max_rate_hz:
            raise ValueError("need 0 < min_rate_hz <= max_rate_hz")
        # Start at the top: the first samples decide whether the scene is calm.
        self.rate_hz = self._reported_hz = self.max_rate_hz

    @property
    def period_s(self) -> float:
        """Seconds until the next sample at the current rate."""
        return 1.0 / self.rate_hz

    def cap_hz(self, t_s: float) -> float:
        """Highest rate the budget allows now."""
        factor = self.budget.factor(t_s) if self.budget is not None else 1.0
        return self.min_rate_hz + factor * (self.max_rate_hz - self.min_rate_hz)

    def update(self, t_s: float, activity: float) -> float:
        """Feed the activity seen at time ``t_s``; returns the new rate in Hz."""
        cap = self.cap_hz(t_s)
        dt = 0.0 if self._last_t is None else max(0.0, t_s - self._last_t)
        self._last_t = t_s
        if activity >= 1.0:
            self._last_active_t = t_s
        if self._last_active_t is not None and t_s - self._last_active_t < self.hold_s:
            target = cap
            reason = "activity" if cap >= self.max_rate_hz else "activity, capped by budget"
        else:
            decay = 0.5 ** (dt / self.decay_half_life_s) if self.decay_half_life_s > 0 else 0.0
            target = self.min_rate_hz + (self.rate_hz - self.min_rate_hz) * decay
            reason = "calm"
        if target > cap:
            target, reason = cap, "budget"
        self.rate_hz = max(self.min_rate_hz, target)
        self._maybe_report(reason)
        return self.rate_hz

    def _maybe_report(self, reason: str) -> None:
        old = self._reported_hz
        new = self.rate_hz
        if new == old:
            return
        at_bound = new in (self.min_rate_hz, self.max_rate_hz)
        if abs(new - old) / old < constants.RATE_CHANGE_REPORT_RATIO and not at_bound:
            return
        self._reported_hz = new
        self.changes += 1
        if new > old:
            self.increases += 1
        else:
            self.decreases += 1
        for listener in self.listeners:
            listener(old, new, reason)

    def state(self) -> dict[str, float | int]:
        """Counters for status and summaries."""
        return {"rate_hz": round(self.rate_hz, 4), "min_rate_hz": self.min_rate_hz,
                "max_rate_hz": self.max_rate_hz, "rate_changes": self.changes,
                "rate_increases": self.increases, "rate_decreases": self.decreases}
