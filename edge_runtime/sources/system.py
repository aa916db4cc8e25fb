"""The node watching itself: one of the host's own readings as a scalar source.

A ``system`` source turns a reading of the machine the runtime runs on into samples,
so the same detector, forecast and rules that watch a sensor raise an alarm when the
node runs hot, is throttled, fills its card or its traffic behaves abnormally (a
compromised or misconfigured node). One channel per source instance, like the bridge
source's ``channel``; give several sources for several readings.

Everything is read from text files under a configurable ``/proc`` and ``/sys`` root
(tests and recordings point them at a directory of files they write), with the
readers of :mod:`edge_runtime.health` where they fit. Rates (disk writes, network
bytes and packets) are differences between two reads divided by the time between
them on the source's clock; the first reading is taken when the source opens.

``read`` returns at once (a few small file reads); it runs in an executor like any
blocking read. A reading that is not available on this host (no thermal zone in a
container, no such interface) gives no sample and counts an error in ``stats``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from edge_runtime.errors import SourceUnavailableError
from edge_runtime.health import read_cpu_jiffies, read_loadavg, read_meminfo, read_temperature_c
from edge_runtime.sources.base import Sample, Source

__all__ = ["CHANNELS", "SystemSource", "read_diskstats", "read_net_dev"]

#: Channel name -> what it measures (and its unit).
CHANNELS: dict[str, str] = {
    "cpu_temperature_c": "hottest thermal zone (degrees C)",
    "throttled": "1 while the Raspberry Pi firmware throttles or caps the CPU, else 0",
    "cpu_percent": "CPU busy since the previous read (% of all cores)",
    "load_1m": "one-minute load average",
    "memory_percent": "memory in use (% of MemTotal, from MemAvailable)",
    "disk_percent": "disk in use at disk_path (%)",
    "disk_write_bytes_per_s": "bytes written per second (device, or all disks)",
    "net_rx_bytes_per_s": "bytes received per second (interface, or all but lo)",
    "net_tx_bytes_per_s": "bytes sent per second (interface, or all but lo)",
    "net_rx_packets_per_s": "packets received per second (interface, or all but lo)",
    "net_tx_packets_per_s": "packets sent per second (interface, or all but lo)",
    "inference_latency_ms": "the runtime's own latest inference latency, when reachable",
}
_RATE_CHANNELS = frozenset(
    {"disk_write_bytes_per_s", "net_rx_bytes_per_s", "net_tx_bytes_per_s",
     "net_rx_packets_per_s", "net_tx_packets_per_s"})
#: /proc/net/dev columns after the interface name.
_NET_FIELDS = {"net_rx_bytes_per_s": 0, "net_rx_packets_per_s": 1,
               "net_tx_bytes_per_s": 8, "net_tx_packets_per_s": 9}
_SECTOR_BYTES = 512  # /proc/diskstats counts 512-byte sectors whatever the device
#: Throttling bits of the firmware's get_throttled word that mean "slowed now".
_THROTTLED_NOW = 0b1111  # under-voltage, frequency capped, throttled, soft temp limit


def read_net_dev(proc: Path) -> dict[str, list[int]]:
    """Counters per interface from ``proc/net/dev`` (16 numbers each); {} if absent."""
    try:
        text = (proc / "net" / "dev").read_text()
    except OSError:
        return {}
    out: dict[str, list[int]] = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        try:
            out[name.strip()] = [int(x) for x in rest.split()]
        except ValueError:
            continue
    return out


def read_diskstats(proc: Path) -> dict[str, int]:
    """Sectors written per device from ``proc/diskstats``; {} if absent."""
    try:
        text = (proc / "diskstats").read_text()
    except OSError:
        return {}
    out: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 10:
            try:
                out[fields[2]] = int(fields[9])
            except ValueError:
                continue
    return out


class SystemSource(Source):
    """One reading of the host (see :data:`CHANNELS`) as a scalar source.

    ``proc_root`` and ``sys_root`` stand for ``/proc`` and ``/sys``; ``disk_path`` is
    the filesystem ``disk_percent`` measures; ``interface`` the network interface
    (default: every one but ``lo``); ``device`` the block device (default: the disks
    listed in ``sys_root/block`` but loop, ram and zram devices). ``clock`` gives the
    sample times (s, monotonic). ``latency_probe`` returns the runtime's latest
    inference latency in ms (or None) for ``inference_latency_ms``.
    """

    def __init__(
        self,
        source_id: str,
        *,
        channel: str,
        proc_root: str | Path = "/proc",
        sys_root: str | Path = "/sys",
        disk_path: str | Path = "/",
        interface: str | None = None,
        device: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        latency_probe: Callable[[], float | None] | None = None,
    ) -> None:
        super().__init__(source_id)
        if channel not in CHANNELS:
            raise ValueError(f"unknown system channel {channel!r}; known: {', '.join(CHANNELS)}")
        self.channel = channel
        self.proc = Path(proc_root)
        self.sys = Path(sys_root)
        self.disk_path = Path(disk_path)
        self.interface = interface
        self.device = device
        self.latency_probe = latency_probe
        self._clock = clock
        self._last: tuple[float, float] | None = None  # (time s, counter) for rates
        self._cpu_last: tuple[int, int] | None = None

    # -- readings ------------------------------------------------------------------
    def _counter(self) -> float | None:
        """The cumulative counter behind a rate channel, or None when unavailable."""
        if self.channel == "disk_write_bytes_per_s":
            stats = read_diskstats(self.proc)
            if self.device is not None:
                names = [self.device] if self.device in stats else []
            else:
                try:
                    disks = {p.name for p in (self.sys / "block").iterdir()}
                except OSError:
                    disks = set(stats)
                names = [n for n in stats if n in disks
                         and not n.startswith(("loop", "ram", "zram"))]
            if not names:
                return None
            return float(sum(stats[n] for n in names) * _SECTOR_BYTES)
        net = read_net_dev(self.proc)
        col = _NET_FIELDS[self.channel]
        if self.interface is not None:
            rows = [net[self.interface]] if self.interface in net else []
        else:
            rows = [v for k, v in net.items() if k != "lo"]
        if not rows:
            return None
        return float(sum(r[col] for r in rows if len(r) > col))

    def _throttled(self) -> float | None:
        path = self.sys / "devices" / "platform" / "soc" / "soc:firmware" / "get_throttled"
        try:
            bits = int(path.read_text().strip(), 16)
        except (OSError, ValueError):
            return None
        return 1.0 if bits & _THROTTLED_NOW else 0.0

    def reading(self) -> float | None:
        """The channel's current value (a rate since the previous call), or None."""
        ch = self.channel
        if ch in _RATE_CHANNELS:
            now, counter = self._clock(), self._counter()
            if counter is None:
                return None
            last, self._last = self._last, (now, counter)
            if last is None or now <= last[0] or counter < last[1]:  # first, or a reset
                return None
            return (counter - last[1]) / (now - last[0])
        if ch == "cpu_temperature_c":
            return read_temperature_c(self.sys / "class" / "thermal")
        if ch == "throttled":
            return self._throttled()
        if ch == "cpu_percent":
            jiffies = read_cpu_jiffies(self.proc)
            last_j, self._cpu_last = self._cpu_last, jiffies
            if jiffies is None or last_j is None or jiffies[1] <= last_j[1]:
                return None
            return 100.0 * (jiffies[0] - last_j[0]) / (jiffies[1] - last_j[1])
        if ch == "load_1m":
            return read_loadavg(self.proc)
        if ch == "memory_percent":
            mem = read_meminfo(self.proc)
            total, available = mem.get("MemTotal"), mem.get("MemAvailable")
            if not total or available is None:
                return None
            return 100.0 * (1.0 - available / total)
        if ch == "disk_percent":
            try:
                st = os.statvfs(self.disk_path)
                return 100.0 * (1.0 - st.f_bavail / st.f_blocks)
            except (OSError, ZeroDivisionError):
                return None
        probe = self.latency_probe  # inference_latency_ms
        return probe() if probe is not None else None

    # -- Source --------------------------------------------------------------------
    def _open(self) -> None:
        if not self.proc.is_dir() or not self.sys.is_dir():
            missing = self.proc if not self.proc.is_dir() else self.sys
            raise SourceUnavailableError(
                f"source {self.source_id!r}: no directory {missing}",
                hint="set proc_root and sys_root to the directories holding /proc and /sys")
        self._last = None
        self._cpu_last = None
        if self.channel in _RATE_CHANNELS or self.channel == "cpu_percent":
            self.reading()  # the first counters: the first sample is already a rate
        self.stats.connected = True

    def _read(self, timeout_s: float) -> Sample | None:
        value = self.reading()
        if value is None:
            self.stats.errors += 1
            self.stats.last_error = f"{self.channel}: not available on this host"
            return None
        self.stats.produced += 1
        return Sample(self.source_id, self._clock(), self._next_seq(), value=float(value))

    def _close(self) -> None:
        self.stats.connected = False
