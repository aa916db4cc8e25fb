"""Plain descriptions of a model's tensors, shared by every backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Layout = Literal["NHWC", "NCHW"]


@dataclass(frozen=True, slots=True)
class QuantParams:
    """Affine quantization of a tensor: ``real = scale * (q - zero_point)``.

    Per-tensor quantization has one scale; per-axis has one per slice along ``axis``.
    """

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int | None = None

    @property
    def per_tensor(self) -> bool:
        """True when one scale and zero point apply to the whole tensor."""
        return len(self.scale) == 1


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output of a model.

    ``shape`` has ``None`` for dimensions the model leaves open (dynamic batch,
    sequence length...). ``layout`` is ``"NHWC"``/``"NCHW"`` for image tensors when
    it can be told from the shape and format, else ``None``. ``quant`` is set for
    integer tensors that carry quantization parameters.
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype[np.generic]
    layout: Layout | None = None
    quant: QuantParams | None = None

    def describe(self) -> str:
        """One-line human description, e.g. ``x: float32[N,1,8,8] NCHW``."""
        dims = ",".join("?" if d is None else str(d) for d in self.shape)
        text = f"{self.name}: {self.dtype.name}[{dims}]"
        if self.layout:
            text += f" {self.layout}"
        if self.quant is not None:
            if self.quant.per_tensor:
                text += f" (scale {self.quant.scale[0]:.6g}, zero point {self.quant.zero_point[0]})"
            else:
                text += f" (per-axis quantized along axis {self.quant.axis})"
        return text


def format_shape(shape: tuple[int | None, ...]) -> str:
    """A shape for messages, open dimensions as ``?``: ``(?, 1, 8, 8)``."""
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def guess_layout(shape: tuple[int | None, ...], default: Layout) -> Layout | None:
    """Tell NHWC from NCHW for a 4-D image tensor; ``None`` for other ranks.

    Channel counts of 1, 3 or 4 identify the channel axis; when both or neither
    position looks like channels, the format's convention (``default``) wins.
    """
    if len(shape) != 4:
        return None
    channelish = (1, 3, 4)
    c_first = shape[1] in channelish
    c_last = shape[3] in channelish
    if c_first and not c_last:
        return "NCHW"
    if c_last and not c_first:
        return "NHWC"
    return default
