"""Config validation: every error names its key path; 'edge-runtime check'."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from edge_runtime.cli import main
from edge_runtime.config import decode_config, load_config
from edge_runtime.errors import ConfigError

CAMERA = '[[sources]]\ntype = "camera"\nid = "cam"\ndevice = 0\n'
PIPE = '[[pipelines]]\nid = "p"\nsource = "cam"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[node]\nnmae = 'x'\n", "node.nmae: unknown key"),
        ("bogus = 1\n", "bogus: unknown key"),
        ('[[sources]]\ntype = "camera"\nid = "c"\ndevice = "zero"\n',
         "sources[0].device: Expected `int | null`, got `str`"),
        ('[[sources]]\ntype = "webcam"\nid = "c"\n', "sources[0].type: Invalid value 'webcam'"),
        ('[[sources]]\ntype = "camera"\nid = "c"\n', "sources[0]: give exactly one of device"),
        (CAMERA + CAMERA, "sources[1].id: duplicate id 'cam'"),
        (CAMERA + 'min_rate_hz = 5\nmax_rate_hz = 1\n', "sources[0]: need 0 < min_rate_hz"),
        (CAMERA + PIPE + 'model = "digitz"\n',
         "pipelines[0].model: unknown model 'digitz' (known: digits-"),
        (CAMERA + PIPE + '[[pipelines.rules]]\nid = "r"\nfield = "score"\nabove = 1\n'
         'actions = ["buzz"]\n', "pipelines[0].rules[0].actions[0]: unknown action 'buzz'"),
        (CAMERA + PIPE + '[[pipelines.rules]]\nid = "r"\nfield = "score"\n',
         "pipelines[0].rules[0]: give exactly one of above, below or equals"),
        ('[[pipelines]]\nid = "p"\nsource = "nope"\n', "pipelines[0].source: unknown source"),
        # A second pipeline on the same source is checked like the first.
        (CAMERA + PIPE + PIPE.replace('"p"', '"q"') + 'detector = "anomaly"\n',
         "pipelines[1].detector: detectors take scalar sources, 'cam' is a camera"),
        (CAMERA + PIPE + PIPE, "pipelines[1].id: duplicate id 'p'"),
        (CAMERA + PIPE + '[pipelines.sampling]\npolicy = "novelty"\n',
         "pipelines[0].sampling.policy: novelty needs a scalar source"),
        (CAMERA + PIPE + 'detector = "anomaly"\n', "pipelines[0].detector: detectors take"),
        ('[[sources]]\ntype = "replay"\nid = "r"\npath = "nope.csv"\n',
         "sources[0].path: no recording at"),
        ('[[sources]]\ntype = "gpio"\nid = "g"\ndevice = "button"\n', "sources[0].pin:"),
        ('[[actions]]\ntype = "gpio"\nid = "led"\npin = 18\nmode = "blink"\n',
         "actions[0].mode: Invalid enum value 'blink'"),
        ("[health]\ninterval_s = 0\n", "health.interval_s: must be >= 0.05 and <= 86400.0"),
        ("[node\n", "is not valid TOML"),
    ],
)
def test_errors_name_the_key_path(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        decode_config(text)
    assert message in str(info.value)
    assert "; " in str(info.value)  # every error says what to do


def test_several_pipelines_may_read_one_source() -> None:
    config = decode_config(CAMERA + PIPE + 'model = "digits-int8-onnx"\n'
                           + PIPE.replace('"p"', '"q"') + '[pipelines.sampling]\n'
                           'policy = "fixed"\n')
    assert [(p.id, p.source) for p in config.pipelines] == [("p", "cam"), ("q", "cam")]


def test_a_lossless_source_is_not_shared(tmp_path: Path) -> None:
    (tmp_path / "rec.csv").write_text("timestamp,value\n0,1\n1,2\n")
    text = ('[[sources]]\ntype = "replay"\nid = "r"\npath = "rec.csv"\nlossless = true\n'
            '[[pipelines]]\nid = "a"\nsource = "r"\n[[pipelines]]\nid = "b"\nsource = "r"\n')
    with pytest.raises(ConfigError) as exc:
        decode_config(text, base_dir=tmp_path)
    assert exc.value.message.startswith("pipelines[0].source: lossless source 'r' is read by "
                                        "pipelines 'a', 'b'")
    assert "own lossless source" in (exc.value.hint or "")
    # One pipeline on it, or lossless off: fine.
    decode_config(text.replace("lossless = true", "lossless = false"), base_dir=tmp_path)


def test_the_sharing_example_in_the_docs_validates() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "config.md").read_text()
    example = re.search(r"\*\*Sharing a source\.\*\*.*?```toml\n(.*?)```", doc, re.S)
    assert example is not None
    camera = CAMERA.replace('"cam"', '"door-cam"')
    config = decode_config(camera + example[1])
    assert {p.source for p in config.pipelines} == {"door-cam"}
    assert len(config.pipelines) == 2


def test_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "rec.csv").write_text("timestamp,value\n0,1\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text('[node]\nstate_dir = "st"\n[[sources]]\ntype = "replay"\nid = "r"\n'
                   'path = "rec.csv"\n')
    config = load_config(cfg)
    assert config.state_dir == tmp_path / "st"
    assert config.control_socket == tmp_path / "st" / "control.sock"
    # the local record of events and summaries: the upstream file sink
    assert config.event_log_path == tmp_path / "st" / "upstream.jsonl"


def test_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text(CAMERA)
    assert main(["check", str(good)]) == 0
    assert "ok (1 source(s)" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text(CAMERA + PIPE + 'model = "digitz"\n')
    assert main(["check", str(bad)]) == 2
    assert "pipelines[0].model: unknown model 'digitz'" in capsys.readouterr().err
    assert main(["check", str(tmp_path / "missing.toml")]) == 2


# --- issue #10: numbers that make no sense are refused with the key path ---------------

REPLAY = '[[sources]]\ntype = "replay"\nid = "r"\npath = "rec.csv"\n'
SENSOR = '[[pipelines]]\nid = "p"\nsource = "r"\n'
RULE = '[[pipelines.rules]]\nid = "x"\nfield = "value"\n'
LED = '[[actions]]\ntype = "gpio"\nid = "led"\npin = 18\n'


@pytest.mark.parametrize(("text", "key"), [
    ("[node]\nshutdown_timeout_s = nan\n", "node.shutdown_timeout_s"),
    ("[node]\nshutdown_timeout_s = inf\n", "node.shutdown_timeout_s"),
    ("[node]\nshutdown_timeout_s = -1\n", "node.shutdown_timeout_s"),
    (REPLAY + "speed = nan\n", "sources[0].speed"),
    (REPLAY + "speed = -inf\n", "sources[0].speed"),
    (REPLAY + "max_rate_hz = inf\n", "sources[0].max_rate_hz"),
    (REPLAY + "min_rate_hz = 1e-300\n", "sources[0].min_rate_hz"),
    (REPLAY + "rate_hz = 0\n", "sources[0].rate_hz"),
    (REPLAY + SENSOR + "[pipelines.sampling]\nhold_s = nan\n", "pipelines[0].sampling.hold_s"),
    (REPLAY + SENSOR + '[pipelines.sampling]\npolicy = "score"\nthreshold = 0\n',
     "pipelines[0].sampling.threshold"),
    (REPLAY + SENSOR + '[pipelines.sampling]\npolicy = "detector"\nthreshold = nan\n',
     "pipelines[0].sampling.threshold"),
    (REPLAY + SENSOR + RULE + "above = nan\n", "pipelines[0].rules[0].above"),
    (REPLAY + SENSOR + RULE + "below = -inf\n", "pipelines[0].rules[0].below"),
    (REPLAY + SENSOR + RULE + "above = 1\nclear_at = inf\n", "pipelines[0].rules[0].clear_at"),
    (REPLAY + SENSOR + RULE + "above = 1\ndebounce_s = -1\n",
     "pipelines[0].rules[0].debounce_s"),
    (REPLAY + SENSOR + "num_threads = 100000\n", "pipelines[0].num_threads"),
    (LED + 'mode = "pulse"\npulse_s = 1e300\n', "actions[0].pulse_s"),
    (LED + "pulse_s = nan\n", "actions[0].pulse_s"),
    (LED.replace("18", "-1"), "actions[0].pin"),
    ("[events]\nmax_bytes = -1\n", "events.max_bytes"),
    ("[events]\nkeep = 4611686018427387904\n", "events.keep"),  # 2**62
    ("[health]\ninterval_s = 1e-300\n", "health.interval_s"),
    ("[budget]\ncpu_high_percent = nan\n", "budget.cpu_high_percent"),
    ("[budget]\ntemp_soft_c = 90.0\ntemp_hard_c = 80.0\n", "budget.temp_hard_c"),
    (REPLAY + SENSOR + "cleaning = { max_fill = 4611686018427387904 }\n",
     "pipelines[0].cleaning.max_fill"),
    (REPLAY + SENSOR + "cleaning = { interval_s = 1e-300 }\n",
     "pipelines[0].cleaning.interval_s"),
    (REPLAY + SENSOR + "cleaning = { spike_mads = nan }\n", "pipelines[0].cleaning.spike_mads"),
    (REPLAY + SENSOR + 'detector = "anomaly"\ndetector_params = { context_orders = 1e300 }\n',
     "pipelines[0].detector_params.context_orders"),
    (REPLAY + SENSOR + '[pipelines.forecast]\nlimit = nan\n', "pipelines[0].forecast.limit"),
    (REPLAY + SENSOR + '[pipelines.forecast]\nlimit = 1\nhorizon_s = inf\n',
     "pipelines[0].forecast.horizon_s"),
    ('[[sources]]\ntype = "camera"\nid = "c"\ndevice = 0\nreconnect_min_s = 5\n'
     "reconnect_max_s = 1\n", "sources[0].reconnect_max_s"),
    ('[[sources]]\ntype = "bridge"\nid = "b"\nport = "/dev/ttyACM0"\nchannel = 300\n',
     "sources[0].channel"),
    ("[upstream.file]\nkeep = 4611686018427387904\n", "upstream.file.keep"),
    ("[upstream.mqtt]\nurl = \"mqtt://b\"\nconnect_timeout_s = inf\n",
     "upstream.mqtt.connect_timeout_s"),
])
def test_hostile_numbers_are_refused_with_the_key_path(tmp_path: Path, text: str,
                                                        key: str) -> None:
    (tmp_path / "rec.csv").write_text("timestamp,value\n0,1\n1,2\n")
    with pytest.raises(ConfigError) as info:
        decode_config(text, base_dir=tmp_path)
    assert info.value.message.startswith(f"{key}: "), info.value.message
    assert "\n" not in str(info.value)


def test_a_bound_says_its_range_and_why() -> None:
    with pytest.raises(ConfigError) as info:
        decode_config("[events]\nkeep = 4611686018427387904\n")
    assert info.value.message == "events.keep: must be >= 0 and <= 100 (an integer)"
    assert "each rotation renames them" in (info.value.hint or "")
    with pytest.raises(ConfigError) as info:
        decode_config("[node]\nshutdown_timeout_s = nan\n")
    assert info.value.message == ("node.shutdown_timeout_s: must be > 0 and <= 600.0 "
                                  "(a finite number)")


# --- issue #10: check runs what run runs ------------------------------------------------

USER_MODULES = {
    "check_parity_detectors": (
        "from edge_runtime.anomaly.protocols import DetectorBase\n"
        "class Raises(DetectorBase):\n"
        "    def __init__(self) -> None:\n"
        "        raise ZeroDivisionError('a constructor that fails')\n"
        "    def update(self, t_s, value):\n"
        "        return 0.0\n"),
    "check_parity_syntax": "def broken(:\n",
    "check_parity_import": "raise ZeroDivisionError('import-time\\nfailure')\n",
}


@pytest.fixture
def parity_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, text in USER_MODULES.items():
        (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in USER_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    (tmp_path / "rec.csv").write_text("timestamp,value\n0,1\n1,2\n")
    return tmp_path


@pytest.mark.parametrize(("extra", "message"), [
    ('detector = ""\n', "pipelines[0].detector: '' is not 'anomaly' or 'module:Class'"),
    ('detector = ":"\n', "pipelines[0].detector: ':' is not 'anomaly' or 'module:Class'"),
    ('detector = "check_parity_syntax:X"\n',
     "pipelines[0].detector: cannot load 'check_parity_syntax:X': SyntaxError: "),
    ('detector = "check_parity_import:X"\n',
     "pipelines[0].detector: cannot load 'check_parity_import:X': ZeroDivisionError: "
     "import-time failure"),
    ('detector = "check_parity_detectors:Raises"\n',
     "pipelines[0].detector: 'check_parity_detectors:Raises' failed to build: "
     "ZeroDivisionError: a constructor that fails"),
    ('[pipelines.sampling]\npolicy = "detector"\ndetector_params = { bogus = 1 }\n',
     "pipelines[0].sampling.detector_params: DetectorConfig.__init__() got an unexpected "
     "keyword argument 'bogus'"),
    ('[pipelines.sampling]\npolicy = "detector"\ndetector_params = { levels = 0 }\n',
     "pipelines[0].sampling.detector_params: DetectorConfig: levels must be >= 1"),
    ('[pipelines.sampling]\npolicy = "novelty"\ndetector_params = { levels = 8 }\n',
     "pipelines[0].sampling.detector_params: only the detector policy takes them"),
    ('[[actions]]\ntype = "log"\nid = "l"\nlevel = "LOUD"\n',
     "actions[0].level: unknown log level 'LOUD'"),
    ('[node]\ngpio_pin_factory = "no-such-factory"\n',
     "node.gpio_pin_factory: unknown gpiozero pin factory 'no-such-factory'"),
])
def test_check_refuses_what_run_would_refuse(parity_modules: Path, extra: str, message: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Each of these made ``run`` (or a reload) fail while ``check`` said ok, or made
    ``check`` crash with a traceback; now ``check`` prints one line with the key path."""
    table = extra.startswith("[") and not extra.startswith("[pipelines.")
    text = (extra if table else "") + REPLAY + SENSOR + ("" if table else extra)
    cfg = parity_modules / "c.toml"
    cfg.write_text(text)
    assert main(["check", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err, err
    assert len(err.splitlines()) == 1, err
