"""Model manifests: the TOML file that describes a shipped (or user) model.

A manifest sits next to its model file and says what the model is for and how to
feed it. Fields are validated with msgspec; unknown keys are refused so that a typo
is caught, not ignored. See ``docs/models.md`` for an annotated example.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import msgspec

from edge_runtime.errors import ManifestError

Task = Literal["classification", "detection", "segmentation", "anomaly", "regression"]
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


class AudioPreprocessing(msgspec.Struct, forbid_unknown_fields=True, tag="audio"):
    """How a window of sound (an audio source's float32 mono samples in [-1, 1]) becomes
    model input.

    The model takes windows of ``window_s`` seconds at ``sample_rate_hz``; the audio source
    must deliver exactly those (a pipeline refuses one that does not, naming both). The
    samples go to the input called ``input`` (default: the first input that is neither a
    state nor a constant), times ``scale``, reshaped to its shape (the open dimension
    after the batch takes the window's length).
    """

    sample_rate_hz: int
    window_s: float
    input: str | None = None
    scale: float = 1.0

    @property
    def length(self) -> int:
        """Samples per window."""
        return round(self.window_s * self.sample_rate_hz)


class StatePair(msgspec.Struct, forbid_unknown_fields=True):
    """A recurrent state the model reads from ``input`` and writes to ``output``.

    A pipeline feeds each inference's ``output`` back as the next one's ``input``; the
    first inference, and the first after the source reconnects, get ``initial`` (every
    element; the input's shape and dtype).
    """

    input: str
    output: str
    initial: float = 0.0


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


class ProbabilityPostprocessing(msgspec.Struct, forbid_unknown_fields=True,
                                tag="probability"):
    """The output is one probability (a voice-activity model's speech probability).

    The result has ``probability`` and ``score`` (the same number, for rules), and
    ``label`` (``label`` when the probability is at least ``threshold``, else ``other``).
    """

    output: str | None = None
    label: str = "positive"
    other: str = "negative"
    threshold: float = 0.5


class AnchorConfig(msgspec.Struct, forbid_unknown_fields=True):
    """SSD anchors as MediaPipe's ``SsdAnchorsCalculatorOptions`` defines them.

    ``input_size`` is (width, height) in pixels. Layers with the same stride share one
    feature map; each layer's scale is interpolated linearly from ``min_scale`` to
    ``max_scale`` over ``len(strides)``. With ``fixed_anchor_size`` every anchor is
    1 x 1 (BlazeFace, palm), else ``scale * sqrt(aspect_ratio)`` wide.
    """

    input_size: tuple[int, int]
    num_layers: int
    strides: list[int]
    min_scale: float
    max_scale: float
    aspect_ratios: list[float] = msgspec.field(default_factory=lambda: [1.0])
    anchor_offset_x: float = 0.5
    anchor_offset_y: float = 0.5
    interpolated_scale_aspect_ratio: float = 1.0
    fixed_anchor_size: bool = False
    reduce_boxes_in_lowest_layer: bool = False
    #: Explicit feature map sizes per layer (else ``ceil(input / stride)``).
    feature_map_width: list[int] = msgspec.field(default_factory=list)
    feature_map_height: list[int] = msgspec.field(default_factory=list)


DetectionStyle = Literal["ssd", "ssd_anchors", "yolo", "yolov5", "yolov8"]


class DetectionPostprocessing(msgspec.Struct, forbid_unknown_fields=True, tag="detection"):
    """Boxes decoded from one of the common detector layouts, then non-maximum suppression.

    ``style`` has no default: a detector's outputs cannot be decoded by guessing.

    - ``ssd``: TFLite detection post-process (boxes, classes, scores, count) or raw
      boxes ``(1, N, 4)`` + per-class scores ``(1, N, C)``;
    - ``ssd_anchors``: MediaPipe-style ``regressors (1, N, 4 + 2K)`` + ``classificators
      (1, N, 1)`` relative to anchors generated from ``anchors``;
    - ``yolov5`` ``(1, N, 5 + C)`` with objectness, ``yolov8`` ``(1, 4 + C, N)`` (also v11),
      ``yolo``: whichever of the two the output's shape is (``labels`` give ``C``).
    """

    style: DetectionStyle
    score_threshold: float = 0.5
    iou_threshold: float = 0.45
    #: ``hard`` keeps the best box of a cluster; ``weighted`` averages the cluster's
    #: boxes and keypoints by score (MediaPipe's WEIGHTED).
    nms: Literal["hard", "weighted"] = "hard"
    max_detections: int = 100
    #: Output tensor names, when the model's outputs cannot be told apart by shape.
    boxes_output: str | None = None
    scores_output: str | None = None
    # -- ssd_anchors ---------------------------------------------------------------------
    anchors: AnchorConfig | None = None
    num_keypoints: int = 0
    #: The raw box values are divided by these (MediaPipe's x/y/w/h_scale; the input size).
    x_scale: float | None = None
    y_scale: float | None = None
    w_scale: float | None = None
    h_scale: float | None = None
    #: Box values in x, y, w, h order (MediaPipe's ``reverse_output_order``), else y, x, h, w.
    reverse_output_order: bool = True
    apply_exponential_on_box_size: bool = False
    sigmoid_score: bool = True
    #: Raw scores are clipped to +-this before the sigmoid (0: no clipping).
    score_clipping_thresh: float = 100.0
    # -- yolo ----------------------------------------------------------------------------
    #: Box centres and sizes are in input ``pixels`` (Ultralytics exports) or ``fractions``.
    coordinates: Literal["pixels", "fractions"] = "pixels"


class SegmentationPostprocessing(msgspec.Struct, forbid_unknown_fields=True,
                                 tag="segmentation"):
    """A per-pixel class map: scores ``(1, H, W, C)`` / ``(1, C, H, W)`` or indices ``(1, H, W)``.

    Gives the mask and, per label, the fraction of the frame it covers
    (``fraction_<label>``).
    """

    output: str | None = None
    #: Where the class axis is; ``auto`` finds the axis of size ``len(labels)``.
    layout: Literal["auto", "NHWC", "NCHW", "indices"] = "auto"


class PluginPostprocessing(msgspec.Struct, forbid_unknown_fields=True, tag="plugin"):
    """Your own decoder: ``function = "package.module:function"`` (see docs/models.md).

    ``options`` are handed to the function in its context as they are.
    """

    function: str
    options: dict[str, Any] = msgspec.field(default_factory=dict)


Preprocessing = ImagePreprocessing | WindowPreprocessing | AudioPreprocessing
Postprocessing = (ClassificationPostprocessing | ForecastPostprocessing | DetectionPostprocessing
                  | SegmentationPostprocessing | PluginPostprocessing
                  | ProbabilityPostprocessing)
#: A constant input's value: a number, or nested lists of numbers (the input's shape).
ConstantValue = int | float | list[Any]


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
    #: A table, or the string ``"package.module:function"`` for a plugin decoder.
    postprocessing: Postprocessing | str | None = None
    card: str | None = None  # model card (Markdown), relative to the manifest's folder
    accuracy: Accuracy | None = None
    #: What the build script says; listings read the model file itself (quantization.py).
    quantization: Literal["int8", "uint8", "float32", "float16"] | None = None
    #: Name of the float model this one was quantized from (for int8 vs fp32 comparisons).
    float_model: str | None = None
    #: Recurrent states fed back from one inference to the next (stateful models such as
    #: Silero VAD: ``state = [{input = "state", output = "stateN"}]``).
    state: list[StatePair] = msgspec.field(default_factory=list)
    #: Inputs given the same value every time (``constant_inputs = {sr = 16000}``).
    constant_inputs: dict[str, ConstantValue] = msgspec.field(default_factory=dict)

    # Filled in by load_manifest, not read from the file.
    path: Path = Path()

    def __post_init__(self) -> None:
        if isinstance(self.postprocessing, str):
            self.postprocessing = PluginPostprocessing(function=self.postprocessing)

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
    _check_task(manifest, path)
    return manifest


_TAGS: dict[type, str] = {
    ClassificationPostprocessing: "classes", ForecastPostprocessing: "forecast",
    DetectionPostprocessing: "detection", SegmentationPostprocessing: "segmentation",
    PluginPostprocessing: "plugin", ProbabilityPostprocessing: "probability",
}

#: The postprocessing types that can decode each task's outputs.
_TASK_POST: dict[str, tuple[type, ...]] = {
    "detection": (DetectionPostprocessing, PluginPostprocessing),
    "segmentation": (SegmentationPostprocessing, PluginPostprocessing),
}


def _check_task(manifest: Manifest, path: Path) -> None:
    """Refuse what the schema alone lets through: a task nobody can decode, empty text."""
    if not manifest.description.strip():
        raise ManifestError(f"manifest {path}: `description` is empty; say what the model does")
    seen: set[str] = set()
    for i, pair in enumerate(manifest.state):
        for name in (pair.input, pair.output):
            if name in seen or name in manifest.constant_inputs:
                raise ManifestError(f"manifest {path}: `state[{i}]` names {name!r} twice; "
                                    "each state has an input and an output of its own")
            seen.add(name)
    wanted = _TASK_POST.get(manifest.task)
    post = manifest.postprocessing
    if wanted is None:
        return
    kinds = " or ".join(repr(_TAGS[t]) for t in wanted)
    if post is None:
        raise ManifestError(
            f"manifest {path}: `postprocessing` is missing; a {manifest.task} model's outputs "
            f"are not decoded by guessing: add [postprocessing] with type = {kinds}"
        )
    if not isinstance(post, wanted):
        raise ManifestError(
            f"manifest {path}: `postprocessing.type` is {_TAGS.get(type(post), '?')!r} "
            f"but task = {manifest.task!r} needs type = {kinds}"
        )


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (models can be larger than we want in RAM)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()
