"""Activity policies: how interesting is the latest sample (or result)?

Each policy turns a stream of samples (and, for ``score``, model results) into an
*activity* number: below 1.0 is calm, 1.0 or more is activity. The rate controller
raises the sampling rate on activity and lets it decay when calm. The motion gate also
decides whether a frame deserves inference at all (:meth:`ActivityPolicy.wants_inference`).

Policies are small stateful transforms; they never sleep and never touch the clock,
so they can be run offline over a recording (see ``benchmarks/pipeline_bench.py``).
Which method runs on which thread is in :class:`ActivityPolicy`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.anomaly.protocols import Detector
from edge_runtime.sampling import constants
from edge_runtime.sources.base import Sample


class ActivityPolicy:
    """Base policy: always calm, always infers (the ``fixed`` policy).

    A policy **must** set :attr:`name` (the config's ``[pipelines.sampling] policy``,
    registered in :data:`POLICIES`) and override :meth:`observe` or
    :meth:`observe_result` (or both); it **may** override :meth:`wants_inference` (a
    gate) and :meth:`state` (extend the base's dict). Keyword-only constructor
    arguments are the config's sampling parameters. Keep :attr:`last_activity` current.

    Threads: one policy object belongs to one pipeline. :meth:`observe` and
    :meth:`wants_inference` run in :meth:`Pipeline.infer
    <edge_runtime.pipelines.pipeline.Pipeline.infer>`, in the pipeline's worker thread
    (on the event loop when the pipeline is plain arithmetic: a GPIO poll with policy
    ``fixed``, ``change`` or ``novelty`` and no model, detector or cleaner, see
    ``Pipeline.cheap``); :meth:`observe_result` runs in ``Pipeline.decide`` and
    :meth:`state` in ``status``, both on the event loop. ``observe`` for the next sample
    may run while ``observe_result`` handles the previous one: a policy that uses both
    keeps their state apart. Nothing here may block.
    """

    name = "fixed"

    def __init__(self) -> None:
        self.last_activity = 0.0

    def observe(self, sample: Sample) -> float:
        """Activity of a new sample, before inference (worker thread)."""
        return 0.0

    def observe_result(self, result: Mapping[str, Any]) -> float:
        """Activity judged from the model's result (0 unless the policy uses results;
        event loop)."""
        return 0.0

    def wants_inference(self, sample: Sample, activity: float) -> bool:
        """Whether this sample is worth running the model on (worker thread, right after
        :meth:`observe` with its activity)."""
        return True

    def state(self) -> dict[str, Any]:
        """Counters for status and summaries (event loop; JSON-friendly)."""
        return {"policy": self.name, "last_activity": round(self.last_activity, 3)}


class MotionGate(ActivityPolicy):
    """Cheap frame differencing against a running background, on a tiny gray frame.

    Activity is the changed-pixel fraction divided by ``area_fraction``. Frames without
    motion are not inferred, except one every ``heartbeat_s`` (sample time). The first
    frame (at every start and reload) is inferred but is not motion: it only seeds the
    background, so a motion rule does not fire because the daemon started.
    """

    name = "motion"

    def __init__(
        self,
        *,
        pixel_threshold: int | None = None,
        area_fraction: float | None = None,
        heartbeat_s: float | None = None,
        size: tuple[int, int] | None = None,
        alpha: float | None = None,
    ) -> None:
        super().__init__()
        self.pixel_threshold = pixel_threshold or constants.MOTION_PIXEL_THRESHOLD
        self.area_fraction = area_fraction or constants.MOTION_AREA_FRACTION
        self.heartbeat_s = heartbeat_s if heartbeat_s is not None else constants.MOTION_HEARTBEAT_S
        self.size = size or constants.MOTION_SIZE
        self.alpha = alpha or constants.MOTION_BACKGROUND_ALPHA
        self._background: npt.NDArray[np.float32] | None = None
        self._last_inference_t: float | None = None
        self.frames = 0
        self.frames_with_motion = 0
        self.frames_gated = 0

    def _small_gray(self, frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        import cv2

        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        small = cv2.resize(gray, self.size, interpolation=cv2.INTER_AREA)
        return small.astype(np.float32)

    def observe(self, sample: Sample) -> float:
        if sample.frame is None:
            return 0.0
        small = self._small_gray(sample.frame)
        self.frames += 1
        if self._background is None:
            self._background = small
            self.last_activity = 0.0  # nothing to compare with yet; inferred as due
        else:
            changed = np.abs(small - self._background) > self.pixel_threshold
            self.last_activity = float(changed.mean()) / self.area_fraction
            self._background += self.alpha * (small - self._background)
        if self.last_activity >= 1.0:
            self.frames_with_motion += 1
        return self.last_activity

    def wants_inference(self, sample: Sample, activity: float) -> bool:
        due = (self._last_inference_t is None
               or sample.t_mono_s - self._last_inference_t >= self.heartbeat_s)
        if activity >= 1.0 or due:
            self._last_inference_t = sample.t_mono_s
            return True
        self.frames_gated += 1
        return False

    def state(self) -> dict[str, Any]:
        return {**super().state(), "frames": self.frames,
                "frames_with_motion": self.frames_with_motion, "frames_gated": self.frames_gated}


class _EwmaStats:
    """Exponentially weighted mean and variance."""

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.n = 0
        self.mean = 0.0
        self.var = 0.0

    def update(self, x: float) -> None:
        self.n += 1
        if self.n == 1:
            self.mean = x
            return
        # Warm-up uses the plain running mean so that early estimates are not biased.
        a = max(self.alpha, 1.0 / self.n)
        delta = x - self.mean
        self.mean += a * delta
        self.var = (1 - a) * (self.var + a * delta * delta)

    @property
    def std(self) -> float:
        return math.sqrt(self.var)


class ChangePolicy(ActivityPolicy):
    """Sensor activity from the rate of change: a step ``factor`` times the typical step."""

    name = "change"

    def __init__(self, *, factor: float | None = None, alpha: float | None = None) -> None:
        super().__init__()
        self.factor = factor or constants.CHANGE_FACTOR
        self._steps = _EwmaStats(alpha or constants.SENSOR_EWMA_ALPHA)
        self._last: tuple[float, float] | None = None

    def observe(self, sample: Sample) -> float:
        value = sample.value
        if value is None or math.isnan(value):
            return self.last_activity
        activity = 1.0
        if self._last is not None:
            dt = max(sample.t_mono_s - self._last[1], 1e-9)
            slope = abs(value - self._last[0]) / dt
            if self._steps.n >= constants.WARMUP_SAMPLES:
                typical = self._steps.mean + self._steps.std
                activity = slope / (self.factor * typical + 1e-12)
            if activity < 1.0:
                # Do not learn from outliers, so that a level shift stays visible.
                self._steps.update(slope)
            elif self._steps.n < constants.WARMUP_SAMPLES:
                self._steps.update(slope)
        self._last = (value, sample.t_mono_s)
        self.last_activity = activity
        return activity


class NoveltyPolicy(ActivityPolicy):
    """Sensor activity from novelty: distance from the running mean in standard deviations."""

    name = "novelty"

    def __init__(self, *, z: float | None = None, alpha: float | None = None) -> None:
        super().__init__()
        self.z = z or constants.NOVELTY_Z
        self._stats = _EwmaStats(alpha or constants.SENSOR_EWMA_ALPHA)

    def observe(self, sample: Sample) -> float:
        value = sample.value
        if value is None or math.isnan(value):
            return self.last_activity
        if self._stats.n < constants.WARMUP_SAMPLES:
            activity = 1.0
        else:
            activity = abs(value - self._stats.mean) / (self.z * self._stats.std + 1e-12)
        self._stats.update(value)
        self.last_activity = activity
        return activity


class ScorePolicy(ActivityPolicy):
    """Activity from the model's own output: ``result[field] / threshold``.

    A result marked ``warming`` (a window model filling its window, a detector still
    learning its range and sample interval) is activity 1.0: learning wants the full
    rate, and a detector that learnt its interval from slowed-down samples would
    misjudge every gap after.
    """

    name = "score"

    def __init__(self, *, field: str = "score", threshold: float = 0.5) -> None:
        super().__init__()
        self.field = field
        self.threshold = threshold

    def observe_result(self, result: Mapping[str, Any]) -> float:
        if result.get("warming"):
            self.last_activity = 1.0
            return self.last_activity
        value = result.get(self.field)
        if isinstance(value, int | float) and not isinstance(value, bool):
            self.last_activity = float(value) / self.threshold
        return self.last_activity


class DetectorGate(ActivityPolicy):
    """The sensor counterpart of the motion gate: a streaming anomaly detector judges
    every sample (microseconds), and the model runs only while it reports activity.

    Activity is ``score / threshold``. After activity the next ``hold_samples`` samples
    are inferred too; without activity one sample in ``heartbeat_samples`` is inferred
    anyway, so a change the detector cannot see still reaches the model. ``detector``
    is any :class:`~edge_runtime.anomaly.protocols.Detector`; by default the anomaly
    package's :class:`~edge_runtime.anomaly.AnomalyDetector` with ``detector_params``.
    """

    name = "detector"

    def __init__(self, *, threshold: float = 0.05, hold_samples: int = 6,
                 heartbeat_samples: int = 48, detector: Detector | None = None,
                 detector_params: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        if detector is None:
            from edge_runtime.anomaly import AnomalyDetector, DetectorConfig

            detector = AnomalyDetector(DetectorConfig(**(detector_params or {})))
        self.detector: Detector = detector
        self.threshold = threshold
        self.hold_samples = hold_samples
        self.heartbeat_samples = heartbeat_samples
        self.last_score = 0.0
        self._hold = 0
        self._since_inference = 0
        self.samples = 0
        self.samples_gated = 0

    def observe(self, sample: Sample) -> float:
        value = sample.value
        if value is None or math.isnan(value):
            return 0.0
        self.samples += 1
        if sample.envelope is not None and self.detector.accepts_envelope:
            score = self.detector.update(sample.t_mono_s, value, sample.envelope)
        else:
            score = self.detector.update(sample.t_mono_s, value)
        self.last_score = float(score)
        self.last_activity = self.last_score / self.threshold
        return self.last_activity

    def wants_inference(self, sample: Sample, activity: float) -> bool:
        self._since_inference += 1
        if activity >= 1.0:
            self._hold = self.hold_samples
        elif self._hold > 0:
            self._hold -= 1
        elif self.heartbeat_samples <= 0 or self._since_inference < self.heartbeat_samples:
            self.samples_gated += 1
            return False
        self._since_inference = 0
        return True

    def state(self) -> dict[str, Any]:
        return {**super().state(), "samples": self.samples, "samples_gated": self.samples_gated,
                "last_score": round(self.last_score, 4)}


POLICIES: dict[str, type[ActivityPolicy]] = {
    "fixed": ActivityPolicy,
    "motion": MotionGate,
    "change": ChangePolicy,
    "novelty": NoveltyPolicy,
    "score": ScorePolicy,
    "detector": DetectorGate,
}


def make_policy(name: str, **params: Any) -> ActivityPolicy:
    """Build a policy by name with its keyword parameters (as in the config file)."""
    try:
        cls = POLICIES[name]
    except KeyError:
        known = ", ".join(POLICIES)
        raise ValueError(f"unknown sampling policy {name!r} (known: {known})") from None
    return cls(**params)
