"""Building a runtime from a config: sources, actions, pipelines and the health rules.

:func:`build_runtime` turns a validated :class:`~edge_runtime.config.Config` into a
:class:`Runtime`; it loads models, so the daemon calls it in an executor (and, on a
reload, before the old runtime stops). :func:`make_source` builds one ``[[sources]]``
entry (``edge-runtime record`` uses it too). The stage runner itself, what one pipeline
does with a sample, is :mod:`edge_runtime.pipelines.pipeline`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edge_runtime.config import (
    AudioSourceConfig,
    BridgeSourceConfig,
    CameraSourceConfig,
    Config,
    GpioActionConfig,
    GpioSourceConfig,
    LogActionConfig,
    Picamera2SourceConfig,
    PipelineConfig,
    ReplaySourceConfig,
    RuleConfig,
    SourceConfig,
    SystemSourceConfig,
    make_detector,
    make_forecaster,
)
from edge_runtime.errors import ConfigError
from edge_runtime.pipelines.actions import (
    Action,
    EventAction,
    GpioOutputAction,
    LogAction,
)
from edge_runtime.pipelines.cascade import CascadeStage
from edge_runtime.pipelines.forecast import ForecastStage
from edge_runtime.pipelines.pipeline import Pipeline
from edge_runtime.pipelines.rules import Rule
from edge_runtime.pipelines.shared import SharedSource, Tap
from edge_runtime.sampling.controller import Budget, RateController
from edge_runtime.sampling.policy import ActivityPolicy, make_policy
from edge_runtime.sources.base import Source

if TYPE_CHECKING:
    from edge_runtime.anomaly.protocols import Cleaner, Detector

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Everything built from one config; the daemon runs it and closes it."""

    config: Config
    sources: dict[str, Source]
    actions: dict[str, Action]
    pipelines: list[Pipeline]
    health_rules: list[Rule]
    budget: Budget
    #: Sources that several pipelines read, by source id (the others feed one pipeline).
    shared: dict[str, SharedSource] = field(default_factory=dict)

    def close(self, *, busy: Collection[str] = ()) -> None:
        """Close sources, switch outputs off, close the models (safe twice).

        Blocking: the daemon calls it in an executor, under a timeout, after joining the
        worker threads. ``busy`` names pipelines whose worker is still running (stuck in
        a read or an inference): their models stay open, because closing an engine under
        a running inference can take the whole process down.
        """
        for src in self.sources.values():
            try:
                src.close()
            except Exception as exc:  # closing must go on for the others
                log.warning("closing source %r: %s", src.source_id, exc)
        for pipe in self.pipelines:
            if pipe.model is not None and hasattr(pipe.model, "close"):
                if pipe.pipeline_id in busy:
                    log.warning("pipeline %r: its worker is still running; model left open",
                                pipe.pipeline_id)
                    continue
                try:
                    pipe.model.close()
                    if pipe.cascade is not None:
                        pipe.cascade.close()
                except Exception as exc:
                    log.warning("closing the model of pipeline %r: %s", pipe.pipeline_id, exc)
        for action in self.actions.values():
            try:
                action.close()
            except Exception as exc:
                log.warning("closing action %r: %s", action.action_id, exc)

    @property
    def event_actions(self) -> list[EventAction]:
        """The actions that report events upstream (the daemon binds them)."""
        return [a for a in self.actions.values() if isinstance(a, EventAction)]


def make_source(cfg: SourceConfig, config: Config) -> Source:
    """The source object for one ``[[sources]]`` entry (not opened)."""
    if isinstance(cfg, CameraSourceConfig):
        from edge_runtime.sources.camera import OpenCVCamera

        return OpenCVCamera(
            cfg.id, device=cfg.device,
            path=config.resolve(cfg.path) if cfg.path is not None else None,
            url=cfg.url, width=cfg.width, height=cfg.height, fps_hz=cfg.fps_hz,
            loop=cfg.loop, realtime=cfg.realtime, lossless=cfg.lossless,
            reconnect_min_s=cfg.reconnect_min_s, reconnect_max_s=cfg.reconnect_max_s,
            max_frame_pixels=cfg.max_frame_pixels)
    if isinstance(cfg, Picamera2SourceConfig):
        from edge_runtime.sources.camera import Picamera2Camera

        return Picamera2Camera(cfg.id, width=cfg.width, height=cfg.height)
    if isinstance(cfg, GpioSourceConfig):
        from edge_runtime.sources.gpio import GpioSource

        return GpioSource(
            cfg.id, device=cfg.device, pin=cfg.pin, echo=cfg.echo, trigger=cfg.trigger,
            chip=cfg.chip, channel=cfg.channel, pull_up=cfg.pull_up,
            max_distance_m=cfg.max_distance_m, scale=cfg.scale, offset=cfg.offset,
            factory=config.node.gpio_pin_factory)
    if isinstance(cfg, BridgeSourceConfig):
        from edge_runtime.sources.bridge import BridgeSource

        return BridgeSource(cfg.id, channel=cfg.channel, port=cfg.port, usb_id=cfg.usb_id,
                            value_index=cfg.value_index, baudrate=cfg.baudrate,
                            envelope=cfg.envelope)
    if isinstance(cfg, SystemSourceConfig):
        from edge_runtime.sources.system import SystemSource

        return SystemSource(cfg.id, channel=cfg.channel, proc_root=config.resolve(cfg.proc_root),
                            sys_root=config.resolve(cfg.sys_root),
                            disk_path=config.resolve(cfg.disk_path),
                            interface=cfg.interface, device=cfg.device)
    if isinstance(cfg, AudioSourceConfig):
        from edge_runtime.sources.audio import AudioSource

        return AudioSource(
            cfg.id, path=config.resolve(cfg.path) if cfg.path is not None else None,
            device=cfg.device, command=cfg.command, rate_hz=cfg.rate_hz,
            window_s=cfg.window_s, hop_s=cfg.hop_s, realtime=cfg.realtime,
            lossless=cfg.lossless, loop=cfg.loop, reconnect_min_s=cfg.reconnect_min_s,
            reconnect_max_s=cfg.reconnect_max_s)
    assert isinstance(cfg, ReplaySourceConfig)
    from edge_runtime.sources.replay import ReplaySource

    return ReplaySource(cfg.id, path=config.resolve(cfg.path), speed=cfg.speed, loop=cfg.loop,
                        lossless=cfg.lossless, rate_hz=cfg.rate_hz)


