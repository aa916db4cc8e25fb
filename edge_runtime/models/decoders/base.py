"""The decoder interface and what every detector decoder shares (result building).

A decoder is made once per model from its manifest's ``[postprocessing]``, bound once
to the model's output tensors (which refuses a manifest that does not fit the model),
then called once per inference.
"""

from __future__ import annotations

import functools
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.errors import ManifestMismatchError
from edge_runtime.models.preprocess import FrameGeometry
from edge_runtime.models.types import TensorSpec, format_shape

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
Outputs = Mapping[str, np.ndarray[Any, Any]]
Result = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Expectation:
    """One output a decoder needs: its role, the shape it expects, and how it is read."""

    role: str
    shape: str
    note: str = ""

    def describe(self) -> str:
        """``boxes (1, N, 4): ymin, xmin, ymax, xmax as fractions``."""
        return f"{self.role} {self.shape}" + (f": {self.note}" if self.note else "")


@dataclass(frozen=True, slots=True)
class DecodeContext:
    """What a decoder (or a plugin function) knows besides the outputs.

    ``input_size`` is the model input's (width, height) in pixels; ``geometry`` says where
    the source frame went in it (``None`` when a tensor was given as it is);
    ``outputs`` describes the model's output tensors; ``options`` are the manifest's
    plugin options.
    """

    labels: Sequence[str]
    input_size: tuple[int, int]
    outputs: Sequence[TensorSpec] = ()
    geometry: FrameGeometry | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


class Decoder(ABC):
    """Decodes one model's raw outputs into a flat result ``dict``.

    Implementers **must** override:

    - :meth:`expectations`: the outputs the decoder needs, for ``models info`` and for
      error messages;
    - :meth:`bind`: match the model's output tensors (names, ranks, sizes) to the roles,
      remember which is which, and raise :class:`~edge_runtime.errors.ManifestMismatchError`
      naming the tensor and what was expected when they do not fit;
    - :meth:`decode`: one inference's outputs to a result.

    They **may** override :meth:`describe` (one line for listings).

    Where each runs: the constructor and :meth:`bind` run once, where the model is
    loaded (``check``, ``models verify``, ``infer``, or while the daemon builds its
    pipelines) and may be slow. :meth:`decode` runs in the pipeline's worker thread
    (an executor, never the event loop), once per inference, right after the model:
    no I/O, no locks, vectorised numpy only (it should cost <= 10 % of the model's
    latency). It must not keep references to the output arrays between calls.
    """

    #: The manifest's style or type, for messages.
    name: str = ""

    def __init__(self, labels: Sequence[str], input_size: tuple[int, int]) -> None:
        self.labels = list(labels)
        self.input_size = input_size

    @abstractmethod
    def expectations(self) -> list[Expectation]:
        """The outputs this decoder needs, in words."""

    @abstractmethod
    def bind(self, outputs: Sequence[TensorSpec]) -> None:
        """Match the model's outputs; raise ManifestMismatchError when they do not fit."""

    @abstractmethod
    def decode(self, outputs: Outputs, geometry: FrameGeometry | None = None) -> Result:
        """Decode one inference (worker thread; vectorised; no I/O)."""

    def describe(self) -> str:
        """One line: the decoder and what it expects."""
        return f"{self.name}: " + "; ".join(e.describe() for e in self.expectations())

    def mismatch(self, outputs: Sequence[TensorSpec], problem: str,
                 advice: str = "") -> ManifestMismatchError:
        """An error naming what is wrong, what the decoder expects and what the model has."""
        have = ", ".join(s.describe() for s in outputs) or "none"
        want = "; ".join(e.describe() for e in self.expectations())
        text = (f"postprocessing {self.name!r}: {problem} (expects {want}; "
                f"the model's outputs: {have})")
        if advice:
            text += f"; {advice}"
        return ManifestMismatchError(text)


def find_output(outputs: Sequence[TensorSpec], name: str | None) -> TensorSpec | None:
    """The output called ``name`` (None when the name is None or unknown)."""
    if name is None:
        return None
    return next((s for s in outputs if s.name == name), None)


def dim_text(shape: tuple[int | None, ...]) -> str:
    """A shape for messages (``?`` for open dimensions)."""
    return format_shape(shape)


def fits(dim: int | None, want: int) -> bool:
    """A dimension matches when it is that size or left open by the model."""
    return dim is None or dim == want


_KEY = re.compile(r"\W+")


def label_key(label: str) -> str:
    """A label as part of a result field name: ``traffic light`` -> ``traffic_light``."""
    return _KEY.sub("_", label.strip().lower()).strip("_") or "unnamed"


def label_of(labels: Sequence[str], index: int) -> str:
    """The label of a class index, or the index as text."""
    return labels[index] if 0 <= index < len(labels) else str(index)


