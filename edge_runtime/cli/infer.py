"""``edge-runtime infer MODEL INPUT``: one inference, decoded as the manifest says.

An image is preprocessed as the model's manifest says (resize or letterbox, colours,
layout, normalisation); outputs are decoded by the manifest's postprocessing (classes,
boxes, masks, a plugin) and printed for people or as JSON; ``--draw OUT.jpg`` writes the
image with the boxes, labels and masks on it; ``--raw`` prints the raw tensors instead.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from edge_runtime.models import Model

#: Largest input image read (pixels, 64 Mpx: 8192 x 8192); checked by OpenCV from the
#: header, before it allocates anything.
MAX_IMAGE_PIXELS = 1 << 26
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".webp", ".tif", ".tiff"}


def register(subparsers: Any) -> None:
    """Add the ``infer`` command."""
    parser = subparsers.add_parser(
        "infer",
        help="run a model once on an image, a .npy file or numbers",
        description="Run MODEL once on INPUT and print what its manifest's postprocessing "
        "makes of the outputs (classes, boxes, masks). INPUT is an image file (preprocessed "
        "as the manifest says), a .npy array, an .npz with one array per input name, or "
        "comma-separated numbers (reshaped to the model's single input).",
    )
    parser.add_argument("model", metavar="MODEL", help="shipped model name, manifest or model file")
    parser.add_argument("input", metavar="INPUT",
                        help="image file, .npy or .npz file, or numbers '1,2,3'")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--raw", action="store_true",
                        help="print the raw output tensors (8-bit outputs not dequantized), "
                        "not decoded")
    parser.add_argument("--draw", metavar="OUT.jpg", default=None,
                        help="write the input image with boxes, labels and masks drawn")
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
    if suffix == ".npz":
        return load_npz(model, path)
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
        return load_image(model, path)[0]
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


def load_npz(model: Model, path: Path) -> dict[str, Any]:
    """An .npz with one array per input, by input name (batch dimension optional)."""
    import numpy as np

    from edge_runtime.errors import CliUsageError

    if not path.is_file():
        raise CliUsageError(f"input file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (ValueError, OSError) as exc:
        raise CliUsageError(f"{path} is not a readable .npz file: {exc}") from exc
    names = [s.name for s in model.inputs]
    unknown = [k for k in arrays if k not in names]
    missing = [n for n in names if n not in arrays]
    if unknown or missing:
        raise CliUsageError(
            f"{path.name} has arrays {', '.join(arrays) or 'none'} but the model's inputs are "
            f"{', '.join(names)}" + (f" (missing: {', '.join(missing)})" if missing else ""),
            hint="save one array per input name: np.savez(path, " +
                 ", ".join(f"{n}=..." for n in names) + ")")
    feed = {}
    for spec in model.inputs:
        arr = arrays[spec.name]
        if arr.ndim == len(spec.shape) - 1:
            arr = arr[None, ...]  # add the batch dimension people leave out
        feed[spec.name] = arr
    return feed


def load_image(model: Model, path: Path) -> tuple[np.ndarray, np.ndarray, Any]:
    """An image file as (input tensor, the frame as read, its FrameGeometry).

    An image of more than :data:`MAX_IMAGE_PIXELS` is refused from its header, before
    anything is decoded (a PNG claiming 60000 x 60000 would need 10 GB): PNG and JPEG
    headers are read here; other formats rely on OpenCV's own header check
    (``OPENCV_IO_MAX_IMAGE_PIXELS``, set to the same limit unless the user set it).
    """
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))
    import cv2

    from edge_runtime.errors import CliUsageError
    from edge_runtime.models.manifest import ImagePreprocessing
    from edge_runtime.models.preprocess import (
        default_image_preprocessing,
        image_preprocessor_with_geometry,
    )

    if not path.is_file():
        raise CliUsageError(f"input file {path} does not exist")
    if len(model.inputs) != 1:
        raise CliUsageError("an image only fits a model with a single input",
                            hint="give an .npz file with one array per input name")
    claimed = _claimed_size(path)
    if claimed is not None and claimed[0] * claimed[1] > MAX_IMAGE_PIXELS:
        raise CliUsageError(f"{path} cannot be read as an image: it claims {claimed[0]} x "
                            f"{claimed[1]}, more than the {MAX_IMAGE_PIXELS} pixels an input "
                            "image may have", hint="give a smaller image (it is resized to "
                            "the model's input anyway)")
    try:
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
    except cv2.error as exc:  # e.g. a header claiming more pixels than the limit
        reason = ("it claims more than the "
                  f"{os.environ['OPENCV_IO_MAX_IMAGE_PIXELS']} pixels an input image may have"
                  if "CV_IO_MAX_IMAGE_PIXELS" in str(exc) else str(exc).strip().splitlines()[-1])
        raise CliUsageError(f"{path} cannot be read as an image: {reason}",
                            hint="give a smaller image (it is resized to the model's input "
                            "anyway); OPENCV_IO_MAX_IMAGE_PIXELS raises the limit") from None
    if frame is None:
        raise CliUsageError(f"{path} is not a readable image")
    spec = model.inputs[0]
    recipe = model.manifest.preprocessing if model.manifest is not None else None
    if not isinstance(recipe, ImagePreprocessing):
        recipe = default_image_preprocessing(spec)
    tensor, geometry = image_preprocessor_with_geometry(recipe, spec)(frame)
    return tensor, frame, geometry


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


def _claimed_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header; None for other or unreadable files."""
    try:
        with path.open("rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return None
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 24:
        width, height = struct.unpack(">II", head[16:24])
        return int(width), int(height)
    if head[:2] == b"\xff\xd8":
        i = 2
        while i + 9 <= len(head) and head[i] == 0xFF:
            marker = head[i + 1]
            length = int.from_bytes(head[i + 2:i + 4], "big")
            # SOF0..SOF15 but DHT (C4), JPG (C8) and DAC (CC): height, then width.
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">HH", head[i + 5:i + 9])
                return int(width), int(height)
            i += 2 + length
    return None


