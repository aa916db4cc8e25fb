"""The daemon's one configuration file (TOML), validated with msgspec.

Sections: ``[node]``, ``[[sources]]``, ``[[pipelines]]`` (source -> cleaning ->
preprocess -> model or detector -> postprocess -> rules -> actions), ``[[actions]]``,
``[events]``, ``[budget]`` and ``[health]``. Upstream reporting and peer offload get
their own top-level sections later (``[upstream]``, ``[peers]``); nothing here needs
to change for them to slot in.

Unknown keys are refused. Every error is a :class:`~edge_runtime.errors.ConfigError`
whose message starts with the key path, e.g.
``pipelines[1].model: unknown model 'digitz' (known: digits-int8-onnx, ...)``.
``docs/config.md`` documents every field with a full example.
"""

from __future__ import annotations

import importlib
import math
import os
import re
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from edge_runtime.errors import ConfigError

if TYPE_CHECKING:
    from edge_runtime.anomaly.forecast import TrendForecaster
    from edge_runtime.anomaly.protocols import Detector

# --- sections ---------------------------------------------------------------------------


class NodeConfig(msgspec.Struct, forbid_unknown_fields=True):
    """This device: its name (in events and status), where it keeps state."""

    name: str = msgspec.field(default_factory=socket.gethostname)
    #: Folder for the event log and the control socket (relative to the config file).
    state_dir: str = "state"
    #: Unix socket for ``edge-runtime status``; default ``<state_dir>/control.sock``.
    control_socket: str | None = None
    #: gpiozero pin factory (``mock`` for tests and demos); default: gpiozero's choice.
    gpio_pin_factory: str | None = None
    #: Seconds a clean stop may take before work in flight is abandoned.
    shutdown_timeout_s: float = 1.5


class RateLimits(msgspec.Struct, forbid_unknown_fields=True):
    """Base of sources: every source has a min and max sampling rate (Hz)."""

    id: str
    min_rate_hz: float = 1.0
    max_rate_hz: float = 10.0


class CameraSourceConfig(RateLimits, tag="camera"):
    """OpenCV camera: exactly one of ``device`` (V4L2 index), ``path``, ``url``."""

    device: int | None = None
    path: str | None = None
    url: str | None = None
    width: int | None = None
    height: int | None = None
    fps_hz: float | None = None
    loop: bool = False
    realtime: bool = True
    lossless: bool = False
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 10.0
    #: Frames with more pixels are dropped and counted as errors (memory bound).
    max_frame_pixels: int = 4096 * 4096


class Picamera2SourceConfig(RateLimits, tag="picamera2"):
    """Raspberry Pi camera through picamera2."""

    width: int = 640
    height: int = 480


class GpioSourceConfig(RateLimits, tag="gpio"):
    """A gpiozero input device polled at the sampling rate."""

    device: Literal["digital_input", "motion_sensor", "button", "distance_sensor", "adc"] = (
        "digital_input"
    )
    pin: int | str | None = None
    echo: int | str | None = None
    trigger: int | str | None = None
    chip: str = "MCP3008"
    channel: int = 0
    pull_up: bool | None = False
    max_distance_m: float = 2.0
    scale: float = 1.0
    offset: float = 0.0


class ReplaySourceConfig(RateLimits, tag="replay"):
    """A CSV/NPY recording replayed as a live sensor (``speed`` x real time)."""

    path: str = ""
    speed: float = 1.0
    loop: bool = False
    lossless: bool = False
    rate_hz: float | None = None


class BridgeSourceConfig(RateLimits, tag="bridge"):
    """One channel of a microcontroller running the edge bridge firmware (serial link).

    The rate controller tells the device to sample at the chosen rate (SET_RATE).
    Exactly one of ``port`` (tty path) and ``usb_id`` (``VID:PID[:SERIAL]``).
    ``envelope`` turns on the device's peak-hold envelope (min/max of what it measured
    between two samples; devices without the mode send plain samples).
    """

    channel: int | str = 0
    port: str | None = None
    usb_id: str | None = None
    value_index: int = 0
    baudrate: int = 115200
    envelope: bool = True


