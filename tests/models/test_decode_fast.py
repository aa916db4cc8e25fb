"""The decoders' fast paths give what the plain numpy they replace gives.

Early return with no candidate, anchor decoding from precomputed per-column arrays,
weighted NMS on bitsets, boxes and keypoints kept side by side (rows) through NMS and
the result, and the class-plane argmax of segmentation (ties included).
"""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.models.decoders.anchors import AnchorSSDDecoder
from edge_runtime.models.decoders.base import detection_result, sigmoid
from edge_runtime.models.decoders.nms import MATRIX_MAX, hard_nms, weighted_nms, weighted_nms_rows
from edge_runtime.models.decoders.segmentation import _argmax_last, _argmax_planes
from edge_runtime.models.manifest import AnchorConfig, DetectionPostprocessing, ImagePreprocessing
from edge_runtime.models.preprocess import FrameGeometry, frame_geometry
from edge_runtime.models.types import TensorSpec

ANCHORS = AnchorConfig(input_size=(128, 128), num_layers=4, strides=[8, 16, 16, 16],
                       min_scale=0.1484375, max_scale=0.75, fixed_anchor_size=True)
SPECS = [TensorSpec("regressors", (1, 896, 16), np.dtype(np.float32)),
         TensorSpec("classificators", (1, 896, 1), np.dtype(np.float32))]


def _decoder(**options: object) -> AnchorSSDDecoder:
    spec = DetectionPostprocessing(style="ssd_anchors", num_keypoints=6, anchors=ANCHORS,
                                   **options)  # type: ignore[arg-type]
    decoder = AnchorSSDDecoder(spec, ["face"], (128, 128))
    decoder.bind(SPECS)
    return decoder


def test_no_candidate_gives_the_empty_result_as_a_fresh_dict() -> None:
    decoder = _decoder()
    outputs = {"regressors": np.zeros((1, 896, 16), np.float32),
               "classificators": np.full((1, 896, 1), -9.0, np.float32)}
    empty = detection_result(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                             np.zeros(0, np.int64), ["face"], (128, 128), geometry=None)
    first = decoder.decode(outputs)
    assert first == empty == {"count": 0, "max_score": 0.0, "detections": [], "count_face": 0}
    first["detections"].append("changed by a caller")
    first["count"] = 7
    assert decoder.decode(outputs) == empty


@pytest.mark.parametrize("options", [
    {},
    {"reverse_output_order": False, "apply_exponential_on_box_size": True, "nms": "hard"},
])
def test_anchor_boxes_and_keypoints_follow_the_mediapipe_formula(
        options: dict[str, object]) -> None:
    decoder = _decoder(score_threshold=0.5, iou_threshold=0.99, **options)
    rng = np.random.default_rng(3)
    raw: np.ndarray = rng.normal(0, 4, (1, 896, 16)).astype(np.float32)
    logits = np.full((1, 896, 1), -9.0, np.float32)
    picked = [5, 300, 700]  # far apart: each is its own cluster
    logits[0, picked, 0] = [3.0, 2.0, 1.0]
    result = decoder.decode({"regressors": raw, "classificators": logits})
    assert result["count"] == 3
    anchors = decoder.anchors[picked]
    r = raw[0, picked]
    if decoder.spec.reverse_output_order:
        x, y, w, h, kps = r[:, 0], r[:, 1], r[:, 2], r[:, 3], r[:, 4:].reshape(3, 6, 2)
    else:
        y, x, h, w, kps = r[:, 0], r[:, 1], r[:, 2], r[:, 3], r[:, 4:].reshape(3, 6, 2)[..., ::-1]
    xc = x / 128 * anchors[:, 2] + anchors[:, 0]
    yc = y / 128 * anchors[:, 3] + anchors[:, 1]
    if decoder.spec.apply_exponential_on_box_size:
        w, h = np.exp(w / 128) * anchors[:, 2], np.exp(h / 128) * anchors[:, 3]
    else:
        w, h = w / 128 * anchors[:, 2], h / 128 * anchors[:, 3]
    boxes = np.clip(np.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], axis=1), 0, 1)
    kx = kps[..., 0] / 128 * anchors[:, 2:3] + anchors[:, 0:1]
    ky = kps[..., 1] / 128 * anchors[:, 3:4] + anchors[:, 1:2]
    got = result["detections"]
    np.testing.assert_allclose([d["box"] for d in got], boxes, atol=1e-4)
    np.testing.assert_allclose([d["keypoints"] for d in got], np.stack([kx, ky], axis=2),
                               atol=1e-4)


