"""The one model API: :func:`load_model` and :class:`Model`.

:class:`Model` adds what every backend needs and none should repeat: input
checking with errors that name the tensor, quantization of float input for 8-bit
models and dequantization of their outputs, warm-up, and latency statistics.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from edge_runtime.errors import (
    CorruptModelError,
    InputError,
    IntegrityError,
    ModelError,
    ModelNotFoundError,
    WarmUpError,
)
from edge_runtime.models import registry
from edge_runtime.models.backend import FORMATS, Backend, detect_format, zeros_for
from edge_runtime.models.backends import engine_id, open_backend
from edge_runtime.models.manifest import Manifest, load_manifest, sha256_file
from edge_runtime.models.probe import changed_while_loading, check_model_file
from edge_runtime.models.stats import LatencyStats
from edge_runtime.models.types import QuantParams, TensorSpec, format_shape

log = logging.getLogger(__name__)

Converter = Callable[[Any], np.ndarray]
Inputs = Mapping[str, Any] | np.ndarray | Any


def _broadcast(values: tuple[float, ...] | tuple[int, ...], quant: QuantParams, ndim: int) -> Any:
    """Scale or zero point shaped to broadcast over a tensor of rank ``ndim``."""
    if quant.per_tensor:
        return values[0]
    shape = [1] * ndim
    shape[quant.axis if quant.axis is not None else 0] = len(values)
    return np.asarray(values).reshape(shape)


@functools.cache
def _int_limits(dtype: np.dtype[Any]) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def quantize(x: np.ndarray, quant: QuantParams, dtype: np.dtype[Any]) -> np.ndarray:
    """Real values to integers: ``round(x / scale) + zero_point``, clipped to ``dtype``."""
    low, high = _int_limits(dtype)
    q = np.asarray(x, dtype=np.float32) / _broadcast(quant.scale, quant, x.ndim)
    np.rint(q, out=q)  # in place: fewer temporaries on the per-inference path
    q += _broadcast(quant.zero_point, quant, x.ndim)
    np.clip(q, low, high, out=q)
    out: np.ndarray = q.astype(dtype)
    return out


def dequantize(q: np.ndarray, quant: QuantParams) -> np.ndarray:
    """Integers to real values: ``scale * (q - zero_point)`` as float32."""
    out: np.ndarray = q.astype(np.float32)
    out -= _broadcast(quant.zero_point, quant, q.ndim)
    out *= _broadcast(quant.scale, quant, q.ndim)
    return out


def _converter(spec: TensorSpec) -> Converter:
    """A function that checks one input value against ``spec`` and returns the array to run."""
    want = spec.dtype
    shape = spec.shape
    rank = len(shape)
    fixed = [(i, d) for i, d in enumerate(shape) if d is not None]
    quant = spec.quant
    name = spec.name

    static_shape = shape if len(fixed) == rank else None
    # Most dynamic models leave only the batch open: then the tail must match exactly.
    tail = shape[1:] if rank >= 2 and None not in shape[1:] else None
    ndarray = np.ndarray

    # This runs on every inference, right after the engine has flushed the CPU caches,
    # where each Python operation costs microseconds: keep the common path short.
    # Non-contiguous arrays are fine: both engines copy them as needed.
    def convert(value: Any) -> np.ndarray:
        arr = value if value.__class__ is ndarray else np.asarray(value)
        got = arr.shape
        # The shape first: quantizing or casting an array of the wrong rank (a 0-d
        # value for a per-channel quantized input) would fail with a raw error.
        if got != static_shape and got[1:] != tail and not _shape_fits(got):
            raise InputError(
                f"input {name!r} expects shape {format_shape(shape)} (? = any size) "
                f"but got {format_shape(got)}"
            )
        dtype = arr.dtype
        if dtype.kind == "f" and not np.isfinite(arr).all():
            # A NaN or inf would run and come back as a confident-looking answer.
            bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
            raise InputError(
                f"input {name!r} holds {bad} NaN or infinite value(s) of {arr.size}",
                hint="clean the input first (a sensor pipeline's [pipelines.cleaning] "
                "fills gaps); a model has no answer for a missing value")
        if dtype is not want and dtype != want:
            arr = _cast(arr)
        return arr

    def _shape_fits(got: tuple[int, ...]) -> bool:
        return len(got) == rank and all(got[i] == d for i, d in fixed)

    def _cast(arr: np.ndarray) -> np.ndarray:
        if quant is not None and arr.dtype.kind == "f":
            return quantize(arr, quant, want)
        if arr.dtype.kind in "iub" and want.kind in "iu":
            info = np.iinfo(want)  # type: ignore[type-var]
            if arr.size and (arr.min() < info.min or arr.max() > info.max):
                raise InputError(
                    f"input {name!r} expects {want.name} but the values run from "
                    f"{arr.min()} to {arr.max()}, outside {info.min}..{info.max}"
                )
            return arr.astype(want)
        if np.can_cast(arr.dtype, want, "same_kind") and want.kind != "O":
            return arr.astype(want)
        extra = ""
        if want.kind in "iu" and want.itemsize == 1 and arr.dtype.kind == "f":
            extra = " (this input has no quantization parameters; pass integer values)"
        raise InputError(f"input {name!r} expects {want.name} but got {arr.dtype.name}{extra}")

    return convert


class Model:
    """A loaded model, whatever its format; create it with :func:`load_model`.

    ``model.run(x)`` takes one array (single-input models) or a dict input name ->
    array, and returns a dict output name -> array. Float input to an int8/uint8
    input is quantized with the tensor's scale and zero point; quantized outputs are
    dequantized to float32 unless ``dequantize=False``.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        path: Path,
        fmt: str,
        sha256: str,
        manifest: Manifest | None = None,
        stats_window: int = 1024,
    ) -> None:
        self._backend = backend
        self.path = path
        self.format = fmt
        self.sha256 = sha256
        self.manifest = manifest
        self.name = manifest.name if manifest is not None else path.stem
        self.stats = LatencyStats(window=stats_window)
        self._input_names = [s.name for s in backend.inputs]
        self._output_names = [s.name for s in backend.outputs]
        self._converters = [_converter(s) for s in backend.inputs]
        self._single = self._converters[0] if len(self._converters) == 1 else None
        self._dequant = [(i, s.quant) for i, s in enumerate(backend.outputs) if s.quant is not None]

    # -- description -------------------------------------------------------------------

    @property
    def inputs(self) -> list[TensorSpec]:
        """The model's inputs: name, shape (None = dynamic), dtype, layout, quantization."""
        return self._backend.inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        """The model's outputs, described like :attr:`inputs`."""
        return self._backend.outputs

    @property
    def backend_name(self) -> str:
        """Engine and version that runs the model, e.g. ``onnxruntime 1.20.1``."""
        return self._backend.name

    @property
    def backend(self) -> Backend:
        """The format backend (for benchmarks and experts)."""
        return self._backend

    def replace_backend(self, backend: Backend) -> None:
        """Run through ``backend`` from now on; it must have the same tensors (the mesh
        wraps the local backend in one that decides, per run, where it runs)."""
        if [s.name for s in backend.inputs] != self._input_names or \
                [s.name for s in backend.outputs] != self._output_names:
            raise ValueError(f"{self.name}: the new backend has other tensors")
        self._backend = backend

    @property
    def labels(self) -> list[str]:
        """Class labels from the manifest, or an empty list."""
        return list(self.manifest.labels) if self.manifest is not None else []

    def __repr__(self) -> str:
        return f"<Model {self.name!r} {self.format} on {self.backend_name}>"

    # -- running -------------------------------------------------------------------

    def prepare(self, inputs: Inputs) -> list[np.ndarray]:
        """Check and convert inputs to the arrays the backend runs, in input order."""
        convs = self._converters
        if type(inputs) is dict or isinstance(inputs, Mapping):
            names = self._input_names
            if len(inputs) == len(names):
                try:
                    return [conv(inputs[n]) for n, conv in zip(names, convs, strict=True)]
                except KeyError:
                    pass  # fall through to say which name is wrong
            unknown = [k for k in inputs if k not in names]
            if unknown:
                raise InputError(
                    f"unknown input {unknown[0]!r} (the model's inputs: {', '.join(names)})"
                )
            missing = [n for n in names if n not in inputs]
            raise InputError(f"missing input {missing[0]!r} (needs: {', '.join(names)})")
        if self._single is None:
            raise InputError(
                f"the model has {len(convs)} inputs ({', '.join(self._input_names)}); "
                "pass a dict name -> array"
            )
        return [self._single(inputs)]

    def run(self, inputs: Inputs, *, dequantize: bool = True) -> dict[str, np.ndarray]:
        """Run one inference; blocking, so call it from an executor in async code."""
        start = _clock()
        if inputs.__class__ is np.ndarray and self._single is not None:
            arrays = [self._single(inputs)]
        else:
            arrays = self.prepare(inputs)
        outs = self._backend.run(arrays)
        if dequantize and self._dequant:
            for i, quant in self._dequant:
                outs[i] = _dequantize(outs[i], quant)
        # One name per output, as the backend promises.
        result = dict(zip(self._output_names, outs, strict=False))
        self.stats.record(_clock() - start)
        return result

    def warm_up(self, runs: int = 1) -> None:
        """Run ``runs`` inferences on zeros so first real calls are not slow; not counted.

        A model whose inputs alone (dynamic dimensions at 1) need more memory than the
        machine has free is refused here with a :class:`WarmUpError`, before anything
        is allocated: on Linux a huge allocation may succeed and only fail (the OOM
        killer) when the engine touches it.
        """
        need_bytes = sum(math.prod(1 if d is None else d for d in spec.shape)
                         * spec.dtype.itemsize for spec in self.inputs)
        free_bytes = _available_memory_bytes()
        if free_bytes is not None and need_bytes > free_bytes // 2:
            raise WarmUpError(
                f"{self.name}: its inputs {', '.join(format_shape(s.shape) for s in self.inputs)}"
                f" need {need_bytes / 1e6:,.0f} MB, more than half the "
                f"{free_bytes / 1e6:,.0f} MB this machine has free",
                hint="use a model with smaller inputs, or set its dynamic dimensions")
        try:
            arrays = zeros_for(self.inputs)
        except MemoryError as exc:
            raise WarmUpError(f"{self.name}: out of memory allocating its inputs "
                              f"({need_bytes / 1e6:,.0f} MB)",
                              hint="use a model with smaller inputs") from exc
        for _ in range(runs):
            try:
                self._backend.run(arrays)
            except ModelError as exc:
                log.debug("warm-up of %s on zeros failed: %s", self.name, exc)
                return

    def close(self) -> None:
        """Release the backend."""
        self._backend.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_dequantize = dequantize