class SystemSourceConfig(RateLimits, tag="system"):
    """One of the host's own readings (the node watching itself), read from ``/proc``
    and ``/sys`` (or the roots given): see :data:`edge_runtime.sources.system.CHANNELS`.

    ``interface`` picks a network interface (default: all but ``lo``), ``device`` a
    block device (default: all disks), ``disk_path`` the filesystem of ``disk_percent``.
    """

    channel: str = "cpu_temperature_c"
    proc_root: str = "/proc"
    sys_root: str = "/sys"
    disk_path: str = "/"
    interface: str | None = None
    device: str | None = None


SourceConfig = (CameraSourceConfig | Picamera2SourceConfig | GpioSourceConfig
                | ReplaySourceConfig | BridgeSourceConfig | SystemSourceConfig)
FRAME_SOURCES = (CameraSourceConfig, Picamera2SourceConfig)


class SamplingConfig(msgspec.Struct, forbid_unknown_fields=True):
    """How activity drives the source's rate (see ``edge_runtime.sampling``)."""

    policy: Literal["fixed", "motion", "change", "novelty", "score", "detector"] | None = None
    hold_s: float | None = None
    decay_half_life_s: float | None = None
    # motion gate
    pixel_threshold: int | None = None
    area_fraction: float | None = None
    heartbeat_s: float | None = None
    # change / novelty
    factor: float | None = None
    z: float | None = None
    # score (and detector: the gate's score threshold)
    field: str = "score"
    threshold: float | None = None  # default 0.5 for score, 0.05 for detector
    # detector gate (scalar sources): inference only around activity, plus a heartbeat
    hold_samples: int = 6
    heartbeat_samples: int = 48
    detector_params: dict[str, Any] = msgspec.field(default_factory=dict)


class RuleConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Threshold (+ hysteresis, debounce, cooldown) on one result field."""

    id: str
    field: str
    above: float | None = None
    below: float | None = None
    equals: float | str | bool | None = None
    clear_at: float | None = None
    debounce_s: float = 0.0
    clear_debounce_s: float = 0.0
    cooldown_s: float = 0.0
    actions: list[str] = msgspec.field(default_factory=list)


class ForecastConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Time-to-limit forecast on a scalar channel (predictive maintenance).

    Every cleaned sample goes to :class:`edge_runtime.anomaly.forecast.TrendForecaster`;
    results get ``time_to_limit_s`` (and its band ``time_to_limit_low_s`` ..
    ``time_to_limit_high_s``; None while learning or when no crossing is forecast) and
    ``early_warning`` (1.0 when even the latest plausible crossing is within
    ``horizon_s``, else 0.0) for rules to test. Times are on the source's clock: for a
    replay, the recording's seconds (the monotonic time multiplied by ``speed``).
    """

    #: The limit the channel must not cross, in the channel's unit.
    limit: float
    #: Which side of ``limit`` is the failure: ``above`` (the value rises to it) or
    #: ``below`` (the value falls to it).
    direction: Literal["above", "below"] = "above"
    #: Early warning when the forecast crossing, band included, is within this (s).
    horizon_s: float = 24 * 3600.0
    #: Half of the trend fit's weight lies within this many recent seconds.
    half_life_s: float = 6 * 3600.0
    #: Samples seen before the first forecast (>= 3).
    min_points: int = 12
    #: Width of the band in standard errors of the slope (2 = about 95 %).
    z: float = 2.0
    #: The warning condition must hold this long without a break before
    #: ``early_warning`` turns on (s, on the source's clock; 0 = at once). Delays every
    #: warning by as much; see docs/forecast-experiments.md for the choice of 2 h.
    hold_s: float = 2 * 3600.0


