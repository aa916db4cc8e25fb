"""Rules (threshold, hysteresis, debounce, cooldown) and actions on gpiozero mock pins."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin

from edge_runtime.errors import ActionError
from edge_runtime.pipelines.actions import EventAction, GpioOutputAction, LogAction
from edge_runtime.pipelines.rules import Rule, Threshold, Transition
from tests.helpers.events import RecordingReporter
from tests.helpers.media import wait_for


@pytest.fixture
def mock_pins() -> Iterator[MockFactory]:
    previous = Device.pin_factory
    Device.pin_factory = MockFactory(pin_class=MockPWMPin)
    try:
        yield Device.pin_factory
    finally:
        Device.pin_factory.reset()
        Device.pin_factory = previous


def _run(rule: Rule, values: list[float], dt: float = 1.0) -> list[tuple[float, bool]]:
    out = []
    for i, v in enumerate(values):
        tr = rule.update(i * dt, {"score": v})
        if tr is not None:
            out.append((tr.t_s, tr.active))
    return out


def test_threshold_types() -> None:
    assert Threshold("label", "equals", "7")({"label": "7"})
    assert Threshold("count", "equals", 2)({"count": 2})
    assert Threshold("score", "above", 0.5)({"label": "x"}) is None
    assert Threshold("score", "below", 0.5)({"score": "text"}) is None


def test_plain_threshold_follows_value() -> None:
    rule = Rule.build("r", field="score", above=0.5)
    assert _run(rule, [0.1, 0.6, 0.7, 0.4, 0.9]) == [(1, True), (3, False), (4, True)]
    assert rule.activations == 2


def test_hysteresis_does_not_flap() -> None:
    rule = Rule.build("r", field="score", above=0.8, clear_at=0.5)
    assert _run(rule, [0.9, 0.7, 0.79, 0.81, 0.6, 0.4, 0.7]) == [(0, True), (5, False)]


def test_debounce_needs_persistence() -> None:
    rule = Rule.build("r", field="score", above=0.5, debounce_s=2.0, clear_debounce_s=1.0)
    assert _run(rule, [0.9, 0.1, 0.9, 0.9, 0.9, 0.1, 0.1]) == [(4, True), (6, False)]


def test_cooldown_suppresses_quick_repeats() -> None:
    rule = Rule.build("r", field="score", above=0.5, cooldown_s=5.0)
    assert _run(rule, [0.9, 0.1, 0.9, 0.1, 0.1, 0.1, 0.9]) == [(0, True), (1, False), (6, True)]
    assert rule.suppressed == 1


def test_rule_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Rule.build("r", field="x", above=1.0, below=0.0)
    with pytest.raises(ValueError, match="clear_at"):
        Rule.build("r", field="x", equals="a", clear_at=1.0)


def _tr(active: bool) -> Transition:
    return Transition("hot", active, 1.0, "score", 0.9, ("led",))


def test_gpio_follow_and_pulse_outputs(mock_pins: MockFactory) -> None:
    led = GpioOutputAction("led", device="led", pin=18)
    relay = GpioOutputAction("relay", device="relay", pin=23, mode="pulse", pulse_s=0.05)
    buzzer = GpioOutputAction("bz", device="buzzer", pin=24)
    try:
        led.handle(_tr(True), {})
        assert led.is_on and mock_pins.pin(18).state
        led.handle(_tr(False), {})
        assert not led.is_on
        relay.handle(_tr(True), {})
        assert wait_for(lambda: mock_pins.pin(23).state, 1.0)
        assert wait_for(lambda: not mock_pins.pin(23).state, 2.0)
        buzzer.handle(_tr(True), {})
        assert mock_pins.pin(24).state
    finally:
        for a in (led, relay, buzzer):
            a.close()
    assert not mock_pins.pin(24).state  # closed outputs are off


def test_gpio_output_on_bad_pin_is_typed(mock_pins: MockFactory) -> None:
    with pytest.raises(ActionError, match="pin 999"):
        GpioOutputAction("x", device="led", pin=999)


def test_event_action_publishes_each_edge_with_its_values() -> None:
    recorder = RecordingReporter()
    action = EventAction("ev", kind="alarm")
    action.handle(_tr(True), {"pipeline": "p", "result": {"score": 0.9}})
    assert action.unreported == 1 and recorder.events == []  # not bound yet: counted
    action.bind(recorder)
    for i in range(4):
        action.handle(_tr(i % 2 == 0), {"pipeline": "p", "node": "n",
                                        "result": {"score": 0.9, "top_k": [("a", 1.0)],
                                                   "nan": float("nan")}})
    assert [e["state"] for e in recorder.events] == ["active", "clear"] * 2
    last = recorder.events[-1]
    assert last["type"] == "rule" and last["name"] == "hot" and last["pipeline"] == "p"
    # lists are left out of the event; NaN becomes null; the action's kind is kept
    assert last["data"]["result"] == {"score": 0.9, "nan": None}
    assert last["data"]["kind"] == "alarm" and last["data"]["field"] == "score"
    assert last["snapshot"] is None and recorder.snapshots == []


def test_event_action_on_a_health_rule_and_with_a_frame() -> None:
    recorder = RecordingReporter()
    action = EventAction("ev", reporter=recorder)
    action.handle(_tr(True), {"pipeline": "health", "health": True, "result": {}})
    assert recorder.events[0]["type"] == "health" and recorder.events[0]["pipeline"] is None
    frame = np.zeros((4, 4, 3), np.uint8)
    boxes = [(0.0, 0.0, 2.0, 2.0, "face", 0.9)]
    action.handle(_tr(True), {"pipeline": "cam", "result": {}, "frame": frame,
                              "boxes": boxes})
    action.handle(_tr(False), {"pipeline": "cam", "result": {}, "frame": frame})
    on, off = recorder.events[1:]
    assert on["snapshot"] == "cam-0.jpg" and off["snapshot"] is None  # activations only
    assert recorder.snapshots == [("cam-0.jpg", frame, boxes)]


def test_log_action(caplog: pytest.LogCaptureFixture) -> None:
    action = LogAction("log", message="{rule} is {state}: {value}")
    with caplog.at_level(logging.WARNING):
        action.handle(_tr(True), {})
    assert "hot is active: 0.9" in caplog.text
    with pytest.raises(ActionError, match="log level"):
        LogAction("x", level="LOUD")
