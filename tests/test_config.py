"""Config validation: every error names its key path; 'edge-runtime check'."""

from __future__ import annotations

import re
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
        ("[health]\ninterval_s = 0\n", "health.interval_s: must be > 0"),
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
    assert config.event_log_path == tmp_path / "st" / "events.jsonl"


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
