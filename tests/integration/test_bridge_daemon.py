"""Issue 5 "Done when", end to end: the C firmware's sensor stream reaches a running
``edge-runtime run`` through a real tty, the device's own sample rate follows the
adaptive sampler, and garbage on the line or an unplug loses no more than the frames
in flight.

The device is the reference firmware core compiled for the host (``fb_sim``) on a
pseudo-terminal (``SimDevice`` from the firmware_bridge tests); the daemon is a
subprocess, watched only through its control socket, its event log and the device's
own output ("RATE ch hz" lines printed when the firmware applies a SET_RATE).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_runtime import control
from edge_runtime.errors import DaemonError
from tests.firmware_bridge.conftest import FIRMWARE, SimDevice, compile_c
from tests.helpers.events import read_events
from tests.helpers.media import wait_for

REPO = Path(__file__).resolve().parents[2]
PIPE = "vibration"
ACCEL = 1  # the simulator's channel id of "accel" (x = sin(t), +100 while stepped)
MIN_HZ, MAX_HZ = 5.0, 100.0
SHUTDOWN_S = 1.5
GLITCHES = 5
#: accel frames carry at most FB_BATCH_MAX_VALUES (32) floats = 10 samples of width 3
#: (3 with the peak-hold envelope on, the bridge source's default: 9 floats a sample).
MAX_SAMPLES_PER_FRAME = 32 // 3


@pytest.fixture(scope="module")
def sim_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fb_build") / "fb_sim"
    return compile_c(out, FIRMWARE / "host" / "sim_main.c")


@pytest.fixture
def device(sim_binary: Path, tmp_path: Path) -> Iterator[SimDevice]:
    sim = SimDevice(sim_binary, tmp_path / "ttyEDGE").start()
    yield sim
    sim.stop()


def _config(tmp_path: Path, port: Path) -> Path:
    cfg = tmp_path / "bridge.toml"
    cfg.write_text(f"""
[node]
name = "bridge-e2e"
state_dir = "state"
control_socket = "{tmp_path / 'c.sock'}"
shutdown_timeout_s = {SHUTDOWN_S}

[budget]
enabled = false             # a busy CI machine must not cap the maximum rate

[health]
interval_s = 0.5
check_throttling = false

[[sources]]
type = "bridge"
id = "imu"
channel = "accel"
port = "{port}"
value_index = 0
min_rate_hz = {MIN_HZ}
max_rate_hz = {MAX_HZ}

[[pipelines]]
id = "{PIPE}"
source = "imu"
detector = "anomaly"
detector_params = {{ warmup_points = 50 }}
[pipelines.sampling]
policy = "change"
hold_s = 2.0
decay_half_life_s = 0.3

[[pipelines.rules]]
id = "step"
field = "value"
above = 50.0
clear_at = 25.0
actions = ["event"]

