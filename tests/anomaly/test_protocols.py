"""The scalar stages' protocols: every shipped stage conforms, and ``edge-runtime check``
builds a user's ``module:Class`` detector once and names what it lacks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edge_runtime.anomaly import AnomalyDetector
from edge_runtime.anomaly.baselines import NullDetector, RandomDetector, WindowedGaussianDetector
from edge_runtime.anomaly.cleaning import Cleaner as StreamCleaner
from edge_runtime.anomaly.forecast import TrendForecaster
from edge_runtime.anomaly.protocols import (
    Cleaner,
    Detector,
    DetectorBase,
    Forecaster,
    missing_members,
)
from edge_runtime.cli import main
from edge_runtime.config import check_detectors, load_config
from edge_runtime.errors import ConfigError

USER_DETECTORS = '''
from edge_runtime.anomaly.protocols import DetectorBase


class Complete(DetectorBase):
    def __init__(self, *, level: float = 0.5) -> None:
        self.level = level

    def update(self, t_s: float, value: float) -> float:
        return 1.0 if value > self.level else 0.0


class NoStuck:
    """Everything but ``stuck`` (a plain class, no base)."""

    accepts_envelope = False
    alarm_level = 0.5
    last_raw = None
    warmed_up = True

    def update(self, t_s: float, value: float) -> float:
        return 0.0


class OnlyUpdate:
    """What a detector needed before the protocol: one method."""

    def update(self, t_s: float, value: float) -> float:
        return 0.0


class NoUpdate(DetectorBase):
    pass
'''


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A detector module written into tmp_path and importable from there."""
    name = f"user_detectors_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(USER_DETECTORS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


def _config(tmp_path: Path, detector: str, params: str = "{}") -> Path:
    (tmp_path / "rec.csv").write_text("timestamp,value\n0,1\n1,2\n")
    path = tmp_path / "edge.toml"
    path.write_text(
        '[[sources]]\ntype = "replay"\nid = "r"\npath = "rec.csv"\n'
        '[[pipelines]]\nid = "p"\nsource = "r"\n'
        f'detector = "{detector}"\ndetector_params = {params}\n')
    return path


def test_every_shipped_stage_conforms() -> None:
    for det in (AnomalyDetector(), WindowedGaussianDetector(), NullDetector(),
                RandomDetector()):
        assert isinstance(det, Detector), type(det).__name__
        assert missing_members(det, Detector) == []
    assert isinstance(StreamCleaner(), Cleaner)
    assert isinstance(TrendForecaster(upper_limit=1.0), Forecaster)
    assert AnomalyDetector().alarm_level == AnomalyDetector().config.alarm_level


def test_the_base_gives_neutral_defaults() -> None:
    det = NullDetector()
    assert (det.accepts_envelope, det.alarm_level, det.last_raw, det.warmed_up,
            det.stuck) == (False, 0.5, None, True, None)
    assert DetectorBase.__slots__ == ()  # a slotted subclass stays slotted


def test_missing_members_are_named_in_protocol_order() -> None:
    class Bare:
        def update(self, t_s: float, value: float) -> float:
            return 0.0

    assert missing_members(Bare(), Detector) == [
        "accepts_envelope", "alarm_level", "last_raw", "warmed_up", "stuck"]
    assert missing_members(object(), Cleaner) == ["counters", "push", "clean_envelope"]


def test_check_builds_a_user_detector(tmp_path: Path, user_module: str) -> None:
    config = load_config(_config(tmp_path, f"{user_module}:Complete", "{ level = 2.0 }"))
    check_detectors(config)  # no error


@pytest.mark.parametrize(("cls", "missing"), [
    ("NoStuck", "stuck"),
    ("OnlyUpdate", "accepts_envelope, alarm_level, last_raw, warmed_up, stuck"),
])
def test_check_names_the_key_path_and_the_missing_member(
        tmp_path: Path, user_module: str, cls: str, missing: str) -> None:
    config = load_config(_config(tmp_path, f"{user_module}:{cls}"))
    with pytest.raises(ConfigError) as info:
        check_detectors(config)
    assert info.value.message == (f"pipelines[0].detector: '{user_module}:{cls}' is not a "
                                  f"Detector: it has no {missing}")
    assert "DetectorBase" in info.value.hint


def test_a_class_without_update_fails_at_load(tmp_path: Path, user_module: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_config(tmp_path, f"{user_module}:NoUpdate"))
    assert info.value.message == (f"pipelines[0].detector: '{user_module}:NoUpdate' is not "
                                  "a Detector: it has no update")
    assert "DetectorBase" in info.value.hint


def test_check_names_bad_constructor_params(tmp_path: Path, user_module: str) -> None:
    config = load_config(_config(tmp_path, f"{user_module}:Complete", "{ lvl = 2.0 }"))
    with pytest.raises(ConfigError, match=r"^pipelines\[0\]\.detector_params: .*'lvl'"):
        check_detectors(config)


def test_the_check_command_prints_one_line(tmp_path: Path, user_module: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(_config(tmp_path, f"{user_module}:NoStuck"))]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"pipelines[0].detector: '{user_module}:NoStuck' is not a Detector: it has " \
           "no stuck; subclass edge_runtime.anomaly.protocols.DetectorBase" in err
    assert main(["check", str(_config(tmp_path, f"{user_module}:Complete"))]) == 0
