"""Several pipelines on one source: the tap's own-period rule, one reader at the highest
wanted rate, frames shared read-only, and the daemon end to end (a generated-video camera
and mock GPIO in-process, a replay with a slow pipeline in a subprocess under SIGTERM)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_runtime import control
from edge_runtime.errors import DaemonError
from edge_runtime.models import Model, load_model
from edge_runtime.pipelines.daemon import Daemon
from edge_runtime.pipelines.pipeline import Pipeline
from edge_runtime.pipelines.shared import SharedSource, Tap
from edge_runtime.sampling.controller import RateController
from edge_runtime.sampling.policy import ActivityPolicy, ChangePolicy, MotionGate
from edge_runtime.sources.base import Sample, Source
from edge_runtime.sources.camera import OpenCVCamera
from edge_runtime.sources.gpio import pin_factory
from tests.helpers.events import read_events
from tests.helpers.media import frame_with_square, make_video, wait_for, write_csv

REPO = Path(__file__).resolve().parents[2]


# --- the tap: each pipeline's own period --------------------------------------------------


def _offer_all(tap: Tap, times: list[float], source_rate_hz: float, *, take: bool = True
               ) -> list[float]:
    """Offer samples at ``times``; the pipeline takes each kept one at once when ``take``."""
    taken = []
    for seq, t in enumerate(times, start=1):
        tap.offer(Sample("s", t, seq, value=0.0), source_rate_hz)
        if take and (sample := tap.get(0.0)) is not None:
            taken.append(sample.t_mono_s)
    return taken


def test_tap_takes_samples_at_its_own_period() -> None:
    times = [k * 0.05 for k in range(200)]  # 10 s of a source read at 20 Hz
    # The pipeline that sets the source's rate takes every sample.
    fast = Tap("fast", RateController(20.0, 20.0))
    assert _offer_all(fast, times, 20.0) == times
    assert (fast.delivered, fast.skipped, fast.dropped) == (200, 0, 0)
    # At 8 Hz: a sample when one period has passed since the last one's slot; slots
    # move on by exactly one period, so it gets 8 Hz on average from a 20 Hz stream.
    slow = Tap("slow", RateController(8.0, 8.0))
    taken = _offer_all(slow, times, 20.0)
    assert len(taken) == 80
    gaps = np.diff(taken)
    assert set(np.round(gaps, 3)) == {0.1, 0.15}  # 2 or 3 source periods, never less
    assert (slow.delivered, slow.skipped, slow.dropped) == (80, 120, 0)


def test_tap_keeps_only_the_newest_due_sample_and_does_not_burst_after() -> None:
    tap = Tap("slow", RateController(4.0, 4.0))
    _offer_all(tap, [0.0], 20.0)
    # Busy for 1 s: the due samples replace each other (dropped), nothing queues.
    _offer_all(tap, [k * 0.05 for k in range(1, 25)], 20.0, take=False)
    assert tap.skipped == 4  # 0.05-0.2 s: not due at 4 Hz
    assert tap.dropped == 19  # 0.25-1.2 s: due, each replaced by the next
    newest = tap.get(0.0)
    assert newest is not None and newest.t_mono_s == pytest.approx(1.2)
    assert tap.get(0.0) is None
    # Back to work after the slow spell: like a lone pipeline that is late, it may take
    # the next sample at once, then it is back on its period; what it missed stays missed.
    after = _offer_all(tap, [1.2 + k * 0.05 for k in range(1, 40)], 20.0)
    gaps = np.diff([1.2, *after])
    assert gaps[0] == pytest.approx(0.05)
    assert min(gaps[1:]) >= 0.2 - 1e-9  # a period, less one source period to realign
    assert len(after) == 8  # 1.95 s at 4 Hz


def test_a_kept_sample_is_replaced_by_a_newer_one_even_after_the_rate_drops() -> None:
    controller = RateController(1.0, 20.0)  # starts at its maximum, 20 Hz
    tap = Tap("p", controller)
    _offer_all(tap, [0.0], 20.0)
    tap.offer(Sample("s", 0.05, 2, value=1.0), 20.0)  # due, kept; the pipeline is busy
    controller.rate_hz = 2.0  # its controller slows down meanwhile
    tap.offer(Sample("s", 0.10, 3, value=7.0, envelope=(float("nan"), 7.0)), 20.0)
    got = tap.get(0.0)
    assert got is not None and got.seq == 3  # the newest, not the older kept one
    assert got.envelope == (1.0, 7.0)  # the replaced one folded in; NaN never wins
    assert (tap.delivered, tap.dropped, tap.skipped) == (2, 1, 0)


def test_a_spike_between_two_reads_of_a_slow_pipeline_reaches_its_envelope() -> None:
    tap = Tap("slow", RateController(4.0, 4.0))
    values = [1.0, 1.0, 9.0, 1.0, 1.0, -5.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    taken = []
    for seq, value in enumerate(values, start=1):
        sample = Sample("s", (seq - 1) * 0.05, seq, value=value,
                        envelope=(value, 3.0) if seq == 11 else None)
        tap.offer(sample, 20.0)
        if seq != 6 and (got := tap.get(0.0)) is not None:  # busy at 0.25 s
            taken.append(got)
    # Taken: 0 s; 0.3 s (0.25 s was due but replaced while busy); 0.5 s.
    assert [s.seq for s in taken] == [1, 7, 11]
    assert (tap.skipped, tap.dropped) == (7, 1)
    assert taken[0].envelope is None
    assert taken[1].envelope == (-5.0, 9.0)  # a skipped spike, a dropped dip
    assert taken[2].envelope == (1.0, 3.0)  # the source's own envelope, folded in


# --- the shared source: frames read-only, the highest rate reaches the device -------------


class ScriptedRateSource(Source):
    """A scalar source that records the rates it is told, like a microcontroller."""

    kind = "scalar"
    can_set_rate = True

    def __init__(self) -> None:
        super().__init__("device")
        self.rates: list[float] = []

    def _open(self) -> None:
        pass

    def _read(self, timeout_s: float) -> Sample | None:
        return None

    def _close(self) -> None:
        pass

    def set_rate(self, rate_hz: float) -> None:
        self.rates.append(rate_hz)


def tapped(name: str, src: Source, policy: ActivityPolicy, controller: RateController,
           model: Model | None = None) -> Pipeline:
    """A pipeline built as ``build_runtime`` builds one on a shared source: with its tap."""
    return Pipeline(name, src, policy=policy, actions={}, rules=[], controller=controller,
                    model=model, tap=Tap(name, controller))


def test_a_shared_source_needs_a_tap_per_pipeline() -> None:
    src = ScriptedRateSource()
    alone = Pipeline("alone", src, policy=ActivityPolicy(), actions={}, rules=[],
                     controller=RateController(1.0, 10.0))
    with pytest.raises(ValueError, match="'alone' does not read 'device' through a tap"):
        SharedSource(src, [tapped("t", src, ActivityPolicy(), RateController(1.0, 10.0)),
                           alone])


def test_the_device_is_told_the_highest_rate_its_pipelines_want() -> None:
    src = ScriptedRateSource()
    keen = tapped("keen", src, ChangePolicy(),
                  RateController(1.0, 10.0, hold_s=3.0, decay_half_life_s=1.0))
    # A pipeline that is never active: its controller decays to the minimum at once.
    idle = tapped("idle", src, ActivityPolicy(),
                  RateController(1.0, 10.0, hold_s=0.2, decay_half_life_s=0.1))
    shared = SharedSource(src, [keen, idle])
    shared.rate_changed()  # what the daemon does when the source opens
    t_s = 0.0
    values = [20.0] * 200 + [60.0] + [20.0] * 20
    for seq, value in enumerate(values, start=1):
        shared.publish(Sample("device", t_s, seq, value=value))
        for pipe in (keen, idle):
            assert pipe.tap is not None
            if (sample := pipe.tap.get(0.0)) is not None:
                pipe.decide(sample, pipe.infer(sample), now_s=t_s)
        assert shared.rate_hz == max(keen.controller.rate_hz, idle.controller.rate_hz)
        t_s += shared.period_s  # the one reader reads at the highest wanted rate
    assert idle.controller.rate_hz == 1.0 and idle.tap is not None and idle.tap.skipped > 0
    # The device followed the keen pipeline: held at 10 Hz, decayed, back to 10 Hz on the
    # jump; the idle pipeline's 1 Hz never reached it while the keen one wanted more.
    assert src.rates[0] == 10.0 and src.rates[-1] == 10.0
    assert min(src.rates) < 5.0
    assert keen.tap is not None and keen.tap.skipped == 0  # it sets the pace
    assert src.stats.rate_hz == 10.0


class FlakySource(Source):
    """Every other read fails; the last read blocks and ignores close (a wedged driver)."""

    kind = "scalar"

    def __init__(self, release: threading.Event) -> None:
        super().__init__("flaky")
        self.release = release
        self.reads = 0

    def _open(self) -> None:
        pass

    def _read(self, timeout_s: float) -> Sample | None:
        self.reads += 1
        if self.reads >= 7:
            self.release.wait(10.0)  # wedged until the test lets go
            return None
        if self.reads % 2:
            raise OSError("I2C bus error")
        return Sample("flaky", float(self.reads), self._next_seq(), value=1.0)

    def _close(self) -> None:
        pass


def test_shared_read_errors_count_for_every_pipeline_and_a_wedged_reader_is_seen() -> None:
    from edge_runtime.pipelines.workers import RateLimitedLog, SharedReader

    release = threading.Event()
    src = FlakySource(release)
    pipes = [tapped(name, src, ActivityPolicy(), RateController(50.0, 50.0))
             for name in ("a", "b")]
    shared = SharedSource(src, pipes)
    stop = threading.Event()
    reader = SharedReader(shared, stop, RateLimitedLog())
    src.open()
    reader.start()
    try:
        assert wait_for(lambda: src.reads >= 7, 5.0)
        # 3 failed reads, each counted once by the source and once by each pipeline, as a
        # lone pipeline counts its own source's errors (health rules see them).
        assert src.stats.errors == 3
        assert [(p.stats.errors, p.stats.last_error) for p in pipes] == \
            [(3, "OSError: I2C bus error")] * 2
        assert all(p.tap is not None and p.tap.get(0.0) is not None for p in pipes)
        stop.set()
        reader.join(0.2)
        assert reader.alive  # wedged in read: the daemon logs it and moves on
    finally:
        release.set()
        reader.join(5.0)
    assert not reader.alive


def test_frames_are_shared_read_only_and_every_pipeline_can_use_them(tmp_path: Path) -> None:
    camera = OpenCVCamera("cam", path=tmp_path / "clip.avi")  # never opened here
    model = load_model("digits-int8-onnx")
    classify = tapped("classify", camera, MotionGate(), RateController(1.0, 10.0),
                      model=model)
    gate = tapped("gate", camera, MotionGate(heartbeat_s=60.0), RateController(1.0, 10.0))
    shared = SharedSource(camera, [classify, gate])
    frame = frame_with_square(3, digit=7)
    original = frame.copy()
    shared.publish(Sample("cam", 0.0, 1, frame=frame))
    got = [p.tap.get(0.0) for p in (classify, gate) if p.tap is not None]
    assert got[0] is got[1] and got[0] is not None and got[0].frame is frame  # no copies
    assert not frame.flags.writeable  # a stage writing into it would fail loudly
    with pytest.raises(ValueError, match="read-only"):
        frame[0, 0, 0] = 1
    steps = [p.infer(s) for p, s in zip((classify, gate), got, strict=True) if s is not None]
    assert steps[0].inferred and steps[0].result is not None and "label" in steps[0].result
    assert steps[1].result == {"motion": 0.0}  # inferred, but the first frame is not motion
    assert np.array_equal(frame, original)
    model.close()


# --- the daemon, in-process: one camera, two pipelines; one GPIO input, two pipelines ------


def _camera_config(tmp_path: Path) -> Path:
    # 5 s loops: the square moves for 0.5 s, then the scene is still.
    make_video(tmp_path / "clip.avi", 150, fps=30.0, still_ranges=((15, 150),))
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("""
[node]
name = "shared"
state_dir = "state"
gpio_pin_factory = "mock"
[budget]
enabled = false
[health]
interval_s = 0.2
check_throttling = false