def _infer(args: argparse.Namespace) -> int:
    import numpy as np

    from edge_runtime.errors import CliUsageError
    from edge_runtime.models import load_model
    from edge_runtime.pipelines.postprocess import decoder_for_model

    if args.top_k is not None and args.top_k < 1:
        raise CliUsageError(f"--top-k must be at least 1, got {args.top_k}")
    model = load_model(args.model, num_threads=args.threads)
    decoder = None if args.raw else decoder_for_model(model)
    frame = geometry = None
    if Path(args.input).suffix.lower() in IMAGE_SUFFIXES:
        x, frame, geometry = load_image(model, Path(args.input))
    else:
        x = load_input(model, args.input)
    if args.draw and frame is None:
        raise CliUsageError("--draw needs an image INPUT")
    start = time.perf_counter()
    outputs = model.run(x, dequantize=not args.raw)
    latency_ms = (time.perf_counter() - start) * 1e3
    result: dict[str, Any] | None = None
    decode_ms = 0.0
    if decoder is not None:
        start = time.perf_counter()
        result = decoder.decoder.decode(outputs, geometry)
        decode_ms = (time.perf_counter() - start) * 1e3
    is_classifier = model.manifest is not None and model.manifest.task == "classification"
    k = args.top_k
    if k is None and model.manifest is not None and model.manifest.postprocessing is not None:
        k = getattr(model.manifest.postprocessing, "top_k", None)
    best = top_k(model, outputs, k or 3) if is_classifier and not args.raw else []
    if args.draw:
        from edge_runtime.pipelines.draw import draw_result, write_image_atomic

        assert frame is not None
        shown = result if result is not None else (
            {"label": best[0]["label"], "score": best[0]["score"]} if best else {})
        try:
            write_image_atomic(Path(args.draw), draw_result(frame, shown, geometry))
        except (OSError, ValueError) as exc:
            raise CliUsageError(f"--draw {args.draw}: cannot write it: {exc}",
                                hint="give a writable path ending in .jpg or .png") from exc
    if args.json:
        doc: dict[str, Any] = {
            "model": model.name,
            "backend": model.backend_name,
            "latency_ms": round(latency_ms, 3),
            "outputs": {
                n: {"shape": list(v.shape), "dtype": v.dtype.name}
                | ({} if result is not None else {"values": v.tolist()})
                for n, v in outputs.items()
            },
        }
        if result is not None:
            doc["decode_ms"] = round(decode_ms, 3)
            doc["result"] = json_result(result)
        if best:
            doc["top_k"] = best
        print(json.dumps(doc))
        return 0
    print(f"{model.name} ({model.backend_name}), {latency_ms:.2f} ms"
          + (f" + {decode_ms:.2f} ms decoding" if result is not None else ""))
    for entry in best:
        print(f"  {entry['label']:>12}  {entry['score']:.4f}")
    if result is not None:
        for line in describe_result(result):
            print(f"  {line}")
        if args.draw:
            print(f"  drawn to {args.draw}")
        return 0
    for n, v in outputs.items():
        text = np.array2string(v, precision=5, threshold=40, max_line_width=100)
        print(f"  {n} {v.dtype.name}{list(v.shape)}: {text}")
    return 0


def json_result(result: dict[str, Any]) -> dict[str, Any]:
    """A decoded result for JSON: arrays (a segmentation mask) as shape and classes."""
    import numpy as np

    doc: dict[str, Any] = {}
    for key, value in result.items():
        if isinstance(value, np.ndarray):
            doc[key] = {"shape": list(value.shape),
                        "classes_present": [int(c) for c in np.unique(value)]}
        elif isinstance(value, np.generic):
            doc[key] = value.item()
        else:
            doc[key] = value
    return doc


def describe_result(result: dict[str, Any]) -> list[str]:
    """Lines for people: one per detection, then the scalar fields rules can use."""
    import numpy as np

    lines = []
    for det in result.get("detections", []):
        x1, y1, x2, y2 = det["box_px"]
        kps = f", {len(det['keypoints'])} keypoints" if det.get("keypoints") else ""
        lines.append(f"{det['label']:>12}  {det['score']:.3f}  box "
                     f"({x1:.0f}, {y1:.0f})-({x2:.0f}, {y2:.0f}) px{kps}")
    if isinstance(result.get("mask"), np.ndarray):
        lines.append(f"mask {result['mask'].shape[1]}x{result['mask'].shape[0]}")
    fields = {k: v for k, v in result.items()
              if isinstance(v, int | float | str | bool)}
    lines.append("fields: " + ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items()))
    return lines
