"""Preprocessing glue between samples and a model: frames, sliding windows and sound.

The recipes themselves (resize or letterbox, colour order, layout, normalisation) live
with the model API in :mod:`edge_runtime.models.preprocess` and are driven by the model's
manifest; this module picks the right one for a model and keeps the sliding window of a
sensor stream.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from edge_runtime.errors import ConfigError
from edge_runtime.models.manifest import (
    AudioPreprocessing,
    ImagePreprocessing,
    WindowPreprocessing,
)
from edge_runtime.models.preprocess import (
    audio_tensor,
    default_image_preprocessing,
    image_preprocessor,
    window_tensor,
)

if TYPE_CHECKING:
    from edge_runtime.models.model import Model
    from edge_runtime.models.types import TensorSpec

FrameFn = Callable[[npt.NDArray[np.uint8]], np.ndarray[Any, Any]]


class SlidingWindow:
    """The last ``length`` values of a stream, oldest first, as a window model wants them.

    Without ``interval_s`` the window is the last ``length`` samples, whatever their
    spacing. With ``interval_s`` (the rate the model was trained at, in the stream's
    seconds) it is resampled in time: the values at ``t - length * interval_s`` ..
    ``t - interval_s`` for a sample at ``t``, linearly interpolated from the samples seen
    (held at the newest one past a gap), so a source whose rate adapts, or that runs
    faster than the training rate, still gives the model the spacing it learnt. The
    history kept for that is bounded in time and to ``max_points`` samples.
    """

    def __init__(self, length: int, interval_s: float | None = None,
                 max_points: int = 4096) -> None:
        if length < 1:
            raise ValueError("window length must be >= 1")
        if interval_s is not None and not interval_s > 0:
            raise ValueError("window interval_s must be > 0")
        self.length = length
        self.interval_s = interval_s
        self._values: deque[float] = deque(maxlen=length if interval_s is None else max_points)
        self._times: deque[float] = deque(maxlen=self._values.maxlen)

    def ready(self, t_s: float) -> bool:
        """True once a whole window before a sample at ``t_s`` can be given."""
        if self.interval_s is None:
            return len(self._values) == self.length
        span_s = self.length * self.interval_s
        return bool(self._times) and t_s - self._times[0] >= span_s * (1.0 - 1e-9)

    def push(self, t_s: float, value: float) -> None:
        """Append one sample (time in the stream's seconds), forgetting what is no longer
        needed."""
        self._values.append(value)
        self._times.append(t_s)
        if self.interval_s is not None:
            # Keep one sample at or before the oldest time a later window can need.
            oldest_needed = t_s - self.length * self.interval_s
            while len(self._times) > 1 and self._times[1] <= oldest_needed:
                self._times.popleft()
                self._values.popleft()

    def array(self, t_s: float) -> npt.NDArray[np.float32]:
        """The window for a sample at ``t_s``, oldest first, as float32."""
        if self.interval_s is None:
            return np.asarray(self._values, dtype=np.float32)
        targets = t_s - self.interval_s * np.arange(self.length, 0, -1, dtype=np.float64)
        values = np.interp(targets, np.asarray(self._times), np.asarray(self._values))
        return np.asarray(values, dtype=np.float32)


def frame_preprocessor(model: Model) -> FrameFn:
    """A frame -> input tensor function for an image model (manifest recipe or default)."""
    spec = model.inputs[0]
    manifest = model.manifest
    recipe = manifest.preprocessing if manifest is not None else None
    if recipe is None:
        recipe = default_image_preprocessing(spec)
    if isinstance(recipe, AudioPreprocessing):
        raise ConfigError(f"model {model.name} takes sound, not camera frames",
                          hint="feed it from an audio source")
    if not isinstance(recipe, ImagePreprocessing):
        raise ConfigError(f"model {model.name} takes a sensor window, "
                          "not camera frames", hint="feed it from a scalar source")
    return image_preprocessor(recipe, spec)


def window_recipe(model: Model) -> WindowPreprocessing:
    """The sliding-window recipe of a sensor model (manifest, or the input's length)."""
    manifest = model.manifest
    recipe = manifest.preprocessing if manifest is not None else None
    if recipe is None:
        length = next((d for d in reversed(model.inputs[0].shape) if d and d > 1), 1)
        return WindowPreprocessing(length=int(length))
    if isinstance(recipe, AudioPreprocessing):
        raise ConfigError(f"model {model.name} takes sound, not a sensor stream",
                          hint="feed it from an audio source")
    if not isinstance(recipe, WindowPreprocessing):
        raise ConfigError(f"model {model.name} takes images, not a sensor stream",
                          hint="feed it from a camera source")
    return recipe


def audio_recipe(model: Model, source_id: str, rate_hz: int, window_s: float,
                 ) -> AudioPreprocessing:
    """The sound recipe of an audio model, checked against what the source delivers.

    A model without an ``audio`` preprocessing table gets one from the source (its rate
    and window length). One with a table must be fed windows of its own length at its
    own rate: anything else is a :class:`ConfigError` naming both.
    """
    manifest = model.manifest
    recipe = manifest.preprocessing if manifest is not None else None
    if recipe is None:
        return AudioPreprocessing(sample_rate_hz=rate_hz, window_s=window_s)
    if not isinstance(recipe, AudioPreprocessing):
        kind = "images" if isinstance(recipe, ImagePreprocessing) else "sensor windows"
        raise ConfigError(f"model {model.name} takes {kind}, not sound",
                          hint="give it a camera or scalar source, or an audio model")
    if recipe.sample_rate_hz != rate_hz or recipe.length != round(window_s * rate_hz):
        raise ConfigError(
            f"model {model.name} takes windows of {recipe.window_s:g} s at "
            f"{recipe.sample_rate_hz} Hz but audio source {source_id!r} delivers "
            f"{window_s:g} s at {rate_hz} Hz",
            hint=f"set rate_hz = {recipe.sample_rate_hz} and window_s = {recipe.window_s:g} "
                 "on the source (a file at another rate is resampled)")
    return recipe


def audio_input(window: npt.NDArray[np.float32], recipe: AudioPreprocessing,
                spec: TensorSpec) -> np.ndarray[Any, Any]:
    """One sound window as the tensor for the model's data input ``spec``."""
    return audio_tensor(window, recipe, spec)


def window_input(window: SlidingWindow, t_s: float, recipe: WindowPreprocessing,
                 model: Model) -> np.ndarray[Any, Any]:
    """The window before a sample at ``t_s``, shaped and normalised for the model's first
    input."""
    return window_tensor(window.array(t_s), recipe, model.inputs[0])