_clock = time.perf_counter


def _available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (None where it cannot be read)."""
    try:
        with open("/proc/meminfo", "rb") as fh:
            for line in fh:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _resolve(path_or_name: str | os.PathLike[str]) -> tuple[Path, Manifest | None]:
    """Find the model file and its manifest (if any) for a path, manifest or name."""
    text = os.fspath(path_or_name)
    path = Path(text).expanduser()
    if path.suffix.lower() == ".toml" and path.is_file():
        manifest = load_manifest(path)
        return manifest.model_path, manifest
    if path.is_file():
        return path.resolve(), registry.manifest_for_file(path)
    if path.is_dir():
        raise ModelNotFoundError(f"{text} is a folder, not a model file")
    looks_like_path = os.sep in text or path.suffix.lower() in FORMATS
    if looks_like_path:
        raise ModelNotFoundError(f"model file {text} does not exist")
    manifest = registry.find_model(text)
    if not manifest.model_path.is_file():
        raise ModelNotFoundError(
            f"model {manifest.name!r}: its file {manifest.model_path} is missing"
        )
    return manifest.model_path, manifest


def load_model(
    path_or_name: str | os.PathLike[str],
    num_threads: int | None = None,
    *,
    probe: bool = True,
    warmup_runs: int = 1,
    stats_window: int = 1024,
) -> Model:
    """Load a model file (``.onnx`` or ``.tflite``), a manifest, or a shipped model by name.

    ``num_threads`` caps the engine's intra-op threads (``None``: engine default).
    A model with a manifest is checked against the manifest's sha256. A file that is
    not yet known to be good is first loaded in a child process (``probe``) so that a
    backend crash on a malformed file cannot take the caller down.
    """
    if num_threads is not None and num_threads < 1:
        raise InputError(f"num_threads must be at least 1, got {num_threads}")
    cores = os.cpu_count() or 1
    if num_threads is not None and num_threads > cores:
        # More engine threads than cores only adds contention (and each thread's stack).
        log.warning("num_threads=%d is more than the %d core(s) here; using %d",
                    num_threads, cores, cores)
        num_threads = cores
    path, manifest = _resolve(path_or_name)
    try:
        size_bytes = path.stat().st_size
    except OSError as exc:
        raise ModelNotFoundError(f"cannot read model file {path}: {exc.strerror}") from exc
    if size_bytes == 0:
        raise CorruptModelError(f"{path.name} is empty (0 bytes)")
    fmt = detect_format(path)
    digest = sha256_file(path)
    if manifest is not None and digest != manifest.sha256:
        raise IntegrityError(
            f"model {manifest.name!r}: {path.name} has sha256 {digest[:12]}..., "
            f"its manifest {manifest.path} says {manifest.sha256[:12]}...",
            hint=registry.mismatch_hint(manifest, digest),
        )
    if probe and manifest is None:
        # Manifest models are verified by hash above; only unknown files need probing.
        check_model_file(path, fmt, digest, engine_id(fmt))
    backend = open_backend(fmt, path, num_threads)
    if sha256_file(path) != digest:
        # Replaced between the hash (and probe) and the engine's own read: what was
        # loaded is neither verified nor probed.
        backend.close()
        raise changed_while_loading(path)
    model = Model(
        backend, path=path, fmt=fmt, sha256=digest, manifest=manifest, stats_window=stats_window
    )
    if warmup_runs > 0:
        model.warm_up(warmup_runs)
    return model
