"""Turn raw input (a camera frame, a sensor window) into a model's input tensor.

The recipe comes from the model's manifest (:mod:`edge_runtime.models.manifest`);
for a model without one, :func:`default_image_preprocessing` derives a plain recipe
from the input tensor (size and layout from its shape, RGB, scale 1/255).
OpenCV is imported only when an image is actually resized.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from edge_runtime.errors import InputError
from edge_runtime.models.manifest import ImagePreprocessing, WindowPreprocessing
from edge_runtime.models.types import TensorSpec

ImageFn = Callable[[np.ndarray], np.ndarray]


def default_image_preprocessing(spec: TensorSpec) -> ImagePreprocessing:
    """A recipe for an image model that has no manifest, read off its input tensor."""
    if len(spec.shape) != 4 or spec.layout is None:
        raise InputError(
            f"input {spec.name!r} with shape {spec.shape} is not an image tensor",
            hint="pass a .npy file or comma-separated numbers instead of an image",
        )
    if spec.layout == "NCHW":
        channels, height, width = spec.shape[1], spec.shape[2], spec.shape[3]
    else:
        height, width, channels = spec.shape[1], spec.shape[2], spec.shape[3]
    if height is None or width is None:
        raise InputError(f"input {spec.name!r} has a dynamic image size; give a manifest")
    color: Literal["GRAY", "RGB"] = "GRAY" if channels == 1 else "RGB"
    scale = 1.0 if spec.dtype == np.uint8 and spec.quant is None else 1.0 / 255.0
    return ImagePreprocessing(size=(width, height), layout=spec.layout, color=color, scale=scale)


def _letterbox(cv2: Any, image: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = image.shape[:2]
    ratio = min(width / w, height / h)
    new_w, new_h = max(1, round(w * ratio)), max(1, round(h * ratio))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    canvas = np.full((height, width, *image.shape[2:]), 114, dtype=image.dtype)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = resized
    return canvas


def _center_crop(image: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = image.shape[:2]
    side_ratio = min(w / width, h / height)
    crop_w, crop_h = round(width * side_ratio), round(height * side_ratio)
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    return image[top : top + crop_h, left : left + crop_w]


def image_preprocessor(recipe: ImagePreprocessing, spec: TensorSpec) -> ImageFn:
    """A function: uint8 frame (H, W, 3 BGR, or H, W gray) -> batched tensor for ``spec``.

    The result is float32 unless the model takes raw uint8 without quantization
    parameters; quantized inputs are left to :meth:`Model.run` to quantize.
    """
    import cv2

    width, height = recipe.size
    mean = np.asarray(recipe.mean, dtype=np.float32)
    std = np.asarray(recipe.std, dtype=np.float32)
    raw_uint8 = spec.dtype == np.uint8 and spec.quant is None
    interpolation = cv2.INTER_AREA

    def run(frame: np.ndarray) -> np.ndarray:
        image = frame
        if image.ndim == 2:
            image = image[:, :, None]
        if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
            raise InputError(f"expected an image (H, W, C) but got shape {frame.shape}")
        if image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        if recipe.color == "GRAY" and image.shape[2] == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[:, :, None]
        elif recipe.color != "GRAY" and image.shape[2] == 1:
            image = np.repeat(image, 3, axis=2)
        elif recipe.color == "RGB":
            image = image[:, :, ::-1]
        if recipe.resize == "center_crop":
            image = _center_crop(image, width, height)
        if recipe.resize == "letterbox":
            image = _letterbox(cv2, np.ascontiguousarray(image), width, height)
        elif image.shape[:2] != (height, width):
            image = cv2.resize(
                np.ascontiguousarray(image), (width, height), interpolation=interpolation
            )
        if image.ndim == 2:
            image = image[:, :, None]
        if recipe.invert:
            image = 255 - image
        tensor: np.ndarray = (
            image.astype(np.uint8, copy=False)
            if raw_uint8
            else (image.astype(np.float32) * recipe.scale - mean) / std
        )
        if recipe.layout == "NCHW":
            tensor = tensor.transpose(2, 0, 1)
        return np.ascontiguousarray(tensor[None, ...])

    return run


def window_tensor(values: np.ndarray, recipe: WindowPreprocessing, spec: TensorSpec) -> np.ndarray:
    """The last ``recipe.length`` values, normalised and shaped for ``spec`` (batch 1)."""
    window = np.asarray(values, dtype=np.float32)[-recipe.length :]
    if window.size != recipe.length:
        raise InputError(f"the model needs a window of {recipe.length} values, got {window.size}")
    normalised = (window - recipe.mean) / recipe.std
    shape = tuple(1 if d is None else d for d in spec.shape)
    try:
        return normalised.reshape(shape)
    except ValueError as exc:
        raise InputError(
            f"a window of {recipe.length} does not fit input shape {spec.shape}"
        ) from exc
