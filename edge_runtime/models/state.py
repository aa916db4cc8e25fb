"""Models with inputs beyond the data: recurrent state and constants.

A stateful model (Silero VAD: ``input``, ``state``, ``sr`` -> ``output``, ``stateN``) reads
its state as an input and writes the next state as an output. :class:`ModelInputs`, built
once per pipeline from the manifest's ``state`` and ``constant_inputs``, adds those
inputs to each call and keeps the state from one inference to the next; the outputs it
returns leave the state out, so postprocessing sees only the model's answer. Any model
may have such inputs, whatever its data (sound, frames, sensor windows).

One :class:`ModelInputs` belongs to one pipeline and is used by its worker thread only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from edge_runtime.errors import ManifestMismatchError
from edge_runtime.models.types import TensorSpec, format_shape

if TYPE_CHECKING:
    from edge_runtime.models.manifest import Manifest
    from edge_runtime.models.model import Model

Arrays = dict[str, np.ndarray[Any, Any]]


def _concrete(spec: TensorSpec) -> tuple[int, ...]:
    return tuple(1 if d is None else int(d) for d in spec.shape)


def data_input(manifest: Manifest | None, inputs: list[TensorSpec],
               wanted: str | None = None) -> TensorSpec:
    """The input the data goes to: ``wanted``, else the first that is neither a state
    nor a constant."""
    extra: set[str] = set()
    if manifest is not None:
        extra = {p.input for p in manifest.state} | set(manifest.constant_inputs)
    if wanted is not None:
        spec = next((s for s in inputs if s.name == wanted), None)
        if spec is None:
            raise ManifestMismatchError(
                f"preprocessing.input names {wanted!r} but the model's inputs are "
                f"{', '.join(s.name for s in inputs)}")
        return spec
    spec = next((s for s in inputs if s.name not in extra), None)
    if spec is None:
        raise ManifestMismatchError("every input of the model is a state or a constant; "
                                    "which one takes the data?")
    return spec


class ModelInputs:
    """Runs a model with its state and constant inputs (see the module docstring)."""

    def __init__(self, model: Model, data: TensorSpec) -> None:
        manifest = model.manifest
        self.model = model
        self.data_name = data.name
        inputs = {s.name: s for s in model.inputs}
        outputs = {s.name: s for s in model.outputs}
        have_in = ", ".join(f"{s.name} {format_shape(s.shape)}" for s in model.inputs)
        have_out = ", ".join(f"{s.name} {format_shape(s.shape)}" for s in model.outputs)
        self._pairs: list[tuple[str, str, np.ndarray[Any, Any]]] = []
        self._constants: Arrays = {}
        pairs = manifest.state if manifest is not None else []
        for i, pair in enumerate(pairs):
            spec_in, spec_out = inputs.get(pair.input), outputs.get(pair.output)
            if spec_in is None:
                raise ManifestMismatchError(f"state[{i}].input names {pair.input!r}, not an "
                                            f"input of the model (inputs: {have_in})")
            if spec_out is None:
                raise ManifestMismatchError(f"state[{i}].output names {pair.output!r}, not an "
                                            f"output of the model (outputs: {have_out})")
            shape_in, shape_out = spec_in.shape, spec_out.shape
            if len(shape_in) != len(shape_out) or any(
                    a is not None and b is not None and a != b
                    for a, b in zip(shape_in, shape_out, strict=True)):
                raise ManifestMismatchError(
                    f"state[{i}]: output {pair.output!r} {format_shape(shape_out)} cannot be "
                    f"fed back to input {pair.input!r} {format_shape(shape_in)}")
            initial = np.full(_concrete(spec_in), pair.initial, dtype=spec_in.dtype)
            self._pairs.append((pair.input, pair.output, initial))
        constants = manifest.constant_inputs if manifest is not None else {}
        for name, value in constants.items():
            spec = inputs.get(name)
            if spec is None:
                raise ManifestMismatchError(f"constant_inputs names {name!r}, not an input "
                                            f"of the model (inputs: {have_in})")
            arr = np.asarray(value)
            try:
                arr = np.broadcast_to(arr, _concrete(spec)).astype(spec.dtype)
            except ValueError as exc:
                raise ManifestMismatchError(
                    f"constant_inputs.{name}: a value of shape {arr.shape} does not fit "
                    f"input {name!r} {format_shape(spec.shape)}") from exc
            self._constants[name] = arr
        fed = {p[0] for p in self._pairs} | set(self._constants) | {data.name}
        missing = [s.name for s in model.inputs if s.name not in fed]
        if missing:
            raise ManifestMismatchError(
                f"the model's input(s) {', '.join(map(repr, missing))} get no value: name "
                "them in the manifest's `state` or `constant_inputs`")
        self._state_outputs = frozenset(output for _, output, _ in self._pairs)
        self._state: Arrays = {}
        self.reset()

    @property
    def stateful(self) -> bool:
        """True when the model carries state from one inference to the next."""
        return bool(self._pairs)

    def reset(self) -> None:
        """Start again from the initial state (a new stream: the source reconnected)."""
        self._state = {name: initial for name, _, initial in self._pairs}

    def run(self, data: np.ndarray[Any, Any]) -> Arrays:
        """One inference on ``data``; returns the outputs that are not state."""
        feed: Arrays = {self.data_name: data, **self._constants, **self._state}
        outputs = self.model.run(feed)
        for name, output, _ in self._pairs:
            self._state[name] = outputs[output]
        return {k: v for k, v in outputs.items() if k not in self._state_outputs}


def needs_inputs(model: Model) -> bool:
    """True when the model has more than its data input to feed (state or constants)."""
    manifest = model.manifest
    return manifest is not None and bool(manifest.state or manifest.constant_inputs)
