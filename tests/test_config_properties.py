"""Issue #10, invariant 1: what ``check`` accepts, ``run`` runs.

A hypothesis strategy builds config files from the schema: a valid base config (a replay
of a CSV this module writes, a camera, a GPIO input, a bridge channel and a system
reading; pipelines with a detector, cleaning, a forecast, sampling policies and rules; a
GPIO output on the mock pin factory, an event log, a log line; ``[upstream]`` with its
sinks) whose numeric fields, found by walking the schema, are replaced by hostile numbers
(NaN, +-inf, -1, 0, 1e-300, 1e300, 2**62, ordinary values), whose names (detector specs,
log levels, the pin factory) are sometimes bad, and which sometimes loses an id or
repeats an entry.

- Property A (1,000 examples): each text is either refused by what ``check`` runs, with
  a ConfigError that starts with the key path, or it builds (``build_runtime``), a few
  samples go through every pipeline (``infer`` then ``decide``) and it closes, without
  any exception at all.
- Property B (25 examples): an accepted config runs in an in-process daemon, survives a
  reload to another accepted config, and stops cleanly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import re
import sys
import threading
import time
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from edge_runtime.anomaly.cleaning import Cleaner
from edge_runtime.anomaly.detector import DetectorConfig
from edge_runtime.cli.check import check_loaded_config
from edge_runtime.config import Config, decode_config
from edge_runtime.errors import ConfigError
from edge_runtime.pipelines.build import build_runtime
from edge_runtime.pipelines.daemon import Daemon
from edge_runtime.sources.base import Sample
from edge_runtime.sources.gpio import pin_factory

# --- the world the configs live in: a recording and a few user detector modules --------

#: Module names are this file's own, so that no other test's modules are shadowed.
USER_MODULES = {
    "prop_detectors": (
        "from edge_runtime.anomaly.protocols import DetectorBase\n"
        "class Spiky(DetectorBase):\n"
        "    def __init__(self, level: float = 20.0) -> None:\n"
        "        self.level = level\n"
        "    def update(self, t_s, value):\n"
        "        return 1.0 if value > self.level else 0.0\n"
        "class NoUpdate:\n"
        "    pass\n"
        "class Raises(DetectorBase):\n"
        "    def __init__(self, **params) -> None:\n"
        "        raise ZeroDivisionError('a constructor that fails')\n"
        "    def update(self, t_s, value):\n"
        "        return 0.0\n"
    ),
    "prop_syntax_error": "def broken(:\n",
    "prop_fails_at_import": "raise ZeroDivisionError('import-time failure')\n",
}

#: Names that ``run`` takes, and names it refuses (which ``check`` must refuse too, with
#: the key path); ``_names`` draws a good one most of the time.
DETECTOR_SPECS = (["anomaly", "prop_detectors:Spiky"],
                  ["", ":", "prop_detectors:", "prop_detectors:NoUpdate",
                   "prop_detectors:Missing", "prop_syntax_error:X", "prop_fails_at_import:X",
                   "no_such_module_xyz:X", "edge_runtime.anomaly:", "prop_detectors:Raises"])
LOG_LEVELS = (["WARNING", "info", "debug"], ["LOUD", "", "5"])
PIN_FACTORIES = (["mock"], ["no-such-factory"])
SAMPLING_DETECTOR_PARAMS: tuple[list[dict[str, Any]], list[dict[str, Any]]] = (
    [{}, {"levels": 8}], [{"bogus": 1}, {"levels": "eight"}, {"levels": 0}])


def _names(draw: st.DrawFn, names: tuple[list[Any], list[Any]], hostile: bool) -> Any:
    good, bad = names
    return draw(st.sampled_from(bad if hostile and draw(st.integers(0, 9)) == 0 else good))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder with the recording and the user modules, on ``sys.path`` for the module."""
    base = tmp_path_factory.mktemp("props")
    rng = np.random.default_rng(7)
    values = 20.0 + rng.normal(0, 0.5, 200)
    values[120:130] = 35.0
    lines = ["timestamp,value"] + [f"{i * 0.1:.3f},{v:.4f}" for i, v in enumerate(values)]
    (base / "rec.csv").write_text("\n".join(lines) + "\n")
    for name, text in USER_MODULES.items():
        (base / f"{name}.py").write_text(text)
    sys.path.insert(0, str(base))
    try:
        yield base
    finally:
        sys.path.remove(str(base))
        for name in USER_MODULES:
            sys.modules.pop(name, None)
        pin_factory("mock").reset()