[[sources]]
type = "camera"
id = "cam"
path = "clip.avi"
loop = true
min_rate_hz = 2
max_rate_hz = 20

[[sources]]
type = "gpio"
id = "pir"
device = "digital_input"
pin = 17
min_rate_hz = 5
max_rate_hz = 20

# Every frame at the maximum rate through the digit model ...
[[pipelines]]
id = "digits"
source = "cam"
model = "digits-int8-onnx"
[pipelines.sampling]
policy = "fixed"

# ... and a motion gate on the same camera that slows down when the scene is still.
[[pipelines]]
id = "motion"
source = "cam"
[pipelines.sampling]
policy = "motion"
heartbeat_s = 60.0
hold_s = 0.2
decay_half_life_s = 0.1
[[pipelines.rules]]
id = "moving"
field = "motion"
above = 1.0
actions = ["event"]

[[pipelines]]
id = "door"
source = "pir"
[[pipelines.rules]]
id = "open"
field = "value"
above = 1.0
actions = ["event"]

[[pipelines]]
id = "alarm"
source = "pir"
[pipelines.sampling]
policy = "change"
[[pipelines.rules]]
id = "intruder"
field = "value"
above = 1.0
actions = ["led"]

[[actions]]
type = "event"
id = "event"
[[actions]]
type = "gpio"
id = "led"
pin = 18
""")
    return cfg


def _clip_fds(name: str) -> int:
    """Open file descriptors of this process on files called ``name``."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed since listed
            count += os.path.basename(os.readlink(f"/proc/self/fd/{fd}")) == name
    return count