def detection_result(
    boxes_input_px: FloatArray,
    scores: FloatArray,
    classes: IntArray,
    labels: Sequence[str],
    input_size: tuple[int, int],
    *,
    geometry: FrameGeometry | None,
    keypoints_input_px: FloatArray | None = None,
) -> Result:
    """The result of a detector: kept boxes in source-frame coordinates.

    ``boxes_input_px`` are ``[x1, y1, x2, y2]`` in model-input pixels; they are mapped
    back through ``geometry`` (undoing letterbox padding and scale) and clipped to the
    frame. Each detection has ``box`` (fractions of the source frame), ``box_px``
    (source pixels), ``score``, ``class_index``, ``label`` and, when the model gives
    them, ``keypoints`` (fractions, ``[[x, y], ...]``). Scalar fields for rules:
    ``count``, ``max_score`` and ``count_<label>`` per label.
    """
    geo = geometry or FrameGeometry.identity(*input_size)
    frame_w, frame_h = geo.source_size
    size = np.asarray([frame_w, frame_h, frame_w, frame_h], np.float32)
    boxes_px = np.minimum(np.maximum(geo.to_source(boxes_input_px.reshape(-1, 4)), 0.0), size)
    # One vectorised rounding and tolist per array: per-value Python work is what costs
    # here, not the arithmetic.
    px64 = boxes_px.astype(np.float64)  # float32 would round to 0.20000000298
    fractions = (px64 / size).round(4).tolist()
    pixels = px64.round(1).tolist()
    score_list = scores.astype(float).tolist()
    class_list = classes.astype(int).tolist()
    kps: list[Any] | None = None
    if keypoints_input_px is not None and keypoints_input_px.size:
        n = keypoints_input_px.shape[0]
        points = geo.to_source(keypoints_input_px.reshape(n, -1)).reshape(n, -1, 2)
        kps = (points.astype(np.float64) / [frame_w, frame_h]).round(4).tolist()
    names = labels
    detections = []
    for i, cls in enumerate(class_list):
        det: dict[str, Any] = {
            "box": fractions[i],
            "box_px": pixels[i],
            "score": score_list[i],
            "class_index": cls,
            "label": names[cls] if 0 <= cls < len(names) else str(cls),
        }
        if kps is not None:
            det["keypoints"] = kps[i]
        detections.append(det)
    result: Result = {
        "count": len(detections),
        "max_score": max(score_list) if score_list else 0.0,
        "detections": detections,
    }
    if labels:
        counts = np.bincount(classes[(classes >= 0) & (classes < len(labels))],
                             minlength=len(labels)).tolist()
        result.update(zip(_count_keys(tuple(labels)), counts, strict=True))
    return result


def rows_detection_result(
    rows_input_px: FloatArray,
    scores: FloatArray,
    classes: IntArray | None,
    labels: Sequence[str],
    input_size: tuple[int, int],
    *,
    geometry: FrameGeometry | None,
    num_keypoints: int = 0,
) -> Result:
    """:func:`detection_result` for boxes and keypoints held side by side, ``(n, 4 + 2K)``
    rows ``[x1, y1, x2, y2, kx0, ky0, ...]`` in model-input pixels; ``classes`` None
    means all class 0. The same result, value for value: the same float32 and float64
    operations on every element, in a few calls over the rows at once (mapping to the
    frame, clipping, which leaves the keypoints alone, and rounding), then Python.
    """
    geo = geometry or FrameGeometry.identity(*input_size)
    n = int(rows_input_px.shape[0])
    offset, scale, low, high, size64 = _row_vectors(geo, num_keypoints)
    # to_source: (v - offset) / scale per x, y; then the boxes' clip to the frame.
    mapped = np.subtract(rows_input_px, offset)
    mapped /= scale
    np.maximum(mapped, low, out=mapped)
    np.minimum(mapped, high, out=mapped)
    as64 = mapped.astype(np.float64)
    fractions = (as64 / size64).round(4).tolist()
    pixels = as64[:, :4].round(1).tolist()
    score_list = scores.tolist()
    names = labels
    class_list = [0] * n if classes is None else classes.tolist()
    detections = []
    for i, cls in enumerate(class_list):
        row = fractions[i]
        det: dict[str, Any] = {
            "box": row[:4],
            "box_px": pixels[i],
            "score": score_list[i],
            "class_index": cls,
            "label": names[cls] if 0 <= cls < len(names) else str(cls),
        }
        if num_keypoints:
            det["keypoints"] = [row[j:j + 2] for j in range(4, 4 + 2 * num_keypoints, 2)]
        detections.append(det)
    result: Result = {
        "count": n,
        "max_score": max(score_list) if score_list else 0.0,
        "detections": detections,
    }
    if labels:
        counts = [0] * len(labels)
        for cls in class_list:
            if 0 <= cls < len(counts):
                counts[cls] += 1
        result.update(zip(_count_keys(tuple(labels)), counts, strict=True))
    return result


@functools.lru_cache(maxsize=64)
def _row_vectors(geo: FrameGeometry, num_keypoints: int
                 ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray,
                            npt.NDArray[np.float64]]:
    """Per-column offset and scale (float32, as numpy casts to_source's Python floats),
    clip bounds (the keypoints' are infinite) and frame size (float64), for
    :func:`rows_detection_result`."""
    frame_w, frame_h = geo.source_size
    pairs = 2 + num_keypoints
    offset = np.asarray([geo.offset_x_px, geo.offset_y_px] * pairs, np.float32)
    scale = np.asarray([geo.scale_x, geo.scale_y] * pairs, np.float32)
    inf = float("inf")
    low = np.asarray([0.0] * 4 + [-inf] * (2 * num_keypoints), np.float32)
    high = np.asarray([frame_w, frame_h] * 2 + [inf] * (2 * num_keypoints), np.float32)
    size64 = np.asarray([frame_w, frame_h] * pairs, np.float32).astype(np.float64)
    for array in (offset, scale, low, high, size64):
        array.setflags(write=False)
    return offset, scale, low, high, size64


@functools.lru_cache(maxsize=64)
def _count_keys(labels: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"count_{label_key(label)}" for label in labels)


def sigmoid(x: FloatArray, clip: float = 0.0) -> FloatArray:
    """Logistic function, after clipping to +-``clip`` when ``clip`` > 0."""
    # minimum(maximum()) is np.clip without its Python-level dispatch (same values).
    z = np.minimum(np.maximum(x, -clip), clip) if clip > 0 else x
    out: FloatArray = (1.0 / (1.0 + np.exp(-z))).astype(np.float32, copy=False)
    return out
