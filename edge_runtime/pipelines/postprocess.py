"""Turn raw model outputs into results that rules can test: a flat ``dict``.

- classification: ``label``, ``score``, ``class_index`` and ``top_k`` (label, score) pairs;
- detection (SSD- or YOLO-style outputs, decoded and filtered by NMS in numpy):
  ``count``, ``max_score``, ``detections`` (list of dicts with ``box`` in
  ``[x1, y1, x2, y2]`` fractions of the input, ``score``, ``class_index``, ``label``);
- forecast (a next-value regressor): ``forecast``, ``residual`` (normalised units) and an
  anomaly ``score`` in [0, 1] that reaches 0.5 at the manifest's residual threshold.

Every scalar key is available to rules by name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.models.manifest import (
    ClassificationPostprocessing,
    DetectionPostprocessing,
    ForecastPostprocessing,
)

FloatArray = npt.NDArray[np.float32]
Result = dict[str, Any]


def _pick(outputs: Mapping[str, np.ndarray[Any, Any]], name: str | None) -> np.ndarray[Any, Any]:
    if name is not None:
        return outputs[name]
    return next(iter(outputs.values()))


def softmax(x: FloatArray) -> FloatArray:
    """Numerically stable softmax over the last axis."""
    z = x - np.max(x, axis=-1, keepdims=True)
    e = np.exp(z)
    out: FloatArray = e / np.sum(e, axis=-1, keepdims=True)
    return out


def classify(
    outputs: Mapping[str, np.ndarray[Any, Any]],
    spec: ClassificationPostprocessing,
    labels: Sequence[str] = (),
) -> Result:
    """Top-k classes of the first (or named) output, batch element 0."""
    scores = np.asarray(_pick(outputs, spec.output), dtype=np.float32).reshape(-1)
    if spec.softmax:
        scores = softmax(scores)
    k = max(1, min(spec.top_k, scores.size))
    order = np.argsort(-scores, kind="stable")[:k]

    def name(i: int) -> str:
        return labels[i] if i < len(labels) else str(i)

    top = [(name(int(i)), float(scores[i])) for i in order]
    return {"label": top[0][0], "score": top[0][1], "class_index": int(order[0]), "top_k": top}


def iou(box: FloatArray, boxes: FloatArray) -> FloatArray:
    """Intersection over union of one ``[x1, y1, x2, y2]`` box with many."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    out: FloatArray = inter / np.maximum(area + areas - inter, 1e-12)
    return out


def nms(boxes: FloatArray, scores: FloatArray, iou_threshold: float,
        classes: npt.NDArray[np.int64] | None = None) -> list[int]:
    """Greedy non-maximum suppression; per class when ``classes`` is given. Returns indices."""
    order = list(np.argsort(-scores, kind="stable"))
    keep: list[int] = []
    while order:
        best = order.pop(0)
        keep.append(int(best))
        if not order:
            break
        rest = np.asarray(order)
        overlaps = iou(boxes[best], boxes[rest])
        suppress = overlaps > iou_threshold
        if classes is not None:
            suppress &= classes[rest] == classes[best]
        order = [int(i) for i in rest[~suppress]]
    return keep


def decode_ssd(outputs: Mapping[str, np.ndarray[Any, Any]]) -> tuple[FloatArray, FloatArray,
                                                                     npt.NDArray[np.int64]]:
    """SSD-style outputs to (boxes ``[x1, y1, x2, y2]``, scores, classes).

    Accepts the TFLite detection post-process layout (boxes ``(1, N, 4)`` as
    ``[ymin, xmin, ymax, xmax]``, classes ``(1, N)``, scores ``(1, N)``, count ``(1,)``)
    or raw per-class scores (boxes ``(1, N, 4)``, scores ``(1, N, C)``, background 0).
    Outputs are told apart by shape, in model output order.
    """
    arrays = [np.asarray(a) for a in outputs.values()]
    boxes_raw = next(a for a in arrays if a.ndim == 3 and a.shape[-1] == 4)
    boxes_yx = boxes_raw.reshape(-1, 4).astype(np.float32)
    boxes = boxes_yx[:, [1, 0, 3, 2]]
    n = boxes.shape[0]
    rest = [a for a in arrays if a is not boxes_raw]
    per_class = [a for a in rest if a.ndim == 3 and a.shape[1] == n]
    if per_class:
        cls_scores = per_class[0].reshape(n, -1).astype(np.float32)
        if cls_scores.shape[1] > 1:
            cls_scores = cls_scores[:, 1:]  # column 0 is background
        classes = np.argmax(cls_scores, axis=1).astype(np.int64)
        scores = cls_scores[np.arange(n), classes]
        return boxes, scores, classes
    flat = [a.reshape(-1) for a in rest if a.size == n]
    classes = flat[0].astype(np.int64)
    scores = flat[1].astype(np.float32)
    counts = [a for a in rest if a.size == 1]
    if counts:
        m = int(counts[0].reshape(-1)[0])
        boxes, scores, classes = boxes[:m], scores[:m], classes[:m]
    return boxes, scores, classes