def make_rules(rules: list[RuleConfig]) -> list[Rule]:
    """Rule objects for a list of ``rules`` entries."""
    return [Rule.build(r.id, field=r.field, above=r.above, below=r.below, equals=r.equals,
                       clear_at=r.clear_at, debounce_s=r.debounce_s,
                       clear_debounce_s=r.clear_debounce_s, cooldown_s=r.cooldown_s,
                       actions=tuple(r.actions)) for r in rules]


def _make_policy(pipe: PipelineConfig, is_frame: bool) -> ActivityPolicy:
    s = pipe.sampling
    name = s.policy or ("motion" if is_frame else "fixed")
    params: dict[str, Any] = {}
    if name == "motion":
        params = {"pixel_threshold": s.pixel_threshold, "area_fraction": s.area_fraction,
                  "heartbeat_s": s.heartbeat_s}
    elif name == "change":
        params = {"factor": s.factor}
    elif name == "novelty":
        params = {"z": s.z}
    elif name == "score":
        params = {"field": s.field}
    elif name == "detector":
        params = {"hold_samples": s.hold_samples,
                  "heartbeat_samples": s.heartbeat_samples,
                  "detector_params": s.detector_params}
    if s.threshold is not None and name in ("score", "detector"):
        params["threshold"] = s.threshold
    return make_policy(name, **params)


def _make_controller(pipe: PipelineConfig, src: SourceConfig, budget: Budget,
                     policy: ActivityPolicy) -> RateController:
    kwargs: dict[str, Any] = {}
    if pipe.sampling.hold_s is not None:
        kwargs["hold_s"] = pipe.sampling.hold_s
    if pipe.sampling.decay_half_life_s is not None:
        kwargs["decay_half_life_s"] = pipe.sampling.decay_half_life_s
    if policy.name == "fixed":
        # A fixed policy samples at the maximum rate all the time (budget still caps it).
        return RateController(src.max_rate_hz, src.max_rate_hz, budget=budget, **kwargs)
    return RateController(src.min_rate_hz, src.max_rate_hz, budget=budget, **kwargs)