class PipelineConfig(msgspec.Struct, forbid_unknown_fields=True):
    """One path from a source to decisions. ``model`` and ``detector`` are both optional:
    without either, rules see the raw ``value`` (sensors) or ``motion`` (cameras).
    Several pipelines may name the same ``source``; it is then read once for all."""

    id: str
    source: str
    model: str | None = None
    num_threads: int = 1
    #: Streaming detector for scalar sources: ``anomaly`` or ``module:Class``, a
    #: :class:`~edge_runtime.anomaly.protocols.Detector`; ``detector_params`` go to its
    #: constructor.
    detector: str | None = None
    detector_params: dict[str, Any] = msgspec.field(default_factory=dict)
    #: Options of the data-cleaning stage for sensor streams (see docs/config.md).
    cleaning: dict[str, Any] | None = None
    #: Time-to-limit forecast and early warning for scalar sources (``[pipelines.forecast]``).
    forecast: ForecastConfig | None = None
    sampling: SamplingConfig = msgspec.field(default_factory=SamplingConfig)
    rules: list[RuleConfig] = msgspec.field(default_factory=list)


class GpioActionConfig(msgspec.Struct, forbid_unknown_fields=True, tag="gpio"):
    """LED, buzzer or relay output."""

    id: str
    device: Literal["led", "buzzer", "relay"] = "led"
    pin: int | str = 0
    mode: Literal["follow", "pulse"] = "follow"
    pulse_s: float = 1.0
    active_high: bool = True


class EventActionConfig(msgspec.Struct, forbid_unknown_fields=True, tag="event"):
    """An entry in the node's JSONL event log."""

    id: str
    kind: str = "rule"


class LogActionConfig(msgspec.Struct, forbid_unknown_fields=True, tag="log"):
    """A log line."""

    id: str
    message: str = "rule {rule} {state} ({field}={value})"
    level: str = "WARNING"


ActionConfig = GpioActionConfig | EventActionConfig | LogActionConfig


class EventsConfig(msgspec.Struct, forbid_unknown_fields=True):
    """The local event log (JSONL, fsynced, rotated)."""

    path: str = "events.jsonl"  # relative to node.state_dir
    max_bytes: int = 10_000_000
    keep: int = 3


class BudgetConfig(msgspec.Struct, forbid_unknown_fields=True):
    """CPU and thermal cap on every source's maximum rate."""

    enabled: bool = True
    temp_soft_c: float = 70.0
    temp_hard_c: float = 80.0
    cpu_high_percent: float = 85.0
    interval_s: float = 2.0
    thermal_root: str = "/sys/class/thermal"


class HealthConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Periodic health snapshot; its ``rules`` see keys like ``temperature_c``."""

    interval_s: float = 10.0
    disk_path: str = "/"
    check_throttling: bool = True
    rules: list[RuleConfig] = msgspec.field(default_factory=list)


# --- upstream reporting ([upstream]; docs/reporting.md) ----------------------------------


class OutboxConfig(msgspec.Struct, forbid_unknown_fields=True):
    """The durable SQLite outbox every message is written to before it is sent."""

    path: str = "outbox.db"  # relative to node.state_dir
    #: Disk cap of the stored messages (bytes); old summaries are merged first, events last.
    max_bytes: int = 50_000_000
    #: At most one commit (one fsync) per this many seconds, however many messages flow.
    commit_interval_s: float = 0.1
    #: At most one ``outbox_loss`` event per this many seconds while the cap forces loss.
    loss_report_interval_s: float = 60.0


class SnapshotsConfig(msgspec.Struct, forbid_unknown_fields=True):
    """JPEGs of frames that fired a rule, referenced by their events."""

    path: str = "snapshots"  # relative to node.state_dir
    max_bytes: int = 20_000_000
    jpeg_quality: int = 80


class FileSinkConfig(msgspec.Struct, forbid_unknown_fields=True):
    """The JSONL file sink (on by default: needs no server)."""

    enabled: bool = True
    path: str = "upstream.jsonl"  # relative to node.state_dir
    max_bytes: int = 10_000_000
    keep: int = 3
    fsync: bool = True


class HomeAssistantConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Home Assistant MQTT discovery (device, sensors, binary sensors)."""

    enabled: bool = False
    prefix: str = "homeassistant"


