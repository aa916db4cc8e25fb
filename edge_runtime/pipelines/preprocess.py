"""Preprocessing glue between samples and a model: frames and sliding windows.

The recipes themselves (resize or letterbox, colour order, layout, normalisation) live
with the model API in :mod:`edge_runtime.models.preprocess` and are driven by the model's
manifest; this module picks the right one for a model and keeps the sliding window of a
sensor stream.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.errors import ConfigError
from edge_runtime.models.manifest import ImagePreprocessing, WindowPreprocessing
from edge_runtime.models.preprocess import (
    default_image_preprocessing,
    image_preprocessor,
    window_tensor,
)

FrameFn = Callable[[npt.NDArray[np.uint8]], np.ndarray[Any, Any]]


class SlidingWindow:
    """The last ``length`` values of a stream, oldest first."""

    def __init__(self, length: int) -> None:
        if length < 1:
            raise ValueError("window length must be >= 1")
        self.length = length
        self._values: deque[float] = deque(maxlen=length)

    @property
    def full(self) -> bool:
        """True once ``length`` values have been seen."""
        return len(self._values) == self.length

    def push(self, value: float) -> None:
        """Append one value, forgetting the oldest when full."""
        self._values.append(value)

    def array(self) -> npt.NDArray[np.float32]:
        """The window as float32, oldest first."""
        return np.asarray(self._values, dtype=np.float32)


def frame_preprocessor(model: Any) -> FrameFn:
    """A frame -> input tensor function for an image model (manifest recipe or default)."""
    spec = model.inputs[0]
    manifest = model.manifest
    recipe = manifest.preprocessing if manifest is not None else None
    if recipe is None:
        recipe = default_image_preprocessing(spec)
    if not isinstance(recipe, ImagePreprocessing):
        raise ConfigError(f"model {getattr(manifest, 'name', '?')} takes a sensor window, "
                          "not camera frames", hint="feed it from a scalar source")
    return image_preprocessor(recipe, spec)


def window_recipe(model: Any) -> WindowPreprocessing:
    """The sliding-window recipe of a sensor model (manifest, or the input's length)."""
    manifest = model.manifest
    recipe = manifest.preprocessing if manifest is not None else None
    if recipe is None:
        length = next((d for d in reversed(model.inputs[0].shape) if d and d > 1), 1)
        return WindowPreprocessing(length=int(length))
    if not isinstance(recipe, WindowPreprocessing):
        raise ConfigError(f"model {manifest.name} takes images, not a sensor stream",
                          hint="feed it from a camera source")
    return recipe


def window_input(window: SlidingWindow, recipe: WindowPreprocessing, model: Any
                 ) -> np.ndarray[Any, Any]:
    """The window shaped and normalised for the model's first input."""
    return window_tensor(window.array(), recipe, model.inputs[0])
