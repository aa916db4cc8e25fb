"""The audio source: WAV files (formats, resampling, bad files), windows and hops, and
live capture through a child process: real arecord on ALSA's null device, and a
stand-in program that writes raw PCM and exits, so reading, reaping and restarting
run for real."""

from __future__ import annotations

import logging
import os
import re
import struct
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.errors import RecordingError, SourceUnavailableError
from edge_runtime.sources.audio import AudioSource, load_wav
from tests.helpers.audio import RATE_HZ, speak, write_wav


def _wav_bytes(tag: int, bits: int, rate: int, channels: int, data: bytes) -> bytes:
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"LIST" + \
        struct.pack("<I", 4) + b"INFO" + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_pcm16_float32_24_bit_and_stereo_read_alike(tmp_path: Path) -> None:
    x = (0.5 * np.sin(np.arange(800) * 0.1)).astype(np.float32)
    write_wav(tmp_path / "a.wav", x)
    (tmp_path / "f.wav").write_bytes(_wav_bytes(3, 32, RATE_HZ, 1, x.astype("<f4").tobytes()))
    i24 = np.round(x * (1 << 23)).astype(np.int32)
    b24 = np.stack([i24 & 255, (i24 >> 8) & 255, (i24 >> 16) & 255], 1).astype(np.uint8)
    (tmp_path / "p24.wav").write_bytes(_wav_bytes(1, 24, RATE_HZ, 1, b24.tobytes()))
    write_wav(tmp_path / "st.wav", np.stack([x, x], 1), channels=2)
    for name in ("a", "f", "p24", "st"):
        samples, rate = load_wav(tmp_path / f"{name}.wav")
        assert rate == RATE_HZ and samples.dtype == np.float32
        np.testing.assert_allclose(samples, x, atol=1e-4, err_msg=name)


def test_espeak_speech_is_resampled_to_the_model_rate_and_said_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    speak(tmp_path, "glass break")  # espeak-ng writes 22050 Hz
    said = next(tmp_path.glob("said-*.wav"))
    raw, rate = load_wav(said)
    assert rate == 22050
    source = AudioSource("mic", path=said, rate_hz=RATE_HZ, window_s=0.25, hop_s=0.125,
                         realtime=False, loop=True)
    caplog.set_level(logging.INFO, "edge_runtime.sources.audio")
    for _ in range(2):
        with source:
            first = source.read(1.0)
    assert first is not None and first.audio is not None and first.kind == "audio"
    assert first.audio.shape == (4000,) and first.audio.dtype == np.float32
    assert [r.message for r in caplog.records].count(
        f"audio 'mic': {said} is 22050 Hz; resampled linearly to 16000 Hz") == 1
    np.testing.assert_allclose(
        first.audio[::160], np.interp(np.arange(0, 4000, 160) * 22050 / 16000,
                                      np.arange(raw.size), raw), atol=1e-6)


def test_windows_and_hops_cover_the_file_in_order(tmp_path: Path) -> None:
    x = np.arange(16000, dtype=np.float32) / 32768.0
    write_wav(tmp_path / "ramp.wav", x)
    with AudioSource("a", path=tmp_path / "ramp.wav", window_s=0.1, hop_s=0.05,
                     realtime=False) as source:
        windows = []
        while (s := source.read(1.0)) is not None:
            windows.append(s)
        assert source.exhausted
    assert len(windows) == (16000 - 1600) // 800 + 1
    for k, w in enumerate(windows):
        assert w.audio is not None
        np.testing.assert_allclose(w.audio, x[k * 800:k * 800 + 1600], atol=1 / 32768)
    # Timestamps are when each window's last sample is due: hop_s apart.
    assert np.allclose(np.diff([w.t_mono_s for w in windows]), 0.05)


def test_realtime_file_drops_windows_a_slow_reader_missed(tmp_path: Path) -> None:
    write_wav(tmp_path / "z.wav", np.zeros(RATE_HZ, np.float32))
    with AudioSource("a", path=tmp_path / "z.wav", window_s=0.05, hop_s=0.05) as source:
        started = time.monotonic()
        first = source.read(1.0)
        assert first is not None and time.monotonic() - started >= 0.04
        time.sleep(0.3)
        source.read(1.0)
        assert source.stats.dropped >= 4