def _weighted_reference(boxes: np.ndarray, scores: np.ndarray, threshold: float,
                        extra: np.ndarray) -> tuple[list[int], np.ndarray, np.ndarray]:
    """The same suppression, one box at a time, in float64."""
    order = list(np.argsort(-scores, kind="stable"))
    keep, merged, merged_extra = [], [], []
    while order:
        best = order[0]
        x1 = np.maximum(boxes[best, 0], boxes[order, 0])
        y1 = np.maximum(boxes[best, 1], boxes[order, 1])
        x2 = np.minimum(boxes[best, 2], boxes[order, 2])
        y2 = np.minimum(boxes[best, 3], boxes[order, 3])
        inter = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
        area = (boxes[order, 2] - boxes[order, 0]) * (boxes[order, 3] - boxes[order, 1])
        iou = inter / np.maximum(area[0] + area - inter, 1e-12)
        iou[0] = np.inf
        cluster = [o for o, v in zip(order, iou, strict=True) if v > threshold]
        w = scores[cluster].astype(np.float64)
        keep.append(int(best))
        merged.append(w @ boxes[cluster] / w.sum())
        merged_extra.append(np.tensordot(w, extra[cluster], 1) / w.sum())
        order = [o for o, v in zip(order, iou, strict=True) if v <= threshold]
    return keep, np.asarray(merged), np.asarray(merged_extra)


def test_weighted_nms_on_bitsets_matches_the_one_box_at_a_time_reference() -> None:
    rng = np.random.default_rng(5)
    for _ in range(30):
        n = int(rng.integers(1, 40))
        centres = rng.uniform(0, 100, (4, 2))[rng.integers(0, 4, n)] + rng.normal(0, 3, (n, 2))
        sizes = rng.uniform(5, 30, (n, 2))
        boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], 1).astype(np.float32)
        scores = rng.uniform(0.1, 1, n).astype(np.float32)
        extra = rng.uniform(0, 100, (n, 6, 2)).astype(np.float32)
        keep, merged, merged_extra = weighted_nms(boxes, scores, 0.3, extra)
        want_keep, want, want_extra = _weighted_reference(boxes, scores, 0.3, extra)
        assert n <= MATRIX_MAX
        assert keep == want_keep
        np.testing.assert_allclose(merged, want, rtol=1e-5, atol=1e-4)
        assert merged_extra is not None
        np.testing.assert_allclose(merged_extra, want_extra, rtol=1e-5, atol=1e-4)
    keep, merged, merged_extra = weighted_nms(boxes, scores, 0.3, extra, max_out=1)
    assert keep == want_keep[:1] and merged.shape == (1, 4)
    assert merged_extra is not None and merged_extra.shape == (1, 6, 2)


@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.int8, np.float64, np.int64])
@pytest.mark.parametrize("classes", [1, 2, 21])
def test_class_plane_argmax_equals_argmax_first_maximum_on_ties(dtype: type,
                                                                 classes: int) -> None:
    rng = np.random.default_rng(7)
    # Few distinct values: most pixels have ties between several classes.
    scores: np.ndarray = rng.integers(-3, 3, (37, 53, classes)).astype(dtype)
    scores[:5, :5] = scores[:5, :5, :1]  # every class equal: argmax says class 0
    want = np.argmax(scores, axis=-1)
    got = _argmax_last(scores)
    assert got.dtype == np.uint8 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    planes = np.ascontiguousarray(np.moveaxis(scores, -1, 0))
    np.testing.assert_array_equal(_argmax_planes(planes), want)
    # Not contiguous (a slice of a bigger output) still works.
    wide = np.concatenate([scores, scores], axis=1)[:, ::2]
    np.testing.assert_array_equal(_argmax_last(wide), np.argmax(wide, axis=-1))