class MqttSinkConfig(msgspec.Struct, forbid_unknown_fields=True):
    """An MQTT broker (MQTT v5, QoS 1): ``url`` is ``mqtt://host[:1883]`` or
    ``mqtts://host[:8883]`` (TLS)."""

    url: str
    username: str | None = None
    password: str | None = None
    #: A file holding the password (first line), instead of ``password``.
    password_file: str | None = None
    #: TLS: the CA that signed the broker's certificate (default: the system's CAs);
    #: ``cert_file`` + ``key_file``: this node's client certificate (mutual TLS).
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    client_id: str | None = None  # default: edge-runtime-<node.name>
    topic_prefix: str = "edge"
    keepalive_s: int = 30
    connect_timeout_s: float = 5.0
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    max_in_flight: int = 100
    home_assistant: HomeAssistantConfig = msgspec.field(default_factory=HomeAssistantConfig)


class HttpSinkConfig(msgspec.Struct, forbid_unknown_fields=True):
    """An HTTP(S) webhook: POSTs batches of messages as JSON; done on 2xx only."""

    url: str
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    timeout_s: float = 10.0
    max_batch: int = 100
    ca_file: str | None = None
    retry_min_s: float = 1.0
    retry_max_s: float = 60.0


class UpstreamConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Reporting upstream: summaries, events and snapshots through the outbox to sinks."""

    enabled: bool = True
    #: Length of a pipeline's summary window (s).
    summary_interval_s: float = 60.0
    outbox: OutboxConfig = msgspec.field(default_factory=OutboxConfig)
    snapshots: SnapshotsConfig = msgspec.field(default_factory=SnapshotsConfig)
    file: FileSinkConfig = msgspec.field(default_factory=FileSinkConfig)
    mqtt: MqttSinkConfig | None = None
    http: HttpSinkConfig | None = None


class Config(msgspec.Struct, forbid_unknown_fields=True):
    """The whole file."""

    node: NodeConfig = msgspec.field(default_factory=NodeConfig)
    sources: list[SourceConfig] = msgspec.field(default_factory=list)
    pipelines: list[PipelineConfig] = msgspec.field(default_factory=list)
    actions: list[ActionConfig] = msgspec.field(default_factory=list)
    events: EventsConfig = msgspec.field(default_factory=EventsConfig)
    budget: BudgetConfig = msgspec.field(default_factory=BudgetConfig)
    health: HealthConfig = msgspec.field(default_factory=HealthConfig)
    upstream: UpstreamConfig = msgspec.field(default_factory=UpstreamConfig)

    # Filled in by load_config: the folder relative paths are resolved against.
    base_dir: Path = Path()

    def resolve(self, path: str) -> Path:
        """A path from the file, relative to the config file's folder (``~`` expanded)."""
        p = Path(os.path.expanduser(path))
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @property
    def state_dir(self) -> Path:
        """Absolute state folder."""
        return self.resolve(self.node.state_dir)

    @property
    def control_socket(self) -> Path:
        """Absolute control socket path."""
        if self.node.control_socket:
            return self.resolve(self.node.control_socket)
        return self.state_dir / "control.sock"

    @property
    def event_log_path(self) -> Path:
        """Absolute event log path."""
        p = Path(os.path.expanduser(self.events.path))
        return p if p.is_absolute() else self.state_dir / p

    def source(self, source_id: str) -> SourceConfig:
        """The source called ``source_id``."""
        return next(s for s in self.sources if s.id == source_id)


# --- loading and checks ------------------------------------------------------------------

_AT_PATH = re.compile(r"^(?P<msg>.*) - at `\$(?P<path>[^`]*)`$", re.S)


def _key_path(path: str) -> str:
    return path.lstrip(".")


def decode_config(data: bytes | str, *, base_dir: Path = Path(), source: str = "config"
                  ) -> Config:
    """Parse and validate TOML text; raises ConfigError naming the key path."""
    try:
        config = msgspec.toml.decode(data, type=Config)
    except msgspec.ValidationError as exc:
        m = _AT_PATH.match(str(exc))
        if m:
            path, msg = _key_path(m["path"]), m["msg"]
            unknown = re.match(r"Object contains unknown field `(.*)`", msg)
            if unknown:
                key = f"{path}.{unknown[1]}" if path else unknown[1]
                raise ConfigError(f"{key}: unknown key") from exc
            raise ConfigError(f"{path or source}: {msg}") from exc
        unknown = re.match(r"Object contains unknown field `(.*)`", str(exc))
        if unknown:
            raise ConfigError(f"{unknown[1]}: unknown key (top level)") from exc
        raise ConfigError(f"{source}: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}") from exc
    except RecursionError as exc:  # tables or arrays nested hundreds deep
        raise ConfigError(f"{source}: tables or arrays are nested too deeply",
                          hint="a config nests a few levels at most; see docs/config.md"
                          ) from exc
    config.base_dir = base_dir.resolve()
    check_config(config)
    return config


