"""Device health from /proc and /sys: CPU load, memory, disk, temperature, throttling.

No psutil: everything is read from the kernel's text files, which exist on every
Raspberry Pi OS and on any Linux. Missing files (no thermal zone in a VM or container)
give ``None`` rather than an error. ``vcgencmd get_throttled`` is run only where the
command exists (Raspberry Pi firmware), with a timeout.

:class:`HealthMonitor` keeps the state needed for rates (CPU jiffies between two reads)
and produces a flat ``dict`` that rules can test like any pipeline result (keys such as
``temperature_c``, ``cpu_percent``, ``memory_percent``, ``disk_percent``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

THERMAL_ROOT = Path("/sys/class/thermal")
PROC_ROOT = Path("/proc")
VCGENCMD_TIMEOUT_S = 1.0

#: Bits of ``vcgencmd get_throttled`` (Raspberry Pi firmware documentation).
THROTTLE_BITS = {
    0: "under_voltage",
    1: "arm_frequency_capped",
    2: "throttled",
    3: "soft_temperature_limit",
    16: "under_voltage_occurred",
    17: "arm_frequency_capping_occurred",
    18: "throttling_occurred",
    19: "soft_temperature_limit_occurred",
}


def read_temperature_c(root: Path = THERMAL_ROOT) -> float | None:
    """Hottest thermal zone in degrees Celsius, or None when there is none."""
    temps: list[float] = []
    try:
        zones = sorted(root.glob("thermal_zone*"))
    except OSError:
        return None
    for zone in zones:
        try:
            temps.append(int((zone / "temp").read_text().strip()) / 1000.0)
        except (OSError, ValueError):
            continue
    return max(temps) if temps else None


def read_cpu_jiffies(proc: Path = PROC_ROOT) -> tuple[int, int] | None:
    """(busy, total) jiffies summed over all CPUs since boot, from /proc/stat."""
    try:
        with (proc / "stat").open() as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(x) for x in fields[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return total - idle, total


def read_loadavg(proc: Path = PROC_ROOT) -> float | None:
    """One-minute load average."""
    try:
        return float((proc / "loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def read_meminfo(proc: Path = PROC_ROOT) -> dict[str, int]:
    """Fields of /proc/meminfo in bytes."""
    out: dict[str, int] = {}
    try:
        text = (proc / "meminfo").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[name] = int(parts[0]) * (1024 if len(parts) > 1 else 1)
    return out


def read_rss_bytes(pid: int | str = "self", proc: Path = PROC_ROOT) -> int | None:
    """Resident set size of a process (VmRSS), in bytes."""
    try:
        for line in (proc / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def read_process_cpu_s(pid: int | str = "self", proc: Path = PROC_ROOT) -> float | None:
    """User + system CPU seconds a process has used (from /proc/PID/stat)."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def read_throttled() -> dict[str, bool] | None:
    """Decoded ``vcgencmd get_throttled`` flags, or None where vcgencmd is absent."""
    exe = shutil.which("vcgencmd")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "get_throttled"], capture_output=True, text=True,
                             timeout=VCGENCMD_TIMEOUT_S, check=False).stdout
        bits = int(out.strip().split("=")[1], 16)
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None
    return {name: bool(bits >> bit & 1) for bit, name in THROTTLE_BITS.items()}


@dataclass
class CpuMeter:
    """CPU use in percent of all cores between two calls of :meth:`read`."""

    proc: Path = PROC_ROOT
    _last: tuple[int, int] | None = None

    def read(self) -> float | None:
        """Percent busy since the previous call (None on the first call)."""
        now = read_cpu_jiffies(self.proc)
        last, self._last = self._last, now
        if now is None or last is None or now[1] <= last[1]:
            return None
        return 100.0 * (now[0] - last[0]) / (now[1] - last[1])


@dataclass
class HealthMonitor:
    """Collects one health snapshot at a time; see the module docstring for the keys."""

    disk_path: Path = Path("/")
    thermal_root: Path = THERMAL_ROOT
    proc: Path = PROC_ROOT
    check_throttling: bool = True
    _cpu: CpuMeter = field(default_factory=CpuMeter)

    def snapshot(self) -> dict[str, float | bool | None]:
        """Current readings; values that cannot be read on this machine are None."""
        mem = read_meminfo(self.proc)
        total = mem.get("MemTotal")
        available = mem.get("MemAvailable")
        try:
            st = os.statvfs(self.disk_path)
            disk_percent: float | None = 100.0 * (1 - st.f_bavail / st.f_blocks)
            disk_free_mb: float | None = st.f_bavail * st.f_frsize / 1e6
        except (OSError, ZeroDivisionError):
            disk_percent = disk_free_mb = None
        rss = read_rss_bytes("self", self.proc)
        out: dict[str, float | bool | None] = {
            "time_unix_s": time.time(),
            "cpu_percent": self._cpu.read(),
            "load_1m": read_loadavg(self.proc),
            "memory_percent": (100.0 * (1 - available / total)
                               if total and available is not None else None),
            "memory_available_mb": available / 1e6 if available is not None else None,
            "disk_percent": disk_percent,
            "disk_free_mb": disk_free_mb,
            "temperature_c": read_temperature_c(self.thermal_root),
            "rss_mb": rss / 1e6 if rss is not None else None,
        }
        throttled = read_throttled() if self.check_throttling else None
        out["throttled"] = None if throttled is None else throttled["throttled"]
        out["under_voltage"] = None if throttled is None else throttled["under_voltage"]
        return out
