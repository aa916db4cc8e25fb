"""Train, export, quantize and verify one digits image-classifier family (4 variants).

Used by ``digits.py`` (small 8x8 CNN) and ``heavy.py`` (bigger 32x32 CNN): both learn
scikit-learn's bundled handwritten digits with the same fixed stratified split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from common import (
    DATA_DIR,
    Variant,
    median_latencies_ms,
    ort_call,
    ort_predict,
    set_determinism,
    tflite_call,
    tflite_predict,
    write_manifest,
)
from onnx_export import export_sequential
from quantize import quantize_onnx_static, tflite_fp32, tflite_int8

HELDOUT_NPZ = DATA_DIR / "digits_heldout.npz"
LABELS = [str(i) for i in range(10)]


@dataclass
class DigitsSplit:
    """The fixed split: float training images in [0, 1] and uint8 held-out images."""

    x_train: np.ndarray  # (n, 8, 8) float32, pixels/16
    y_train: np.ndarray  # (n,) int64
    heldout_u8: np.ndarray  # (m, 8, 8) uint8, round(pixels*255/16)
    y_heldout: np.ndarray  # (m,) int64


def load_split() -> DigitsSplit:
    """scikit-learn ``load_digits``, stratified 75/25 split with seed 0 (no download)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.float32)  # 0..16
    labels = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=0.25, random_state=0, stratify=labels
    )
    heldout = np.clip(np.round(x_te * 255.0 / 16.0), 0, 255).astype(np.uint8)
    return DigitsSplit(x_tr / 16.0, y_tr, heldout, y_te)


