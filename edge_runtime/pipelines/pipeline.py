"""One pipeline: source -> (cleaning) -> (forecast) -> gate -> preprocess ->
model/detector -> postprocess -> rules -> actions, plus its adaptive rate.

Several pipelines may read one source (a camera cannot be opened twice): the source is
then a :class:`SharedSource`, read once at the highest rate its pipelines ask for, and
each pipeline takes its samples from its own :class:`Tap` at its own rate.

The work is split by where it may run:

- :meth:`Pipeline.infer` does everything heavy (motion gate, cleaning, forecast,
  preprocessing, the model or detector) and is called in the pipeline's worker thread
  by the daemon (on the loop only when it is plain arithmetic, :attr:`Pipeline.cheap`);
- :meth:`Pipeline.decide` is cheap bookkeeping (rate controller, rules, actions) and
  runs on the event loop, so the order of decisions is the order of samples.

The scalar stages are typed by their protocols (:mod:`edge_runtime.anomaly.protocols`:
:class:`~edge_runtime.anomaly.protocols.Detector`,
:class:`~edge_runtime.anomaly.protocols.Cleaner`, and the forecast stage's
:class:`~edge_runtime.anomaly.protocols.Forecaster`), the model is a
:class:`~edge_runtime.models.model.Model`.

:func:`~edge_runtime.pipelines.build.build_runtime` (``build.py``) builds pipelines
from a config; this module is only the stage runner.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_runtime.anomaly.health import HealthScore
from edge_runtime.anomaly.protocols import Cleaner, Detector
from edge_runtime.errors import EdgeRuntimeError
from edge_runtime.models.manifest import (
    AudioPreprocessing,
    ClassificationPostprocessing,
    ForecastPostprocessing,
    ProbabilityPostprocessing,
    WindowPreprocessing,
)
from edge_runtime.models.state import ModelInputs, data_input, needs_inputs
from edge_runtime.pipelines import postprocess
from edge_runtime.pipelines.actions import (
    Action,
)
from edge_runtime.pipelines.forecast import ForecastStage
from edge_runtime.pipelines.preprocess import (
    FrameFn,
    SlidingWindow,
    audio_input,
    audio_recipe,
    frame_preprocessor,
    window_input,
    window_recipe,
)
from edge_runtime.pipelines.rules import Rule, Transition
from edge_runtime.pipelines.shared import Tap
from edge_runtime.sampling.controller import RateController
from edge_runtime.sampling.policy import ActivityPolicy
from edge_runtime.sources.audio import AudioSource
from edge_runtime.sources.base import Sample, Source

if TYPE_CHECKING:
    from edge_runtime.models.model import Model
    from edge_runtime.pipelines.cascade import CascadeStage
    from edge_runtime.upstream.summary import SummaryWindow

log = logging.getLogger(__name__)

#: How many recent frame-to-result latencies are kept for percentiles.
LATENCY_WINDOW = 2000
#: A pipeline's rules are *stale* (fed by a source that stopped delivering) when its
#: source is disconnected or has ended, or when its last sample is older than
#: ``max(STALE_PERIODS sampling periods at the current rate, STALE_MIN_S)``.
STALE_PERIODS = 3.0
STALE_MIN_S = 5.0
#: Result fields whose rules count as anomaly alarms in upstream summaries (a rule on a
#: streaming detector's score going active).
ALARM_FIELDS = frozenset({"score", "raw_score"})


@dataclass
class Step:
    """What :meth:`Pipeline.infer` found for one sample."""

    activity: float
    result: dict[str, Any] | None  # None: nothing to decide on (gated, warming up, missing)
    inferred: bool = False
    infer_s: float = 0.0
    #: Where the model ran when the mesh routes it: "local" or a peer's id.
    ran_on: str | None = None


@dataclass
class PipelineStats:
    """Counters of one pipeline, for status and summaries."""

    samples: int = 0
    inferences: int = 0
    #: Inferences a peer answered (the mesh routes the model).
    offloaded: int = 0
    gated: int = 0
    missing: int = 0
    warming: int = 0
    errors: int = 0
    last_error: str | None = None
    latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    first_inference_mono_s: float | None = None
    last_inference_mono_s: float | None = None

    def inferences_per_s(self) -> float | None:
        """Average inference throughput between the first and the last inference."""
        if self.first_inference_mono_s is None or self.last_inference_mono_s is None:
            return None
        span = self.last_inference_mono_s - self.first_inference_mono_s
        return (self.inferences - 1) / span if span > 0 else None

    def latency_ms(self) -> dict[str, float | None]:
        """p50/p99/max frame-to-result latency over the recent window, in ms."""
        if not self.latencies_s:
            return {"p50": None, "p99": None, "max": None}
        arr = np.asarray(self.latencies_s) * 1000.0
        return {"p50": round(float(np.percentile(arr, 50)), 3),
                "p99": round(float(np.percentile(arr, 99)), 3),
                "max": round(float(arr.max()), 3)}


class Pipeline:
    """See the module docstring. Built by :func:`build_runtime`.

    ``tap`` is this pipeline's share of a source other pipelines read too (a
    :class:`~edge_runtime.pipelines.shared.SharedSource` built over their taps, which
    then owns the source's rate); None when the pipeline reads its source alone.
    ``time_scale`` is the source's seconds per monotonic second (a replay's ``speed``):
    window models and the health score work on the source's clock.
    """

    def __init__(
        self,
        pipeline_id: str,
        source: Source,
        *,
        policy: ActivityPolicy,
        controller: RateController,
        rules: list[Rule],
        actions: dict[str, Action],
        node_name: str = "",
        model: Model | None = None,
        detector: Detector | None = None,
        cleaner: Cleaner | None = None,
        forecast: ForecastStage | None = None,
        tap: Tap | None = None,
        time_scale: float = 1.0,
        snapshot_rules: frozenset[str] = frozenset(),
    ) -> None:
        if not time_scale > 0:
            raise ValueError("time_scale must be > 0")
        self.pipeline_id = pipeline_id
        self.source = source
        self.policy = policy
        self.controller = controller
        self.rules = rules
        self.actions = actions
        self.node_name = node_name
        self.model = model
        self.detector = detector
        self.cleaner = cleaner
        self.forecast = forecast
        self.tap = tap
        #: Rules whose activation attaches a JPEG of the frame that fired it (camera).
        self.snapshot_rules = snapshot_rules
        #: The upstream summary window this pipeline counts into (set by the daemon's
        #: reporting; None: not reported). Fed in :meth:`decide`, on the loop.
        self.summary: SummaryWindow | None = None
        #: Rules that count as anomaly alarms in the summary (on a detector's score).
        self._alarm_rules = frozenset(r.rule_id for r in rules
                                      if r.condition.on.field in ALARM_FIELDS)
        self._warning_on = False  # the forecast's early warning, for its rising edges
        #: Health of the monitored device (0..100) for scalar pipelines that detect or
        #: forecast; on the source's clock (a replay's recorded seconds) like the forecast.
        self.health: HealthScore | None = None
        if source.kind == "scalar" and (detector is not None or forecast is not None):
            # Forecast urgency over the forecast's own warning horizon.
            horizon_s = forecast.forecaster.warn_within_s if forecast is not None else None
            self.health = HealthScore(horizon_s=horizon_s) if horizon_s else HealthScore()
        self._time_scale = time_scale
        self._alarm_level = float(detector.alarm_level) if detector is not None else 0.5
        self.stats = PipelineStats()
        #: Monotonic time of the last sample decided on (None before the first) and of
        #: the build: how long the source has been silent, for status and notices.
        self.last_sample_mono_s: float | None = None
        self.started_mono_s = time.monotonic()
        self.last_result: dict[str, Any] | None = None
        self._frame_fn: FrameFn | None = None
        #: Frames in the model at once (``[[pipelines]] inflight``; the worker's threads).
        self.inflight = 1
        #: A small local model that answers first (``[pipelines.cascade]``), or None.
        self.cascade: CascadeStage | None = None
        self._window: SlidingWindow | None = None
        self._window_recipe: WindowPreprocessing | None = None
        self._post = model.manifest.postprocessing if model is not None and model.manifest \
            else None
        self._labels: list[str] = model.labels if model is not None else []
        #: Detection / segmentation / plugin decoder, bound to the model's outputs here so
        #: a manifest that does not fit the model is refused before anything runs.
        self._decoder = postprocess.decoder_for_model(model) if model is not None else None
        self._audio_recipe: AudioPreprocessing | None = None
        #: The model's state and constant inputs (models/state.py), fed on every run; the
        #: state starts again when the source's reconnect count changes.
        self._inputs: ModelInputs | None = None
        self._reconnects_seen = source.stats.reconnects
        if model is not None:
            if isinstance(source, AudioSource):
                self._audio_recipe = audio_recipe(model, source.source_id, source.rate_hz,
                                                  source.window_s)
                self._inputs = ModelInputs(model, data_input(
                    model.manifest, model.inputs, self._audio_recipe.input))
            elif needs_inputs(model):
                self._inputs = ModelInputs(model, data_input(model.manifest, model.inputs))
            if source.kind == "frame":
                self._frame_fn = frame_preprocessor(model)
            elif source.kind == "scalar":
                self._window_recipe = window_recipe(model)
                rate_hz = self._window_recipe.rate_hz
                self._window = SlidingWindow(self._window_recipe.length,
                                             1.0 / rate_hz if rate_hz else None)
        controller.listeners.append(self._on_rate_change)

    @property
    def cheap(self) -> bool:
        """True when :meth:`infer` is plain arithmetic (a scalar source with no model,
        detector or cleaner), so the daemon may run it on the loop."""
        return (self.source.kind == "scalar" and self.model is None and self.detector is None
                and self.cleaner is None and self.policy.name in ("fixed", "change", "novelty"))

    # -- executor side ----------------------------------------------------------------

    def infer(self, sample: Sample) -> Step:
        """Gate, preprocess and run the model on one sample (blocking; executor only).

        When the mesh routes the model (``offload = true``), the result says where it
        ran (``ran_on``: ``"local"`` or the peer's id)."""
        step = self._infer(sample)
        small = step.result is not None and step.result.get("cascade") == "small"
        if step.inferred and self.model is not None and not small:
            target = getattr(self.model.backend, "last_target", None)
            if target is not None:
                step.ran_on = target
                if step.result is not None:
                    step.result["ran_on"] = target
        return step

    @property
    def concurrent_frames(self) -> bool:
        """Whether several frames may be in the model at once (:meth:`begin` and
        :meth:`finish`): a camera pipeline whose model keeps no state between runs."""
        return self.model is not None and self._frame_fn is not None and self._inputs is None

    def begin(self, sample: Sample) -> Step | tuple[float, Any, float]:
        """The sequential half of :meth:`infer` for a frame: gate and preprocess.

        Returns the :class:`Step` when no model run is due, else what :meth:`finish`
        takes. Call in frame order, one at a time; :meth:`finish` may then run in
        several threads at once (only when :attr:`concurrent_frames`)."""
        activity = self.policy.observe(sample)
        if sample.frame is None or self.model is None or self._frame_fn is None:
            raise ValueError("begin() is for camera pipelines with a model")
        if not self.policy.wants_inference(sample, activity):
            return Step(activity, None)
        started = time.perf_counter()
        return activity, self._frame_fn(sample.frame), started

    def finish(self, sample: Sample, pending: tuple[float, Any, float]) -> Step:
        """The model and postprocessing of a frame :meth:`begin` let through."""
        activity, x, started = pending
        assert sample.frame is not None
        if self.cascade is not None:
            small = self.cascade.answer(sample.frame)
            if small is not None:
                small["motion"] = activity
                return Step(activity, small, True, time.perf_counter() - started)
        result = self._postprocess(self._run_model(x), sample.frame.shape)
        result["motion"] = activity
        step = Step(activity, result, True, time.perf_counter() - started)
        target = getattr(self.model.backend, "last_target", None) if self.model else None
        if target is not None:
            step.ran_on = result["ran_on"] = target
        return step

    def _infer(self, sample: Sample) -> Step:
        activity = self.policy.observe(sample)
        if sample.audio is not None:
            return self._infer_audio(activity, sample.audio)
        if sample.frame is not None:
            if not self.policy.wants_inference(sample, activity):
                return Step(activity, None)
            if self.model is None or self._frame_fn is None:
                return Step(activity, {"motion": activity})
            started = time.perf_counter()
            if self.cascade is not None:
                small = self.cascade.answer(sample.frame)
                if small is not None:
                    small["motion"] = activity
                    return Step(activity, small, True, time.perf_counter() - started)
            x = self._frame_fn(sample.frame)
            outputs = self._run_model(x)
            result = self._postprocess(outputs, sample.frame.shape)
            result["motion"] = activity
            return Step(activity, result, True, time.perf_counter() - started)
        value = sample.value
        if value is None:
            return Step(activity, None)
        points = [(sample.t_mono_s, value)]
        if self.cleaner is not None:
            # Gap filling may hand back several points; the last one is this sample.
            points = self.cleaner.push(sample.t_mono_s, value)
        points = [(t, v) for t, v in points if not math.isnan(v)]
        if not points:
            return Step(activity, None)
        # The trend forecast sees every cleaned point, gated or not.
        forecast = self._forecast_points(points)
        if not self.policy.wants_inference(sample, activity):
            # Gated like a still frame: rules still see the raw value.
            gated = {"value": points[-1][1], "activity": activity, "gated": True, **forecast}
            self._observe_health(points[-1][0], gated)
            return Step(activity, gated)
        # The envelope (values the source measured but we did not read) belongs to the
        # sample itself, the last point; gap-filled points before it have none.
        envelope = sample.envelope
        if envelope is not None and self.cleaner is not None:
            envelope = self.cleaner.clean_envelope(envelope, points[-1][1])
        started = time.perf_counter()
        step = Step(activity, None)
        last = len(points) - 1
        for k, (t_s, v) in enumerate(points):
            step = self._infer_scalar(activity, t_s, v, envelope if k == last else None)
        if step.result is not None:
            if forecast:
                step.result.update(forecast)
            self._observe_health(points[-1][0], step.result)
        step.infer_s = time.perf_counter() - started
        return step

    def _observe_health(self, t_s: float, result: dict[str, Any]) -> None:
        """Feed the device health score and add its value to ``result`` as ``health``.

        Anomaly activity is whether the detector's raw score (before its rest period,
        so a lasting anomaly keeps counting) is at its alarm level: health tracks the
        share of recent time the channel looked anomalous. Urgency is how far into the
        forecast's warning horizon the latest plausible crossing of the limit has come;
        data quality is the cleaner's share of fixed or dropped samples.
        """
        health = self.health
        if health is None:
            return
        score = result.get("raw_score", result.get("score"))
        if isinstance(score, float):
            anomalous = 1.0 if score >= self._alarm_level else 0.0
            health.observe_score(t_s * self._time_scale, anomalous)
        if "time_to_limit_high_s" in result:
            # The slow edge of the band, as for the early warning: likely *and* near.
            eta = result["time_to_limit_high_s"]
            health.observe_forecast(math.inf if eta is None else float(eta))
        if self.cleaner is not None:
            counters = self.cleaner.counters
            health.observe_quality(counters.fixed_or_dropped, counters.seen)
        result["health"] = round(health.value, 1)

    def _forecast_points(self, points: list[tuple[float, float]]) -> dict[str, Any]:
        """Feed the cleaned points to the forecast stage; its fields for the last one."""
        fields: dict[str, Any] = {}
        if self.forecast is not None:
            for t_s, v in points:
                fields = self.forecast.update(t_s, v)
        return fields

    def _infer_scalar(self, activity: float, t_s: float, value: float,
                      envelope: tuple[float, float] | None = None) -> Step:
        if self.detector is not None:
            return Step(activity, self._detect(self.detector, t_s, value, envelope), True)
        if self.model is None or self._window is None or self._window_recipe is None:
            return Step(activity, {"value": value})
        return self._infer_window(activity, t_s, value)

    @staticmethod
    def _detect(det: Detector, t_s: float, value: float,
                envelope: tuple[float, float] | None) -> dict[str, Any]:
        """Score one point with the streaming detector; its result fields.

        ``score`` is what the detector reports (for rules and alarms). Detectors that
        report them also give ``raw_score`` (the score before the detector's rest period,
        the activity signal for adaptive sampling), ``warming`` while they learn and
        ``stuck`` (1.0 while the channel looks frozen).
        """
        if envelope is not None and det.accepts_envelope:
            score = det.update(t_s, value, envelope)
        else:
            score = det.update(t_s, value)
        result: dict[str, Any] = {"value": value, "score": float(score)}
        raw = det.last_raw
        if raw is not None:
            result["raw_score"] = float(raw)
        if not det.warmed_up:
            result["warming"] = True
        stuck = det.stuck
        if stuck is not None:
            result["stuck"] = 1.0 if stuck else 0.0
        return result

    def _infer_window(self, activity: float, t_s: float, value: float) -> Step:
        assert self.model is not None
        assert self._window is not None and self._window_recipe is not None
        recipe = self._window_recipe
        t_stream_s = t_s * self._time_scale  # the recording's seconds for a replay
        if not self._window.ready(t_stream_s):
            self._window.push(t_stream_s, value)
            return Step(activity, {"value": value, "warming": True})
        started = time.perf_counter()
        outputs = self._run_model(window_input(self._window, t_stream_s, recipe, self.model))
        self._window.push(t_stream_s, value)
        if isinstance(self._post, ForecastPostprocessing):
            actual = (value - recipe.mean) / recipe.std
            result = postprocess.forecast_score(outputs, self._post, actual, recipe.mean,
                                                recipe.std)
        else:
            result = self._postprocess(outputs)
        result["value"] = value
        return Step(activity, result, True, time.perf_counter() - started)

    def _infer_audio(self, activity: float, window: np.ndarray[Any, Any]) -> Step:
        """One window of sound through the model (a stateful one keeps its state)."""
        if self.model is None or self._audio_recipe is None or self._inputs is None:
            return Step(activity, {"rms": float(np.sqrt(np.mean(np.square(window))))})
        started = time.perf_counter()
        x = audio_input(window, self._audio_recipe,
                        next(s for s in self.model.inputs if s.name == self._inputs.data_name))
        result = self._postprocess(self._run_model(x))
        return Step(activity, result, True, time.perf_counter() - started)

    def _run_model(self, x: np.ndarray[Any, Any]) -> dict[str, np.ndarray[Any, Any]]:
        """The model on one input, with its state and constants when it has them."""
        assert self.model is not None
        inputs = self._inputs
        if inputs is None:
            return self.model.run(x)
        reconnects = self.source.stats.reconnects
        if reconnects != self._reconnects_seen:
            # A new stream: the state of the old one says nothing about it.
            self._reconnects_seen = reconnects
            inputs.reset()
        return inputs.run(x)

    def _postprocess(self, outputs: dict[str, np.ndarray[Any, Any]],
                     frame_shape: tuple[int, ...] | None = None) -> dict[str, Any]:
        post = self._post
        if self._decoder is not None:
            return self._decoder(outputs, frame_shape)
        if isinstance(post, ProbabilityPostprocessing):
            return postprocess.probability(outputs, post)
        if isinstance(post, ClassificationPostprocessing) or post is None:
            spec = post if post is not None else ClassificationPostprocessing()
            first = np.asarray(next(iter(outputs.values())))
            if post is None and first.size == 1:
                return {"score": float(first.reshape(-1)[0])}
            return postprocess.classify(outputs, spec, self._labels)
        first = np.asarray(next(iter(outputs.values())))
        return {"score": float(first.reshape(-1)[0])}

    # -- loop side ---------------------------------------------------------------------

    def decide(self, sample: Sample, step: Step, now_s: float | None = None) -> list[Transition]:
        """Update the rate, run rules and actions for one processed sample (cheap)."""
        now = time.monotonic() if now_s is None else now_s
        self.stats.samples += 1
        self.last_sample_mono_s = time.monotonic()  # the real clock, even for replays
        activity = step.activity
        if step.result is None:
            if sample.frame is not None:
                self.stats.gated += 1
            else:
                self.stats.missing += 1
        else:
            if step.result.get("gated"):
                self.stats.gated += 1
            if step.result.get("warming"):
                self.stats.warming += 1
            if step.inferred:
                self.stats.inferences += 1
                if step.ran_on not in (None, "local"):
                    self.stats.offloaded += 1
                if self.stats.first_inference_mono_s is None:
                    self.stats.first_inference_mono_s = now
                self.stats.last_inference_mono_s = now
                self.stats.latencies_s.append(max(0.0, now - sample.t_mono_s))
            activity = max(activity, self.policy.observe_result(step.result))
            self.last_result = step.result
        if self.summary is not None:
            self._count(sample, step, now)
        self.controller.update(sample.t_mono_s, activity)
        transitions: list[Transition] = []
        if step.result is not None:
            for rule in self.rules:
                tr = rule.update(sample.t_mono_s, step.result)
                if tr is not None:
                    transitions.append(tr)
                    self._fire(tr, step.result, sample)
        return transitions

    def _count(self, sample: Sample, step: Step, now: float) -> None:
        """Feed the summary window (a few additions; on the loop, per sample)."""
        w = self.summary
        assert w is not None
        w.add_sample()
        result = step.result
        if result is None:
            if sample.frame is not None:
                w.add_gated()
            return
        if result.get("gated"):
            w.add_gated()
        if step.inferred:
            w.add_inference(max(0.0, now - sample.t_mono_s) * 1000.0,
                            offloaded=step.ran_on not in (None, "local"))
        w.add_result(result)
        warning = result.get("early_warning")
        if warning is not None:
            on = bool(warning)
            if on and not self._warning_on:
                w.add_early_warning()
            self._warning_on = on

    def _fire(self, tr: Transition, result: dict[str, Any],
              sample: Sample | None = None) -> None:
        context: dict[str, Any] = {"pipeline": self.pipeline_id, "node": self.node_name,
                                   "result": result}
        if tr.active:
            if self.summary is not None and self.detector is not None \
                    and tr.rule_id in self._alarm_rules:
                self.summary.add_alarm()
            if tr.rule_id in self.snapshot_rules and sample is not None \
                    and sample.frame is not None:
                context["frame"] = sample.frame
                context["boxes"] = snapshot_boxes(result)
        for action_id in tr.actions:
            action = self.actions[action_id]
            try:
                action.handle(tr, context)
            except Exception as exc:  # an action must never stop the pipeline
                log.error("pipeline %r: action %r failed: %s", self.pipeline_id, action_id, exc)

    def _on_rate_change(self, old_hz: float, new_hz: float, reason: str) -> None:
        if self.summary is not None:
            self.summary.add_rate_change(new_hz)
        log.info("pipeline %r: rate %.3g -> %.3g Hz (%s)", self.pipeline_id, old_hz, new_hz,
                 reason)
        # A shared source listens to its readers' controllers and sets the rate itself.
        if self.tap is None and self.source.can_set_rate:
            try:
                self.source.set_rate(new_hz)
                self.source.stats.rate_hz = new_hz
            except EdgeRuntimeError as exc:
                log.warning("source %r refused rate %.3g Hz: %s", self.source.source_id,
                            new_hz, exc)

    @property
    def stale_after_s(self) -> float:
        """Seconds without a sample after which this pipeline's rules are stale."""
        return max(STALE_PERIODS * self.controller.period_s, STALE_MIN_S)

    def liveness(self, now_s: float | None = None) -> dict[str, Any]:
        """Whether the source still feeds this pipeline (``now_s``: monotonic time).

        ``source_state`` is ``up``, ``disconnected``, ``silent`` (connected, but no
        sample for longer than ``stale_after_s``) or ``ended`` (a recording that
        finished); ``stale`` is True unless it is ``up``: the rules then hold what they
        last saw. ``last_sample_age_s`` is None before the first sample.
        """
        now = time.monotonic() if now_s is None else now_s
        last = self.last_sample_mono_s
        silent_s = now - (self.started_mono_s if last is None else last)
        stale_after_s = self.stale_after_s
        if self.source.exhausted:
            state = "ended"
        elif not self.source.stats.connected:
            state = "disconnected"
        elif silent_s > stale_after_s:
            state = "silent"
        else:
            state = "up"
        return {"source_state": state, "stale": state != "up",
                "last_sample_age_s": None if last is None else round(now - last, 3),
                "stale_after_s": round(stale_after_s, 3)}

    def status(self) -> dict[str, Any]:
        """Everything ``edge-runtime status`` shows about this pipeline."""
        live = self.liveness()
        s = self.stats
        last = {k: v for k, v in (self.last_result or {}).items()
                if isinstance(v, str | int | float | bool)}
        return {
            "source": self.source.source_id,
            **live,
            "model": self.model.manifest.name
            if self.model is not None and self.model.manifest is not None else None,
            "samples": s.samples, "inferences": s.inferences, "offloaded": s.offloaded,
            "gated": s.gated,
            "missing": s.missing, "warming": s.warming, "errors": s.errors,
            "last_error": s.last_error,
            "latency_ms": s.latency_ms(),
            "inferences_per_s": round(ips, 3) if (ips := s.inferences_per_s()) else None,
            "sampling": {**self.controller.state(), **self.policy.state()},
            "source_stats": self.tap.as_dict(self.source.stats) if self.tap is not None
            else self.source.stats.as_dict(),
            "rules": {r.rule_id: {**r.state(), "stale": live["stale"]} for r in self.rules},
            "cleaning": self.cleaner.counters.as_dict() if self.cleaner is not None else None,
            "forecast": self.forecast.state() if self.forecast is not None else None,
            "cascade": self.cascade.state() if self.cascade is not None else None,
            "health": round(self.health.value, 1) if self.health is not None else None,
            "last_result": last,
        }


def snapshot_boxes(result: dict[str, Any]) -> list[tuple[float, float, float, float, str, float]]:
    """The detections of a result as snapshot boxes ``(x0, y0, x1, y1, label, score)``
    in frame pixels (what :mod:`edge_runtime.pipelines.postprocess` decodes)."""
    boxes = []
    for det in result.get("detections") or []:
        box = det.get("box_px") if isinstance(det, dict) else None
        if box is None or len(box) < 4:
            continue
        boxes.append((float(box[0]), float(box[1]), float(box[2]), float(box[3]),
                      str(det.get("label", "")), float(det.get("score", 0.0))))
    return boxes