def _reference_decode(decoder: AnchorSSDDecoder, outputs: dict[str, np.ndarray],
                      geometry: FrameGeometry | None) -> dict[str, object]:
    """The anchor decoder before boxes and keypoints were kept side by side: separate
    arrays, :func:`weighted_nms` / :func:`hard_nms` and :func:`detection_result`."""
    spec, n = decoder.spec, len(decoder.anchors)
    best = np.asarray(outputs["classificators"], np.float32).reshape(n, -1)[:, 0]
    picked = np.flatnonzero(best >= decoder._logit_threshold)
    if picked.size == 0:
        return decoder._empty_result()
    scores = sigmoid(best[picked], spec.score_clipping_thresh)
    classes = np.zeros(picked.size, np.int64)
    raw = np.asarray(outputs["regressors"], np.float32).reshape(n, -1)[picked]
    raw = raw[:, decoder._columns]
    decoded = raw / decoder._divisors * decoder._anchor_mul[picked] + decoder._anchor_add[picked]
    if spec.apply_exponential_on_box_size:
        decoded[:, 2:4] = (np.exp(raw[:, 2:4] / decoder._divisors[2:4])
                           * decoder._anchor_mul[picked, 2:4])
    centre, half = decoded[:, 0:2], decoded[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1) * decoder._box_size
    kps = (decoded[:, 4:] * decoder._kp_size).reshape(picked.size, spec.num_keypoints, 2)
    if spec.nms == "weighted":
        keep, boxes, merged = weighted_nms(boxes, scores, spec.iou_threshold, kps,
                                           spec.max_detections)
        assert merged is not None
        kps = merged
    else:
        keep = hard_nms(boxes, scores, spec.iou_threshold, classes, spec.max_detections)
        boxes, kps = boxes[keep], kps[keep]
    return detection_result(boxes, scores[keep], classes[keep], ["face"], (128, 128),
                            geometry=geometry, keypoints_input_px=kps)


def _faces(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Background logits, a few faces each found by a cluster of anchors, some lone
    candidates, and values that stress rounding (zeros, -0, boxes off the frame)."""
    raw = rng.normal(0, rng.uniform(1, 40), (1, 896, 16)).astype(np.float32)
    logits = rng.normal(-8, 1.5, (1, 896, 1)).astype(np.float32)
    for _ in range(int(rng.integers(0, 5))):
        start, size = int(rng.integers(0, 880)), int(rng.integers(1, 10))
        logits[0, start:start + size, 0] = rng.uniform(-1, 4, size)
        raw[0, start:start + size, 2:4] = rng.uniform(5, 60) + rng.normal(0, 1, (size, 2))
    for j in rng.integers(0, 896, int(rng.integers(0, 4))):
        logits[0, j, 0] = rng.uniform(0, 5)
    if rng.random() < 0.2:
        raw[0, rng.integers(0, 896, 50)] = -0.0
    return {"regressors": raw, "classificators": logits}


@pytest.mark.parametrize("options", [
    {},
    {"score_threshold": 0.3, "max_detections": 2},
    {"reverse_output_order": True, "apply_exponential_on_box_size": True},
    {"nms": "hard"},
])
def test_rows_fast_path_gives_the_reference_result_exactly(options: dict[str, object]) -> None:
    decoder = _decoder(iou_threshold=0.3, **options)
    rng = np.random.default_rng(11)
    geometries = [None, frame_geometry(ImagePreprocessing(size=(128, 128), resize="stretch"),
                                       640, 480),
                  frame_geometry(ImagePreprocessing(size=(128, 128), resize="letterbox"),
                                 1280, 720)]
    found = 0
    for i in range(120):
        outputs = _faces(rng)
        geometry = geometries[i % 3]
        got, want = decoder.decode(outputs, geometry), _reference_decode(decoder, outputs,
                                                                          geometry)
        assert got == want
        # == treats -0.0 and 0.0 as equal; the text (JSON) does not.
        assert repr(got) == repr(want)
        found += got["count"]
    assert found > 50


def test_weighted_nms_rows_equals_weighted_nms_bit_for_bit() -> None:
    rng = np.random.default_rng(13)
    for n in [*range(1, 40), 63, 64, 65, 200]:
        centres = rng.uniform(0, 100, (5, 2))[rng.integers(0, 5, n)] + rng.normal(0, 3, (n, 2))
        sizes = rng.uniform(0, 30, (n, 2))
        boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], 1).astype(np.float32)
        boxes[rng.random(n) < 0.1] = -0.0  # zero-area boxes, signed zeros
        scores = rng.choice(rng.uniform(0, 1, 6), n).astype(np.float32)  # ties
        scores[rng.random(n) < 0.05] = 0.0
        extra = rng.uniform(-50, 100, (n, 6, 2)).astype(np.float32)
        extra[rng.random((n, 6, 2)) < 0.1] = -0.0
        rows = np.concatenate([boxes, extra.reshape(n, -1)], axis=1)
        for max_out in (None, 2):
            keep, merged = weighted_nms_rows(rows, scores, 0.3, max_out)
            want_keep, want, want_extra = weighted_nms(boxes, scores, 0.3, extra, max_out)
            assert want_extra is not None
            assert keep == want_keep
            want_rows = np.concatenate([want, want_extra.reshape(len(keep), -1)], axis=1)
            assert merged.tobytes() == want_rows.tobytes()  # bit for bit, -0.0 included
            keep, boxes_only = weighted_nms_rows(boxes, scores, 0.3, max_out)
            assert keep == want_keep
            assert boxes_only.tobytes() == want.tobytes()