def decode_yolo(outputs: Mapping[str, np.ndarray[Any, Any]], input_size: tuple[int, int],
                num_classes: int | None = None) -> tuple[FloatArray, FloatArray,
                                                         npt.NDArray[np.int64]]:
    """YOLO-style output ``(1, N, 4+C)`` (v8) or ``(1, N, 5+C)`` (v5, with objectness).

    Boxes are ``cx, cy, w, h`` in input pixels (or fractions when all are <= 1);
    ``(1, 4+C, N)`` (transposed v8 export) is accepted too. ``num_classes`` tells v5 from
    v8 when given (from the manifest's labels); otherwise v8 is assumed.
    """
    pred = np.asarray(next(iter(outputs.values())), dtype=np.float32)
    pred = pred.reshape(pred.shape[-2], pred.shape[-1]) if pred.ndim == 3 else pred
    widths = (4 + num_classes, 5 + num_classes) if num_classes is not None else ()
    channels_first = (pred.shape[0] in widths and pred.shape[1] not in widths) if widths \
        else pred.shape[0] < pred.shape[1]
    if channels_first:
        pred = pred.T
    has_objectness = num_classes is not None and pred.shape[1] == 5 + num_classes
    cls_scores = pred[:, 5:] * pred[:, 4:5] if has_objectness else pred[:, 4:]
    classes = np.argmax(cls_scores, axis=1).astype(np.int64)
    scores = cls_scores[np.arange(pred.shape[0]), classes]
    cx, cy, w, h = pred[:, 0], pred[:, 1], pred[:, 2], pred[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    if boxes.size and float(np.max(np.abs(boxes))) > 1.5:
        width, height = input_size
        boxes = boxes / np.asarray([width, height, width, height], dtype=np.float32)
    return boxes.astype(np.float32), scores.astype(np.float32), classes


def detect(
    outputs: Mapping[str, np.ndarray[Any, Any]],
    spec: DetectionPostprocessing,
    labels: Sequence[str] = (),
    input_size: tuple[int, int] = (1, 1),
    max_detections: int = 100,
) -> Result:
    """Decoded, thresholded and NMS-filtered detections."""
    if spec.style == "ssd":
        boxes, scores, classes = decode_ssd(outputs)
    else:
        boxes, scores, classes = decode_yolo(outputs, input_size, len(labels) or None)
    mask = scores >= spec.score_threshold
    boxes, scores, classes = boxes[mask], scores[mask], classes[mask]
    keep = nms(boxes, scores, spec.iou_threshold, classes)[:max_detections]
    detections = [
        {
            "box": [round(float(v), 4) for v in np.clip(boxes[i], 0.0, 1.0)],
            "score": float(scores[i]),
            "class_index": int(classes[i]),
            "label": labels[int(classes[i])] if int(classes[i]) < len(labels)
            else str(int(classes[i])),
        }
        for i in keep
    ]
    return {
        "count": len(detections),
        "max_score": float(scores[keep].max()) if keep else 0.0,
        "detections": detections,
    }


def forecast_score(
    outputs: Mapping[str, np.ndarray[Any, Any]],
    spec: ForecastPostprocessing,
    actual_normalised: float,
    mean: float = 0.0,
    std: float = 1.0,
) -> Result:
    """Anomaly score of the value that followed a forecast window.

    ``score = r / (r + threshold)`` for the absolute residual ``r`` (normalised units):
    0 for a perfect forecast, 0.5 at the manifest's ``residual_threshold``, towards 1 beyond.
    """
    predicted = float(np.asarray(_pick(outputs, spec.output)).reshape(-1)[0])
    residual = abs(actual_normalised - predicted)
    threshold = max(spec.residual_threshold, 1e-12)
    score = residual / (residual + threshold) if math.isfinite(residual) else 1.0
    return {"forecast": predicted * std + mean, "residual": residual, "score": score}
