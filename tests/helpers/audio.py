"""Sound for the audio tests: speech spoken by espeak-ng, mixed with silence and noise,
written as WAV files; and a voice-activity model in Silero VAD's layout built with
onnx.helper."""

from __future__ import annotations

import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_runtime.sources.audio import load_wav

RATE_HZ = 16000
AudioArray = npt.NDArray[np.float32]


def speak(tmp: Path, words: str, rate_hz: int = RATE_HZ) -> AudioArray:
    """``words`` spoken by espeak-ng (Debian package espeak-ng), at ``rate_hz``."""
    path = tmp / f"said-{abs(hash(words))}.wav"
    subprocess.run(["espeak-ng", "-w", str(path), words], check=True, timeout=60,
                   capture_output=True)
    samples, _ = load_wav(path, rate_hz)
    return samples


def write_wav(path: Path, samples: AudioArray, rate_hz: int = RATE_HZ,
              channels: int = 1) -> Path:
    """16-bit PCM WAV (``samples`` of shape (n,) or (n, channels)) through :mod:`wave`."""
    pcm = np.clip(np.round(np.asarray(samples) * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes(pcm.tobytes())
    return path


@dataclass
class Mix:
    """A test recording and where its speech is (seconds from its start)."""

    samples: AudioArray
    speech_s: list[tuple[float, float]]

    @property
    def duration_s(self) -> float:
        return self.samples.size / RATE_HZ


def speech_mix(tmp: Path, seed: int = 0) -> Mix:
    """Silence, noise, a phrase, noise, another phrase, silence: quiet hiss throughout,
    louder noise (std 0.01) in its own stretches, speech peaking near 0.5."""
    rng = np.random.default_rng(seed)
    parts: list[AudioArray] = []
    speech: list[tuple[float, float]] = []
    t = 0.0

    def add(chunk: AudioArray, is_speech: bool = False) -> None:
        nonlocal t
        if is_speech:
            # The phrase as espeak speaks it, without its leading and trailing silence.
            loud = np.flatnonzero(np.abs(chunk) > 0.02)
            chunk = chunk[loud[0]:loud[-1] + 1]
            speech.append((t, t + chunk.size / RATE_HZ))
        parts.append(chunk.astype(np.float32))
        t += chunk.size / RATE_HZ

    def noise(seconds: float, std: float) -> AudioArray:
        return rng.normal(0.0, std, int(seconds * RATE_HZ)).astype(np.float32)

    add(noise(1.0, 0.0005))
    add(noise(1.5, 0.01))
    phrase = speak(tmp, "the kettle is boiling in the kitchen")
    add(phrase / np.abs(phrase).max() * 0.5, True)
    add(noise(2.0, 0.01))
    phrase = speak(tmp, "someone is at the door")
    add(phrase / np.abs(phrase).max() * 0.5, True)
    add(noise(1.5, 0.0005))
    samples = np.concatenate(parts)
    samples += rng.normal(0.0, 0.0005, samples.size).astype(np.float32)
    return Mix(samples, speech)


def vad_model(path: Path, window: int = 512, smoothing: float = 0.8,
              threshold: float = 1e-3) -> Path:
    """A voice-activity model in Silero VAD's layout: inputs ``input (1, N)`` float32,
    ``state (2, 1, 128)`` float32, ``sr`` int64; outputs ``output (1, 1)`` and ``stateN``.

    The state carries a smoothed energy: ``stateN = a * state + (1 - a) * e`` (every
    element) for the window's mean square ``e`` (times ``sr / 16000``), and ``output``
    is ``sigmoid(2 * ln(stateN / threshold))``: above 0.5 while the smoothed energy is
    above ``threshold``. Without the state fed back the output is that of
    ``(1 - a) * e``: the state genuinely matters.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def const(name: str, value: float) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(value, np.float32), name)

    nodes = [
        helper.make_node("Mul", ["input", "input"], ["sq"]),
        helper.make_node("ReduceMean", ["sq"], ["energy"], axes=[1], keepdims=1),
        helper.make_node("Cast", ["sr"], ["sr_f"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["sr_f", "ref_rate"], ["sr_ratio"]),
        helper.make_node("Mul", ["energy", "sr_ratio"], ["e"]),
        helper.make_node("Mul", ["state", "a"], ["kept"]),
        helper.make_node("Mul", ["e", "one_minus_a"], ["fresh"]),
        helper.make_node("Add", ["kept", "fresh"], ["stateN"]),
        helper.make_node("ReduceMean", ["stateN"], ["level3"], keepdims=0),
        helper.make_node("Add", ["level3", "eps"], ["level"]),
        helper.make_node("Div", ["level", "thr"], ["ratio"]),
        helper.make_node("Log", ["ratio"], ["log_ratio"]),
        helper.make_node("Mul", ["log_ratio", "gain"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["p"]),
        helper.make_node("Reshape", ["p", "out_shape"], ["output"]),
    ]
    inits = [const("ref_rate", 16000.0), const("a", smoothing),
             const("one_minus_a", 1.0 - smoothing), const("eps", 1e-12),
             const("thr", threshold), const("gain", 2.0),
             numpy_helper.from_array(np.asarray([1, 1], np.int64), "out_shape")]
    graph = helper.make_graph(
        nodes, "vad",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, window]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, 1, 128]),
         helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1]),
         helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, 1, 128])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


VAD_MANIFEST = """
name = "test-vad"
file = "{file}"
sha256 = "{sha256}"
task = "classification"
description = "Energy voice-activity detector in Silero VAD's layout (test model)."
labels = ["speech"]
state = [{{input = "state", output = "stateN"}}]
constant_inputs = {{sr = 16000}}

[preprocessing]
type = "audio"
sample_rate_hz = 16000
window_s = {window_s}

[postprocessing]
type = "probability"
label = "speech"
other = "quiet"
"""


def vad_manifest(folder: Path, window: int = 512) -> Path:
    """The VAD model and its manifest in ``folder``; returns the manifest's path."""
    from edge_runtime.models.manifest import sha256_file

    model = vad_model(folder / "vad.onnx", window)
    path = folder / "vad.toml"
    path.write_text(VAD_MANIFEST.format(file=model.name, sha256=sha256_file(model),
                                        window_s=window / RATE_HZ))
    return path