def test_one_camera_feeds_two_pipelines_in_process(tmp_path: Path) -> None:
    cfg = _camera_config(tmp_path)
    factory = pin_factory("mock")

    async def main() -> tuple[dict[str, Any], dict[str, Any], float]:
        daemon = await asyncio.to_thread(Daemon, cfg)  # reads the file
        run = asyncio.create_task(daemon.run())
        loop = asyncio.get_running_loop()

        async def until(pred: Any, timeout_s: float) -> bool:
            deadline = loop.time() + timeout_s
            while loop.time() < deadline:
                if daemon.runtime is not None and pred(daemon.status()):
                    return True
                await asyncio.sleep(0.05)
            return False

        try:
            # The still scene slows the motion pipeline down; the digit pipeline keeps
            # the camera at its maximum, so the motion pipeline skips frames.
            assert await until(lambda s: s["pipelines"]["motion"]["sampling"]["rate_hz"] <= 3
                               and s["pipelines"]["motion"]["source_stats"]["skipped"] >= 10
                               and s["pipelines"]["digits"]["inferences"] >= 20, 20.0), \
                daemon.status()["pipelines"]
            during = daemon.status()
            during["_threads"] = [t.name for t in threading.enumerate()]
            during["_clip_fds"] = await asyncio.to_thread(_clip_fds, "clip.avi")
            # Both pipelines on the PIR see the input go high.
            factory.pin(17).drive_high()
            assert await until(lambda s: s["pipelines"]["door"]["rules"]["open"]["active"]
                               and s["pipelines"]["alarm"]["rules"]["intruder"]["active"],
                               5.0)
            assert factory.pin(18).state == 1
            factory.pin(17).drive_low()
            final = daemon.status()
        finally:
            daemon.request_stop()  # what SIGTERM does
        t0 = loop.time()
        assert await asyncio.wait_for(run, 5.0) == 0
        return during, final, loop.time() - t0

    try:
        during, final, stop_s = asyncio.run(main())
    finally:
        factory.reset()
    assert stop_s < 2.0
    # Opened once, read by one reader: one file handle, one camera thread, one reader.
    assert during["_clip_fds"] == 1
    assert during["_threads"].count("camera-cam") == 1
    assert during["_threads"].count("source-cam") == 1
    assert "source-pir" not in during["_threads"]  # a GPIO poll is read on the loop
    cam = during["sources"]["cam"]
    assert cam["pipelines"] == ["digits", "motion"]
    assert cam["read_rate_hz"] == 20.0  # the highest wanted: the digit pipeline's fixed max
    digits, motion = during["pipelines"]["digits"], during["pipelines"]["motion"]
    # The digit pipeline sets the pace: it gets every frame the reader read.
    assert digits["source_stats"]["skipped"] == 0
    # (status reads the pipelines before the source: one more read may land between)
    share = digits["source_stats"]
    assert share["delivered"] + share["dropped"] >= cam["read"] - 2
    assert digits["last_result"]["label"] in [str(i) for i in range(10)]
    assert motion["samples"] < digits["samples"]
    assert motion["inferences"] == 0 and motion["gated"] > 0
    assert during["sources"]["pir"]["pipelines"] == ["door", "alarm"]
    assert final["pipelines"]["door"]["samples"] > 0 and final["pipelines"]["alarm"]["samples"]
    # No reader, worker or camera thread outlives the daemon.
    assert wait_for(lambda: not [t for t in threading.enumerate()
                                 if t.name.startswith(("pipeline-", "camera-", "source-"))], 3.0)
    assert {"moving", "open"} <= {e["name"] for e in read_events(tmp_path / "state")}
    summary = json.loads((tmp_path / "state" / "summary.json").read_text())
    assert set(summary["sources"]) == {"cam", "pir"}