# --- a TOML writer (msgspec writes TOML only with tomli_w, which we do not need) -------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    assert isinstance(value, dict), value
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()
                           if v is not None) + "}"


def to_toml(config: dict[str, Any]) -> str:
    """One ``key = value`` line per top-level key (inline tables are valid TOML 1.0)."""
    return "".join(f"{key} = {_toml_value(value)}\n" for key, value in config.items())


# --- the base config --------------------------------------------------------------------


def _rule(rule_id: str, field: str, *, above: float, clear_at: float | None = None,
          actions: list[str]) -> dict[str, Any]:
    return {"id": rule_id, "field": field, "above": above, "clear_at": clear_at,
            "debounce_s": 0.0, "clear_debounce_s": 0.0, "cooldown_s": 0.0, "actions": actions}


@st.composite
def base_configs(draw: st.DrawFn, hostile: bool = True) -> dict[str, Any]:
    """A config every part of which ``run`` builds; with ``hostile``, some of its names
    are drawn from bad ones."""
    policy = draw(st.sampled_from(["fixed", "change", "novelty", "score", "detector"]))
    sampling: dict[str, Any] = {"policy": policy, "hold_s": 0.5, "decay_half_life_s": 0.2}
    if policy == "change":
        sampling["factor"] = 3.0
    elif policy == "novelty":
        sampling["z"] = 3.0
    elif policy == "score":
        sampling.update(field="score", threshold=0.5)
    elif policy == "detector":
        sampling.update(threshold=0.05, hold_samples=6, heartbeat_samples=48,
                        detector_params=_names(draw, SAMPLING_DETECTOR_PARAMS, hostile))
    sensor: dict[str, Any] = {
        "id": "sensor", "source": "rec", "num_threads": 1, "sampling": sampling,
        "rules": [_rule("spike", "value", above=30.0, clear_at=25.0,
                        actions=["event", "led", "log"])],
    }
    if policy != "detector" and draw(st.booleans()):
        spec = _names(draw, DETECTOR_SPECS, hostile)
        sensor["detector"] = spec
        sensor["detector_params"] = ({"warmup_points": 24} if spec == "anomaly" else
                                     {"level": 30.0} if spec.endswith("Spiky") else {})
    if draw(st.booleans()):
        sensor["cleaning"] = {"valid_min": -50.0, "valid_max": 150.0, "spike_mads": 8.0,
                              "spike_window": 15, "gap_factor": 1.5, "max_fill": 12}
    if draw(st.booleans()):
        sensor["forecast"] = {"limit": 40.0, "direction": "above", "horizon_s": 3600.0,
                              "half_life_s": 600.0, "min_points": 12, "z": 2.0, "hold_s": 0.0}
    led: dict[str, Any] = {"type": "gpio", "id": "led", "device": "led", "pin": 18,
                           "mode": draw(st.sampled_from(["follow", "pulse"])), "pulse_s": 0.05}
    upstream: dict[str, Any] = {
        "summary_interval_s": 60.0,
        "outbox": {"max_bytes": 2_000_000, "commit_interval_s": 0.1,
                   "loss_report_interval_s": 60.0},
        "snapshots": {"max_bytes": 1_000_000, "jpeg_quality": 80},
        "file": {"max_bytes": 1_000_000, "keep": 2},
        "http": {"url": "http://127.0.0.1:9/hook", "timeout_s": 5.0, "max_batch": 10,
                 "retry_min_s": 1.0, "retry_max_s": 30.0},
        "mqtt": {"url": "mqtt://127.0.0.1:1883", "keepalive_s": 30, "connect_timeout_s": 5.0,
                 "reconnect_min_s": 1.0, "reconnect_max_s": 60.0, "max_in_flight": 10},
    }
    return {
        "node": {"name": "prop", "state_dir": "state", "shutdown_timeout_s": 1.0,
                 "gpio_pin_factory": _names(draw, PIN_FACTORIES, hostile)},
        "budget": {"enabled": draw(st.booleans()), "temp_soft_c": 70.0, "temp_hard_c": 80.0,
                   "cpu_high_percent": 85.0, "interval_s": 2.0},
        "health": {"interval_s": 0.2, "check_throttling": False,
                   "rules": [_rule("mem", "memory_percent", above=99.9, actions=["event"])]},
        "sources": [
            {"type": "replay", "id": "rec", "path": "rec.csv", "speed": 20.0,
             "min_rate_hz": 5.0, "max_rate_hz": 50.0},
            {"type": "camera", "id": "cam", "device": 0, "width": 64, "height": 48,
             "fps_hz": 15.0, "reconnect_min_s": 0.5, "reconnect_max_s": 10.0,
             "max_frame_pixels": 1 << 20, "min_rate_hz": 1.0, "max_rate_hz": 10.0},
            {"type": "gpio", "id": "pir", "device": "digital_input", "pin": 17,
             "min_rate_hz": 5.0, "max_rate_hz": 20.0},
            {"type": "bridge", "id": "mcu", "port": "/dev/null-bridge", "channel": 0,
             "value_index": 0, "baudrate": 115200, "min_rate_hz": 1.0, "max_rate_hz": 10.0},
            {"type": "system", "id": "cpu", "channel": "cpu_temperature_c",
             "min_rate_hz": 0.5, "max_rate_hz": 1.0},
        ],
        "pipelines": [
            sensor,
            {"id": "door", "source": "cam",
             "sampling": {"policy": "motion", "pixel_threshold": 25, "area_fraction": 0.01,
                          "heartbeat_s": 5.0},
             "rules": [_rule("moving", "motion", above=1.0, actions=["event"])]},
            {"id": "presence", "source": "pir",
             "rules": [_rule("someone", "value", above=0.5, actions=["led"])]},
        ],
        "actions": [led, {"type": "event", "id": "event"},
                    {"type": "log", "id": "log", "level": _names(draw, LOG_LEVELS, hostile)}],
        "events": {"path": "events.jsonl", "max_bytes": 100_000, "keep": 2},
        "upstream": upstream,
    }


