"""Map device timestamps (wrapping 32-bit microseconds) to host monotonic seconds.

Each received frame gives one observation: the device clock ``d`` when the frame was
built and the host monotonic time ``h`` when it arrived. Transit latency is never
negative, so the true mapping lies *below* every observation. The mapper keeps, per
time bucket, the observation with the least latency, fits the drift (slope) through
those minima by least squares, and then lowers the line until it touches the lowest
one. Crystal drift (tens of ppm) and ceramic resonators (up to 0.5 %) are both within
``max_skew_ppm``; queueing delays only raise points above the line and are ignored.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

_WRAP = 1 << 32
_HALF = 1 << 31


@dataclass(frozen=True, slots=True)
class ClockFit:
    """``host_s = offset_s + slope * device_us * 1e-6`` (device_us unwrapped)."""

    offset_s: float
    slope: float

    @property
    def skew_ppm(self) -> float:
        """How much faster the host clock runs than the device clock, in ppm."""
        return (self.slope - 1.0) * 1e6


class DeviceClock:
    """Drift-corrected mapping from one device boot's clock to host monotonic time."""

    def __init__(
        self,
        *,
        bucket_s: float = 1.0,
        window_buckets: int = 120,
        min_fit_span_s: float = 5.0,
        max_skew_ppm: float = 20_000.0,
    ) -> None:
        self._bucket_s = bucket_s
        self._min_fit_span_s = min_fit_span_s
        self._max_skew = max_skew_ppm * 1e-6
        # (bucket key, device_s, host_s) of the least-latency point of each bucket.
        self._buckets: deque[tuple[int, float, float]] = deque(maxlen=window_buckets)
        self._last_raw: int | None = None
        self._last_unwrapped = 0
        self._fit: ClockFit | None = None

    def reset(self) -> None:
        """Forget everything (the device rebooted: its clock restarted)."""
        self._buckets.clear()
        self._last_raw = None
        self._last_unwrapped = 0
        self._fit = None

    @property
    def fit(self) -> ClockFit | None:
        """The current mapping, or None before the first observation."""
        return self._fit

    def unwrap(self, device_us: int) -> int:
        """Return ``device_us`` (mod 2**32) as a monotonic 64-bit count.

        Times up to 2**31 us (35 min) before the newest one seen map backwards, so
        samples older than the last heartbeat keep their place.
        """
        raw = device_us % _WRAP
        if self._last_raw is None:
            self._last_raw = raw
            self._last_unwrapped = raw
            return raw
        delta = (raw - self._last_raw) % _WRAP
        if delta >= _HALF:
            return self._last_unwrapped + delta - _WRAP
        self._last_raw = raw
        self._last_unwrapped += delta
        return self._last_unwrapped

    def observe(self, device_us: int, host_s: float) -> None:
        """Record that a frame built at device time ``device_us`` arrived at ``host_s``."""
        d = self.unwrap(device_us) * 1e-6
        key = int(host_s // self._bucket_s)
        buckets = self._buckets
        slope = self._fit.slope if self._fit else 1.0
        if buckets and buckets[-1][0] == key:
            _, bd, bh = buckets[-1]
            if h_minus(host_s, d, slope) < h_minus(bh, bd, slope):
                buckets[-1] = (key, d, host_s)
            if self._fit is not None:
                # Same bucket: only the intercept can move down.
                offset = min(self._fit.offset_s, host_s - slope * d)
                self._fit = ClockFit(offset, slope)
                return
        else:
            buckets.append((key, d, host_s))
        self._refit()

    def _refit(self) -> None:
        points = self._buckets
        slope = 1.0
        span = points[-1][1] - points[0][1]
        if len(points) >= 3 and span >= self._min_fit_span_s:
            n = len(points)
            mean_d = sum(p[1] for p in points) / n
            mean_h = sum(p[2] for p in points) / n
            sdd = sum((p[1] - mean_d) ** 2 for p in points)
            sdh = sum((p[1] - mean_d) * (p[2] - mean_h) for p in points)
            if sdd > 0:
                slope = min(max(sdh / sdd, 1.0 - self._max_skew), 1.0 + self._max_skew)
        offset = min(h - slope * d for _, d, h in points)
        self._fit = ClockFit(offset, slope)

    def to_host(self, device_us: int) -> float:
        """Return the host monotonic time (s) of device time ``device_us``.

        Call :meth:`observe` at least once first; before that there is no mapping and
        this raises ``LookupError``.
        """
        if self._fit is None:
            raise LookupError("no clock observation yet")
        return self._fit.offset_s + self._fit.slope * self.unwrap(device_us) * 1e-6


def h_minus(host_s: float, device_s: float, slope: float) -> float:
    """Latency proxy of one observation under a given slope (smaller is better)."""
    return host_s - slope * device_s