# --- the daemon as a process: a slow pipeline drops, the fast one keeps up, SIGTERM -------


def _status(sock: Path) -> dict[str, Any] | None:
    try:
        return control.request(sock, timeout_s=2.0)
    except DaemonError:
        return None


def test_slow_pipeline_drops_without_stalling_the_fast_one(tmp_path: Path) -> None:
    write_csv(tmp_path / "s.csv", 20.0 + np.sin(np.arange(6000) / 50.0), period_s=0.01)
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("""
[node]
state_dir = "state"
shutdown_timeout_s = 1.5
[budget]
enabled = false
[health]
interval_s = 0.2
check_throttling = false

[[sources]]
type = "replay"
id = "s"
path = "s.csv"
min_rate_hz = 5
max_rate_hz = 50

[[pipelines]]
id = "fast"
source = "s"
[pipelines.sampling]
policy = "fixed"

# Wants every sample too (fixed), but each takes 0.1 s.
[[pipelines]]
id = "slow"
source = "s"
detector = "tests.helpers.slow:SlowDetector"
detector_params = { delay_s = 0.1 }
[pipelines.sampling]
policy = "fixed"
""")
    sock = tmp_path / "state" / "control.sock"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "edge_runtime", "-v", "run", str(cfg)],
                                cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                stderr=log_file)
    stopped = False
    try:
        assert wait_for(lambda: ((_status(sock) or {}).get("pipelines", {}).get("slow", {})
                                 .get("inferences", 0)) >= 5, 20.0, 0.1), \
            log_path.read_text()[-3000:]
        first = _status(sock)
        t0 = time.monotonic()
        time.sleep(2.0)
        last = _status(sock)
        window_s = time.monotonic() - t0
        assert first is not None and last is not None

        def gained(pipe: str, key: str) -> float:
            assert first is not None and last is not None
            return float(last["pipelines"][pipe][key] - first["pipelines"][pipe][key])

        # The fast pipeline keeps close to the 50 Hz it wants (generous: half of it) ...
        assert gained("fast", "samples") >= 0.5 * 50 * window_s, (first, last)
        assert last["pipelines"]["fast"]["source_stats"]["dropped"] <= \
            0.1 * last["pipelines"]["fast"]["samples"]
        # ... while the slow one manages at most 10 a second and drops the rest, counted.
        assert gained("slow", "samples") <= 10 * window_s + 2
        slow = last["pipelines"]["slow"]["source_stats"]
        assert slow["dropped"] > slow["delivered"]
        assert last["sources"]["s"]["read_rate_hz"] == 50.0
        assert last["health"]["dropped"] >= slow["dropped"]

        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
        stop_s = time.monotonic() - t0
        stopped = True
    finally:
        if not stopped:
            proc.kill()
            proc.wait(timeout=5)
    log_text = log_path.read_text()
    assert rc == 0, log_text[-3000:]
    assert stop_s < 1.5 + 0.5, f"clean stop took {stop_s:.2f} s"
    summary = json.loads((tmp_path / "state" / "summary.json").read_text())
    assert summary["stopped"] is True
    assert summary["sources"]["s"]["pipelines"] == ["fast", "slow"]
    assert summary["pipelines"]["slow"]["inferences"] >= last["pipelines"]["slow"]["inferences"]
    assert "summary fast" in log_text and "summary slow" in log_text


