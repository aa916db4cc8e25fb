"""Draw a decoded result on its source frame: boxes, labels, keypoints and masks.

Colours are fixed per class index (:data:`PALETTE_BGR`), so a test or a person can
tell classes apart run after run. OpenCV is imported when drawing, not before.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.models.preprocess import FrameGeometry

#: Box / mask colour of class index i is ``PALETTE_BGR[i % len(PALETTE_BGR)]``.
PALETTE_BGR: tuple[tuple[int, int, int], ...] = (
    (0, 255, 0), (0, 0, 255), (255, 0, 0), (0, 255, 255), (255, 0, 255), (255, 255, 0),
    (0, 128, 255), (255, 128, 0), (128, 0, 255), (0, 255, 128),
)


def colour_of(class_index: int) -> tuple[int, int, int]:
    """The BGR colour of a class."""
    return PALETTE_BGR[class_index % len(PALETTE_BGR)]


def _mask_on_frame(mask: np.ndarray, geometry: FrameGeometry | None,
                   frame_hw: tuple[int, int]) -> np.ndarray:
    """The mask (model-input coordinates) resampled onto the frame; -1 off the map."""
    h, w = frame_hw
    mh, mw = mask.shape
    geo = geometry or FrameGeometry((w, h), (mw, mh), mw / w, mh / h)
    in_w, in_h = geo.input_size
    xs = (np.arange(w) + 0.5) * geo.scale_x + geo.offset_x_px  # input pixels
    ys = (np.arange(h) + 0.5) * geo.scale_y + geo.offset_y_px
    cols = np.floor(xs * mw / in_w).astype(np.int64)
    rows = np.floor(ys * mh / in_h).astype(np.int64)
    valid = ((rows[:, None] >= 0) & (rows[:, None] < mh)
             & (cols[None, :] >= 0) & (cols[None, :] < mw))
    picked = mask[np.clip(rows, 0, mh - 1)[:, None], np.clip(cols, 0, mw - 1)[None, :]]
    out: np.ndarray = picked.astype(np.int64)
    out[~valid] = -1
    return out


def draw_result(frame: np.ndarray, result: dict[str, Any],
                geometry: FrameGeometry | None = None, *, mask_alpha: float = 0.45,
                skip_mask_class: int | None = 0) -> np.ndarray:
    """A copy of ``frame`` (BGR) with the result drawn on it.

    Boxes are drawn 2 px wide in their class colour with ``label score`` above; keypoints
    as dots; a ``mask`` is blended in (class ``skip_mask_class``, usually background,
    left clear); a classifier's ``label`` is written in the top-left corner.
    """
    import cv2

    image = np.ascontiguousarray(frame.copy() if frame.ndim == 3 else
                                 cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    h, w = image.shape[:2]
    mask = result.get("mask")
    if isinstance(mask, np.ndarray) and mask.ndim == 2:
        on_frame = _mask_on_frame(mask, geometry, (h, w))
        overlay = image.copy()
        for cls in np.unique(on_frame):
            if cls < 0 or cls == skip_mask_class:
                continue
            overlay[on_frame == cls] = colour_of(int(cls))
        image = cv2.addWeighted(overlay, mask_alpha, image, 1.0 - mask_alpha, 0.0)
    for det in result.get("detections", []):
        colour = colour_of(int(det.get("class_index", 0)))
        x1, y1, x2, y2 = (round(v) for v in det["box_px"])
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, 2)
        text = f"{det.get('label', '')} {det.get('score', 0.0):.2f}"
        cv2.putText(image, text, (x1, max(10, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    colour, 1, cv2.LINE_AA)
        for kx, ky in det.get("keypoints", []):
            cv2.circle(image, (round(kx * w), round(ky * h)), 2, colour, -1)
    if "detections" not in result and "mask" not in result and "label" in result:
        cv2.putText(image, f"{result['label']} {result.get('score', 0.0):.2f}", (4, 14),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour_of(0), 1, cv2.LINE_AA)
    return image


def write_image_atomic(path: Path, image: np.ndarray) -> None:
    """Encode ``image`` by ``path``'s suffix and write it to a temporary file, then rename,
    so a reader never sees half an image. Raises OSError (or ValueError for a suffix
    OpenCV cannot encode)."""
    import cv2

    suffix = path.suffix.lower() or ".jpg"
    ok, encoded = cv2.imencode(suffix, image)
    if not ok:
        raise ValueError(f"cannot encode an image as {suffix!r}")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.resolve().parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(encoded.tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
