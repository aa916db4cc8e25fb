"""GPIO sensor sources through gpiozero: digital input, PIR motion, button, ultrasonic
distance and MCP3xxx ADC channels.

The pipeline polls these at the rate the sampling controller chooses. Binary inputs
latch activations between polls, so a button press shorter than the poll period is
still seen (the sample reads 1.0 once). gpiozero is imported only when a device opens.

``open`` blocks (an executor's job); ``read`` returns at once and the daemon calls it on
the event loop. A binary input's state therefore comes from gpiozero's callbacks (on
gpiozero's own threads) into plain attributes: reading a smoothed device such as the PIR
would wait on its queue's lock until the queue fills.

Pin factory choice, in this order: the ``pin_factory`` argument (``"mock"`` gives
gpiozero's :class:`~gpiozero.pins.mock.MockFactory`, used by tests and ``demo``), then
gpiozero's own order (``GPIOZERO_PIN_FACTORY``, then lgpio, rpigpio, ...).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Literal

from edge_runtime.errors import SourceUnavailableError
from edge_runtime.sources.base import Sample, Source

GpioDeviceKind = Literal[
    "digital_input", "motion_sensor", "button", "distance_sensor", "adc"
]
BINARY_KINDS = ("digital_input", "motion_sensor", "button")

_factories: dict[str, Any] = {}
_factories_lock = threading.Lock()


def pin_factory(name: str | None) -> Any:
    """The gpiozero pin factory called ``name`` (one shared instance per name), or None.

    None lets gpiozero choose. ``"mock"`` is gpiozero's MockFactory with PWM-capable pins
    so that PWM outputs (buzzer tones, dimmed LEDs) work in tests too.
    """
    if name is None:
        # gpiozero's own MockFactory lacks PWM pins; give ours for GPIOZERO_PIN_FACTORY=mock.
        if os.environ.get("GPIOZERO_PIN_FACTORY", "").lower() != "mock":
            return None
        name = "mock"
    with _factories_lock:
        if name not in _factories:
            if name == "mock":
                from gpiozero.pins.mock import (
                    MockFactory,
                    MockPWMPin,
                )

                _factories[name] = MockFactory(pin_class=MockPWMPin)
            else:
                _factories[name] = _load_named_factory(name)
        return _factories[name]


def _load_named_factory(name: str) -> Any:
    from importlib.metadata import entry_points

    for ep in entry_points(group="gpiozero_pin_factories"):
        if ep.name == name.lower():
            try:
                return ep.load()()
            except Exception as exc:
                raise SourceUnavailableError(
                    f"gpiozero pin factory {name!r} cannot start: {exc}"
                ) from exc
    raise SourceUnavailableError(f"unknown gpiozero pin factory {name!r}",
                                 hint="use mock, lgpio, rpigpio, pigpio or native")


class GpioSource(Source):
    """One gpiozero input device polled as a scalar source.

    Values: binary inputs read 1.0/0.0; ``distance_sensor`` reads metres;
    ``adc`` reads ``value * scale + offset`` (gpiozero gives 0..1).
    """

    kind = "scalar"
    blocking_read = False

    def __init__(
        self,
        source_id: str,
        *,
        device: GpioDeviceKind,
        pin: int | str | None = None,
        echo: int | str | None = None,
        trigger: int | str | None = None,
        chip: str = "MCP3008",
        channel: int = 0,
        pull_up: bool | None = False,
        max_distance_m: float = 2.0,
        scale: float = 1.0,
        offset: float = 0.0,
        factory: str | None = None,
    ) -> None:
        super().__init__(source_id)
        self.device_kind = device
        self.pin = pin
        self.echo = echo
        self.trigger = trigger
        self.chip = chip
        self.channel = channel
        self.pull_up = pull_up
        self.max_distance_m = max_distance_m
        self.scale = scale
        self.offset = offset
        self.factory = factory
        self._device: Any = None
        #: Binary inputs: the state and a count of activations, written only by
        #: gpiozero's callbacks; ``_seen`` is the count at the previous read.
        self._active = False
        self._activations = 0
        self._seen = 0

    @property
    def device(self) -> Any:
        """The underlying gpiozero device (None before open), e.g. to drive mock pins."""
        return self._device

    def _make(self) -> Any:
        import gpiozero

        factory = pin_factory(self.factory)
        kind = self.device_kind
        if kind == "digital_input":
            return gpiozero.DigitalInputDevice(self.pin, pull_up=self.pull_up,
                                               pin_factory=factory)
        if kind == "motion_sensor":
            # gpiozero samples a PIR in a thread (10 Hz by default); 20 Hz halves the lag
            # at little CPU cost (the thread wakes once per sample).
            return gpiozero.MotionSensor(self.pin, pull_up=self.pull_up, sample_rate=20,
                                         pin_factory=factory)
        if kind == "button":
            pull_up = True if self.pull_up is None else self.pull_up
            return gpiozero.Button(self.pin, pull_up=pull_up, pin_factory=factory)
        if kind == "distance_sensor":
            return gpiozero.DistanceSensor(echo=self.echo, trigger=self.trigger,
                                           max_distance=self.max_distance_m,
                                           pin_factory=factory)
        if kind == "adc":
            cls = getattr(gpiozero, self.chip, None)
            if cls is None or not self.chip.startswith("MCP3"):
                raise SourceUnavailableError(f"sensor {self.source_id!r}: unknown ADC {self.chip}",
                                             hint="use MCP3001..MCP3304")
            if self.chip in ("MCP3001", "MCP3201", "MCP3301"):
                return cls(pin_factory=factory)
            return cls(channel=self.channel, pin_factory=factory)
        raise SourceUnavailableError(f"sensor {self.source_id!r}: unknown device kind {kind!r}")

    def _open(self) -> None:
        try:
            device = self._make()
        except SourceUnavailableError:
            raise
        except Exception as exc:  # gpiozero raises many kinds (PinInvalidPin, BadPinFactory...)
            raise SourceUnavailableError(
                f"sensor {self.source_id!r}: cannot set up {self.device_kind} on "
                f"pin {self.pin if self.pin is not None else self.echo}: {exc}"
            ) from exc
        try:
            if self.device_kind in BINARY_KINDS:
                # Callbacks first, then the state now: no edge falls between the two.
                device.when_activated = self._on_activated
                device.when_deactivated = self._on_deactivated
                self._active = bool(device.is_active)
                self._seen = self._activations
            elif self.device_kind == "distance_sensor":
                # Waits until gpiozero's queue has filled (up to ~0.5 s); from then on
                # reading the distance never waits.
                device.distance  # noqa: B018 (read for its wait)
        except BaseException:
            device.close()
            raise
        self._device = device
        self.stats.connected = True

    def _on_activated(self, *_args: object) -> None:
        self._active = True
        self._activations += 1

    def _on_deactivated(self, *_args: object) -> None:
        self._active = False

    def _read(self, timeout_s: float) -> Sample | None:
        device = self._device
        if device is None:
            return None
        if self.device_kind in BINARY_KINDS:
            activations = self._activations
            active = self._active or activations != self._seen
            self._seen = activations
            value = 1.0 if active else 0.0
        elif self.device_kind == "distance_sensor":
            value = float(device.distance)
        else:
            value = float(device.value) * self.scale + self.offset
        self.stats.produced += 1
        return Sample(self.source_id, time.monotonic(), self._next_seq(), value=value)

    def _close(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            device.close()
        self.stats.connected = False