def write_heldout(split: DigitsSplit) -> Path:
    """Write ``models/data/digits_heldout.npz`` (images uint8 (n,8,8), labels int64)."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(HELDOUT_NPZ, images=split.heldout_u8, labels=split.y_heldout)
    return HELDOUT_NPZ


def resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of (n, h, w) images to (n, size, size), half-pixel centres.

    Same sampling as OpenCV's ``INTER_LINEAR`` (and ``tf.image.resize`` bilinear) when
    enlarging, which is what the runtime does to a camera frame; float output.
    """
    _, h, w = images.shape

    def axis(src: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(size) + 0.5) * (src / size) - 0.5
        pos = np.clip(pos, 0, src - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, src - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    y0, y1, fy = axis(h)
    x0, x1, fx = axis(w)
    img = images.astype(np.float32)
    top = img[:, y0][:, :, x0] * (1 - fx) + img[:, y0][:, :, x1] * fx
    bot = img[:, y1][:, :, x0] * (1 - fx) + img[:, y1][:, :, x1] * fx
    return top * (1 - fy)[None, :, None] + bot * fy[None, :, None]


@dataclass
class FamilySpec:
    """What differs between image families."""

    family: str  # name prefix and card name, e.g. "digits"
    size: int  # model input is size x size x 1
    make_model: Callable[[], Any]  # returns an uncompiled Keras Sequential
    epochs: int
    batch_size: int
    description: str
    learning_rate: float = 1e-3


@dataclass
class FamilyResult:
    """Everything the cards and the build report need."""

    spec: FamilySpec
    params: int
    keras_top1: float
    onnx_max_abs_diff: float
    heldout: int
    variants: list[Variant] = field(default_factory=list)
    summary: str = ""


def _to_model_input(images01: np.ndarray, size: int) -> np.ndarray:
    """(n, 8, 8) in [0,1] -> (n, size, size) float32 in [0,1]."""
    if size == images01.shape[1]:
        return images01.astype(np.float32)
    return resize_bilinear(images01, size)


def heldout_inputs(split: DigitsSplit, size: int) -> np.ndarray:
    """Held-out images as the runtime sees them: uint8, resized to uint8, then /255.

    Returns (m, size, size) float32.
    """
    img = split.heldout_u8.astype(np.float32)
    if size != img.shape[1]:
        img = np.clip(np.round(resize_bilinear(img, size)), 0, 255)
    return (img / 255.0).astype(np.float32)


def build_family(spec: FamilySpec, split: DigitsSplit) -> FamilyResult:
    """Train the Keras model, write the 4 artefacts + manifests and measure them."""
    set_determinism()
    import keras

    s = spec.size
    x_train = _to_model_input(split.x_train, s)[..., None]  # NHWC
    x_held = heldout_inputs(split, s)
    x_held_nhwc = x_held[..., None]
    x_held_nchw = x_held[:, None]

    model = spec.make_model()
    model.compile(
        optimizer=keras.optimizers.Adam(spec.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x_train, split.y_train, epochs=spec.epochs, batch_size=spec.batch_size,
              shuffle=True, verbose=0)
    keras_probs = model.predict(x_held_nhwc, verbose=0, batch_size=256)
    keras_top1 = float((keras_probs.argmax(1) == split.y_heldout).mean())
    params = int(model.count_params())

    fam = spec.family
    v = {
        "fp32-onnx": Variant(f"{fam}-fp32-onnx", f"{fam}-fp32.onnx", "onnx", "float32"),
        "int8-onnx": Variant(f"{fam}-int8-onnx", f"{fam}-int8.onnx", "onnx", "int8",
                             float_model=f"{fam}-fp32-onnx"),
        "fp32-tflite": Variant(f"{fam}-fp32-tflite", f"{fam}-fp32.tflite", "tflite", "float32"),
        "int8-tflite": Variant(f"{fam}-int8-tflite", f"{fam}-int8.tflite", "tflite", "int8",
                               float_model=f"{fam}-fp32-tflite"),
    }
    doc = f"{spec.description} Input NCHW (N,1,{s},{s}) in [0,1]; output softmax (N,10)."
    export_sequential(model, (1, s, s), v["fp32-onnx"].path, doc)
    onnx_probs = ort_predict(v["fp32-onnx"].path, x_held_nchw)
    max_diff = float(np.abs(onnx_probs - keras_probs).max())
    if max_diff > 1e-4:
        raise RuntimeError(f"{fam}: ONNX export differs from Keras by {max_diff:g}")

    # Calibration / representative data: the training images (model input form).
    calib = x_train
    quantize_onnx_static(v["fp32-onnx"].path, v["int8-onnx"].path,
                         calib.transpose(0, 3, 1, 2))
    tflite_fp32(model, (1, s, s, 1), v["fp32-tflite"].path)
    tflite_int8(model, (1, s, s, 1), v["int8-tflite"].path, calib)

    for key, var in v.items():
        if var.backend == "onnx":
            probs = ort_predict(var.path, x_held_nchw)
        else:
            probs = tflite_predict(var.path, x_held_nhwc)
        var.metric_value = float((probs.argmax(1) == split.y_heldout).mean())
        var.size_bytes = var.path.stat().st_size
        var.extra["key"] = key

    sample_nchw = x_held_nchw[:1]
    sample_nhwc = x_held_nhwc[:1]
    ort_lat = median_latencies_ms({
        "fp32": ort_call(v["fp32-onnx"].path, sample_nchw),
        "int8": ort_call(v["int8-onnx"].path, sample_nchw),
    })
    tfl_lat = median_latencies_ms({
        "fp32": tflite_call(v["fp32-tflite"].path, sample_nhwc),
        "int8": tflite_call(v["int8-tflite"].path, sample_nhwc),
    })
    v["fp32-onnx"].latency_ms = ort_lat["fp32"]
    v["int8-onnx"].latency_ms = ort_lat["int8"]
    v["fp32-tflite"].latency_ms = tfl_lat["fp32"]
    v["int8-tflite"].latency_ms = tfl_lat["int8"]

    pre = {"type": "image", "size": [s, s], "layout": "NCHW", "color": "GRAY",
           "resize": "stretch", "scale": 1.0 / 255.0, "mean": [0.0], "std": [1.0],
           "invert": False}
    post = {"type": "classes", "softmax": False, "top_k": 3}
    for var in v.values():
        fp32_value = None
        if var.float_model:
            fp32_value = next(o.metric_value for o in v.values() if o.name == var.float_model)
        layout = "NCHW" if var.backend == "onnx" else "NHWC"
        write_manifest(
            var,
            task="classification",
            description=f"{spec.description} ({var.quantization}, {var.backend}, {layout}).",
            card=f"cards/{fam}.md",
            preprocessing={**pre, "layout": layout},
            postprocessing=post,
            metric="top1",
            fp32_value=fp32_value,
            held_out=len(split.y_heldout),
            labels=LABELS,
        )
    return FamilyResult(spec, params, keras_top1, max_diff, len(split.y_heldout),
                        list(v.values()))

