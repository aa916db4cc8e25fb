"""Per-pipeline counters over a window, turned into :class:`~.schema.Summary` messages.

:class:`SummaryWindow` is pure: it is fed plain numbers and dicts (a pipeline's result,
a latency, a rate change), knows nothing of pipelines, and is cheap enough to call on
every sample from the loop. :func:`merge_summaries` folds consecutive summaries into one
coarser summary (what the outbox does when the disk cap is reached).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from edge_runtime.upstream.schema import MessageFactory, Summary

#: Latencies kept per window for p50/p95 (a uniform reservoir beyond that).
LATENCY_RESERVOIR = 512


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..1)."""
    i = max(0, math.ceil(q * len(sorted_values)) - 1)
    return sorted_values[min(i, len(sorted_values) - 1)]


def _finite(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    f = float(x)
    return f if math.isfinite(f) else None


class SummaryWindow:
    """Accumulates one pipeline's counters; :meth:`take` returns a Summary and restarts.

    Times are given by the caller (``now_s`` monotonic, ``wall_s`` Unix seconds), so tests
    and replays drive it without sleeping. Not thread-safe: feed it from one thread
    (the loop).
    """

    def __init__(self, pipeline: str, *, window_s: float = 60.0, now_s: float = 0.0,
                 wall_s: float = 0.0, seed: int = 0) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0 (got {window_s})")
        self.pipeline = pipeline
        self.window_s = window_s
        self._rng = random.Random(seed)
        self._connected = True
        self._reset(now_s, wall_s)

    def _reset(self, now_s: float, wall_s: float) -> None:
        self.start_s = now_s
        self.start_wall_s = wall_s
        self.samples = self.inferences = self.local = self.offloaded = 0
        self.labels: dict[str, int] = {}
        self.detections: dict[str, int] = {}
        self._score_n = 0
        self._score_sum = 0.0
        self._score_max: float | None = None
        self._anomaly_n = 0
        self._anomaly_sum = 0.0
        self._anomaly_max: float | None = None
        self.anomaly_alarms = 0
        self._ttl_min: float | None = None
        self.early_warnings = 0
        self.dropped = self.gated = self.rate_changes = self.cleaning_corrections = 0
        self.disconnects = 0
        self._latencies: list[float] = []
        self._latency_seen = 0
        self._down_s = 0.0
        self._down_since: float | None = None if self._connected else now_s
        self._health: float | None = getattr(self, "_health", None)
        self._rate_hz: float | None = getattr(self, "_rate_hz", None)

    # -- feeding ---------------------------------------------------------------------------

    def add_sample(self, n: int = 1) -> None:
        self.samples += n

    def add_inference(self, latency_ms: float | None = None, *, offloaded: bool = False
                      ) -> None:
        """One model/detector run; ``latency_ms`` goes into p50/p95."""
        self.inferences += 1
        if offloaded:
            self.offloaded += 1
        else:
            self.local += 1
        lat = _finite(latency_ms)
        if lat is not None:
            self._latency_seen += 1
            if len(self._latencies) < LATENCY_RESERVOIR:
                self._latencies.append(lat)
            else:
                j = self._rng.randrange(self._latency_seen)
                if j < LATENCY_RESERVOIR:
                    self._latencies[j] = lat

    def add_result(self, result: Mapping[str, Any]) -> None:
        """A pipeline's result dict: reads ``label``, ``score``, ``detections``
        (list of dicts with ``label``), anomaly ``score`` when ``raw_score`` is present,
        ``time_to_limit_s``, ``health``. Unknown keys are ignored."""
        label = result.get("label")
        if label is not None:
            key = str(label)
            self.labels[key] = self.labels.get(key, 0) + 1
        dets = result.get("detections")
        if isinstance(dets, list):
            for det in dets:
                name = str(det.get("label", "?")) if isinstance(det, Mapping) else "?"
                self.detections[name] = self.detections.get(name, 0) + 1
        score = _finite(result.get("score"))
        if score is not None:
            if "raw_score" in result:  # a streaming anomaly detector's score
                self.add_anomaly_score(score)
            else:
                self._score_n += 1
                self._score_sum += score
                self._score_max = score if self._score_max is None else max(self._score_max,
                                                                             score)
        ttl = _finite(result.get("time_to_limit_s"))
        if ttl is not None:
            self._ttl_min = ttl if self._ttl_min is None else min(self._ttl_min, ttl)
        health = _finite(result.get("health"))
        if health is not None:
            self._health = health

    def add_anomaly_score(self, score: float) -> None:
        self._anomaly_n += 1
        self._anomaly_sum += score
        self._anomaly_max = score if self._anomaly_max is None else max(self._anomaly_max,
                                                                         score)

    def add_alarm(self) -> None:
        """An anomaly alarm started (a rule on the score went active)."""
        self.anomaly_alarms += 1

    def add_early_warning(self) -> None:
        self.early_warnings += 1

    def set_health(self, score: float) -> None:
        self._health = score

    def add_dropped(self, n: int = 1) -> None:
        self.dropped += n

    def add_gated(self, n: int = 1) -> None:
        self.gated += n

    def add_rate_change(self, rate_hz: float) -> None:
        self.rate_changes += 1
        self._rate_hz = rate_hz

    def add_cleaning_corrections(self, n: int = 1) -> None:
        self.cleaning_corrections += n

    def set_source_connected(self, connected: bool, now_s: float) -> None:
        """The source went down or came back at ``now_s`` (monotonic)."""
        if connected == self._connected:
            return
        self._connected = connected
        if connected:
            if self._down_since is not None:
                self._down_s += max(0.0, now_s - self._down_since)
            self._down_since = None
        else:
            self.disconnects += 1
            self._down_since = now_s

    # -- taking ----------------------------------------------------------------------------

    def due(self, now_s: float) -> bool:
        return now_s - self.start_s >= self.window_s

    def take(self, factory: MessageFactory, *, now_s: float, wall_s: float) -> Summary:
        """The summary of the window ending now; the next window starts now."""
        length_s = max(0.0, now_s - self.start_s)
        down_s = self._down_s
        if self._down_since is not None:
            down_s += max(0.0, now_s - self._down_since)
        lat = sorted(self._latencies)
        summary = Summary(
            **factory.header(self.pipeline),
            window_start_s=self.start_wall_s or wall_s - length_s,
            window_s=round(length_s, 3), samples=self.samples, inferences=self.inferences,
            local=self.local, offloaded=self.offloaded, labels=dict(self.labels),
            detections=dict(self.detections), score_max=self._score_max,
            score_mean=self._score_sum / self._score_n if self._score_n else None,
            anomaly_score_max=self._anomaly_max,
            anomaly_score_mean=self._anomaly_sum / self._anomaly_n if self._anomaly_n
            else None,
            anomaly_alarms=self.anomaly_alarms, time_to_limit_min_s=self._ttl_min,
            early_warnings=self.early_warnings, health=self._health,
            latency_p50_ms=_percentile(lat, 0.5) if lat else None,
            latency_p95_ms=_percentile(lat, 0.95) if lat else None,
            dropped=self.dropped, gated=self.gated, rate_changes=self.rate_changes,
            rate_hz=self._rate_hz, cleaning_corrections=self.cleaning_corrections,
            source_connected=round(1.0 - min(1.0, down_s / length_s), 4) if length_s > 0
            else (1.0 if self._connected else 0.0),
            source_disconnects=self.disconnects,
        )
        self._reset(now_s, wall_s)
        return summary


def _wmean(pairs: list[tuple[float | None, int]]) -> float | None:
    num = sum(v * w for v, w in pairs if v is not None)
    den = sum(w for v, w in pairs if v is not None)
    return num / den if den else None


def _opt(values: list[float | None], fn: Any) -> float | None:
    present = [v for v in values if v is not None]
    return fn(present) if present else None


def merge_summaries(parts: Sequence[Summary], *, id: str, seq: int) -> Summary:
    """One coarser summary covering ``parts`` (consecutive windows of one pipeline).

    Counts add up; maxima stay maxima; means are weighted by their counts; p50 becomes
    the inference-weighted mean of the p50s and p95 the highest p95 (an upper bound);
    health is the lowest seen. The result keeps the first part's header except ``id``
    and ``seq`` (given: the outbox reuses the first part's ``seq`` to keep the order).
    """
    if not parts:
        raise ValueError("nothing to merge")
    first, last = parts[0], parts[-1]

    def total(name: str) -> int:
        return sum(int(getattr(p, name)) for p in parts)

    def hist(name: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in parts:
            for k, n in getattr(p, name).items():
                out[k] = out.get(k, 0) + n
        return out

    span_s = max(first.window_s, last.window_start_s + last.window_s - first.window_start_s)
    weights = [max(p.window_s, 1e-9) for p in parts]
    return Summary(
        v=first.v, id=id, node=first.node, seq=seq, ts_s=last.ts_s, mono_s=last.mono_s,
        boot=last.boot, pipeline=first.pipeline, window_start_s=first.window_start_s,
        window_s=round(span_s, 3), merged=total("merged"), samples=total("samples"),
        inferences=total("inferences"), local=total("local"), offloaded=total("offloaded"),
        labels=hist("labels"), detections=hist("detections"),
        score_max=_opt([p.score_max for p in parts], max),
        score_mean=_wmean([(p.score_mean, p.inferences or 1) for p in parts]),
        anomaly_score_max=_opt([p.anomaly_score_max for p in parts], max),
        anomaly_score_mean=_wmean([(p.anomaly_score_mean, p.samples or 1) for p in parts]),
        anomaly_alarms=total("anomaly_alarms"),
        time_to_limit_min_s=_opt([p.time_to_limit_min_s for p in parts], min),
        early_warnings=total("early_warnings"),
        health=_opt([p.health for p in parts], min),
        latency_p50_ms=_wmean([(p.latency_p50_ms, p.inferences or 1) for p in parts]),
        latency_p95_ms=_opt([p.latency_p95_ms for p in parts], max),
        dropped=total("dropped"), gated=total("gated"), rate_changes=total("rate_changes"),
        rate_hz=last.rate_hz, cleaning_corrections=total("cleaning_corrections"),
        source_connected=round(sum(p.source_connected * w for p, w in zip(parts, weights,
                                                                          strict=True))
                               / sum(weights), 4),
        source_disconnects=total("source_disconnects"),
    )
