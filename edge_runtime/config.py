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

import functools
import importlib
import logging
import math
import os
import re
import socket
import stat
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from edge_runtime.errors import ConfigError

if TYPE_CHECKING:
    from edge_runtime.anomaly.forecast import TrendForecaster
    from edge_runtime.anomaly.protocols import Detector

# --- numeric bounds -----------------------------------------------------------------------
# Every number in the file has a range, which msgspec checks while decoding, so the error
# names the key path. TOML has ``nan`` and ``inf`` literals: a lower bound refuses NaN (any
# comparison with it is false) and an upper bound refuses inf. Each bound's description
# says why; the error quotes it. Cross-field rules (min <= max) are in check_config.

#: The longest hold, debounce, pulse or retry pause: a week. Longer is a misplaced unit
#: (hours written as seconds), and every such wait must stay finite.
WEEK_S = 7 * 86400.0
#: The longest forecast horizon and fit half-life: a year (predictive maintenance).
YEAR_S = 366 * 86400.0
#: Largest magnitude of a value on a channel's own scale: far past any sensor's range.
VALUE_LIMIT = 1e15

Finite = Annotated[float, msgspec.Meta(
    ge=-VALUE_LIMIT, le=VALUE_LIMIT,
    description="a value on the channel's scale: any finite number (nan and inf mean "
                "nothing to compare with)")]
Positive = Annotated[float, msgspec.Meta(
    gt=0, le=VALUE_LIMIT, description="a positive finite factor (it divides or scales)")]
Fraction = Annotated[float, msgspec.Meta(ge=0, le=1, description="a share, 0 to 1")]
TimeoutSeconds = Annotated[float, msgspec.Meta(
    gt=0, le=600.0,
    description="a bounded wait: more than 10 minutes is no bound (systemd gives a unit "
                "90 s to stop)")]
PositiveSeconds = Annotated[float, msgspec.Meta(
    gt=0, le=WEEK_S, description="a duration, at most a week: longer is a misplaced unit, "
                                 "and the timer behind it must stay finite")]
DelaySeconds = Annotated[float, msgspec.Meta(
    ge=0, le=WEEK_S, description="a hold, debounce or cooldown: 0 (none) up to a week; "
                                 "longer is a misplaced unit")]
HorizonSeconds = Annotated[float, msgspec.Meta(
    gt=0, le=YEAR_S, description="a forecast span, at most a year")]
IntervalSeconds = Annotated[float, msgspec.Meta(
    ge=0.05, le=86400.0,
    description="a periodic task's interval: each run reads /proc and /sys, so at least "
                "50 ms apart (faster is a busy loop on a Pi), at most a day")]
RateHz = Annotated[float, msgspec.Meta(
    ge=1 / 86400, le=1000.0,
    description="samples per second: at least one a day, at most 1 kHz (the daemon "
                "handles one sample at a time; a bridge device's envelope keeps what "
                "falls between reads)")]
Count = Annotated[int, msgspec.Meta(
    ge=0, le=1_000_000, description="a number of samples, at most a million (memory)")]
ByteSize = Annotated[int, msgspec.Meta(
    gt=0, le=1 << 40, description="a disk cap: more than 0, at most 1 TiB (more than any "
                                  "disk on the device)")]
OutboxBytes = Annotated[int, msgspec.Meta(
    ge=1 << 20, le=1 << 40, description="the outbox's disk cap: 1 MiB to 1 TiB (below 1 MiB "
                                       "the cap's own loss reports fill it, and the writer "
                                       "compacts on every commit)")]
KeepFiles = Annotated[int, msgspec.Meta(
    ge=0, le=100, description="rotated files kept: each rotation renames them one by one, "
                              "so thousands would stall the writer")]
Threads = Annotated[int, msgspec.Meta(
    ge=1, le=256, description="engine threads: 1 to 256 (more than any core count; the "
                              "engine is capped at the cores anyway)")]
PinNumber = Annotated[int, msgspec.Meta(
    ge=0, le=27, description="a BCM GPIO number on the 40-pin header (0..27; gpiozero "
                             "refuses others there); name a Compute Module's higher lines, "
                             "or a header pin, as a string: 'GPIO40', 'BOARD11'")]
Pixels = Annotated[int, msgspec.Meta(
    gt=0, le=16384, description="a frame side in pixels, at most 16384")]
Celsius = Annotated[float, msgspec.Meta(
    ge=-55.0, le=150.0, description="a chip temperature: chips are rated about -40..125 C")]
Percent = Annotated[float, msgspec.Meta(gt=0, le=100.0, description="a percentage, 0 to 100")]

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
    shutdown_timeout_s: TimeoutSeconds = 1.5


class RateLimits(msgspec.Struct, forbid_unknown_fields=True):
    """Base of sources: every source has a min and max sampling rate (Hz)."""

    id: str
    min_rate_hz: RateHz = 1.0
    max_rate_hz: RateHz = 10.0


