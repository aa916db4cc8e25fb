"""Turn raw model outputs into results that rules can test: a flat ``dict``.

- classification: ``label``, ``score``, ``class_index`` and ``top_k`` (label, score) pairs;
- detection, segmentation and plugins: a decoder from :mod:`edge_runtime.models.decoders`,
  picked here from the manifest (:func:`make_decoder`) and bound to the model's outputs
  once (:func:`check_outputs`, which refuses a manifest that does not fit); detections
  have ``box`` in ``[x1, y1, x2, y2]`` fractions of the source frame (letterbox undone),
  ``count``, ``max_score`` and ``count_<label>``; segmentation gives ``fraction_<label>``;
- probability (one number, a voice-activity model's speech probability): ``probability``,
  ``score`` (the same, for rules) and ``label`` (the manifest's label at or above its
  threshold, else its ``other``);
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

from edge_runtime.errors import ManifestMismatchError
from edge_runtime.models.decoders import nms as _nms
from edge_runtime.models.decoders.base import Decoder
from edge_runtime.models.manifest import (
    ClassificationPostprocessing,
    DetectionPostprocessing,
    ForecastPostprocessing,
    ImagePreprocessing,
    Manifest,
    PluginPostprocessing,
    Postprocessing,
    ProbabilityPostprocessing,
    SegmentationPostprocessing,
)
from edge_runtime.models.preprocess import FrameGeometry, frame_geometry
from edge_runtime.models.types import TensorSpec

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


def probability(outputs: Mapping[str, np.ndarray[Any, Any]],
                spec: ProbabilityPostprocessing) -> Result:
    """The first element of the first (or named) output as a probability."""
    p = float(np.asarray(_pick(outputs, spec.output)).reshape(-1)[0])
    return {"probability": p, "score": p,
            "label": spec.label if p >= spec.threshold else spec.other}


iou = _nms.iou


def nms(boxes: FloatArray, scores: FloatArray, iou_threshold: float,
        classes: npt.NDArray[np.int64] | None = None) -> list[int]:
    """Greedy non-maximum suppression; per class when ``classes`` is given. Returns indices."""
    return _nms.hard_nms(boxes, scores, iou_threshold, classes)


# -- decoders ---------------------------------------------------------------------------


def make_decoder(post: Postprocessing | str | None, labels: Sequence[str],
                 input_size: tuple[int, int]) -> Decoder | None:
    """The decoder for a manifest's ``[postprocessing]`` (None for classes and forecasts).

    Implementations are imported here, by the consumer, so the decoder interface knows
    none of them.
    """
    if isinstance(post, str):
        post = PluginPostprocessing(function=post)
    if isinstance(post, DetectionPostprocessing):
        if post.style == "ssd":
            from edge_runtime.models.decoders.tflite_ssd import TFLiteSSDDecoder

            return TFLiteSSDDecoder(post, labels, input_size)
        if post.style == "ssd_anchors":
            from edge_runtime.models.decoders.anchors import AnchorSSDDecoder

            return AnchorSSDDecoder(post, labels, input_size)
        from edge_runtime.models.decoders.yolo import YoloDecoder

        return YoloDecoder(post, labels, input_size)
    if isinstance(post, SegmentationPostprocessing):
        from edge_runtime.models.decoders.segmentation import SegmentationDecoder

        return SegmentationDecoder(post, labels, input_size)
    if isinstance(post, PluginPostprocessing):
        from edge_runtime.models.decoders.plugin import PluginDecoder

        return PluginDecoder(post, labels, input_size)
    return None


def input_size_of(manifest: Manifest | None, inputs: Sequence[TensorSpec]) -> tuple[int, int]:
    """The model input's (width, height) in pixels: the manifest's, else the tensor's."""
    pre = manifest.preprocessing if manifest is not None else None
    if isinstance(pre, ImagePreprocessing):
        return pre.size
    spec = inputs[0] if inputs else None
    if spec is not None and len(spec.shape) == 4:
        if spec.layout == "NCHW":
            h, w = spec.shape[2], spec.shape[3]
        else:
            h, w = spec.shape[1], spec.shape[2]
        if h is not None and w is not None:
            return w, h
    return 1, 1


