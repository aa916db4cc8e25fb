"""Turn raw input (a camera frame, a sensor window) into a model's input tensor.

The recipe comes from the model's manifest (:mod:`edge_runtime.models.manifest`);
for a model without one, :func:`default_image_preprocessing` derives a plain recipe
from the input tensor (size and layout from its shape, RGB, scale 1/255).
OpenCV is imported only when an image is actually resized.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from edge_runtime.errors import InputError
from edge_runtime.models.manifest import (
    AudioPreprocessing,
    ImagePreprocessing,
    WindowPreprocessing,
)
from edge_runtime.models.types import TensorSpec

ImageFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True, slots=True)
class FrameGeometry:
    """Where a source frame went in the model's input: ``input = source * scale + offset``.

    Pixels, per axis. Stretch scales each axis on its own; letterbox scales both by the
    same ratio and pads (``offset`` is the padding before the image); center crop scales
    and shifts the crop to the input's origin. Decoders use :meth:`to_source` to put
    boxes back into source-frame coordinates.
    """

    source_size: tuple[int, int]  # width, height of the frame, pixels
    input_size: tuple[int, int]  # width, height of the model input, pixels
    scale_x: float
    scale_y: float
    offset_x_px: float = 0.0
    offset_y_px: float = 0.0

    @classmethod
    def identity(cls, width: int, height: int) -> FrameGeometry:
        """The frame is the input (no resizing): for tensors given as they are."""
        return cls((width, height), (width, height), 1.0, 1.0)

    def to_source(self, xy_input_px: np.ndarray) -> np.ndarray:
        """``(..., 2k)`` input-pixel x, y pairs to source-frame pixels."""
        out = np.asarray(xy_input_px, dtype=np.float32).copy()
        out[..., 0::2] = (out[..., 0::2] - self.offset_x_px) / self.scale_x
        out[..., 1::2] = (out[..., 1::2] - self.offset_y_px) / self.scale_y
        return out

    def valid_input_box_px(self) -> tuple[int, int, int, int]:
        """The part of the input that shows the frame (not letterbox padding): x1, y1, x2, y2."""
        w, h = self.input_size
        x1 = max(0, round(self.offset_x_px))
        y1 = max(0, round(self.offset_y_px))
        x2 = min(w, round(self.offset_x_px + self.source_size[0] * self.scale_x))
        y2 = min(h, round(self.offset_y_px + self.source_size[1] * self.scale_y))
        return x1, y1, x2, y2


def frame_geometry(recipe: ImagePreprocessing, frame_width: int, frame_height: int
                   ) -> FrameGeometry:
    """How :func:`image_preprocessor` maps a frame of this size into the input."""
    width, height = recipe.size
    w, h = frame_width, frame_height
    if recipe.resize == "letterbox":
        ratio = min(width / w, height / h)
        new_w, new_h = max(1, round(w * ratio)), max(1, round(h * ratio))
        top, left = (height - new_h) // 2, (width - new_w) // 2
        return FrameGeometry((w, h), (width, height), new_w / w, new_h / h, left, top)
    if recipe.resize == "center_crop":
        side_ratio = min(w / width, h / height)
        crop_w, crop_h = round(width * side_ratio), round(height * side_ratio)
        top, left = (h - crop_h) // 2, (w - crop_w) // 2
        sx, sy = width / crop_w, height / crop_h
        return FrameGeometry((w, h), (width, height), sx, sy, -left * sx, -top * sy)
    return FrameGeometry((w, h), (width, height), width / w, height / h)


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


def _letterbox(cv2: Any, image: np.ndarray, geometry: FrameGeometry) -> np.ndarray:
    """Resize keeping the aspect ratio and pad with grey 114 (as Ultralytics does)."""
    width, height = geometry.input_size
    w, h = geometry.source_size
    new_w, new_h = round(w * geometry.scale_x), round(h * geometry.scale_y)
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    canvas = np.full((height, width, *image.shape[2:]), 114, dtype=image.dtype)
    top, left = round(geometry.offset_y_px), round(geometry.offset_x_px)
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
    with_geometry = image_preprocessor_with_geometry(recipe, spec)

    def run(frame: np.ndarray) -> np.ndarray:
        return with_geometry(frame)[0]

    return run


def image_preprocessor_with_geometry(
    recipe: ImagePreprocessing, spec: TensorSpec
) -> Callable[[np.ndarray], tuple[np.ndarray, FrameGeometry]]:
    """Like :func:`image_preprocessor`, also returning where the frame went in the input
    (the letterbox scale and padding a detector's decoder must undo)."""
    import cv2

    width, height = recipe.size
    mean = np.asarray(recipe.mean, dtype=np.float32)
    std = np.asarray(recipe.std, dtype=np.float32)
    raw_uint8 = spec.dtype == np.uint8 and spec.quant is None
    interpolation = cv2.INTER_AREA

    def run(frame: np.ndarray) -> tuple[np.ndarray, FrameGeometry]:
        image = frame
        geometry = frame_geometry(recipe, frame.shape[1], frame.shape[0])
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
            image = _letterbox(cv2, np.ascontiguousarray(image), geometry)
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
        return np.ascontiguousarray(tensor[None, ...]), geometry

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


def audio_tensor(window: np.ndarray, recipe: AudioPreprocessing, spec: TensorSpec) -> np.ndarray:
    """One window of sound (float32 mono), times ``recipe.scale``, shaped for ``spec``.

    Fixed dimensions are kept; an open one after the batch takes the window's length
    (``(1, ?)`` becomes ``(1, 512)``), the batch is 1.
    """
    samples = np.asarray(window, dtype=np.float32)
    if samples.size != recipe.length:
        raise InputError(f"the model needs windows of {recipe.length} samples "
                         f"({recipe.window_s:g} s at {recipe.sample_rate_hz} Hz), got "
                         f"{samples.size}")
    if recipe.scale != 1.0:
        samples = samples * np.float32(recipe.scale)
    dims = list(spec.shape) or [samples.size]
    if dims[0] is None:
        dims[0] = 1
    fixed = int(np.prod([d for d in dims if d is not None]))
    open_dims = [i for i, d in enumerate(dims) if d is None]
    if open_dims and fixed and samples.size % fixed == 0:
        dims[open_dims[-1]] = samples.size // fixed
    shape = tuple(1 if d is None else int(d) for d in dims)
    try:
        return samples.reshape(shape)
    except ValueError as exc:
        raise InputError(f"a window of {samples.size} samples does not fit input "
                         f"{spec.name!r} of shape {spec.shape}") from exc
