"""``edge-runtime bench MODEL``: latency and throughput of the runtime vs the bare engine."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``bench`` command."""
    parser = subparsers.add_parser(
        "bench",
        help="latency percentiles and throughput, runtime vs bare engine",
        description="Run MODEL repeatedly on random input and print p50/p95/p99 latency "
        "and throughput of edge-runtime's Model.run next to the bare engine call, measured "
        "alternating call by call so machine noise hits both alike.",
    )
    parser.add_argument("model", metavar="MODEL", help="shipped model name, manifest or model file")
    parser.add_argument(
        "--threads", type=int, default=1, metavar="N", help="engine threads (default: 1)"
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=5.0,
        metavar="S",
        help="measuring time in seconds (default: 5)",
    )
    parser.add_argument(
        "--shape", action="append", default=[], metavar="NAME=DxDx...",
        help="shape of an input with open dimensions, e.g. images=1x3x640x640 (repeatable; "
        "default: open dimensions are 1, which is printed)",
    )
    parser.add_argument(
        "--input", default=None, metavar="FILE.npz",
        help="measure on these inputs instead of random ones (.npy, or .npz by input name)",
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.set_defaults(handler=_bench)


def parse_shapes(texts: list[str]) -> dict[str, tuple[int, ...]]:
    """``["images=1x3x640x640"]`` -> ``{"images": (1, 3, 640, 640)}``."""
    from edge_runtime.errors import CliUsageError

    shapes: dict[str, tuple[int, ...]] = {}
    for text in texts:
        name, sep, dims = text.partition("=")
        try:
            shape = tuple(int(d) for d in dims.lower().split("x"))
        except ValueError:
            shape = ()
        if not sep or not name or not shape or min(shape) < 1:
            raise CliUsageError(f"--shape {text!r}: give NAME=DxDx..., e.g. "
                                "images=1x3x640x640")
        shapes[name] = shape
    return shapes


def _bench(args: argparse.Namespace) -> int:
    from edge_runtime.errors import CliUsageError
    from edge_runtime.models import load_model
    from edge_runtime.models.benchmark import (
        Timing,
        compare_with_bare,
        resolve_shapes,
        sample_inputs,
    )

    if args.seconds <= 0:
        raise CliUsageError(f"--seconds must be positive, got {args.seconds}")
    if args.threads < 1:
        raise CliUsageError(f"--threads must be at least 1, got {args.threads}")
    shapes = parse_shapes(args.shape)
    model = load_model(args.model, num_threads=args.threads, warmup_runs=0)
    if args.input is not None:
        if shapes:
            raise CliUsageError("give --shape or --input, not both")
        arrays = _load_arrays(model, args.input)
    else:
        arrays = sample_inputs(model.inputs, shapes=resolve_shapes(model.inputs, shapes))
    used = {s.name: list(a.shape) for s, a in zip(model.inputs, arrays, strict=True)}
    opened = [s.name for s in model.inputs if None in s.shape and s.name not in shapes]
    show = sys.stderr.isatty()

    def progress(fraction: float) -> None:
        if show:
            print(
                f"\rmeasuring {model.name}: {fraction * 100:5.1f} % of {args.seconds:g} s",
                end="",
                file=sys.stderr,
                flush=True,
            )

    result = compare_with_bare(model, seconds=args.seconds, progress=progress, arrays=arrays)
    if show:
        print(file=sys.stderr)
    mine, base = result["runtime"], result["bare"]
    assert isinstance(mine, Timing) and isinstance(base, Timing)
    if args.json:
        doc = {
            "model": model.name,
            "backend": model.backend_name,
            "threads": args.threads,
            "input_shapes": used,
            "runtime": _as_dict(mine),
            "bare": _as_dict(base),
            "overhead_us": result["overhead_us"],
            "overhead_pct": result["overhead_pct"],
        }
        print(json.dumps(doc, indent=2))
        return 0
    print(f"{model.name} on {model.backend_name}, {args.threads} thread(s), {args.seconds:g} s")
    shown = ", ".join(f"{n}={'x'.join(map(str, d))}" for n, d in used.items())
    note = (f" (open dimensions of {', '.join(opened)} set to 1; use --shape NAME=DxD...)"
            if opened and args.input is None else "")
    print(f"input shapes: {shown}{note}")
    print(f"{'':10} {'runs':>8} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9} {'inferences/s':>13}")
    for label, t in (("runtime", mine), ("bare", base)):
        print(
            f"{label:10} {t.runs:8d} {t.p50_ms:9.4f} {t.p95_ms:9.4f} {t.p99_ms:9.4f} "
            f"{t.throughput_per_s:13.1f}"
        )
    print(
        f"overhead of Model.run at the median: {result['overhead_us']:.1f} us "
        f"({result['overhead_pct']:.2f} %)"
    )
    return 0


def _as_dict(t: Any) -> dict[str, Any]:
    return {k: getattr(t, k) for k in ("runs", "p50_ms", "p95_ms", "p99_ms", "throughput_per_s")}


def _load_arrays(model: Any, text: str) -> list[Any]:
    """Inputs from a file (infer's loader), converted as Model.run converts them."""
    from edge_runtime.cli.infer import load_input
    from edge_runtime.errors import CliUsageError

    if not text.lower().endswith((".npz", ".npy")):
        raise CliUsageError(f"--input {text}: give an .npz (one array per input) or .npy file")
    arrays: list[Any] = model.prepare(load_input(model, text))
    return arrays
