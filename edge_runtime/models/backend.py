"""The model-backend interface that every format implementation follows.

A backend wraps one loaded model file of one format and does the least possible:
it reports the model's tensors and runs already-validated inputs. Everything that is
the same across formats (input checking, quantization, statistics, warm-up) lives
in :class:`edge_runtime.models.model.Model`.

This module imports no implementation: :mod:`edge_runtime.models.backends` names them
(``"module:Class"``, imported when a model of that format is loaded). They sit side by
side: ``onnx_backend.py`` (onnxruntime), ``tflite_backend.py`` (LiteRT, falling back
to tflite-runtime), ``remote_backend.py`` (a model on a peer, over the Open Inference
Protocol): each is one file and one registry line. What an implementation must and
may override, and where each method runs, is in :class:`Backend`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_runtime.models.types import TensorSpec

#: Model file suffix -> backend format name.
FORMATS: dict[str, str] = {".onnx": "onnx", ".tflite": "tflite"}


class Backend(ABC):
    """One loaded model, run by one inference engine.

    Implementers **must**:

    - take ``(path, *, num_threads)`` in ``__init__`` (``num_threads``: the engine's
      intra-op threads, None for its default), load the file there, and set
      :attr:`name`, ``_inputs`` and ``_outputs``; refuse a bad file with a
      :class:`~edge_runtime.errors.ModelError` subclass and a missing engine with
      :class:`~edge_runtime.errors.BackendUnavailableError`. Import the engine only
      here (or in :meth:`engine_version`), never at module import;
    - provide :meth:`run`, safe to call from several threads at once (lock inside if the
      engine is not);
    - provide the classmethod :meth:`engine_version` (the probe's cache key).

    They **may** override :meth:`close`.

    Threads: ``__init__`` and :meth:`engine_version` run wherever
    :func:`~edge_runtime.models.load_model` is called: in an executor when the daemon
    builds a config, and in the probe's child process for a file not yet known to be
    good. :meth:`run` runs in the worker thread of each pipeline that uses the model (and
    in the caller's thread for ``edge-runtime infer``/``bench``); never on the event
    loop. :meth:`close` runs once, after the workers have stopped, in an executor.
    """

    #: Engine name reported to users, e.g. ``"onnxruntime 1.20.1"``.
    name: str = ""

    #: Set by each implementation's ``__init__``: the model's inputs, in the order
    #: :meth:`run` takes them, and its outputs, in the order :meth:`run` returns them.
    _inputs: list[TensorSpec]
    _outputs: list[TensorSpec]

    @abstractmethod
    def __init__(self, path: Path, *, num_threads: int | None = None) -> None:
        """Load the model file at ``path`` (see the class docstring)."""

    @property
    def inputs(self) -> list[TensorSpec]:
        """The model's inputs, in the order :meth:`run` takes them."""
        return self._inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        """The model's outputs, in the order :meth:`run` returns them."""
        return self._outputs

    @abstractmethod
    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run one inference on arrays of exactly the input dtypes, in input order.

        Shapes are checked against :attr:`inputs` by the caller; dynamic dimensions
        may differ from call to call. Returns new arrays the caller may keep.
        """

    @classmethod
    @abstractmethod
    def engine_version(cls) -> str:
        """``<engine> <version>`` that this backend would use, e.g. ``onnxruntime 1.20.1``
        (imports the engine; BackendUnavailableError when it is missing)."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends need nothing
        """Release the engine's resources."""


def detect_format(path: Path) -> str:
    """Return ``"onnx"`` or ``"tflite"`` for a model file, by suffix, else by content.

    TFLite flatbuffers carry the identifier ``TFL3`` at byte 4; ONNX protobufs have no
    magic number, so an unknown suffix is only accepted for TFLite.
    """
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is not None:
        return fmt
    from edge_runtime.errors import UnknownModelFormatError

    try:
        with path.open("rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise UnknownModelFormatError(f"cannot read {path}: {exc.strerror}") from exc
    if head[4:8] == b"TFL3":
        return "tflite"
    raise UnknownModelFormatError(
        f"{path.name}: unknown model format (suffix {path.suffix or 'none'!r})"
    )


def zeros_for(specs: Sequence[TensorSpec]) -> list[np.ndarray]:
    """Zero-filled arrays for each spec, dynamic dimensions set to 1 (warm-up, probing)."""
    return [
        np.zeros(tuple(1 if d is None else d for d in spec.shape), dtype=spec.dtype)
        for spec in specs
    ]