class CameraSourceConfig(RateLimits, tag="camera"):
    """OpenCV camera: exactly one of ``device`` (V4L2 index), ``path``, ``url``."""

    device: Annotated[int, msgspec.Meta(
        ge=0, le=63, description="a V4L2 index (/dev/videoN)")] | None = None
    path: str | None = None
    url: str | None = None
    width: Pixels | None = None
    height: Pixels | None = None
    fps_hz: RateHz | None = None
    loop: bool = False
    realtime: bool = True
    lossless: bool = False
    reconnect_min_s: PositiveSeconds = 0.5
    reconnect_max_s: PositiveSeconds = 10.0
    #: Frames with more pixels are dropped and counted as errors (memory bound).
    max_frame_pixels: Annotated[int, msgspec.Meta(
        gt=0, le=8192 * 8192,
        description="a memory bound: an 8192 x 8192 BGR frame is already 192 MiB")
    ] = 4096 * 4096


class Picamera2SourceConfig(RateLimits, tag="picamera2"):
    """Raspberry Pi camera through picamera2."""

    width: Pixels = 640
    height: Pixels = 480


class GpioSourceConfig(RateLimits, tag="gpio"):
    """A gpiozero input device polled at the sampling rate."""

    device: Literal["digital_input", "motion_sensor", "button", "distance_sensor", "adc"] = (
        "digital_input"
    )
    pin: PinNumber | str | None = None
    echo: PinNumber | str | None = None
    trigger: PinNumber | str | None = None
    chip: str = "MCP3008"
    channel: Annotated[int, msgspec.Meta(
        ge=0, le=7, description="an ADC input: MCP3xxx chips have at most 8")] = 0
    pull_up: bool | None = False
    max_distance_m: Annotated[float, msgspec.Meta(
        gt=0, le=100.0, description="an ultrasonic sensor's range in metres")] = 2.0
    scale: Finite = 1.0
    offset: Finite = 0.0


class ReplaySourceConfig(RateLimits, tag="replay"):
    """A CSV/NPY recording replayed as a live sensor (``speed`` x real time)."""

    path: str = ""
    speed: Annotated[float, msgspec.Meta(
        gt=0, le=1e9, description="times real time: above 0 and finite (1e9 replays 30 "
                                  "years of recording in a second)")] = 1.0
    loop: bool = False
    lossless: bool = False
    rate_hz: RateHz | None = None


class BridgeSourceConfig(RateLimits, tag="bridge"):
    """One channel of a microcontroller running the edge bridge firmware (serial link).

    The rate controller tells the device to sample at the chosen rate (SET_RATE).
    Exactly one of ``port`` (tty path) and ``usb_id`` (``VID:PID[:SERIAL]``).
    ``envelope`` turns on the device's peak-hold envelope (min/max of what it measured
    between two samples; devices without the mode send plain samples).
    """

    channel: Annotated[int, msgspec.Meta(
        ge=0, le=255, description="a channel number is one byte on the wire")] | str = 0
    port: str | None = None
    usb_id: str | None = None
    value_index: Annotated[int, msgspec.Meta(
        ge=0, le=254, description="a channel's width is one byte on the wire")] = 0
    baudrate: Annotated[int, msgspec.Meta(
        ge=300, le=4_000_000, description="a serial line rate: 300 baud to 4 Mbaud")
    ] = 115200
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


class AudioSourceConfig(RateLimits, tag="audio"):
    """Sound: windows of ``window_s`` every ``hop_s`` (default ``window_s``) at ``rate_hz``
    (the model's sample rate), from exactly one of ``path`` (a WAV file, resampled when
    its rate differs), ``device`` (an ALSA capture device such as ``default`` or
    ``plughw:1,0``, read by ``arecord`` from alsa-utils) or ``command`` (a program writing
    raw S16_LE mono at ``rate_hz`` to stdout). ``realtime``, ``lossless`` and ``loop``
    are for files. ``max_rate_hz`` must be at least ``1 / hop_s`` to see every window.
    See :mod:`edge_runtime.sources.audio`.
    """

    path: str | None = None
    device: str | None = None
    command: list[str] | None = None
    rate_hz: int = 16000
    window_s: float = 1.0
    hop_s: float | None = None
    realtime: bool = True
    lossless: bool = False
    loop: bool = False
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 10.0


SourceConfig = (CameraSourceConfig | Picamera2SourceConfig | GpioSourceConfig
                | ReplaySourceConfig | BridgeSourceConfig | SystemSourceConfig
                | AudioSourceConfig)
FRAME_SOURCES = (CameraSourceConfig, Picamera2SourceConfig)


class SamplingConfig(msgspec.Struct, forbid_unknown_fields=True):
    """How activity drives the source's rate (see ``edge_runtime.sampling``)."""

    policy: Literal["fixed", "motion", "change", "novelty", "score", "detector"] | None = None
    hold_s: DelaySeconds | None = None
    decay_half_life_s: PositiveSeconds | None = None
    # motion gate
    pixel_threshold: Annotated[int, msgspec.Meta(
        ge=0, le=255, description="a difference of 8-bit pixel values")] | None = None
    area_fraction: Fraction | None = None
    heartbeat_s: DelaySeconds | None = None  # 0: no heartbeat
    # change / novelty
    factor: Positive | None = None
    z: Positive | None = None
    # score (and detector: the gate's score threshold)
    field: str = "score"
    #: Activity is score / threshold. Default 0.5 for score, 0.05 for detector.
    threshold: Positive | None = None
    # detector gate (scalar sources): inference only around activity, plus a heartbeat
    hold_samples: Count = 6
    heartbeat_samples: Count = 48  # 0: no heartbeat
    detector_params: dict[str, Any] = msgspec.field(default_factory=dict)


class RuleConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Threshold (+ hysteresis, debounce, cooldown) on one result field."""

    id: str
    field: str
    above: Finite | None = None
    below: Finite | None = None
    equals: Finite | str | bool | None = None
    clear_at: Finite | None = None
    debounce_s: DelaySeconds = 0.0
    clear_debounce_s: DelaySeconds = 0.0
    cooldown_s: DelaySeconds = 0.0
    actions: list[str] = msgspec.field(default_factory=list)
    #: Camera pipelines: attach a JPEG of the frame that fired the rule (boxes drawn) to
    #: its activation event (``upstream.snapshots``; docs/reporting.md).
    snapshot: bool = False


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
    limit: Finite
    #: Which side of ``limit`` is the failure: ``above`` (the value rises to it) or
    #: ``below`` (the value falls to it).
    direction: Literal["above", "below"] = "above"
    #: Early warning when the forecast crossing, band included, is within this (s).
    horizon_s: HorizonSeconds = 24 * 3600.0
    #: Half of the trend fit's weight lies within this many recent seconds.
    half_life_s: HorizonSeconds = 6 * 3600.0
    #: Samples seen before the first forecast (>= 3: a line and its error need three).
    min_points: Annotated[int, msgspec.Meta(
        ge=3, le=1_000_000, description="a trend and its error need three points")] = 12
    #: Width of the band in standard errors of the slope (2 = about 95 %).
    z: Annotated[float, msgspec.Meta(
        gt=0, le=100.0, description="a band width in standard errors")] = 2.0
    #: The warning condition must hold this long without a break before
    #: ``early_warning`` turns on (s, on the source's clock; 0 = at once). Delays every
    #: warning by as much; see docs/forecast-experiments.md for the choice of 2 h.
    hold_s: Annotated[float, msgspec.Meta(
        ge=0, le=YEAR_S, description="a hold on the source's clock, at most a year")
    ] = 2 * 3600.0


class CascadeConfig(msgspec.Struct, forbid_unknown_fields=True):
    """``[pipelines.cascade]``: a small local classifier first; only frames whose top
    class scores below ``threshold`` go to the pipeline's model (docs/mesh.md)."""

    model: str
    threshold: Fraction = 0.9


class PipelineConfig(msgspec.Struct, forbid_unknown_fields=True):
    """One path from a source to decisions. ``model`` and ``detector`` are both optional:
    without either, rules see the raw ``value`` (sensors) or ``motion`` (cameras).
    Several pipelines may name the same ``source``; it is then read once for all."""

    id: str
    source: str
    model: str | None = None
    num_threads: Threads = 1
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
    #: Let the mesh's scheduler run ``model`` on peers that serve it when they would
    #: answer sooner than this node (docs/mesh.md); the model stays loaded here too.
    offload: bool = False
    #: Frames in the model at once (a camera pipeline whose model keeps no state): with
    #: ``offload``, about one per node that can take work. Results are still decided in
    #: frame order.
    inflight: Annotated[int, msgspec.Meta(
        ge=1, le=16, description="frames in the model at once: 1 to 16")] = 1
    #: A small local model that answers the frames it is sure of (camera pipelines).
    cascade: CascadeConfig | None = None


class GpioActionConfig(msgspec.Struct, forbid_unknown_fields=True, tag="gpio"):
    """LED, buzzer or relay output."""

    id: str
    device: Literal["led", "buzzer", "relay"] = "led"
    pin: PinNumber | str = 0
    mode: Literal["follow", "pulse"] = "follow"
    pulse_s: PositiveSeconds = 1.0
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
    """Deprecated: the old local event log. Events now go through the upstream outbox to
    the JSONL file sink (``[upstream.file]``); a section that differs from these
    defaults is accepted, ignored and warned about by ``run``."""

    path: str = "events.jsonl"  # relative to node.state_dir
    max_bytes: ByteSize = 10_000_000
    keep: KeepFiles = 3


class BudgetConfig(msgspec.Struct, forbid_unknown_fields=True):
    """CPU and thermal cap on every source's maximum rate."""

    enabled: bool = True
    temp_soft_c: Celsius = 70.0
    temp_hard_c: Celsius = 80.0
    cpu_high_percent: Percent = 85.0
    #: 0 reads as often as the daemon allows (every 0.1 s).
    interval_s: Annotated[float, msgspec.Meta(
        ge=0, le=3600.0, description="seconds between budget readings, at most an hour")
    ] = 2.0
    thermal_root: str = "/sys/class/thermal"


class HealthConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Periodic health snapshot; its ``rules`` see keys like ``temperature_c``."""

    interval_s: IntervalSeconds = 10.0
    disk_path: str = "/"
    check_throttling: bool = True
    rules: list[RuleConfig] = msgspec.field(default_factory=list)


# --- upstream reporting ([upstream]; docs/reporting.md) ----------------------------------


class OutboxConfig(msgspec.Struct, forbid_unknown_fields=True):
    """The durable SQLite outbox every message is written to before it is sent."""

    path: str = "outbox.db"  # relative to node.state_dir
    #: Disk cap of the stored messages (bytes); old summaries are merged first, events last.
    max_bytes: OutboxBytes = 50_000_000
    #: At most one commit (one fsync) per this many seconds, however many messages flow.
    commit_interval_s: PositiveSeconds = 0.1
    #: At most one ``outbox_loss`` event per this many seconds while the cap forces loss.
    loss_report_interval_s: PositiveSeconds = 60.0


class SnapshotsConfig(msgspec.Struct, forbid_unknown_fields=True):
    """JPEGs of frames that fired a rule, referenced by their events."""

    path: str = "snapshots"  # relative to node.state_dir
    max_bytes: ByteSize = 20_000_000
    jpeg_quality: Annotated[int, msgspec.Meta(ge=1, le=100, description="JPEG quality")] = 80


class FileSinkConfig(msgspec.Struct, forbid_unknown_fields=True):
    """The JSONL file sink (on by default: needs no server)."""

    enabled: bool = True
    path: str = "upstream.jsonl"  # relative to node.state_dir
    max_bytes: ByteSize = 10_000_000
    keep: KeepFiles = 3
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
    keepalive_s: Annotated[int, msgspec.Meta(
        gt=0, le=65535, description="MQTT's keep alive is 16 bits of seconds")] = 30
    connect_timeout_s: TimeoutSeconds = 5.0
    reconnect_min_s: PositiveSeconds = 1.0
    reconnect_max_s: PositiveSeconds = 60.0
    max_in_flight: Annotated[int, msgspec.Meta(
        gt=0, le=65535, description="MQTT's receive maximum is 16 bits")] = 100
    home_assistant: HomeAssistantConfig = msgspec.field(default_factory=HomeAssistantConfig)


class HttpSinkConfig(msgspec.Struct, forbid_unknown_fields=True):
    """An HTTP(S) webhook: POSTs batches of messages as JSON; done on 2xx only."""

    url: str
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    timeout_s: TimeoutSeconds = 10.0
    max_batch: Annotated[int, msgspec.Meta(
        gt=0, le=10_000, description="messages per POST (memory)")] = 100
    ca_file: str | None = None
    retry_min_s: PositiveSeconds = 1.0
    retry_max_s: PositiveSeconds = 60.0


class UpstreamConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Reporting upstream: summaries, events and snapshots through the outbox to sinks."""

    enabled: bool = True
    #: Length of a pipeline's summary window (s).
    summary_interval_s: PositiveSeconds = 60.0
    outbox: OutboxConfig = msgspec.field(default_factory=OutboxConfig)
    snapshots: SnapshotsConfig = msgspec.field(default_factory=SnapshotsConfig)
    file: FileSinkConfig = msgspec.field(default_factory=FileSinkConfig)
    mqtt: MqttSinkConfig | None = None
    http: HttpSinkConfig | None = None


# --- the local web page and Prometheus metrics ([web]; docs/web.md) ---------------------


class WebConfig(msgspec.Struct, forbid_unknown_fields=True):
    """The node's own web page, JSON status and ``/metrics`` (off unless enabled).

    Loopback needs nothing more; any other address needs ``tls_cert`` + ``tls_key``
    (HTTPS) and a token (``edge-runtime web token``) on every request.
    """

    enabled: bool = False
    #: ``host:port`` (``[::1]:8080`` for IPv6); a non-loopback host needs TLS and a token.
    listen: Annotated[str, msgspec.Meta(
        pattern=r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):[0-9]{1,5}$",
        description="host:port")] = "127.0.0.1:8080"
    #: The bearer token's file (created 0600 on first use), relative to node.state_dir.
    token_file: str = "web.token"
    #: PEM certificate chain and private key: HTTPS (required off loopback).
    tls_cert: str | None = None
    tls_key: str | None = None
    #: Allow POST actions (reload the config) from the page; read-only when false.
    actions: bool = False
    #: One point of each pipeline's live chart per this many seconds (the server keeps
    #: the last hour).
    chart_interval_s: PositiveSeconds = 5.0


# --- the peer mesh ([mesh]; docs/mesh.md) -------------------------------------------------

BodyBytes = Annotated[int, msgspec.Meta(
    ge=1024, le=1 << 30, description="a request body cap: 1 KiB to 1 GiB (the server holds "
                                     "each body in memory)")]
PeerConcurrency = Annotated[int, msgspec.Meta(
    ge=1, le=64, description="inferences one peer may run at once: 1 to 64 (more only "
                             "queues in the engine)")]
QueueLength = Annotated[int, msgspec.Meta(
    ge=0, le=1024, description="requests one peer may have waiting: 0 to 1024 (each holds "
                               "its body in memory)")]


HeartbeatSeconds = Annotated[float, msgspec.Meta(
    ge=0.1, le=60.0, description="a heartbeat period: 0.1 s (faster floods the peers) to "
                                 "60 s (slower and a crash goes unnoticed for minutes)")]
Misses = Annotated[int, msgspec.Meta(
    ge=1, le=100, description="heartbeats missed in a row before a peer is down: 1 to 100")]


