"""``edge-runtime infer MODEL INPUT``: one inference, printed for people or as JSON."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from edge_runtime.models import Model

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".webp", ".tif", ".tiff"}


def register(subparsers: Any) -> None:
    """Add the ``infer`` command."""
    parser = subparsers.add_parser(
        "infer",
        help="run a model once on an image, a .npy file or numbers",
        description="Run MODEL once on INPUT and print its outputs. INPUT is an image file "
        "(preprocessed as the model's manifest says), a .npy array, or comma-separated "
        "numbers (reshaped to the model's single input). Outputs are dequantized unless --raw.",
    )
    parser.add_argument("model", metavar="MODEL", help="shipped model name, manifest or model file")
    parser.add_argument("input", metavar="INPUT", help="image file, .npy file, or numbers '1,2,3'")
    parser.add_argument("--json", action="store_true", help="print outputs as JSON (full values)")
    parser.add_argument("--raw", action="store_true", help="do not dequantize 8-bit outputs")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="engine threads (default: engine's choice)",
    )
    parser.add_argument(
        "--top-k",
        type=int,
        default=None,
        metavar="K",
        help="classes to show for classifiers (default: manifest or 3)",
    )
    parser.set_defaults(handler=_infer)


def _fill_shape(shape: tuple[int | None, ...], size: int) -> tuple[int, ...]:
    """Concrete shape for ``size`` values: open dims become 1, except one that takes the rest."""
    from edge_runtime.errors import CliUsageError
    from edge_runtime.models.types import format_shape

    open_dims = [i for i, d in enumerate(shape) if d is None]
    known = 1
    for d in shape:
        known *= d if d is not None else 1
    dims = [1 if d is None else d for d in shape]
    if open_dims and known and size % known == 0:
        dims[open_dims[-1]] = size // known
    total = 1
    for d in dims:
        total *= d
    if total != size:
        raise CliUsageError(
            f"{size} numbers do not fill the model's input shape {format_shape(shape)}"
        )
    return tuple(dims)


def load_input(model: Model, text: str) -> Any:
    """Read INPUT as the model's input: an image, a .npy file, or comma-separated numbers."""
    import numpy as np

    from edge_runtime.errors import CliUsageError

    path = Path(text)
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES or suffix == ".npy":
        if not path.is_file():
            raise CliUsageError(f"input file {text} does not exist")
        if suffix == ".npy":
            try:
                arr = np.load(path, allow_pickle=False)
            except (ValueError, OSError) as exc:
                raise CliUsageError(f"{text} is not a readable .npy file: {exc}") from exc
            spec = model.inputs[0]
            if len(model.inputs) == 1 and arr.ndim == len(spec.shape) - 1:
                arr = arr[None, ...]  # add the batch dimension people leave out
            return arr
        return _image_input(model, path)
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError as exc:
        raise CliUsageError(
            f"INPUT {text!r} is neither an image, a .npy file nor comma-separated numbers"
        ) from exc
    if not values:
        raise CliUsageError("INPUT has no numbers")
    if len(model.inputs) != 1:
        raise CliUsageError(
            f"the model has {len(model.inputs)} inputs; numbers only fit single-input models, "
            "use a Python script or .npy per input"
        )
    spec = model.inputs[0]
    arr = np.asarray(values)
    if (spec.dtype.kind in "iu" and spec.quant is None) or spec.dtype.kind == "b":
        if not np.all(arr == np.round(arr)):
            raise CliUsageError(f"input {spec.name!r} takes integers ({spec.dtype.name})")
        arr = arr.astype(np.int64)
    return arr.reshape(_fill_shape(spec.shape, arr.size))


def _image_input(model: Model, path: Path) -> np.ndarray:
    import cv2

    from edge_runtime.errors import CliUsageError
    from edge_runtime.models.manifest import ImagePreprocessing
    from edge_runtime.models.preprocess import default_image_preprocessing, image_preprocessor

    if len(model.inputs) != 1:
        raise CliUsageError("an image only fits a model with a single input")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise CliUsageError(f"{path} is not a readable image")
    spec = model.inputs[0]
    recipe = model.manifest.preprocessing if model.manifest is not None else None
    if not isinstance(recipe, ImagePreprocessing):
        recipe = default_image_preprocessing(spec)
    return image_preprocessor(recipe, spec)(image)


def top_k(model: Model, outputs: dict[str, np.ndarray], k: int) -> list[dict[str, Any]]:
    """Best ``k`` classes as the pipelines rank them, with labels and scores."""
    import msgspec

    from edge_runtime.models.manifest import ClassificationPostprocessing
    from edge_runtime.pipelines.postprocess import classify

    post = model.manifest.postprocessing if model.manifest is not None else None
    spec = post if isinstance(post, ClassificationPostprocessing) else None
    spec = msgspec.structs.replace(spec or ClassificationPostprocessing(), top_k=k)
    result = classify(outputs, spec, model.labels)
    return [{"label": label, "score": score} for label, score in result["top_k"]]


def _infer(args: argparse.Namespace) -> int:
    import numpy as np

    from edge_runtime.models import load_model

    model = load_model(args.model, num_threads=args.threads)
    x = load_input(model, args.input)
    start = time.perf_counter()
    outputs = model.run(x, dequantize=not args.raw)
    latency_ms = (time.perf_counter() - start) * 1e3
    is_classifier = model.manifest is not None and model.manifest.task == "classification"
    k = args.top_k
    if k is None and model.manifest is not None and model.manifest.postprocessing is not None:
        k = getattr(model.manifest.postprocessing, "top_k", None)
    best = top_k(model, outputs, k or 3) if is_classifier and not args.raw else []
    if args.json:
        doc = {
            "model": model.name,
            "backend": model.backend_name,
            "latency_ms": round(latency_ms, 3),
            "outputs": {
                n: {"shape": list(v.shape), "dtype": v.dtype.name, "values": v.tolist()}
                for n, v in outputs.items()
            },
        }
        if best:
            doc["top_k"] = best
        print(json.dumps(doc))
        return 0
    print(f"{model.name} ({model.backend_name}), {latency_ms:.2f} ms")
    for entry in best:
        print(f"  {entry['label']:>12}  {entry['score']:.4f}")
    for n, v in outputs.items():
        text = np.array2string(v, precision=5, threshold=40, max_line_width=100)
        print(f"  {n} {v.dtype.name}{list(v.shape)}: {text}")
    return 0
