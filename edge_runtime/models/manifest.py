"""Model manifests: the TOML file that describes a shipped (or user) model.

A manifest sits next to its model file and says what the model is for and how to
feed it. Fields are validated with msgspec; unknown keys are refused so that a typo
is caught, not ignored. See ``docs/models.md`` for an annotated example.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import msgspec

from edge_runtime.errors import ManifestError

Task = Literal["classification", "detection", "anomaly", "regression"]
Layout = Literal["NHWC", "NCHW", "NC", "NTC"]
ColorOrder = Literal["GRAY", "RGB", "BGR"]


class ImagePreprocessing(msgspec.Struct, forbid_unknown_fields=True, tag="image"):
    """How to turn a camera frame (uint8 BGR, as OpenCV gives it) into model input.

    ``x = (pixel * scale - mean) / std`` per channel, after resizing to ``size`` and
    converting to ``color``. ``invert`` flips intensities (``255 - pixel``) first, for
    models trained on bright-on-dark images.
    """

    size: tuple[int, int]  # width, height in pixels
    layout: Literal["NHWC", "NCHW"] = "NHWC"
    color: ColorOrder = "RGB"
    resize: Literal["stretch", "letterbox", "center_crop"] = "stretch"
    scale: float = 1.0 / 255.0
    mean: list[float] = msgspec.field(default_factory=lambda: [0.0])
    std: list[float] = msgspec.field(default_factory=lambda: [1.0])
    invert: bool = False


class WindowPreprocessing(msgspec.Struct, forbid_unknown_fields=True, tag="window"):
    """How to turn a scalar sensor stream into model input: a sliding window.

    ``x = (value - mean) / std`` for the last ``length`` samples, oldest first, taken at
    ``rate_hz`` (the rate the model was trained at).
    """

    length: int
    mean: float = 0.0
    std: float = 1.0
    rate_hz: float | None = None


class ClassificationPostprocessing(msgspec.Struct, forbid_unknown_fields=True, tag="classes"):
    """Outputs are class scores; ``softmax`` says whether to apply one (logits)."""

    output: str | None = None
    softmax: bool = False
    top_k: int = 3


class ForecastPostprocessing(msgspec.Struct, forbid_unknown_fields=True, tag="forecast"):
    """Output is the next value of the (normalised) window; residuals score anomalies.

    ``residual_threshold`` is in normalised units (multiples of the training std).
    """

    output: str | None = None
    residual_threshold: float = 3.0


class DetectionPostprocessing(msgspec.Struct, forbid_unknown_fields=True, tag="detection"):
    """Boxes decoded from SSD- or YOLO-style outputs, with non-maximum suppression."""

    style: Literal["ssd", "yolo"] = "ssd"
    score_threshold: float = 0.5
    iou_threshold: float = 0.45


Preprocessing = ImagePreprocessing | WindowPreprocessing
Postprocessing = ClassificationPostprocessing | ForecastPostprocessing | DetectionPostprocessing


class Accuracy(msgspec.Struct, forbid_unknown_fields=True):
    """Held-out accuracy measured by the build script (fractions in [0, 1] or errors)."""

    metric: str
    value: float
    fp32_value: float | None = None
    held_out_samples: int | None = None


class Manifest(msgspec.Struct, forbid_unknown_fields=True):
    """Everything the runtime needs to know about one model file."""

    name: str
    file: str  # relative to the manifest's folder
    sha256: str
    task: Task
    description: str
    version: str = "1"
    labels: list[str] = msgspec.field(default_factory=list)
    preprocessing: Preprocessing | None = None
    postprocessing: Postprocessing | None = None
    card: str | None = None  # model card (Markdown), relative to the manifest's folder
    accuracy: Accuracy | None = None
    quantization: Literal["int8", "uint8", "float32", "float16"] = "int8"
    #: Name of the float model this one was quantized from (for int8 vs fp32 comparisons).
    float_model: str | None = None

    # Filled in by load_manifest, not read from the file.
    path: Path = Path()

    @property
    def model_path(self) -> Path:
        """Absolute path of the model file."""
        return (self.path.parent / self.file).resolve()

    @property
    def card_path(self) -> Path | None:
        """Absolute path of the model card, if the manifest names one."""
        return (self.path.parent / self.card).resolve() if self.card else None


def load_manifest(path: Path) -> Manifest:
    """Read and validate one manifest file; errors name the file and the key."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc.strerror}") from exc
    try:
        manifest = msgspec.toml.decode(data, type=Manifest)
    except msgspec.ValidationError as exc:
        raise ManifestError(f"manifest {path}: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise ManifestError(f"manifest {path} is not valid TOML: {exc}") from exc
    manifest.path = path.resolve()
    return manifest


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (models can be larger than we want in RAM)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()
