"""The ``system`` source: the host's own readings from a fake /proc and /sys root (files
the test writes), and an overheating run that raises an alarm through a pipeline."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from edge_runtime.config import decode_config
from edge_runtime.errors import ConfigError, SourceUnavailableError
from edge_runtime.pipelines.build import build_runtime
from edge_runtime.sources.system import CHANNELS, SystemSource
from tests.helpers.events import record_events


class FakeHost:
    """A /proc and /sys tree in a directory, with counters the test moves on."""

    def __init__(self, root: Path) -> None:
        self.proc = root / "proc"
        self.sys = root / "sys"
        (self.proc / "net").mkdir(parents=True)
        (self.sys / "class" / "thermal" / "thermal_zone0").mkdir(parents=True)
        (self.sys / "class" / "thermal" / "thermal_zone1").mkdir(parents=True)
        (self.sys / "block" / "mmcblk0").mkdir(parents=True)
        (self.sys / "block" / "loop0").mkdir(parents=True)
        (self.sys / "devices" / "platform" / "soc" / "soc:firmware").mkdir(parents=True)
        self.busy, self.total = 1000, 10000
        self.sectors = 5000
        self.rx = {"lo": [0, 0], "eth0": [10_000, 100], "wlan0": [2_000, 20]}
        self.set(temperature_c=48.0, throttled=0x0)
        (self.proc / "loadavg").write_text("0.42 0.30 0.25 1/123 4567\n")
        (self.proc / "meminfo").write_text(
            "MemTotal:        1000000 kB\nMemFree:          100000 kB\n"
            "MemAvailable:     250000 kB\n")

    def set(self, *, temperature_c: float, throttled: int = 0) -> None:
        zones = self.sys / "class" / "thermal"
        (zones / "thermal_zone0" / "temp").write_text(f"{round(temperature_c * 1000)}\n")
        (zones / "thermal_zone1" / "temp").write_text("30000\n")  # the cooler zone
        (self.sys / "devices" / "platform" / "soc" / "soc:firmware" / "get_throttled"
         ).write_text(f"{throttled:x}\n")
        self.write_counters()

    def write_counters(self) -> None:
        idle = self.total - self.busy
        (self.proc / "stat").write_text(
            f"cpu  {self.busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 {self.busy} 0 0 {idle} 0 0 0 0\n")
        (self.proc / "diskstats").write_text(
            f" 179       0 mmcblk0 100 0 2000 50 300 0 {self.sectors} 90 0 100 140\n"
            f" 179       1 mmcblk0p1 10 0 200 5 30 0 {self.sectors // 2} 9 0 10 14\n"
            "   7       0 loop0 5 0 10 1 0 0 999999 0 0 1 1\n")
        lines = ["Inter-|   Receive                |  Transmit",
                 " face |bytes    packets errs drop fifo frame compressed multicast|bytes ..."]
        for name, (b, p) in self.rx.items():
            lines.append(f"{name:>6}: {b} {p} 0 0 0 0 0 0 {b // 2} {p // 2} 0 0 0 0 0 0")
        (self.proc / "net" / "dev").write_text("\n".join(lines) + "\n")


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _source(host: FakeHost, channel: str, clock: Clock, **kw: object) -> SystemSource:
    return SystemSource("node", channel=channel, proc_root=host.proc, sys_root=host.sys,
                        clock=clock, **kw)  # type: ignore[arg-type]


def test_levels_are_read_from_the_fake_root(tmp_path: Path) -> None:
    host = FakeHost(tmp_path)
    clock = Clock()
    expect = {"cpu_temperature_c": 48.0, "load_1m": 0.42, "memory_percent": 75.0,
              "throttled": 0.0}
    for channel, value in expect.items():
        with _source(host, channel, clock) as src:
            sample = src.read(0.1)
            assert sample is not None and sample.value == pytest.approx(value), channel
            assert sample.t_mono_s == 100.0
    host.set(temperature_c=48.0, throttled=0x50004)  # throttled now (bit 2)
    with _source(host, "throttled", clock) as src:
        assert (s := src.read(0.1)) is not None and s.value == 1.0
    host.set(temperature_c=48.0, throttled=0x50000)  # throttling occurred, not now
    with _source(host, "throttled", clock) as src:
        assert (s := src.read(0.1)) is not None and s.value == 0.0
    with _source(host, "disk_percent", clock, disk_path=tmp_path) as src:
        assert (s := src.read(0.1)) is not None and 0.0 <= float(s.value or 0) <= 100.0


def test_rates_are_differences_over_the_source_clock(tmp_path: Path) -> None:
    host = FakeHost(tmp_path)
    clock = Clock()
    sources = {ch: _source(host, ch, clock) for ch in
               ("cpu_percent", "disk_write_bytes_per_s", "net_rx_bytes_per_s",
                "net_tx_packets_per_s")}
    sources["eth0"] = _source(host, "net_rx_bytes_per_s", clock, interface="eth0")
    sources["part"] = _source(host, "disk_write_bytes_per_s", clock, device="mmcblk0p1")
    for src in sources.values():
        src.open()  # first counters
    clock.t += 10.0
    host.busy += 450
    host.total += 1000
    host.sectors += 2000  # 1 MB (partition: half of it, loop0 unchanged)
    host.rx["eth0"][0] += 50_000
    host.rx["wlan0"][0] += 10_000
    host.rx["lo"][0] += 10**9  # loopback traffic is not the node's traffic
    host.rx["eth0"][1] += 200
    host.write_counters()
    got = {k: s.read(0.1) for k, s in sources.items()}
    values = {k: (s.value if s is not None else None) for k, s in got.items()}
    assert values["cpu_percent"] == pytest.approx(45.0)
    assert values["disk_write_bytes_per_s"] == pytest.approx(2000 * 512 / 10)
    assert values["part"] == pytest.approx(1000 * 512 / 10)
    assert values["net_rx_bytes_per_s"] == pytest.approx(6000.0)
    assert values["eth0"] == pytest.approx(5000.0)
    assert values["net_tx_packets_per_s"] == pytest.approx(10.0)
    for src in sources.values():
        src.close()


def test_unavailable_readings_give_no_sample_and_count_an_error(tmp_path: Path) -> None:
    host = FakeHost(tmp_path)
    clock = Clock()
    with _source(host, "net_rx_bytes_per_s", clock, interface="eth9") as src:
        assert src.read(0.1) is None
        assert src.stats.errors == 1 and "not available" in str(src.stats.last_error)
    with _source(host, "inference_latency_ms", clock) as src:
        assert src.read(0.1) is None
    with _source(host, "inference_latency_ms", clock, latency_probe=lambda: 12.5) as src:
        assert (s := src.read(0.1)) is not None and s.value == 12.5
    with pytest.raises(ValueError, match="unknown system channel"):
        SystemSource("x", channel="fan_rpm")
    missing = SystemSource("x", channel="load_1m", proc_root=tmp_path / "nope")
    with pytest.raises(SourceUnavailableError) as err:
        missing.open()
    assert "proc_root" in err.value.hint
    assert set(CHANNELS) >= {"cpu_temperature_c", "net_tx_bytes_per_s", "disk_percent"}


CONFIG = """
[node]
state_dir = "st"
[budget]
enabled = false
[[sources]]
type = "system"
id = "node"
channel = "{channel}"
proc_root = "{root}/proc"
sys_root = "{root}/sys"
[[pipelines]]
id = "node-temperature"
source = "node"
detector = "anomaly"
[[pipelines.rules]]
id = "node-unwell"
field = "score"
above = 0.3
actions = ["event"]
[[actions]]
type = "event"
id = "event"
kind = "node_anomaly"
"""


def test_config_refuses_an_unknown_system_channel(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sources\[0\]\.channel: unknown system channel"):
        decode_config(CONFIG.format(channel="fan_rpm", root=tmp_path), base_dir=tmp_path)


def test_overheating_node_raises_an_alarm_event(tmp_path: Path) -> None:
    """A recorded run, one read every 10 s: 5 h at 47-50 C (busy every other 2 minutes),
    then the fan stops and the SoC heats up by 1 C a minute towards 85 C."""
    host = FakeHost(tmp_path)
    config = decode_config(CONFIG.format(channel="cpu_temperature_c", root=tmp_path),
                           base_dir=tmp_path)
    runtime = build_runtime(config)
    recorder = record_events(runtime)
    rng = random.Random(7)
    clock = Clock()
    period_s, calm_reads, hot_reads = 10.0, 1800, 240
    try:
        assert isinstance(runtime.sources["node"], SystemSource)  # built from the config
        pipe = runtime.pipelines[0]
        # The same source with a scripted clock, so the recorded run replays at once.
        source = SystemSource("node", channel="cpu_temperature_c", proc_root=host.proc,
                              sys_root=host.sys, clock=clock)
        scores, health = [], []
        with source:
            for i in range(calm_reads + hot_reads):
                load = 1.5 if (i // 12) % 2 else 0.0  # 2-minute busy spells
                temp = 47.5 + load + rng.gauss(0.0, 0.3)
                if i >= calm_reads:
                    temp = min(85.0, temp + (i - calm_reads) * period_s / 60.0)
                host.set(temperature_c=round(temp * 2.0) / 2.0)  # the SoC reads in 0.5 C steps
                clock.t += period_s
                sample = source.read(0.1)
                assert sample is not None
                step = pipe.infer(sample)
                pipe.decide(sample, step, now_s=sample.t_mono_s)
                assert step.result is not None
                scores.append(float(step.result["score"]))
                health.append(float(step.result["health"]))
    finally:
        runtime.close()
    level = 0.3
    calm_alarms = [i for i in range(calm_reads) if scores[i] >= level]
    hot_alarms = [i for i in range(calm_reads, calm_reads + hot_reads) if scores[i] >= level]
    # a 24-point warm-up has seen little of the noise: tail values may alarm while the
    # detector learns; the hour before the fan stops is quiet
    assert len(calm_alarms) <= 3 and all(i < calm_reads - 360 for i in calm_alarms), calm_alarms
    assert hot_alarms and hot_alarms[0] - calm_reads <= 30  # within 5 minutes (< +5 C)
    onsets = [e for e in recorder.events if e["state"] == "active"
              and e["data"].get("kind") == "node_anomaly"]
    assert len(onsets) >= 1
    assert min(health[calm_reads:]) < min(health[:calm_reads])  # and the health score falls