def check_outputs(manifest: Manifest, inputs: Sequence[TensorSpec],
                  outputs: Sequence[TensorSpec]) -> Decoder | None:
    """Refuse a manifest whose postprocessing does not fit the model's tensors.

    Returns the bound decoder (None for classification and forecasts). Raises
    :class:`~edge_runtime.errors.ManifestMismatchError` naming the tensor and what was
    expected, or :class:`~edge_runtime.errors.PluginError`.
    """
    post = manifest.postprocessing
    # State outputs go back into the model (models/state.py); they are not results.
    fed_back = {p.output for p in manifest.state}
    outputs = [s for s in outputs if s.name not in fed_back]
    decoder = make_decoder(post, manifest.labels, input_size_of(manifest, inputs))
    if decoder is not None:
        decoder.bind(outputs)
        return decoder
    if isinstance(post, ProbabilityPostprocessing):
        if post.output is not None and all(s.name != post.output for s in outputs):
            raise ManifestMismatchError(
                f"postprocessing.output names {post.output!r} but the model's outputs are "
                f"{', '.join(s.name for s in outputs)}")
        return None
    if isinstance(post, ClassificationPostprocessing) or (
            post is None and manifest.task == "classification"):
        name = post.output if isinstance(post, ClassificationPostprocessing) else None
        spec = next((s for s in outputs if s.name == name), None) if name else (
            outputs[0] if outputs else None)
        if name is not None and spec is None:
            raise ManifestMismatchError(
                f"postprocessing.output names {name!r} but the model's outputs are "
                f"{', '.join(s.name for s in outputs)}")
        spatial = [d for d in (spec.shape[1:] if spec is not None else ()) if d is None or d > 1]
        if spec is not None and len(spatial) >= 2:
            raise ManifestMismatchError(
                f"postprocessing 'classes': output {spec.describe()} has "
                f"{len(spatial)} dimensions of size > 1; a classifier gives (1, C). It looks "
                "like a segmentation map (H x W x C) or a detector: use task = "
                "\"segmentation\" with [postprocessing] type = \"segmentation\", or a "
                "detection style")
    return None


def _specs_of(outputs: Mapping[str, np.ndarray[Any, Any]]) -> list[TensorSpec]:
    return [TensorSpec(n, tuple(int(d) for d in np.shape(a)), np.asarray(a).dtype)
            for n, a in outputs.items()]


def detect(
    outputs: Mapping[str, np.ndarray[Any, Any]],
    spec: DetectionPostprocessing,
    labels: Sequence[str] = (),
    input_size: tuple[int, int] = (1, 1),
    geometry: FrameGeometry | None = None,
) -> Result:
    """Decode detections from outputs alone (decoder bound to their shapes).

    Pipelines bind a decoder once (:func:`check_outputs`); this is for one-off use.
    Boxes are fractions of the source frame (of the input without ``geometry``).
    """
    decoder = make_decoder(spec, labels, input_size)
    assert decoder is not None
    decoder.bind(_specs_of(outputs))
    return decoder.decode(outputs, geometry)


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


class ModelDecoder:
    """A model's decoder bound to its outputs, plus the frame geometry it must undo.

    Built once per pipeline (refusing a manifest that does not fit the model); called in
    the pipeline's worker thread with each inference's outputs and the source frame's
    size, from which the preprocessing's letterbox / crop parameters are recomputed by
    the same function that applied them (:func:`~edge_runtime.models.preprocess.frame_geometry`).
    """

    def __init__(self, decoder: Decoder, recipe: ImagePreprocessing | None) -> None:
        self.decoder = decoder
        self.recipe = recipe

    def __call__(self, outputs: Mapping[str, np.ndarray[Any, Any]],
                 frame_hw: tuple[int, ...] | None = None) -> Result:
        geometry = None
        if self.recipe is not None and frame_hw is not None and len(frame_hw) >= 2:
            geometry = frame_geometry(self.recipe, int(frame_hw[1]), int(frame_hw[0]))
        return self.decoder.decode(outputs, geometry)


def decoder_for_model(model: Any) -> ModelDecoder | None:
    """The bound decoder of a loaded model, or None when its results are classes/forecasts."""
    manifest = getattr(model, "manifest", None)
    if manifest is None:
        return None
    decoder = check_outputs(manifest, model.inputs, model.outputs)
    if decoder is None:
        return None
    pre = manifest.preprocessing
    return ModelDecoder(decoder, pre if isinstance(pre, ImagePreprocessing) else None)
