"""Which backend runs which model format: the registry, kept at the consumer.

The interface (:mod:`edge_runtime.models.backend`) imports no implementation. This
module names each one as a ``"module:Class"`` string, imported only when a model of
that format is first loaded, so ``import edge_runtime.models`` never imports an engine
and a missing engine only matters to the format that needs it.

Adding a backend (as the ``remote`` peer backend was) is one new
``*_backend.py`` with a :class:`~edge_runtime.models.backend.Backend` subclass plus one
line in :data:`BACKENDS`. Choices *within* a format stay in its backend module (the
TFLite backend's fixed order: ``EDGE_RUNTIME_TFLITE``, then LiteRT, then tflite-runtime
with an ``InterpreterFallbackWarning``).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from edge_runtime.errors import UnknownModelFormatError
from edge_runtime.models.backend import Backend

__all__ = ["BACKENDS", "backend_class", "engine_id", "open_backend"]

#: Format name (what :func:`~edge_runtime.models.backend.detect_format` returns) ->
#: ``"module:Class"`` of the backend that runs it.
BACKENDS: dict[str, str] = {
    "onnx": "edge_runtime.models.onnx_backend:OnnxBackend",
    "tflite": "edge_runtime.models.tflite_backend:TFLiteBackend",
    "remote": "edge_runtime.models.remote_backend:RemoteBackend",
}


def backend_class(fmt: str) -> type[Backend]:
    """The backend class for ``fmt``, importing its module now (not its engine: backends
    import their engine when a model is opened)."""
    try:
        target = BACKENDS[fmt]
    except KeyError:
        raise UnknownModelFormatError(
            f"no backend for format {fmt!r} (known: {', '.join(BACKENDS)})") from None
    module_name, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise TypeError(f"BACKENDS[{fmt!r}] = {target!r} is not a Backend subclass")
    return cls


def open_backend(fmt: str, path: Path, num_threads: int | None) -> Backend:
    """Load ``path`` with the backend for ``fmt``; imports the engine only now."""
    return backend_class(fmt)(path, num_threads=num_threads)


def engine_id(fmt: str) -> str:
    """Name and version of the engine that would run ``fmt`` (for the probe cache key)."""
    return backend_class(fmt).engine_version()