def test_reload_between_a_lone_and_a_shared_camera_opens_it_once_each_time(
        tmp_path: Path) -> None:
    cfg = _camera_config(tmp_path)
    shared_text = cfg.read_text()
    start = shared_text.index("# ... and a motion gate")
    lone_text = shared_text[:start] + shared_text[shared_text.index('[[pipelines]]\nid = "door"'):]
    factory = pin_factory("mock")

    async def main() -> list[tuple[int, int, int, int, list[str]]]:
        await asyncio.to_thread(cfg.write_text, lone_text)
        daemon = await asyncio.to_thread(Daemon, cfg)  # reads the file
        run = asyncio.create_task(daemon.run())
        loop = asyncio.get_running_loop()
        seen = []

        async def settle(generation: int) -> None:
            deadline = loop.time() + 15.0
            while loop.time() < deadline:
                st = daemon.status() if daemon.runtime is not None else {}
                if (st.get("generation") == generation
                        and st["pipelines"]["digits"]["inferences"] >= 5):
                    break
                await asyncio.sleep(0.05)
            st = daemon.status()
            threads = [t.name for t in threading.enumerate()]
            fds = await asyncio.to_thread(_clip_fds, "clip.avi")
            seen.append((st["generation"], fds, threads.count("camera-cam"),
                         threads.count("source-cam"), sorted(st.get("sources", {}))))

        try:
            await settle(1)
            for generation, text in ((2, shared_text), (3, lone_text), (4, shared_text)):
                await asyncio.to_thread(cfg.write_text, text)
                daemon.request_reload()  # what SIGHUP does
                await settle(generation)
        finally:
            daemon.request_stop()
        assert await asyncio.wait_for(run, 5.0) == 0
        return seen

    try:
        seen = asyncio.run(main())
    finally:
        factory.reset()
    # Each generation: the clip open once, one camera thread; a reader thread only while
    # the camera is shared (a lone pipeline reads its source itself).
    assert seen == [
        (1, 1, 1, 0, ["pir"]),
        (2, 1, 1, 1, ["cam", "pir"]),
        (3, 1, 1, 0, ["pir"]),
        (4, 1, 1, 1, ["cam", "pir"]),
    ]
    assert wait_for(lambda: not [t for t in threading.enumerate()
                                 if t.name.startswith(("pipeline-", "camera-", "source-"))], 3.0)