def _make_cleaner(pipe: PipelineConfig, src: SourceConfig, where: str) -> Cleaner:
    """The anomaly package's streaming cleaner, with gaps judged at the slowest planned rate.

    Adaptive sampling leaves intended gaps; unless ``interval_s`` is given, a gap is only
    a gap when it is longer than the minimum rate's period.
    """
    from edge_runtime.anomaly.cleaning import Cleaner as StreamCleaner

    params = dict(pipe.cleaning or {})
    params.setdefault("interval_s", 1.0 / src.min_rate_hz)
    try:
        return StreamCleaner(**params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def build_runtime(config: Config) -> Runtime:
    """Build (not start) everything the config describes; loads models.

    Raises :class:`ConfigError` or a model error when something cannot be built; in that
    case nothing is left open.
    """
    from edge_runtime.models import load_model

    budget = Budget(temp_soft_c=config.budget.temp_soft_c, temp_hard_c=config.budget.temp_hard_c,
                    cpu_high_percent=config.budget.cpu_high_percent,
                    interval_s=config.budget.interval_s,
                    enabled=config.budget.enabled)
    budget.thermal_root = config.resolve(config.budget.thermal_root)
    actions: dict[str, Action] = {}
    runtime = Runtime(config, {}, actions, [], [], budget)
    # A source read by several pipelines is shared: each of them gets a tap.
    readers = Counter(pipe.source for pipe in config.pipelines)
    try:
        for a in config.actions:
            if isinstance(a, GpioActionConfig):
                actions[a.id] = GpioOutputAction(
                    a.id, device=a.device, pin=a.pin, mode=a.mode, pulse_s=a.pulse_s,
                    active_high=a.active_high, factory=config.node.gpio_pin_factory)
            elif isinstance(a, LogActionConfig):
                actions[a.id] = LogAction(a.id, message=a.message, level=a.level)
            else:
                # Unbound until the daemon's upstream has started (EventAction.bind).
                actions[a.id] = EventAction(a.id, kind=a.kind)
        for i, pipe in enumerate(config.pipelines):
            src_cfg = config.source(pipe.source)
            # One source object however many pipelines read it: a camera opens once.
            source = runtime.sources.get(src_cfg.id) or make_source(src_cfg, config)
            runtime.sources[source.source_id] = source
            model = None
            detector: Detector | None = None
            if pipe.model is not None:
                name = pipe.model
                if "/" in name or name.endswith((".onnx", ".tflite")):
                    name = str(config.resolve(name))
                model = load_model(name, num_threads=pipe.num_threads)
            if pipe.detector is not None:
                detector = make_detector(pipe.detector, pipe.detector_params,
                                         f"pipelines[{i}]")
            cleaner = None
            if pipe.cleaning is not None:
                cleaner = _make_cleaner(pipe, src_cfg, f"pipelines[{i}].cleaning")
            # The source's clock (a replay's recorded seconds) per monotonic second.
            time_scale = src_cfg.speed if isinstance(src_cfg, ReplaySourceConfig) else 1.0
            forecast = None
            if pipe.forecast is not None:
                forecast = ForecastStage(
                    make_forecaster(pipe.forecast, f"pipelines[{i}].forecast"),
                    time_scale=time_scale)
            policy = _make_policy(pipe, source.kind == "frame")
            controller = _make_controller(pipe, src_cfg, budget, policy)
            tap = Tap(pipe.id, controller) if readers[src_cfg.id] > 1 else None
            snapshot_rules = frozenset(r.id for r in pipe.rules if r.snapshot)
            if snapshot_rules and source.kind != "frame":
                j = next(j for j, r in enumerate(pipe.rules) if r.snapshot)
                raise ConfigError(f"pipelines[{i}].rules[{j}].snapshot: source {src_cfg.id!r} "
                                  "has no frames to take a snapshot of",
                                  hint="snapshots are for camera pipelines; remove "
                                  "'snapshot = true'")
            try:
                runtime.pipelines.append(Pipeline(
                    pipe.id, source, policy=policy, controller=controller,
                    rules=make_rules(pipe.rules), actions=actions, node_name=config.node.name,
                    model=model, detector=detector, cleaner=cleaner, forecast=forecast,
                    tap=tap, time_scale=time_scale, snapshot_rules=snapshot_rules))
            except ConfigError as exc:
                raise ConfigError(f"pipelines[{i}].model: {exc.message}") from exc
            if pipe.inflight > 1:
                if not runtime.pipelines[-1].concurrent_frames or tap is not None:
                    raise ConfigError(
                        f"pipelines[{i}].inflight: {pipe.inflight} frames in the model at "
                        "once need a camera pipeline that reads its camera alone, with a "
                        "model that keeps no state",
                        hint="remove inflight, or give the pipeline its own camera source")
                runtime.pipelines[-1].inflight = pipe.inflight
            if pipe.cascade is not None:
                built = runtime.pipelines[-1]
                if built.model is None or source.kind != "frame":
                    raise ConfigError(f"pipelines[{i}].cascade: a cascade needs a camera "
                                      "pipeline with a model",
                                      hint="set the pipeline's model, or remove the cascade")
                name = pipe.cascade.model
                if "/" in name or name.endswith((".onnx", ".tflite")):
                    name = str(config.resolve(name))
                try:
                    built.cascade = CascadeStage(load_model(name, num_threads=pipe.num_threads),
                                                 pipe.cascade.threshold)
                except ConfigError as exc:
                    raise ConfigError(f"pipelines[{i}].cascade.model: {exc.message}",
                                      hint=exc.hint) from exc
        for source_id, source in runtime.sources.items():
            if readers[source_id] > 1:
                runtime.shared[source_id] = SharedSource(
                    source, [p for p in runtime.pipelines if p.source is source])
        # Sources that no pipeline reads are still opened (e.g. to record them later).
        for src_cfg in config.sources:
            if src_cfg.id not in runtime.sources:
                runtime.sources[src_cfg.id] = make_source(src_cfg, config)
        for j, r in enumerate(config.health.rules):
            if r.snapshot:
                raise ConfigError(f"health.rules[{j}].snapshot: a health rule has no frame "
                                  "to take a snapshot of", hint="remove 'snapshot = true'")
        runtime.health_rules = make_rules(config.health.rules)
    except BaseException:
        runtime.close()
        raise
    return runtime