# --- numeric fields, found by walking the schema ----------------------------------------

Leaf = tuple[tuple[str | int, ...], str]  # (path into the dict, "int" or "float")


def _numeric_kind(info: msgspec.inspect.Type) -> str | None:
    """``int``/``float`` when a field of this type takes a number, else None."""
    if isinstance(info, msgspec.inspect.Metadata):  # a bounded number (Annotated)
        return _numeric_kind(info.type)
    if isinstance(info, msgspec.inspect.IntType):
        return "int"
    if isinstance(info, msgspec.inspect.FloatType):
        return "float"
    if isinstance(info, msgspec.inspect.UnionType):
        kinds = {_numeric_kind(t) for t in info.types} - {None}
        return "float" if "float" in kinds else ("int" if kinds else None)
    return None


def _dataclass_leaves(cls: type, path: tuple[str | int, ...]) -> list[Leaf]:
    hints = typing.get_type_hints(cls)
    leaves: list[Leaf] = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name.startswith("_"):
            continue
        args = set(typing.get_args(hints[f.name])) or {hints[f.name]}
        if float in args:
            leaves.append(((*path, f.name), "float"))
        elif int in args:
            leaves.append(((*path, f.name), "int"))
    return leaves


def _struct_of(info: msgspec.inspect.Type, value: Any) -> msgspec.inspect.StructType | None:
    """The struct type ``value`` (a dict of the base config) is decoded as, if any."""
    if isinstance(info, msgspec.inspect.StructType):
        return info
    if isinstance(info, msgspec.inspect.UnionType) and isinstance(value, dict):
        for t in info.types:
            if isinstance(t, msgspec.inspect.StructType) and (
                    t.tag is None or t.tag == value.get(t.tag_field or "type")):
                return t
    return None