class DiscoveryConfig(msgspec.Struct, forbid_unknown_fields=True):
    """``[mesh.discovery]``: finding peers by mDNS and telling live ones from dead ones."""

    enabled: bool = False
    #: Interfaces to advertise and browse on; empty: those carrying the default route.
    interfaces: list[str] = msgspec.field(default_factory=list)
    ip_version: Literal["v4", "v6", "all"] = "v4"
    #: The heartbeat (the peer's OIP live endpoint) period and its timeout (<= period).
    heartbeat_interval_s: HeartbeatSeconds = 1.0
    heartbeat_timeout_s: HeartbeatSeconds = 0.8
    #: Missed heartbeats in a row before a peer is down (one miss: suspect).
    down_after_misses: Misses = 3
    #: A down peer leaves the table after this long.
    remove_after_s: DelaySeconds = 60.0


class MeshConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Serving models to peers (Open Inference Protocol) and reaching static peers.

    Mutual TLS with the fleet CA (``tls_*``); without it, serving models or calling
    peers is refused unless ``insecure_plaintext`` is set (warned at every start).
    """

    #: ``host:port`` the OIP server listens on (``edge-runtime serve``).
    listen: Annotated[str, msgspec.Meta(
        pattern=r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):[0-9]{1,5}$",
        description="host:port")] = "127.0.0.1:8001"
    #: Peers by URL (``https://garage:8001``; ``http://`` for a plain Triton).
    peers: list[str] = msgspec.field(default_factory=list)
    #: Models served to peers (names or manifest paths); empty: none.
    models: list[str] = msgspec.field(default_factory=list)
    #: This node's certificate and key, the fleet CA and its CRL (PEM; relative to the
    #: config file). ``edge-runtime fleet`` makes them.
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    tls_crl: str | None = None
    #: No TLS at all: anyone who can reach the port runs models. Warned at every start.
    insecure_plaintext: bool = False
    max_body_bytes: BodyBytes = 64 << 20
    max_concurrency_per_peer: PeerConcurrency = 2
    queue_limit: QueueLength = 8
    #: Inference threads of the server.
    workers: Threads = 2
    #: Deadline of a request that names none, and the remote backend's per-call timeout.
    request_timeout_s: TimeoutSeconds = 10.0
    #: Offloading (pipelines with ``offload = true``): one attempt on a peer may take
    #: this long before the request is sent elsewhere (``request_timeout_s`` bounds all).
    attempt_timeout_s: TimeoutSeconds = 2.0
    #: The share of peers' answers run again here and compared; a peer that disagrees
    #: is quarantined until an operator clears it (``edge-runtime peers --clear``).
    verify_fraction: Fraction = 0.05
    #: How answers are compared: ``top1`` (same class), ``allclose`` (within
    #: ``verify_tolerance`` of the largest value), ``auto`` (top1 for classifiers).
    verify_compare: Literal["auto", "top1", "allclose"] = "auto"
    verify_tolerance: Annotated[float, msgspec.Meta(
        gt=0, le=1, description="a relative tolerance, above 0 and at most 1")] = 0.02
    #: A second attempt elsewhere for a request unanswered after the p95 of recent
    #: ones, while such extra requests stay under ``hedge_budget_fraction``.
    hedge: bool = False
    hedge_budget_fraction: Fraction = 0.05
    #: mDNS discovery of peers and their heartbeat (docs/mesh.md).
    discovery: DiscoveryConfig = msgspec.field(default_factory=DiscoveryConfig)


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
    web: WebConfig = msgspec.field(default_factory=WebConfig)
    mesh: MeshConfig = msgspec.field(default_factory=MeshConfig)

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

    def state_path(self, path: str) -> Path:
        """A path from the file that is relative to the state folder (``~`` expanded;
        an absolute one as it is). Blocking: resolves the state folder."""
        p = Path(os.path.expanduser(path))
        return p if p.is_absolute() else self.state_dir / p

    @property
    def event_log_path(self) -> Path:
        """Absolute path of the local JSONL record of events and summaries: the upstream
        file sink (``upstream.file.path``, relative to the state folder)."""
        return self.state_path(self.upstream.file.path)

    def source(self, source_id: str) -> SourceConfig:
        """The source called ``source_id``."""
        return next(s for s in self.sources if s.id == source_id)


# --- loading and checks ------------------------------------------------------------------

_AT_PATH = re.compile(r"^(?P<msg>.*) - at `\$(?P<path>[^`]*)`$", re.S)


def _key_path(path: str) -> str:
    return path.lstrip(".")


_BOUND = re.compile(r"^Expected `(int|float)` (>|>=|<|<=) ")
_PATH_PART = re.compile(r"\.?([^.\[]+)|\[(\d+)\]")


def _bounds_of(path: str, raw: Any) -> tuple[str, str | None] | None:
    """The range of the number field at ``path`` (``sources[0].speed``) as text
    (``> 0 and <= 1000000.0``) and the reason given for it; None when ``path`` does not
    lead to a bounded number. ``raw`` is the file decoded without the schema: its
    ``type`` keys pick the member of a tagged union (a source, an action)."""
    info: Any = msgspec.inspect.type_info(Config)
    for name, index in _PATH_PART.findall(path):
        while True:  # unwrap down to the struct or list the next part steps into
            if isinstance(info, msgspec.inspect.Metadata):
                info = info.type
            elif isinstance(info, msgspec.inspect.UnionType):
                # A tagged union (a source, an action): the member its tag names.
                tag = raw.get("type") if isinstance(raw, dict) else None
                members: list[Any] = [t for t in info.types if isinstance(
                    t, msgspec.inspect.StructType | msgspec.inspect.ListType)]
                tagged = [t for t in members if isinstance(t, msgspec.inspect.StructType)
                          and t.tag is not None and t.tag == tag]
                members = tagged or members
                if not members:
                    return None
                info = members[0]
            else:
                break
        if index:
            if not isinstance(info, msgspec.inspect.ListType):
                return None
            info = info.item_type
            raw = raw[int(index)] if isinstance(raw, list) and int(index) < len(raw) else None
            continue
        if not isinstance(info, msgspec.inspect.StructType):
            return None
        found = next((f for f in info.fields if f.encode_name == name), None)
        if found is None:
            return None
        info = found.type
        raw = raw.get(name) if isinstance(raw, dict) else None
    for option in info.types if isinstance(info, msgspec.inspect.UnionType) else (info,):
        reason = None
        number = option
        if isinstance(option, msgspec.inspect.Metadata):
            reason = (option.extra_json_schema or {}).get("description")
            number = option.type
        if isinstance(number, msgspec.inspect.IntType | msgspec.inspect.FloatType):
            limits = [f"{op} {value}" for op, value in (
                (">", number.gt), (">=", number.ge), ("<", number.lt), ("<=", number.le))
                if value is not None]
            return " and ".join(limits), reason
    return None


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
            bounds = _bounds_of(path, msgspec.toml.decode(data)) if _BOUND.match(msg) else None
            if bounds is not None:
                limits, reason = bounds
                kind = ("an integer" if msg.startswith("Expected `int`")
                        else "a finite number")  # TOML's nan and inf are refused too
                raise ConfigError(f"{path}: must be {limits} ({kind})",
                                  hint=f"{reason}; see docs/config.md" if reason else None
                                  ) from exc
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
_DETECTOR_SPEC = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


def one_line(exc: BaseException, *, with_type: bool = True) -> str:
    """``Type: message`` of an exception on one line (a user's module may raise anything);
    without ``with_type``, only the message (for the TypeError or ValueError of a
    constructor refusing its parameters, whose message says it all)."""
    text = " ".join(str(exc).split())
    if not with_type:
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def load_detector_class(spec: str, where: str) -> Callable[..., object]:
    """The class of ``{where}.detector`` (``anomaly`` or ``module:Class``); ConfigError
    naming the key path when the spec is malformed or the module does not import (for
    any reason: a syntax error, an exception at import) or lacks the class. ``check``,
    every load of the config (a reload too) and the builder all go through here."""
    if spec != "anomaly" and not _DETECTOR_SPEC.match(spec):
        raise ConfigError(f"{where}.detector: {spec!r} is not 'anomaly' or 'module:Class'",
                          hint="name a class as package.module:Class; see docs/config.md")
    try:
        return resolve_detector(spec)
    except Exception as exc:  # importing runs the user's module: anything may come out
        raise ConfigError(f"{where}.detector: cannot load {spec!r}: {one_line(exc)}",
                          hint="check that the module is on the path and imports") from exc


def make_detector(spec: str, params: dict[str, Any], where: str) -> Detector:
    """Build a pipeline's detector (``anomaly`` or ``module:Class``, constructed with
    ``params``) and check it against the
    :class:`~edge_runtime.anomaly.protocols.Detector` protocol.

    ConfigError naming ``where`` (the pipeline's key path) when it cannot be imported
    or built, or when it lacks a member of the protocol (the message names them).
    """
    from edge_runtime.anomaly.protocols import Detector, missing_members

    cls = load_detector_class(spec, where)
    _check_free_numbers(params, f"{where}.detector_params")
    try:
        if spec == "anomaly":
            from edge_runtime.anomaly import DetectorConfig

            detector = cls(DetectorConfig(**params))
        else:
            detector = cls(**params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}.detector_params: {one_line(exc, with_type=False)}"
                          ) from exc
    except Exception as exc:  # the user's constructor: translated at this boundary
        raise ConfigError(f"{where}.detector: {spec!r} failed to build: {one_line(exc)}",
                          hint="fix the detector's constructor, or its detector_params"
                          ) from exc
    try:
        complete = isinstance(detector, Detector) and callable(detector.update)
    except Exception as exc:  # a property of the user's class that raises
        raise ConfigError(f"{where}.detector: {spec!r}: reading its members raised "
                          f"{one_line(exc)}", hint=_DETECTOR_HINT) from exc
    if not complete or not isinstance(detector, Detector):
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
    disc = config.mesh.discovery
    if disc.heartbeat_timeout_s > disc.heartbeat_interval_s:
        raise ConfigError(
            f"mesh.discovery.heartbeat_timeout_s: {disc.heartbeat_timeout_s} s is longer than "
            f"heartbeat_interval_s ({disc.heartbeat_interval_s} s); make it at most the "
            f"interval")
    from edge_runtime.mesh.node import check_mesh

    check_mesh(config)
    source_ids = {s.id: s for s in config.sources}
    readers: dict[str, list[str]] = {}
    for pipe in config.pipelines:
        readers.setdefault(pipe.source, []).append(pipe.id)
    for i, pipe in enumerate(config.pipelines):
        camera = isinstance(source_ids.get(pipe.source), FRAME_SOURCES)
        if pipe.inflight > 1 and (pipe.model is None or not camera
                                  or len(readers[pipe.source]) > 1):
            raise ConfigError(
                f"pipelines[{i}].inflight: {pipe.inflight} frames in the model at once need "
                "a camera pipeline with a model that reads its camera alone",
                hint="remove inflight, or give the pipeline its own camera source")
        if pipe.cascade is not None and (pipe.model is None or not camera):
            raise ConfigError(f"pipelines[{i}].cascade: a cascade needs a camera pipeline "
                              "with a model",
                              hint="set the pipeline's model, or remove the cascade")
        if pipe.offload and pipe.model is None:
            raise ConfigError(f"pipelines[{i}].offload: pipeline {pipe.id!r} has no model "
                              "to offload", hint="set its model, or remove 'offload = true'")
    if any(p.offload for p in config.pipelines) and not (
            config.mesh.peers or config.mesh.discovery.enabled):
        i = next(i for i, p in enumerate(config.pipelines) if p.offload)
        raise ConfigError(f"pipelines[{i}].offload: no peer can be found: [mesh] peers is "
                          "empty and [mesh.discovery] is off",
                          hint="set [mesh.discovery] enabled = true, or list peers in "
                               "[mesh] peers")
    unique(config.actions, "actions")
    _check_pin_factory(config.node.gpio_pin_factory)
    for i, action in enumerate(config.actions):
        if isinstance(action, LogActionConfig) and log_level(action.level) is None:
            raise ConfigError(f"actions[{i}].level: unknown log level {action.level!r}",
                              hint="use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    if config.budget.temp_soft_c > config.budget.temp_hard_c:
        raise ConfigError("budget.temp_hard_c: must be >= temp_soft_c "
                          f"(got {config.budget.temp_hard_c}, {config.budget.temp_soft_c})")

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
            if src.reconnect_max_s < src.reconnect_min_s:
                raise ConfigError(f"{where}.reconnect_max_s: must be >= reconnect_min_s")
        elif isinstance(src, ReplaySourceConfig):
            if not src.path:
                raise ConfigError(f"{where}.path: a replay needs the recording's path")
            if not config.resolve(src.path).is_file():
                raise ConfigError(f"{where}.path: no recording at {config.resolve(src.path)}")
        elif isinstance(src, AudioSourceConfig):
            _check_audio_source(src, where, config)
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

    action_ids = {a.id for a in config.actions}
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
        if isinstance(src, AudioSourceConfig):
            _check_audio_pipeline(pipe, where, pipe.source)
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
            cls = load_detector_class(pipe.detector, where)
            if pipe.detector == "anomaly":
                _check_detector_config(pipe.detector_params, f"{where}.detector_params")
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
        policy = pipe.sampling.policy
        if policy == "motion" and not is_frame:
            raise ConfigError(f"{where}.sampling.policy: motion needs a camera source")
        if policy in ("change", "novelty", "detector") and is_frame:
            raise ConfigError(f"{where}.sampling.policy: {policy} needs a scalar source")
        if policy == "detector":
            # The gate builds its own anomaly detector from these (build.py, make_policy).
            _check_detector_config(pipe.sampling.detector_params,
                                   f"{where}.sampling.detector_params")
        elif pipe.sampling.detector_params:
            raise ConfigError(f"{where}.sampling.detector_params: only the detector policy "
                              f"takes them (policy is {policy or 'the default'})")
        _check_rules(pipe.rules, f"{where}.rules", action_ids)
    _check_rules(config.health.rules, "health.rules", action_ids)
    _check_upstream(config)


def log_level(name: str) -> int | None:
    """The :mod:`logging` level called ``name`` (any case), or None; a log action's
    ``level`` (``LogAction`` calls this too)."""
    level = logging.getLevelName(name.upper())
    return level if isinstance(level, int) else None


@functools.cache
def _pin_factory_names() -> frozenset[str]:
    """gpiozero's installed pin factories (entry points: reading them opens no pin)."""
    from importlib.metadata import entry_points

    return frozenset(ep.name for ep in entry_points(group="gpiozero_pin_factories"))


def _check_pin_factory(name: str | None) -> None:
    """``node.gpio_pin_factory`` must name an installed factory, the way
    :func:`edge_runtime.sources.gpio.pin_factory` looks it up (without starting it)."""
    if name is None or name == "mock" or name.lower() in _pin_factory_names():
        return
    known = ", ".join(sorted({"mock", *_pin_factory_names()}))
    raise ConfigError(f"node.gpio_pin_factory: unknown gpiozero pin factory {name!r}",
                      hint=f"use one of {known}, or leave it out for gpiozero's choice")


#: Limits on the numbers of the free-form tables (``cleaning``, ``detector_params``),
#: whose keys belong to the class they configure: a float must be finite and within
#: VALUE_LIMIT, an integer is a count (memory), at most a million.
MAX_FREE_COUNT = 1_000_000


def _check_free_numbers(params: dict[str, Any], where: str,
                        may_be_infinite: Collection[str] = ()) -> None:
    """Refuse NaN, inf (but where ``may_be_infinite``) and absurd magnitudes among the
    numbers of a free-form table, naming the key."""
    for key, value in params.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, float):
            if math.isnan(value) or (math.isinf(value) and key not in may_be_infinite):
                raise ConfigError(f"{where}.{key}: must be a finite number (got {value})")
            if math.isfinite(value) and abs(value) > VALUE_LIMIT:
                raise ConfigError(f"{where}.{key}: must be within +-{VALUE_LIMIT:g}")
        elif isinstance(value, int) and abs(value) > MAX_FREE_COUNT:
            raise ConfigError(f"{where}.{key}: must be at most {MAX_FREE_COUNT} in size",
                              hint="a count that large would exhaust memory; see "
                                   "docs/config.md")