#: Largest config file read (bytes); a real one is a few KB.
MAX_CONFIG_BYTES = 1 << 20


def load_config(path: str | Path) -> Config:
    """Read, validate and cross-check a config file.

    Only a regular file of at most :data:`MAX_CONFIG_BYTES` is read: a FIFO would
    block for ever and ``/dev/zero`` would never end.
    """
    path = Path(path)
    return decode_config(read_config_bytes(path), base_dir=path.parent, source=str(path))


def read_config_bytes(path: Path) -> bytes:
    """The bytes of a config file, or a ConfigError saying why they cannot be read."""
    hint = "give the path of a TOML config file"
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}", hint=hint) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"config {path} is not a regular file", hint=hint)
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config {path} is {st.st_size} bytes, over the "
                              f"{MAX_CONFIG_BYTES} a config may be", hint=hint)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}", hint=hint) from exc
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:  # grew while being read
        raise ConfigError(f"config {path} is over the {MAX_CONFIG_BYTES} bytes a config "
                          "may be", hint=hint)
    return data


def _known_models() -> list[str]:
    from edge_runtime.models.registry import list_models

    return [m.name for m in list_models()]


def resolve_detector(spec: str) -> Callable[..., object]:
    """The detector class named by ``anomaly`` or ``module:Class``; ImportError if absent."""
    target = "edge_runtime.anomaly:AnomalyDetector" if spec == "anomaly" else spec
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    try:
        cls: Callable[..., object] = getattr(module, attr or "AnomalyDetector")
    except AttributeError as exc:
        raise ImportError(f"{module_name} has no {attr!r}") from exc
    return cls


_DETECTOR_HINT = ("subclass edge_runtime.anomaly.protocols.DetectorBase (defaults for all "
                  "but update) and write update(t_s, value) -> score; see docs/config.md")


def make_detector(spec: str, params: dict[str, Any], where: str) -> Detector:
    """Build a pipeline's detector (``anomaly`` or ``module:Class``, constructed with
    ``params``) and check it against the
    :class:`~edge_runtime.anomaly.protocols.Detector` protocol.

    ConfigError naming ``where`` (the pipeline's key path) when it cannot be imported
    or built, or when it lacks a member of the protocol (the message names them).
    """
    from edge_runtime.anomaly.protocols import Detector, missing_members

    try:
        cls = resolve_detector(spec)
    except ImportError as exc:
        raise ConfigError(f"{where}.detector: cannot load {spec!r}: {exc}") from exc
    try:
        if spec == "anomaly":
            from edge_runtime.anomaly import DetectorConfig

            detector = cls(DetectorConfig(**params))
        else:
            detector = cls(**params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}.detector_params: {exc}") from exc
    if not isinstance(detector, Detector) or not callable(detector.update):
        missing = missing_members(detector, Detector) or ["update"]
        raise ConfigError(
            f"{where}.detector: {spec!r} is not a Detector: it has no "
            f"{', '.join(missing)}",
            hint=_DETECTOR_HINT)
    return detector


def check_detectors(config: Config) -> None:
    """Build every pipeline's detector once and check it (:func:`make_detector`);
    ``edge-runtime check`` runs this after :func:`load_config`."""
    for i, pipe in enumerate(config.pipelines):
        if pipe.detector is not None:
            make_detector(pipe.detector, pipe.detector_params, f"pipelines[{i}]")