@pytest.mark.parametrize(("data", "message"), [
    (b"OggS" + bytes(40), "is not a WAV file (no RIFF/WAVE header)"),
    (_wav_bytes(1, 12, 8000, 1, bytes(30)), "WAV integer PCM of 12 bits per sample is "
                                            "unsupported"),
    (_wav_bytes(0x55, 16, 8000, 1, bytes(30)), "WAV sample format 0x0055 is compressed"),
    (b"RIFF" + struct.pack("<I", 4) + b"WAVE", "WAV file without a fmt chunk"),
])
def test_a_bad_wav_is_a_one_line_error(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(data)
    with pytest.raises(RecordingError, match=re.escape(message)) as info:
        AudioSource("a", path=path).open()
    assert "\n" not in str(info.value) and info.value.hint


STAND_IN = """
import math, os, struct, sys, time
rate, seconds = int(sys.argv[1]), float(sys.argv[2])
n = int(rate * seconds)
pcm = struct.pack(f"<{n}h", *(int(8000 * math.sin(i * 0.05)) for i in range(n)))
step = rate // 50 * 2  # 20 ms of sound per write, paced like a device
for start in range(0, len(pcm), step):
    os.write(1, pcm[start:start + step])
    time.sleep(0.02)
sys.stderr.write("stand-in: end of sound\\n")
"""


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_a_capture_child_that_ends_is_reaped_and_restarted(tmp_path: Path) -> None:
    script = tmp_path / "standin.py"
    script.write_text(STAND_IN)
    source = AudioSource("mic", command=[sys.executable, str(script), "16000", "0.3"],
                         window_s=0.1, hop_s=0.05, reconnect_min_s=0.05,
                         reconnect_max_s=0.1)
    source.open()
    try:
        pids = set()
        deadline = time.monotonic() + 20
        while source.stats.reconnects < 2 and time.monotonic() < deadline:
            sample = source.read(0.5)
            if source._proc is not None:
                pids.add(source._proc.pid)
            if sample is not None:
                assert sample.audio is not None and sample.audio.shape == (1600,)
                assert 0.2 < np.abs(sample.audio).max() < 0.25  # 8000 / 32768
        assert source.stats.reconnects >= 2
        assert "stand-in: end of sound" in (source.stats.last_error or "")
        assert source.stats.errors >= 2 and source.stats.delivered >= 6
    finally:
        source.close()
    assert pids and all(_gone(pid) for pid in pids)
    assert source._thread is None and not source.stats.connected


def test_arecord_reads_alsa_null_device_and_close_reaps_it() -> None:
    source = AudioSource("mic", device="null", window_s=0.032)
    assert source.argv[:2] == ["arecord", "-q"]
    source.open()
    try:
        proc = source._proc
        assert proc is not None
        sample = source.read(2.0)
        assert sample is not None and sample.audio is not None
        # ALSA's null device delivers as fast as it is read, whatever its buffer held.
        assert sample.audio.shape == (512,) and np.abs(sample.audio).max() <= 1.0
    finally:
        source.close()
    assert proc.returncode is not None and _gone(proc.pid)


def test_a_missing_device_names_arecord_s_reason_and_alsa_utils() -> None:
    with pytest.raises(SourceUnavailableError, match=r"arecord on ALSA device 'nosuchdev' "
                                                     r"exited: arecord: .*audio open error"
                       ) as info:
        AudioSource("mic", device="nosuchdev").open()
    assert "alsa-utils" in info.value.hint and "arecord -L" in info.value.hint


def test_a_missing_arecord_says_which_package_has_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SourceUnavailableError, match="no program 'arecord'") as info:
        AudioSource("mic", device="default").open()
    assert "alsa-utils" in info.value.hint


def test_a_silent_child_is_refused_at_open(tmp_path: Path) -> None:
    source = AudioSource("mic", command=[sys.executable, "-c", "import time; time.sleep(30)"],
                         open_timeout_s=0.3)
    with pytest.raises(SourceUnavailableError, match=r"gave no sound within 0\.3 s"):
        source.open()
