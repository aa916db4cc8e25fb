"""GPIO sensors on gpiozero's mock pin factory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from edge_runtime.errors import SourceUnavailableError
from edge_runtime.sources.gpio import GpioSource
from tests.helpers.media import wait_for


@pytest.fixture
def mock_pins() -> Iterator[MockFactory]:
    previous = Device.pin_factory
    Device.pin_factory = MockFactory()
    try:
        yield Device.pin_factory
    finally:
        Device.pin_factory.reset()
        Device.pin_factory = previous


def _value(src: GpioSource) -> float | None:
    s = src.read(0.1)
    return None if s is None else s.value


def test_motion_sensor_follows_pin(mock_pins: MockFactory) -> None:
    src = GpioSource("pir", device="motion_sensor", pin=17)
    with src:
        assert _value(src) == 0.0
        mock_pins.pin(17).drive_high()
        assert wait_for(lambda: _value(src) == 1.0, 2.0)
        mock_pins.pin(17).drive_low()
        assert wait_for(lambda: _value(src) == 0.0, 2.0)


def test_digital_input_latches_short_pulses(mock_pins: MockFactory) -> None:
    src = GpioSource("door", device="digital_input", pin=17)
    with src:
        pin = mock_pins.pin(17)
        assert _value(src) == 0.0
        pin.drive_high()
        assert _value(src) == 1.0
        # A pulse that ends before the next poll is still seen once.
        pin.drive_low()
        pin.drive_high()
        pin.drive_low()
        assert src.read(0.1).value == 1.0  # type: ignore[union-attr]
        assert src.read(0.1).value == 0.0  # type: ignore[union-attr]
    assert src.stats.produced == 4


def test_button_and_digital_input(mock_pins: MockFactory) -> None:
    button = GpioSource("btn", device="button", pin=2, pull_up=None)
    din = GpioSource("door", device="digital_input", pin=6)
    with button, din:
        assert button.read(0.1).value == 0.0  # type: ignore[union-attr]
        mock_pins.pin(2).drive_low()  # pressed: pulled-up button shorts to ground
        assert button.read(0.1).value == 1.0  # type: ignore[union-attr]
        mock_pins.pin(6).drive_high()
        assert din.read(0.1).value == 1.0  # type: ignore[union-attr]


def test_distance_sensor_opens_on_mock_pins(mock_pins: MockFactory) -> None:
    from gpiozero.pins.mock import MockTriggerPin

    mock_pins.pin(23, pin_class=MockTriggerPin, echo_pin=mock_pins.pin(24), echo_time=0.004)
    src = GpioSource("dist", device="distance_sensor", echo=24, trigger=23, max_distance_m=2.0)
    with src:
        s = src.read(0.1)
        assert s is not None and 0.0 <= s.value <= 2.0  # type: ignore[operator]


def test_named_mock_factory_and_bad_pin() -> None:
    src = GpioSource("x", device="digital_input", pin=5, factory="mock")
    with src:
        assert src.read(0.1) is not None
    with pytest.raises(SourceUnavailableError, match="pin 9999"):
        GpioSource("bad", device="button", pin=9999, factory="mock").open()
    with pytest.raises(SourceUnavailableError, match="unknown ADC"):
        GpioSource("adc", device="adc", chip="XYZ", factory="mock").open()


class MockMCP3008:
    """The slave side of an MCP3008 ADC on gpiozero's mock SPI pins: answers each
    single-ended conversion request with ``channels[i]`` (0..1 of Vref) as 10 bits."""

    def __new__(cls, factory: MockFactory) -> MockMCP3008:
        from gpiozero.pins.mock import MockSPIDevice

        class _Device(MockSPIDevice):  # type: ignore[misc]
            def __init__(self) -> None:
                super().__init__(11, 10, 9, 8, pin_factory=factory)
                self.channels = [0.0] * 8
                self.state = "idle"

            def on_start(self) -> None:
                super().on_start()
                self.state = "idle"

            def on_bit(self) -> None:
                if self.state == "idle":
                    if self.rx_buf[-1]:  # start bit
                        self.state = "mode"
                        self.rx_buf = []
                elif self.state == "mode":
                    self.state = "single" if self.rx_buf[-1] else "diff"
                    self.rx_buf = []
                elif self.state in ("single", "diff"):
                    if len(self.rx_buf) == 3:
                        value = self.channels[self.rx_word()]
                        self.tx_word(round(max(0.0, min(1.0, value)) * 1023), 12)
                        self.state = "result"
                elif self.state == "result" and not self.tx_buf:
                    self.state = "idle"
                    self.rx_buf = []

        return _Device()  # type: ignore[return-value]


def test_mcp3008_adc_channel_with_scale(mock_pins: MockFactory) -> None:
    adc = MockMCP3008(mock_pins)
    adc.channels[2] = 0.5  # type: ignore[attr-defined]
    src = GpioSource("light", device="adc", chip="MCP3008", channel=2, scale=100.0, offset=1.0)
    with src:
        value = _value(src)
    assert value is not None and abs(value - 51.0) < 0.2