def check_config(config: Config) -> None:
    """Cross-field checks msgspec cannot do; raises ConfigError with the key path."""
    def unique(items: list[Any], section: str) -> None:
        seen: set[str] = set()
        for i, item in enumerate(items):
            if not item.id:
                raise ConfigError(f"{section}[{i}].id: must not be empty")
            if item.id in seen:
                raise ConfigError(f"{section}[{i}].id: duplicate id {item.id!r}")
            seen.add(item.id)

    unique(config.sources, "sources")
    unique(config.pipelines, "pipelines")
    unique(config.actions, "actions")
    if config.node.shutdown_timeout_s <= 0:
        raise ConfigError("node.shutdown_timeout_s: must be > 0")

    for i, src in enumerate(config.sources):
        where = f"sources[{i}]"
        if not 0 < src.min_rate_hz <= src.max_rate_hz:
            raise ConfigError(f"{where}: need 0 < min_rate_hz <= max_rate_hz "
                              f"(got {src.min_rate_hz}, {src.max_rate_hz})")
        if isinstance(src, CameraSourceConfig):
            given = [k for k in ("device", "path", "url") if getattr(src, k) is not None]
            if len(given) != 1:
                raise ConfigError(f"{where}: give exactly one of device, path or url "
                                  f"(got {', '.join(given) or 'none'})")
            if src.path is not None and not config.resolve(src.path).is_file():
                raise ConfigError(f"{where}.path: no video file at {config.resolve(src.path)}")
        elif isinstance(src, ReplaySourceConfig):
            if not src.path:
                raise ConfigError(f"{where}.path: a replay needs the recording's path")
            if not config.resolve(src.path).is_file():
                raise ConfigError(f"{where}.path: no recording at {config.resolve(src.path)}")
            if src.speed <= 0:
                raise ConfigError(f"{where}.speed: must be > 0")
        elif isinstance(src, BridgeSourceConfig):
            if (src.port is None) == (src.usb_id is None):
                raise ConfigError(f"{where}: give exactly one of port or usb_id")
        elif isinstance(src, GpioSourceConfig):
            if src.device == "distance_sensor":
                if src.echo is None or src.trigger is None:
                    raise ConfigError(f"{where}: distance_sensor needs echo and trigger pins")
            elif src.device != "adc" and src.pin is None:
                raise ConfigError(f"{where}.pin: {src.device} needs a pin")
        elif isinstance(src, SystemSourceConfig):
            from edge_runtime.sources.system import CHANNELS

            if src.channel not in CHANNELS:
                raise ConfigError(f"{where}.channel: unknown system channel {src.channel!r}",
                                  hint=f"use one of {', '.join(CHANNELS)}")

    source_ids = {s.id: s for s in config.sources}
    action_ids = {a.id for a in config.actions}
    readers: dict[str, list[str]] = {}
    for pipe in config.pipelines:
        readers.setdefault(pipe.source, []).append(pipe.id)
    known_models: list[str] | None = None
    for i, pipe in enumerate(config.pipelines):
        where = f"pipelines[{i}]"
        found = source_ids.get(pipe.source)
        if found is None:
            raise ConfigError(f"{where}.source: unknown source {pipe.source!r} "
                              f"(known: {', '.join(source_ids) or 'none'})")
        # Several pipelines may read one source: the daemon opens it once and reads it
        # at the highest rate they want (see docs/config.md, "Sharing a source").
        src = found
        sharing = readers[pipe.source]
        if getattr(src, "lossless", False) and len(sharing) > 1:
            raise ConfigError(
                f"{where}.source: lossless source {pipe.source!r} is read by pipelines "
                f"{', '.join(repr(p) for p in sharing)}; a shared source is read at the "
                "fastest pipeline's pace, so the slower ones would drop samples",
                hint="give each pipeline its own lossless source (the same file twice), "
                     "or set lossless = false")
        is_frame = isinstance(src, FRAME_SOURCES)
        if pipe.model is not None:
            looks_like_path = "/" in pipe.model or pipe.model.endswith((".onnx", ".tflite"))
            if looks_like_path:
                if not config.resolve(pipe.model).is_file():
                    raise ConfigError(f"{where}.model: no model file at "
                                      f"{config.resolve(pipe.model)}")
            else:
                if known_models is None:
                    known_models = _known_models()
                if pipe.model not in known_models:
                    raise ConfigError(f"{where}.model: unknown model {pipe.model!r} "
                                      f"(known: {', '.join(known_models)})")
        if pipe.detector is not None:
            if is_frame:
                raise ConfigError(f"{where}.detector: detectors take scalar sources, "
                                  f"{pipe.source!r} is a camera")
            if pipe.model is not None:
                raise ConfigError(f"{where}: give model or detector, not both")
            try:
                cls = resolve_detector(pipe.detector)
            except ImportError as exc:
                raise ConfigError(f"{where}.detector: cannot load {pipe.detector!r}: {exc}"
                                  ) from exc
            if pipe.detector == "anomaly":
                from edge_runtime.anomaly import DetectorConfig

                try:
                    DetectorConfig(**pipe.detector_params)
                except (TypeError, ValueError) as exc:
                    raise ConfigError(f"{where}.detector_params: {exc}") from exc
            elif not callable(getattr(cls, "update", None)):
                # The class alone shows this; `edge-runtime check` builds it for the rest.
                raise ConfigError(f"{where}.detector: {pipe.detector!r} is not a Detector: "
                                  "it has no update", hint=_DETECTOR_HINT)
        if pipe.cleaning is not None:
            if is_frame:
                raise ConfigError(f"{where}.cleaning: cleaning is for scalar sources, "
                                  f"{pipe.source!r} is a camera")
            _check_cleaning(pipe.cleaning, f"{where}.cleaning")
        if pipe.forecast is not None:
            if is_frame:
                raise ConfigError(f"{where}.forecast: forecasts are for scalar sources, "
                                  f"{pipe.source!r} is a camera")
            make_forecaster(pipe.forecast, f"{where}.forecast")
        if pipe.num_threads < 1:
            raise ConfigError(f"{where}.num_threads: must be >= 1")
        policy = pipe.sampling.policy
        if policy == "motion" and not is_frame:
            raise ConfigError(f"{where}.sampling.policy: motion needs a camera source")
        if policy in ("change", "novelty", "detector") and is_frame:
            raise ConfigError(f"{where}.sampling.policy: {policy} needs a scalar source")
        _check_rules(pipe.rules, f"{where}.rules", action_ids)
    _check_rules(config.health.rules, "health.rules", action_ids)
    if config.health.interval_s <= 0:
        raise ConfigError("health.interval_s: must be > 0")
    _check_upstream(config)


