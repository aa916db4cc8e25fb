"""Non-maximum suppression: hard (keep the best of a cluster) and weighted (average it)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


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


#: Up to this many candidates, all pairwise IoUs are computed at once (n x n floats).
MATRIX_MAX = 1024


def iou_matrix(boxes: FloatArray) -> FloatArray:
    """Pairwise IoU of ``[x1, y1, x2, y2]`` boxes, ``(n, n)``."""
    x1 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    y1 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    x2 = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    y2 = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    # maximum(d, 0) is clip(d, 0, None) without np.clip's Python-level dispatch.
    inter = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    out: FloatArray = inter / np.maximum(areas[:, None] + areas[None, :] - inter, 1e-12)
    return out


def _offset_by_class(boxes: FloatArray, classes: npt.NDArray[np.int64] | None) -> FloatArray:
    """Shift each class's boxes into its own region so one pass never mixes classes."""
    if classes is None or boxes.size == 0:
        return boxes
    span = float(np.max(boxes) - min(0.0, float(np.min(boxes)))) + 1.0
    shifted: FloatArray = boxes + (classes.astype(np.float32) * span)[:, None]
    return shifted


def hard_nms(boxes: FloatArray, scores: FloatArray, iou_threshold: float,
             classes: npt.NDArray[np.int64] | None = None,
             max_out: int | None = None) -> list[int]:
    """Greedy NMS (per class when ``classes`` is given); indices, best first."""
    work = _offset_by_class(boxes, classes)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    if 0 < order.size <= MATRIX_MAX:
        # Each row of the overlap matrix as one Python int (bit j: overlaps rank j), so
        # suppressing a box's cluster is one OR, not a pass over every candidate.
        over = iou_matrix(work[order]) > iou_threshold
        rows = np.packbits(over, axis=1, bitorder="little")
        packed, width = rows.tobytes(), rows.shape[1]
        masks = [int.from_bytes(packed[k:k + width], "little")
                 for k in range(0, len(packed), width)]
        suppressed = 0
        ranks = order.tolist()
        for i, mask in enumerate(masks):
            if suppressed >> i & 1:
                continue
            keep.append(ranks[i])
            if max_out is not None and len(keep) >= max_out:
                break
            suppressed |= mask
        return keep
    while order.size:
        best = int(order[0])
        keep.append(best)
        if max_out is not None and len(keep) >= max_out:
            break
        rest = order[1:]
        order = rest[iou(work[best], work[rest]) <= iou_threshold]
    return keep


def weighted_nms(boxes: FloatArray, scores: FloatArray, iou_threshold: float,
                 extra: FloatArray | None = None, max_out: int | None = None
                 ) -> tuple[list[int], FloatArray, FloatArray | None]:
    """MediaPipe's WEIGHTED suppression: each cluster (IoU > threshold with its best box)
    becomes one detection whose box (and ``extra`` rows, e.g. keypoints) is the
    score-weighted mean of the cluster; it keeps the best box's score and class.

    Returns (indices of each cluster's best box, merged boxes, merged extras).
    """
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    merged: list[FloatArray] = []
    merged_extra: list[FloatArray] = []
    if 0 < order.size <= MATRIX_MAX:
        return _weighted_small(boxes, scores, order, iou_threshold=iou_threshold,
                               extra=extra, max_out=max_out)
    while order.size:
        best = int(order[0])
        overlaps = iou(boxes[best], boxes[order])
        overlaps[0] = np.inf  # the best box is in its own cluster, even with zero area
        cluster = order[overlaps > iou_threshold]
        weights = scores[cluster]
        total = float(weights.sum()) or 1.0
        keep.append(best)
        merged.append((boxes[cluster] * weights[:, None]).sum(axis=0) / total)
        if extra is not None:
            w = weights.reshape(-1, *([1] * (extra.ndim - 1)))
            merged_extra.append((extra[cluster] * w).sum(axis=0) / total)
        if max_out is not None and len(keep) >= max_out:
            break
        order = order[overlaps <= iou_threshold]
    boxes_out = np.asarray(merged, np.float32).reshape(-1, 4)
    extra_out = None
    if extra is not None:
        extra_out = np.asarray(merged_extra, np.float32).reshape(len(keep), *extra.shape[1:])
    return keep, boxes_out, extra_out


def _weighted_small(boxes: FloatArray, scores: FloatArray, order: npt.NDArray[np.intp], *,
                    iou_threshold: float, extra: FloatArray | None, max_out: int | None
                    ) -> tuple[list[int], FloatArray, FloatArray | None]:
    """:func:`weighted_nms` for up to :data:`MATRIX_MAX` candidates, from one IoU matrix.

    Clusters are found on overlap rows held as Python int bitsets (as in :func:`hard_nms`),
    so only each cluster's merge is numpy work. Boxes and extras stay two dot products:
    one over both side by side is cheaper but sums in another order (1 ulp apart).
    """
    n = order.size
    ranked, weights_all = boxes[order], scores[order]
    over = iou_matrix(ranked) > iou_threshold
    np.fill_diagonal(over, True)  # each box is in its own cluster, even with zero area
    rows = np.packbits(over, axis=1, bitorder="little")
    packed, width = rows.tobytes(), rows.shape[1]
    ranked_extra = extra[order].reshape(n, -1) if extra is not None else None
    out = np.empty((n, 4), np.float32)
    out_extra = np.empty((n, 0 if ranked_extra is None else ranked_extra.shape[1]), np.float32)
    ranks = order.tolist()
    keep: list[int] = []
    remaining = (1 << n) - 1
    for i in range(n):
        if not remaining >> i & 1:
            continue
        bits = int.from_bytes(packed[i * width:(i + 1) * width], "little") & remaining
        remaining &= ~bits
        # Ranks before i are all taken already, so a cluster's members are i and after.
        members = np.asarray([j for j in range(i, n) if bits >> j & 1], np.intp)
        w = weights_all[members]
        total = float(w.sum()) or 1.0
        out[len(keep)] = w @ ranked[members] / total
        if ranked_extra is not None:
            out_extra[len(keep)] = w @ ranked_extra[members] / total
        keep.append(ranks[i])
        if max_out is not None and len(keep) >= max_out:
            break
    boxes_out = out[:len(keep)]
    extra_out = None
    if extra is not None:
        extra_out = out_extra[:len(keep)].reshape(len(keep), *extra.shape[1:])
    return keep, boxes_out, extra_out


