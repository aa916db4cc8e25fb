"""A stateful voice-activity model on an audio source: speech spoken by espeak-ng, mixed
with silence and noise by the test, through a pipeline whose rule fires on the speech
and not on the silence or the noise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_runtime.config import decode_config
from edge_runtime.errors import ConfigError
from edge_runtime.models import load_model
from edge_runtime.models.state import ModelInputs, data_input
from edge_runtime.pipelines.build import build_runtime
from edge_runtime.pipelines.pipeline import Pipeline
from edge_runtime.pipelines.rules import Transition
from edge_runtime.pipelines.workers import _read_and_infer
from tests.helpers.audio import RATE_HZ, speech_mix, vad_manifest, write_wav

WINDOW = 512
WINDOW_S = WINDOW / RATE_HZ


def _config(tmp: Path, *, window_s: float = WINDOW_S, extra: str = "") -> str:
    return f"""
[node]
name = "hub"
state_dir = "state"

[budget]
enabled = false

[[sources]]
type = "audio"
id = "mic"
path = "mix.wav"
rate_hz = 16000
window_s = {window_s}
realtime = false
lossless = true
max_rate_hz = 64
{extra}

[[actions]]
type = "log"
id = "say"
message = "speech"

[[pipelines]]
id = "vad"
source = "mic"
model = "./vad.toml"

[[pipelines.rules]]
id = "speaking"
field = "score"
above = 0.5
clear_debounce_s = 0.25   # a pause between words is not the end of speech
actions = ["say"]
"""


def _run(tmp: Path, text: str) -> tuple[list[Transition], list[dict[str, Any]], float]:
    """Every window of the file through the pipeline; transitions, results and the
    monotonic time of the file's start."""
    config = decode_config(text, base_dir=tmp)
    runtime = build_runtime(config)
    try:
        pipe = runtime.pipelines[0]
        source = pipe.source
        source.open()
        transitions: list[Transition] = []
        results: list[dict[str, Any]] = []
        start = None
        while not source.exhausted:
            sample, step = _read_and_infer(pipe)
            if sample is None or step is None:
                continue
            if start is None:
                start = sample.t_mono_s - WINDOW_S
            assert step.result is not None
            results.append(step.result)
            transitions += pipe.decide(sample, step, now_s=sample.t_mono_s)
    finally:
        runtime.close()
    assert start is not None
    return transitions, results, start


def test_a_stateful_vad_rule_fires_on_the_speech_and_not_on_silence_or_noise(
        tmp_path: Path) -> None:
    mix = speech_mix(tmp_path)
    write_wav(tmp_path / "mix.wav", mix.samples)
    vad_manifest(tmp_path, WINDOW)
    transitions, results, start = _run(tmp_path, _config(tmp_path))
    assert len(results) == mix.samples.size // WINDOW
    on = [t.t_s - start for t in transitions if t.active]
    off = [t.t_s - start for t in transitions if not t.active]
    # Once per phrase: within 0.15 s of its first word, cleared within 0.8 s of its last.
    assert len(on) == len(mix.speech_s) == len(off), (on, off, mix.speech_s)
    for (begin_s, end_s), on_s, off_s in zip(mix.speech_s, on, off, strict=True):
        assert begin_s <= on_s <= begin_s + 0.15, (begin_s, on_s)
        assert end_s <= off_s <= end_s + 0.8, (end_s, off_s)
    assert {r["label"] for r in results} == {"speech", "quiet"}
    assert all(r["probability"] == r["score"] for r in results)


def test_the_state_is_fed_back_and_matters(tmp_path: Path) -> None:
    mix = speech_mix(tmp_path)
    model = load_model(str(vad_manifest(tmp_path, WINDOW)))
    fed = ModelInputs(model, data_input(model.manifest, model.inputs))
    fresh = ModelInputs(model, data_input(model.manifest, model.inputs))
    windows = mix.samples[:mix.samples.size // WINDOW * WINDOW].reshape(-1, WINDOW)
    with_state, without = [], []
    for w in windows:
        with_state.append(float(fed.run(w.reshape(1, -1))["output"][0, 0]))
        fresh.reset()  # the state not fed back: every window starts from zeros
        without.append(float(fresh.run(w.reshape(1, -1))["output"][0, 0]))
    assert set(fed.run(windows[0].reshape(1, -1))) == {"output"}  # state stays inside
    a, b = np.asarray(with_state), np.asarray(without)
    assert np.abs(a - b).max() > 0.3
    # Without its state the detector misses most of the speech.
    speech = np.zeros(a.size, bool)
    for begin_s, end_s in mix.speech_s:
        speech[int(begin_s * RATE_HZ) // WINDOW:int(end_s * RATE_HZ) // WINDOW] = True
    assert (a[speech] > 0.5).mean() > 0.9
    assert (b[speech] > 0.5).mean() < (a[speech] > 0.5).mean() - 0.2


def _score(pipe: Pipeline) -> float:
    step = _read_and_infer(pipe)[1]
    assert step is not None and step.result is not None
    return float(step.result["score"])


def test_the_state_starts_again_when_the_source_reconnects(tmp_path: Path) -> None:
    write_wav(tmp_path / "mix.wav", 0.3 * np.sin(np.arange(RATE_HZ) * 0.05))
    vad_manifest(tmp_path, WINDOW)
    runtime = build_runtime(decode_config(_config(tmp_path), base_dir=tmp_path))
    try:
        pipe = runtime.pipelines[0]
        pipe.source.open()
        scores = [_score(pipe) for _ in range(5)]
        assert scores[0] < scores[-1]  # the smoothed energy rises window by window
        pipe.source.stats.reconnects += 1  # what a live source does when it reconnects
        pipe.source.close()
        pipe.source.open()
        assert _score(pipe) == pytest.approx(scores[0])
    finally:
        runtime.close()


def test_a_model_window_the_source_does_not_give_is_refused(tmp_path: Path) -> None:
    write_wav(tmp_path / "mix.wav", np.zeros(RATE_HZ, np.float32))
    vad_manifest(tmp_path, WINDOW)
    with pytest.raises(ConfigError, match=r"0\.032 s at 16000 Hz but audio source 'mic' "
                                          r"delivers 0\.5 s at 16000 Hz"):
        build_runtime(decode_config(_config(tmp_path, window_s=0.5), base_dir=tmp_path))


def test_audio_config_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    write_wav(tmp_path / "mix.wav", np.zeros(RATE_HZ, np.float32))
    vad_manifest(tmp_path, WINDOW)
    text = _config(tmp_path).replace("max_rate_hz = 64", "max_rate_hz = 10")
    with pytest.raises(ConfigError, match="max_rate_hz: 10 reads fewer windows"):
        decode_config(text, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="exactly one of path, device or command"):
        decode_config(_config(tmp_path, extra='device = "default"'), base_dir=tmp_path)
    text = _config(tmp_path).replace('model = "./vad.toml"',
                                     'model = "./vad.toml"\ndetector = "anomaly"')
    with pytest.raises(ConfigError, match="detector: it takes scalar values; 'mic' is an "
                                          "audio source"):
        decode_config(text, base_dir=tmp_path)
