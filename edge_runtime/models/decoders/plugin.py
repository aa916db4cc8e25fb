"""``postprocessing = "package.module:function"``: your own decoder.

The function must have this signature (see :class:`PluginFunction`)::

    def decode(outputs: Mapping[str, np.ndarray], context: DecodeContext) -> dict[str, Any]

``outputs`` are the model's outputs by name (dequantized float32 for 8-bit models);
``context`` is a :class:`~edge_runtime.models.decoders.base.DecodeContext` (labels, input
size, the frame's geometry, the output tensors, the manifest's ``options``). It returns
the result: scalar values are fields rules can test. It runs in the pipeline's worker
thread, once per inference: no blocking I/O. ``check`` imports it and checks the
signature before anything runs.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from edge_runtime.errors import PluginError
from edge_runtime.models.decoders.base import (
    DecodeContext,
    Decoder,
    Expectation,
    Outputs,
    Result,
)
from edge_runtime.models.manifest import PluginPostprocessing
from edge_runtime.models.preprocess import FrameGeometry
from edge_runtime.models.types import TensorSpec


class PluginFunction(Protocol):
    """The signature a plugin decoder has."""

    def __call__(self, outputs: Mapping[str, np.ndarray[Any, Any]],
                 context: DecodeContext, /) -> dict[str, Any]: ...


def load_plugin(target: str) -> PluginFunction:
    """Import ``package.module:function`` and check it can be called as a decoder."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise PluginError(f"postprocessing {target!r}: give it as \"package.module:function\"")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PluginError(f"postprocessing {target!r}: cannot import {module_name!r}: "
                          f"{exc}") from exc
    func: Any = module
    for part in attr.split("."):
        func = getattr(func, part, None)
        if func is None:
            raise PluginError(f"postprocessing {target!r}: {module_name} has no {attr!r}")
    if not callable(func):
        raise PluginError(f"postprocessing {target!r}: {attr} is a "
                          f"{type(func).__name__}, not a function")
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise PluginError(f"postprocessing {target!r}: its signature cannot be read") from exc
    try:
        signature.bind(object(), object())
    except TypeError as exc:
        raise PluginError(
            f"postprocessing {target!r}: {attr}{signature} cannot be called as "
            f"{attr}(outputs, context): {exc}"
        ) from exc
    plugin: PluginFunction = func
    return plugin


class PluginDecoder(Decoder):
    """Calls a user function with the outputs and a :class:`DecodeContext`."""

    name = "plugin"

    def __init__(self, spec: PluginPostprocessing, labels: Sequence[str],
                 input_size: tuple[int, int]) -> None:
        super().__init__(labels, input_size)
        self.spec = spec
        self.function = load_plugin(spec.function)
        self._outputs: tuple[TensorSpec, ...] = ()

    def expectations(self) -> list[Expectation]:
        return [Expectation("outputs", "any", f"decoded by {self.spec.function}")]

    def bind(self, outputs: Sequence[TensorSpec]) -> None:
        self._outputs = tuple(outputs)

    def decode(self, outputs: Outputs, geometry: FrameGeometry | None = None) -> Result:
        context = DecodeContext(self.labels, self.input_size, self._outputs, geometry,
                                self.spec.options)
        result = self.function(outputs, context)
        if not isinstance(result, dict):
            raise PluginError(f"postprocessing {self.spec.function!r} returned a "
                              f"{type(result).__name__}, not a dict of result fields")
        return result