def _check_detector_config(params: dict[str, Any], where: str) -> None:
    """``params`` must make an anomaly ``DetectorConfig`` (its own checks, plus finite
    numbers and bounded counts)."""
    from edge_runtime.anomaly import DetectorConfig

    _check_free_numbers(params, where)
    try:
        DetectorConfig(**params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {one_line(exc, with_type=False)}") from exc


#: Bounds of the cleaning options beyond the cleaner's own checks, with why.
_CLEANING_BOUNDS: dict[str, tuple[float, float, str]] = {
    # A gap is filled point by point: a small interval and a long outage would allocate
    # millions of points. 1 ms matches the 1 kHz rate cap.
    "interval_s": (1e-3, WEEK_S, "the expected sample interval, 1 ms to a week"),
    "max_fill": (0, 10_000, "points filled into one gap (memory)"),
    # The window is kept sorted: each sample costs O(window).
    "spike_window": (3, 10_000, "samples in the spike window (each sample costs as many)"),
    "gap_factor": (1.0, 1e6, "a gap is this many intervals or more"),
}


def _check_audio_source(src: AudioSourceConfig, where: str, config: Config) -> None:
    """What the schema alone lets through in an ``audio`` source."""
    given = [k for k in ("path", "device", "command") if getattr(src, k) is not None]
    if len(given) != 1:
        raise ConfigError(f"{where}: give exactly one of path, device or command "
                          f"(got {', '.join(given) or 'none'})")
    if src.path is not None and not config.resolve(src.path).is_file():
        raise ConfigError(f"{where}.path: no WAV file at {config.resolve(src.path)}")
    if src.command is not None and not src.command:
        raise ConfigError(f"{where}.command: name the program (a list: [\"parec\", ...])")
    if not 1000 <= src.rate_hz <= 192_000:
        raise ConfigError(f"{where}.rate_hz: a sample rate from 1000 to 192000 Hz "
                          f"(got {src.rate_hz}); 16000 for most speech and sound models")
    hop_s = src.window_s if src.hop_s is None else src.hop_s
    for key, seconds in (("window_s", src.window_s), ("hop_s", hop_s)):
        if not (math.isfinite(seconds) and 1.0 / src.rate_hz <= seconds <= 60.0):
            raise ConfigError(f"{where}.{key}: from one sample to 60 s (got {seconds})")
    if src.max_rate_hz * hop_s < 1.0 - 1e-9:
        raise ConfigError(
            f"{where}.max_rate_hz: {src.max_rate_hz:g} reads fewer windows than the source "
            f"makes ({1.0 / hop_s:g} per second with hop_s = {hop_s:g}), so windows would be "
            "dropped", hint=f"set max_rate_hz to at least {1.0 / hop_s:g}, or a longer hop_s")
    if src.lossless and src.path is None:
        raise ConfigError(f"{where}.lossless: only a file can wait for its reader; a "
                          "capture device cannot")
    if not 0 < src.reconnect_min_s <= src.reconnect_max_s:
        raise ConfigError(f"{where}.reconnect_max_s: need 0 < reconnect_min_s <= "
                          "reconnect_max_s")


def _check_audio_pipeline(pipe: PipelineConfig, where: str, source_id: str) -> None:
    """Stages of a pipeline that an audio source cannot feed."""
    for key in ("detector", "cleaning", "forecast"):
        if getattr(pipe, key) is not None:
            raise ConfigError(f"{where}.{key}: it takes scalar values; {source_id!r} is an "
                              "audio source", hint="give the pipeline an audio model instead")
    if pipe.sampling.policy not in (None, "fixed", "score"):
        raise ConfigError(f"{where}.sampling.policy: {pipe.sampling.policy} does not apply "
                          f"to audio source {source_id!r}; use fixed or score")


def _check_cleaning(params: dict[str, Any], where: str) -> None:
    from edge_runtime.anomaly.cleaning import Cleaner

    _check_free_numbers(params, where, may_be_infinite=("valid_min", "valid_max"))
    for key, (low, high, why) in _CLEANING_BOUNDS.items():
        value = params.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) \
                and not low <= value <= high:
            raise ConfigError(f"{where}.{key}: must be >= {low:g} and <= {high:g}",
                              hint=f"{why}; see docs/config.md")
    try:
        Cleaner(**params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {one_line(exc, with_type=False)}") from exc


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
