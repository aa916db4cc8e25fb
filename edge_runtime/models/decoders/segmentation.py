"""``type = "segmentation"``: a per-pixel class map.

Outputs (one, or the one named by ``output``): scores ``(1, H, W, C)`` (NHWC) or
``(1, C, H, W)`` (NCHW), logits or probabilities, C = ``len(labels)``; or class indices
``(1, H, W)``. The result has ``mask`` (``(H, W)`` class indices in model-input
pixels), ``fractions`` (label -> share of the frame) and, for rules, ``fraction_<label>``
per label and ``label`` (the class covering most of the frame). Letterbox padding is
left out of the fractions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edge_runtime.errors import ManifestError
from edge_runtime.models.decoders.base import (
    Decoder,
    Expectation,
    Outputs,
    Result,
    find_output,
    label_key,
    label_of,
)
from edge_runtime.models.manifest import SegmentationPostprocessing
from edge_runtime.models.preprocess import FrameGeometry
from edge_runtime.models.types import TensorSpec


class SegmentationDecoder(Decoder):
    """Class map -> mask and per-class fractions of the frame."""

    name = "segmentation"

    def __init__(self, spec: SegmentationPostprocessing, labels: Sequence[str],
                 input_size: tuple[int, int]) -> None:
        super().__init__(labels, input_size)
        if not labels:
            raise ManifestError("type = \"segmentation\" needs `labels`, one per class "
                                "(result fields are named fraction_<label>)")
        self.spec = spec
        self._output = ""
        self.layout = spec.layout

    def expectations(self) -> list[Expectation]:
        c = len(self.labels)
        options = {
            "NHWC": [Expectation("scores", f"(1, H, W, {c})", "per-pixel class scores")],
            "NCHW": [Expectation("scores", f"(1, {c}, H, W)", "per-pixel class scores")],
            "indices": [Expectation("classes", "(1, H, W)", "per-pixel class index")],
        }
        if self.spec.layout != "auto":
            return options[self.spec.layout]
        return options["NHWC"] + options["NCHW"] + options["indices"]

    def bind(self, outputs: Sequence[TensorSpec]) -> None:
        c = len(self.labels)
        named = find_output(outputs, self.spec.output)
        if self.spec.output is not None and named is None:
            raise self.mismatch(outputs, f"no output named {self.spec.output!r}")
        out = named or outputs[0]
        shape = out.shape
        layout = self.spec.layout
        if layout == "auto":
            if len(shape) == 4 and shape[3] == c:
                layout = "NHWC"
            elif len(shape) == 4 and shape[1] == c:
                layout = "NCHW"
            elif len(shape) == 3:
                layout = "indices"
        ok = ((layout == "NHWC" and len(shape) == 4 and shape[3] == c)
              or (layout == "NCHW" and len(shape) == 4 and shape[1] == c)
              or (layout == "indices" and len(shape) == 3))
        if not ok:
            raise self.mismatch(outputs, f"output {out.name!r} {shape} is not a class map of "
                                f"{c} label(s)", "check `labels` and `layout`")
        self._output, self.layout = out.name, layout

    def decode(self, outputs: Outputs, geometry: FrameGeometry | None = None) -> Result:
        raw = np.asarray(outputs[self._output])
        mask: np.ndarray[Any, Any]
        if self.layout == "indices":
            mask = raw.reshape(raw.shape[-2:]).astype(np.uint8)
        elif self.layout == "NCHW":
            mask = _argmax_planes(raw[0])
        else:
            mask = _argmax_last(raw[0])
        region = mask
        if geometry is not None:
            # Only the part of the map that shows the frame (not letterbox padding).
            h, w = (int(d) for d in np.shape(mask)[:2])
            in_w, in_h = geometry.input_size
            x1, y1, x2, y2 = geometry.valid_input_box_px()
            region = mask[y1 * h // in_h: max(y1 * h // in_h + 1, y2 * h // in_h),
                          x1 * w // in_w: max(x1 * w // in_w + 1, x2 * w // in_w)]
        counts = np.bincount(region.reshape(-1), minlength=len(self.labels))
        total = max(1, int(region.size))
        fractions = {label_of(self.labels, i): float(counts[i]) / total
                     for i in range(len(self.labels))}
        result: Result = {"mask": mask, "fractions": fractions,
                          "label": label_of(self.labels, int(np.argmax(counts)))}
        for label, value in fractions.items():
            result[f"fraction_{label_key(label)}"] = round(value, 6)
        return result


def _argmax_planes(scores: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Class index per pixel of ``(C, H, W)`` scores, as uint8; what ``argmax(axis=0)`` gives.

    One running maximum over the contiguous class planes, in class order: where plane
    ``c`` is strictly greater than every plane before it, the pixel's class becomes ``c``
    (ties stay with the lower class, as argmax's first maximum does). Because ``c`` only
    grows, "becomes c" is ``mask = max(mask, c * greater)``: four vectorised passes per
    class, several times faster than ``argmax(axis=0)`` (which copies to make the class
    axis last) or an argmax over a short last axis (a call per pixel). NaN scores are a
    broken model; this does not reproduce argmax's "first NaN wins" for them.
    """
    c_count = scores.shape[0]
    if c_count > 256:
        return np.asarray(np.argmax(scores, axis=0))
    planes = scores.reshape(c_count, -1)
    best = planes[0].copy()
    mask = np.zeros(best.shape, np.uint8)
    greater = np.empty(best.shape, bool)
    step = np.empty(best.shape, np.uint8)
    as_bytes = greater.view(np.uint8)
    for c in range(1, c_count):
        np.greater(planes[c], best, out=greater)
        np.maximum(best, planes[c], out=best)
        np.multiply(as_bytes, np.uint8(c), out=step)
        np.maximum(mask, step, out=mask)
    return mask.reshape(scores.shape[1:])


#: Score dtypes that OpenCV transposes (a plain copy, so exact).
_CV_DTYPES = (np.dtype(np.float32), np.dtype(np.uint8), np.dtype(np.int8),
              np.dtype(np.uint16), np.dtype(np.int16))


def _argmax_last(scores: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Class index per pixel of ``(H, W, C)`` scores, as uint8; what ``argmax(axis=-1)`` gives.

    The classes are made contiguous planes by OpenCV's transpose (a tiled copy, about
    a tenth of the time NumPy's takes for a (H*W, 21) array), then reduced as in
    :func:`_argmax_planes`: together about a third of ``argmax(axis=-1)``, which makes
    one call per pixel over its short class axis.
    """
    c_count = scores.shape[-1]
    flat = np.ascontiguousarray(scores.reshape(-1, c_count))
    if flat.dtype not in _CV_DTYPES or c_count > 256 or flat.shape[0] == 0:
        return np.asarray(flat.argmax(axis=1).astype(np.uint8 if c_count <= 256 else np.int64)
                          ).reshape(scores.shape[:-1])
    import cv2  # a dependency already; imported here so decoders stay light to import

    planes = cv2.transpose(flat) if c_count > 1 else flat.reshape(1, -1)
    return _argmax_planes(planes).reshape(scores.shape[:-1])