def numeric_leaves(value: Any, info: msgspec.inspect.Type,
                   path: tuple[str | int, ...] = ()) -> list[Leaf]:
    """Every numeric field of every struct present in ``value``, given or defaulted, plus
    the numeric options of the free-form tables (cleaning, the anomaly detector's)."""
    struct = _struct_of(info, value)
    if struct is not None:
        leaves: list[Leaf] = []
        for f in struct.fields:
            kind = _numeric_kind(f.type)
            sub = value.get(f.encode_name)
            if kind is not None:
                leaves.append(((*path, f.encode_name), kind))
            elif f.encode_name == "cleaning" and sub is not None:
                leaves += _dataclass_leaves(Cleaner, (*path, "cleaning"))
            elif f.encode_name == "detector_params" and (
                    value.get("detector") == "anomaly" or value.get("policy") == "detector"):
                leaves += _dataclass_leaves(DetectorConfig, (*path, "detector_params"))
            elif sub is not None:
                leaves += numeric_leaves(sub, f.type, (*path, f.encode_name))
        return leaves
    if isinstance(info, msgspec.inspect.ListType) and isinstance(value, list):
        return [leaf for i, item in enumerate(value)
                for leaf in numeric_leaves(item, info.item_type, (*path, i))]
    if isinstance(info, msgspec.inspect.UnionType):  # e.g. ForecastConfig | None
        for t in info.types:
            if not isinstance(t, msgspec.inspect.NoneType):
                return numeric_leaves(value, t, path)
    return []


CONFIG_TYPE = msgspec.inspect.type_info(Config)

HOSTILE_FLOATS = [math.nan, math.inf, -math.inf, -1.0, 0.0, 1e-300, 1e300, float(2**62),
                  -0.5, 0.5]
HOSTILE_INTS = [-1, 0, 1, 2**62, -(2**62), 100_000, 300]


def hostile(kind: str) -> st.SearchStrategy[Any]:
    """Numbers that make no sense in most places, and ordinary ones that do."""
    ordinary = st.floats(0.01, 100.0) if kind == "float" else st.integers(1, 100)
    wrong_type = st.sampled_from(HOSTILE_FLOATS if kind == "int" else HOSTILE_INTS)
    own = st.sampled_from(HOSTILE_INTS if kind == "int" else HOSTILE_FLOATS)
    return st.one_of(own, own, ordinary, wrong_type)


def _set(config: dict[str, Any], path: tuple[str | int, ...], value: Any) -> None:
    target: Any = config
    for key in path[:-1]:
        target = target.setdefault(key, {}) if isinstance(key, str) else target[key]
    target[path[-1]] = value


def ordinary(kind: str) -> st.SearchStrategy[Any]:
    """Numbers that make sense in most places (for configs that should run)."""
    return st.floats(0.1, 20.0) if kind == "float" else st.integers(3, 12)


@st.composite
def config_texts(draw: st.DrawFn, hostile_values: bool = True) -> str:
    """The TOML text of a base config with hostile numbers in a few numeric fields (or,
    without ``hostile_values``, ordinary ones, good names and no sinks to connect to)."""
    config = draw(base_configs(hostile=hostile_values))
    if not hostile_values:
        config["upstream"].pop("mqtt")
        config["upstream"].pop("http")
    leaves = numeric_leaves(config, CONFIG_TYPE)
    numbers = hostile if hostile_values else ordinary
    for path, kind in draw(st.lists(st.sampled_from(leaves), min_size=0, max_size=4)):
        _set(config, path, draw(numbers(kind)))
    if not hostile_values:
        return to_toml(config)
    mutation = draw(st.sampled_from(["none"] * 8 + ["drop-id", "duplicate"]))
    if mutation != "none":
        section = draw(st.sampled_from(["sources", "pipelines", "actions"]))
        items = config[section]
        index = draw(st.integers(0, len(items) - 1))
        if mutation == "drop-id":
            items[index].pop("id")
        else:
            items.append(dict(items[index]))
    return to_toml(config)


# --- property A: refused with the key path, or it runs ----------------------------------

#: A ConfigError starts with a key path such as ``pipelines[0].sampling.threshold:``.
KEY_PATH = re.compile(r"^[a-z_]+(\[\d+\])?(\.[a-z_]+(\[\d+\])?)*: ")