def _check_cleaning(params: dict[str, Any], where: str) -> None:
    from edge_runtime.anomaly.cleaning import Cleaner

    try:
        Cleaner(**params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def make_forecaster(cfg: ForecastConfig, where: str) -> TrendForecaster:
    """The :class:`~edge_runtime.anomaly.forecast.TrendForecaster` for ``cfg``;
    ConfigError (naming ``where``) for values it refuses."""
    from edge_runtime.anomaly.forecast import TrendForecaster

    if not math.isfinite(cfg.limit):
        raise ConfigError(f"{where}.limit: must be a finite number")
    for key in ("horizon_s", "half_life_s", "z"):
        if not getattr(cfg, key) > 0:
            raise ConfigError(f"{where}.{key}: must be > 0")
    if cfg.min_points < 3:
        raise ConfigError(f"{where}.min_points: must be >= 3")
    if not cfg.hold_s >= 0:
        raise ConfigError(f"{where}.hold_s: must be >= 0")
    limit = {"upper_limit" if cfg.direction == "above" else "lower_limit": cfg.limit}
    try:
        return TrendForecaster(**limit, half_life_s=cfg.half_life_s,
                               warn_within_s=cfg.horizon_s, min_points=cfg.min_points, z=cfg.z,
                               hold_s=cfg.hold_s)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _check_rules(rules: list[RuleConfig], where: str, action_ids: set[str]) -> None:
    seen: set[str] = set()
    for j, rule in enumerate(rules):
        if rule.id in seen:
            raise ConfigError(f"{where}[{j}].id: duplicate rule id {rule.id!r}")
        seen.add(rule.id)
        given = [k for k in ("above", "below", "equals") if getattr(rule, k) is not None]
        if len(given) != 1:
            raise ConfigError(f"{where}[{j}]: give exactly one of above, below or equals")
        if rule.clear_at is not None and given[0] == "equals":
            raise ConfigError(f"{where}[{j}].clear_at: needs above or below")
        for k, action in enumerate(rule.actions):
            if action not in action_ids:
                raise ConfigError(f"{where}[{j}].actions[{k}]: unknown action {action!r} "
                                  f"(known: {', '.join(sorted(action_ids)) or 'none'})")


def _check_upstream(config: Config) -> None:
    """Checks of ``[upstream]``: broker URL, topic prefixes, files, positive numbers."""
    from edge_runtime.upstream.topics import level_problem, parse_broker_url, topic_problem

    up = config.upstream
    for key in ("summary_interval_s",):
        if not getattr(up, key) > 0:
            raise ConfigError(f"upstream.{key}: must be > 0")
    for where, section, keys in (
            ("upstream.outbox", up.outbox, ("max_bytes", "commit_interval_s",
                                            "loss_report_interval_s")),
            ("upstream.snapshots", up.snapshots, ("max_bytes",)),
            ("upstream.file", up.file, ("max_bytes",))):
        for key in keys:
            if not getattr(section, key) > 0:
                raise ConfigError(f"{where}.{key}: must be > 0")
    if not 1 <= up.snapshots.jpeg_quality <= 100:
        raise ConfigError("upstream.snapshots.jpeg_quality: must be 1..100")
    if up.file.keep < 0:
        raise ConfigError("upstream.file.keep: must be >= 0")
    mqtt = up.mqtt
    if mqtt is not None:
        where = "upstream.mqtt"
        try:
            tls, _, _ = parse_broker_url(mqtt.url)
        except ValueError as exc:
            raise ConfigError(f"{where}.url: {exc}",
                              hint="write it as mqtt://host:1883 or mqtts://host:8883") from exc
        for key, what in (("topic_prefix", "topic prefix"),):
            problem = topic_problem(getattr(mqtt, key), what=what)
            if problem:
                raise ConfigError(f"{where}.{key}: {problem}")
        problem = level_problem(config.node.name, what="node name")
        if problem:
            raise ConfigError(f"node.name: {problem} (it is a level of every MQTT topic)")
        problem = topic_problem(mqtt.home_assistant.prefix, what="discovery prefix")
        if problem:
            raise ConfigError(f"{where}.home_assistant.prefix: {problem}")
        if mqtt.password is not None and mqtt.password_file is not None:
            raise ConfigError(f"{where}: give password or password_file, not both")
        for key in ("password_file", "ca_file", "cert_file", "key_file"):
            value = getattr(mqtt, key)
            if value is not None and not config.resolve(value).is_file():
                raise ConfigError(f"{where}.{key}: no file at {config.resolve(value)}")
        if not tls and (mqtt.ca_file or mqtt.cert_file):
            raise ConfigError(f"{where}.url: ca_file/cert_file need TLS: use mqtts://")
        if mqtt.key_file and not mqtt.cert_file:
            raise ConfigError(f"{where}.key_file: needs cert_file (mutual TLS)")
        if (mqtt.username is None) and (mqtt.password or mqtt.password_file):
            raise ConfigError(f"{where}.username: a password needs a username")
        for key in ("keepalive_s", "connect_timeout_s", "reconnect_min_s", "max_in_flight"):
            if not getattr(mqtt, key) > 0:
                raise ConfigError(f"{where}.{key}: must be > 0")
        if mqtt.reconnect_max_s < mqtt.reconnect_min_s:
            raise ConfigError(f"{where}.reconnect_max_s: must be >= reconnect_min_s")
    http = up.http
    if http is not None:
        where = "upstream.http"
        from urllib.parse import urlsplit

        parts = urlsplit(http.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{where}.url: {http.url!r} is not an http:// or https:// URL")
        for key in ("timeout_s", "max_batch", "retry_min_s"):
            if not getattr(http, key) > 0:
                raise ConfigError(f"{where}.{key}: must be > 0")
        if http.retry_max_s < http.retry_min_s:
            raise ConfigError(f"{where}.retry_max_s: must be >= retry_min_s")
        if http.ca_file is not None and not config.resolve(http.ca_file).is_file():
            raise ConfigError(f"{where}.ca_file: no file at {config.resolve(http.ca_file)}")