[[actions]]
type = "event"
id = "event"
""")
    return cfg


def _status(sock: Path) -> dict[str, Any] | None:
    try:
        return control.request(sock, timeout_s=2.0)
    except DaemonError:
        return None


def _pipe(sock: Path) -> dict[str, Any]:
    st = _status(sock)
    return st["pipelines"][PIPE] if st else {}


def _link(sock: Path) -> dict[str, int]:
    return dict(_pipe(sock).get("source_stats", {}).get("link", {}))


def _device_rates(sim: SimDevice, since: int = 0) -> list[float]:
    """Rates the host set on the accel channel, as the firmware applied them, from line
    ``since`` on (each boot also prints the channel's default, 0 Hz = off: skipped)."""
    prefix = f"RATE {ACCEL} "
    rates = [float(line[len(prefix):]) for line in sim.lines[since:] if line.startswith(prefix)]
    return [r for r in rates if r > 0]


def _stream_rate_hz(sock: Path, window_s: float) -> float:
    """Samples per second the device actually streamed, counted by the host."""
    a = _link(sock).get("samples_received", 0)
    t0 = time.monotonic()
    time.sleep(window_s)
    b = _link(sock).get("samples_received", 0)
    return (b - a) / (time.monotonic() - t0)


def _events(tmp_path: Path) -> list[dict[str, Any]]:
    """The events the daemon reported to its file sink (``state/upstream.jsonl``)."""
    return read_events(tmp_path / "state")


def test_firmware_stream_drives_the_daemon(device: SimDevice, tmp_path: Path) -> None:
    cfg = _config(tmp_path, device.link)
    sock = tmp_path / "c.sock"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log_path = tmp_path / "daemon.log"  # a file, not a pipe: logging can never block
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "edge_runtime", "-v", "run", str(cfg)],
                                cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                stderr=log_file)
    stopped = False
    try:
        # 1-2. Samples reach the pipeline, and they are the simulator's (sin(t) in [-1, 1]).
        assert wait_for(lambda: _pipe(sock).get("inferences", 0) >= 20, 20.0, 0.1), \
            f"no samples reached the pipeline: {_pipe(sock)}"
        first = _pipe(sock)
        assert first["source_stats"]["connected"] is True
        assert first["source_stats"]["envelope"] == "on"  # the device's peak hold
        assert f"ENVELOPE {ACCEL} 1" in device.lines
        assert -1.0 <= first["last_result"]["value"] <= 1.0
        assert "score" in first["last_result"]  # the anomaly detector ran on it

        # 3a. Calm: the controller decays towards the minimum and the firmware follows.
        # (Changes reach the device in steps of >= 25 %, so it ends just above the min.)
        assert wait_for(lambda: (_device_rates(device) or [MAX_HZ])[-1] <= 1.5 * MIN_HZ,
                        12.0, 0.1), f"device rates {_device_rates(device)}"
        calm_rates = _device_rates(device)
        assert calm_rates[0] == MAX_HZ  # the controller's starting rate reached the device
        assert calm_rates == sorted(calm_rates, reverse=True)
        calm_device_hz = calm_rates[-1]
        calm_stream_hz = _stream_rate_hz(sock, 2.0)  # measured in the stream itself
        assert 0.6 * calm_device_hz <= calm_stream_hz <= 1.4 * calm_device_hz, calm_stream_hz
        assert _pipe(sock)["sampling"]["rate_hz"] <= 1.5 * MIN_HZ

        # 3b. Activity on command (a +100 level step): the rate jumps to the maximum.
        mark = len(device.lines)
        device.step()
        assert wait_for(lambda: MAX_HZ in _device_rates(device, mark), 5.0, 0.02), \
            f"device rates after the step {_device_rates(device, mark)}"
        busy_stream_hz = _stream_rate_hz(sock, 1.0)  # inside hold_s = 2 s
        assert busy_stream_hz >= 0.6 * MAX_HZ, busy_stream_hz
        assert wait_for(lambda: any(e["name"] == "step" and e["state"] == "active"
                                    for e in _events(tmp_path)), 5.0, 0.05)
        step_event = next(e for e in _events(tmp_path) if e["name"] == "step")
        assert 99.0 <= step_event["data"]["value"] <= 101.0

        # 4a. Garbage on the line while streaming fast: each glitch tears the frame in
        # flight and puts junk on the wire; the decoder resyncs.
        before = _link(sock)
        for _ in range(GLITCHES):
            device.glitch()
            time.sleep(0.05)
        assert wait_for(lambda: _link(sock)["resyncs"] >= before["resyncs"] + GLITCHES,
                        5.0, 0.05), _link(sock)
        received = _link(sock)["samples_received"]  # frames after the garbage arrive
        assert wait_for(lambda: _link(sock)["samples_received"] >= received + 20, 5.0, 0.05)
        after_garbage = _link(sock)

        # 4b. Unplug (kill -9, mid-stream) and plug back in: the daemon reconnects and
        # the new boot is told the controller's rate again.
        device.unplug()
        assert wait_for(lambda: _pipe(sock).get("source_stats", {}).get("connected") is False,
                        5.0, 0.05)
        assert proc.poll() is None
        mark = len(device.lines)
        device.start()
        assert wait_for(lambda: bool(_device_rates(device, mark)), 8.0, 0.05), \
            "the replugged device was not given a rate"
        samples_at_replug = _pipe(sock)["samples"]
        assert wait_for(lambda: _pipe(sock)["source_stats"]["connected"]
                        and _pipe(sock)["samples"] >= samples_at_replug + 5, 8.0, 0.05)
        # The peak hold is re-applied to the new boot too.
        assert wait_for(lambda: f"ENVELOPE {ACCEL} 1" in device.lines[mark:]
                        and _pipe(sock)["source_stats"]["envelope"] == "on", 5.0, 0.05)
        final = _pipe(sock)
        link = final["source_stats"]["link"]
        assert link["reconnects"] >= 1 and final["source_stats"]["reconnects"] >= 1
        assert final["errors"] == 0, final["last_error"]
        # The bound: a glitch destroys exactly the one frame in flight, so the frames the
        # link lost are at most the glitches, and the samples at most those frames'
        # samples. The unplug loses only what was in flight in the dead device and tty;
        # the new boot restarts its sequence numbers, so it adds no counted loss, and
        # the host never dropped a frame it had received.
        assert 1 <= link["frames_lost"] <= GLITCHES, link
        assert link["samples_lost"] <= GLITCHES * MAX_SAMPLES_PER_FRAME, link
        assert link["frames_lost"] == after_garbage["frames_lost"], (after_garbage, link)
        assert link["samples_dropped_host"] == 0, link
        print(f"\nrates: device {calm_rates} Hz; calm stream {calm_stream_hz:.1f} Hz "
              f"(device {calm_device_hz:g} Hz); after step {busy_stream_hz:.1f} Hz; "
              f"loss after {GLITCHES} glitches + unplug: {link}")

        # 5. SIGTERM: clean exit within the documented budget.
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
        stop_s = time.monotonic() - t0
        stopped = True
        assert rc == 0, log_path.read_text()[-3000:]
        assert stop_s < SHUTDOWN_S + 0.5, f"clean stop took {stop_s:.2f} s"
        summary = json.loads((tmp_path / "state" / "summary.json").read_text())
        assert summary["stopped"] is True
        assert summary["pipelines"][PIPE]["samples"] >= final["samples"]
        assert not sock.exists()
        print(f"stop took {stop_s:.2f} s")
    finally:
        if not stopped:
            proc.kill()
            proc.wait(timeout=5)
            sys.stderr.write(log_path.read_text()[-5000:])