def accepted(text: str, base_dir: Path) -> Config | ConfigError:
    """What ``edge-runtime check`` says of ``text``: the config, or the error it prints."""
    try:
        config = decode_config(text, base_dir=base_dir)
        check_loaded_config(config)
    except ConfigError as exc:
        return exc
    return config


def _samples(source_id: str, kind: str, n: int, t0_s: float) -> Iterator[Sample]:
    rng = np.random.default_rng(n)
    for i in range(n):
        t = t0_s + i * 0.05
        if kind == "frame":
            frame = rng.integers(0, 255, (48, 64), dtype=np.uint8)
            yield Sample(source_id, t, i, frame=frame)
        else:
            value = [20.0, 20.5, math.nan, 35.0, 19.5][i % 5] + 0.01 * i
            envelope = (value - 1.0, value + 1.0) if i % 3 == 0 and not math.isnan(value) \
                else None
            yield Sample(source_id, t, i, value=value, envelope=envelope)


#: How long threads that are ending get after ``close`` (seconds).
THREAD_GRACE_S = 1.0


def run_briefly(config: Config) -> None:
    """Build the runtime, push a few synthetic samples through every pipeline, close.

    An exception in a thread the runtime starts (a GPIO pulse's timer, the event log's
    writer) fails it too, and so does a thread still alive after ``close``.
    """
    before = set(threading.enumerate())
    thread_errors: list[str] = []
    previous_hook = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        thread_errors.append(f"{args.thread.name if args.thread else '?'}: "
                             f"{args.exc_type.__name__}: {args.exc_value}")

    threading.excepthook = hook
    try:
        runtime = build_runtime(config)
        try:
            t0 = time.monotonic()
            for pipe in runtime.pipelines:
                kind = "frame" if pipe.source.kind == "frame" else "scalar"
                for sample in _samples(pipe.source.source_id, kind, 30, t0):
                    pipe.decide(sample, pipe.infer(sample), now_s=sample.t_mono_s)
                pipe.status()
        finally:
            runtime.close()
    finally:
        threading.excepthook = previous_hook
    assert not thread_errors, thread_errors
    # A pulse timer cancelled by a newer pulse ends by itself, just after: a short grace
    # (as the suite's own thread guard gives), then nothing the runtime started may live.
    deadline = time.monotonic() + THREAD_GRACE_S
    while (left := [t.name for t in set(threading.enumerate()) - before if t.is_alive()]) \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not left, f"threads alive after close: {left}"


@settings(max_examples=1000, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=config_texts())
def test_what_check_accepts_run_runs(world: Path, text: str) -> None:
    verdict = accepted(text, world)
    if isinstance(verdict, ConfigError):
        event(f"refused: {verdict.message.split(':')[0]}")
        assert KEY_PATH.match(verdict.message), f"no key path: {verdict.message!r}"
        assert "\n" not in str(verdict), f"not one line: {verdict!s}"
        return
    event("accepted")
    run_briefly(verdict)


# --- property B: an accepted config runs in a daemon and survives a reload --------------


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=config_texts(hostile_values=False), second=config_texts(hostile_values=False))
def test_an_accepted_config_runs_and_reloads_in_a_daemon(world: Path, first: str,
                                                         second: str) -> None:
    assume(all(isinstance(accepted(text, world), Config) for text in (first, second)))
    path = world / "daemon.toml"
    path.write_text(first)

    async def main() -> dict[str, Any]:
        daemon = await asyncio.to_thread(Daemon, path)
        task = asyncio.create_task(daemon.run())
        loop = asyncio.get_running_loop()
        try:
            await asyncio.sleep(0.15)
            await asyncio.to_thread(path.write_text, second)
            daemon.request_reload()
            deadline = loop.time() + 10.0
            while daemon.generation < 2 and loop.time() < deadline and not task.done():
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.1)
            return daemon.status()
        finally:
            daemon.request_stop()
            assert await asyncio.wait_for(task, 10.0) == 0

    status = asyncio.run(main())
    assert status["reload_errors"] == 0, status["last_reload_error"]
    assert status["generation"] == 2 and status["reloads"] == 1