def _overlaps(boxes: FloatArray, iou_threshold: float) -> npt.NDArray[np.bool_]:
    """``iou_matrix(boxes) > iou_threshold`` in fewer, wider calls (the same float32 values:
    x1 and y1 (x2 and y2) are one maximum (minimum) over both coordinates, the
    widths and heights one subtraction; every element sees the same operations)."""
    lo = np.maximum(boxes[:, None, 0:2], boxes[None, :, 0:2])
    wh = np.minimum(boxes[:, None, 2:4], boxes[None, :, 2:4])
    wh -= lo
    np.maximum(wh, 0, out=wh)
    inter = wh[..., 0] * wh[..., 1]
    sides = boxes[:, 2:4] - boxes[:, 0:2]
    areas = sides[:, 0] * sides[:, 1]
    union = areas[:, None] + areas[None, :]
    union -= inter
    np.maximum(union, 1e-12, out=union)
    np.divide(inter, union, out=union)
    out: npt.NDArray[np.bool_] = union > iou_threshold
    return out


#: Up to this many candidates, :func:`weighted_nms_rows` ranks and clusters in Python.
SMALL_MAX = 64


def weighted_nms_rows(rows: FloatArray, scores: FloatArray, iou_threshold: float,
                      max_out: int | None = None) -> tuple[list[int], FloatArray]:
    """:func:`weighted_nms` on rows that hold a box then its extras side by side
    (``(n, 4 + E)``: ``[x1, y1, x2, y2, e0, e1, ...]``); returns the kept indices and
    the merged rows, equal bit for bit to ``weighted_nms(rows[:, :4], scores, t,
    rows[:, 4:])``.

    For the few candidates of a real frame the cost is numpy calls, and right after
    the model each kind of call not made yet costs tens of microseconds (its code is
    out of the caches), so up to :data:`SMALL_MAX` candidates: the ranking and the
    clusters in Python, the overlap matrix in half the calls, a cluster of one box
    merged without a dot product (``w * x / w``, what ``w @ x`` of one row computes),
    and the others merged as :func:`weighted_nms` does (two dot products over
    contiguous boxes and extras, so the sums run in the same order).
    """
    n = int(rows.shape[0])
    weight_list = scores.tolist()
    if n > SMALL_MAX or any(math.isnan(w) for w in weight_list):
        return _weighted_rows_bitsets(rows, scores, iou_threshold, max_out)
    # np.argsort(-scores, kind="stable") for a few non-NaN scores: Python's sort is stable.
    ranks = sorted(range(n), key=lambda i: -weight_list[i])
    # The overlap matrix is symmetric bit for bit (max, min, + commute), so it is built
    # on the rows as they come and read in rank order.
    over = _overlaps(rows, iou_threshold).tolist()
    out = np.empty((n, rows.shape[1]), np.float32)
    has_extra = rows.shape[1] > 4
    keep: list[int] = []
    left = ranks
    while left:
        best = left[0]
        near = over[best]
        # The best box is in its own cluster, even with zero area.
        members = [j for j in left if near[j] or j == best]
        left = [j for j in left if not (near[j] or j == best)]
        row = len(keep)
        if len(members) == 1:
            # One member: w @ x is 0 + w * x per column (numpy's loop, no BLAS, for a
            # single row; the 0 turns -0 into +0), then / total, with total = w (or 1
            # when w is 0).
            merged = out[row]
            np.multiply(rows[best], scores[best], out=merged)
            merged += 0.0
            merged /= weight_list[best] or 1.0
        else:
            index = np.asarray(members, np.intp)
            w = scores[index]
            total = float(w.sum()) or 1.0
            out[row, :4] = w @ np.ascontiguousarray(rows[index, :4]) / total
            if has_extra:
                out[row, 4:] = w @ np.ascontiguousarray(rows[index, 4:]) / total
        keep.append(best)
        if max_out is not None and len(keep) >= max_out:
            break
    return keep, out[:len(keep)]


def _weighted_rows_bitsets(rows: FloatArray, scores: FloatArray, iou_threshold: float,
                           max_out: int | None) -> tuple[list[int], FloatArray]:
    """:func:`weighted_nms_rows` for more than :data:`SMALL_MAX` candidates."""
    extra = rows[:, 4:] if rows.shape[1] > 4 else None
    keep, boxes, merged_extra = weighted_nms(np.ascontiguousarray(rows[:, :4]), scores,
                                             iou_threshold, extra, max_out)
    if merged_extra is None:
        return keep, boxes
    return keep, np.concatenate([boxes, merged_extra.reshape(len(keep), -1)], axis=1)
