"""``edge-runtime models list | info NAME | verify``: the shipped model catalogue."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``models`` command and its sub-commands."""
    parser = subparsers.add_parser(
        "models",
        help="list, describe and verify shipped models",
        description="List, describe and verify the models that ship with edge-runtime "
        "(and any in EDGE_RUNTIME_MODELS folders).",
    )
    sub = parser.add_subparsers(dest="models_command", metavar="SUBCOMMAND", required=True)
    p_list = sub.add_parser("list", help="one line per model", description="List the models.")
    p_list.add_argument("--json", action="store_true", help="machine-readable output")
    p_list.set_defaults(handler=_list)
    p_info = sub.add_parser(
        "info",
        help="manifest, tensors and accuracy of one model",
        description="Show a model's manifest, its inputs and outputs, and its card.",
    )
    p_info.add_argument("model", metavar="MODEL", help="shipped model name, manifest or model file")
    p_info.add_argument("--json", action="store_true", help="machine-readable output")
    p_info.set_defaults(handler=_info)
    p_verify = sub.add_parser(
        "verify",
        help="check every model file against its manifest's sha256",
        description="Check model files against the sha256 in their manifests; "
        "exit code 2 if any differs or is missing.",
    )
    p_verify.add_argument("names", nargs="*", metavar="NAME", help="models to check (default: all)")
    p_verify.set_defaults(handler=_verify)


def _list(args: argparse.Namespace) -> int:
    from edge_runtime.models.registry import list_models

    models = list_models()
    rows = []
    for m in models:
        size_kb = m.model_path.stat().st_size / 1024 if m.model_path.is_file() else float("nan")
        quantization = _file_quantization(m)
        acc = f"{m.accuracy.metric} {m.accuracy.value:.4g}" if m.accuracy else "-"
        rows.append(
            {
                "name": m.name,
                "task": m.task,
                "format": m.model_path.suffix.lstrip("."),
                "quantization": quantization,
                "size_kb": round(size_kb, 1),
                "accuracy": acc,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no models found (set EDGE_RUNTIME_MODELS to a folder of manifests)")
        return 0
    print(f"{'NAME':28} {'TASK':15} {'FORMAT':7} {'QUANT':8} {'SIZE':>10}  ACCURACY")
    for r in rows:
        print(
            f"{r['name']:28} {r['task']:15} {r['format']:7} {r['quantization']:8} "
            f"{r['size_kb']:>7.1f} KB  {r['accuracy']}"
        )
    return 0


def _info(args: argparse.Namespace) -> int:
    from edge_runtime.errors import EdgeRuntimeError
    from edge_runtime.models import load_model
    from edge_runtime.models.quantization import file_quantization
    from edge_runtime.pipelines.postprocess import make_decoder

    model = load_model(args.model, num_threads=1, warmup_runs=0)
    m = model.manifest
    info: dict[str, Any] = {
        "name": model.name,
        "path": str(model.path),
        "format": model.format,
        "backend": model.backend_name,
        "sha256": model.sha256,
        "size_kb": round(model.path.stat().st_size / 1024, 1),
        "quantization": file_quantization(model),
        "inputs": [s.describe() for s in model.inputs],
        "outputs": [s.describe() for s in model.outputs],
    }
    if m is not None:
        info.update(task=m.task, description=m.description, labels=m.labels)
        if m.quantization is not None and m.quantization != info["quantization"]:
            info["manifest_quantization"] = m.quantization
        if m.preprocessing is not None:
            info["preprocessing"] = _table(m.preprocessing)
        if m.postprocessing is not None:
            info["postprocessing"] = _table(m.postprocessing)
            try:
                decoder = make_decoder(m.postprocessing, m.labels,
                                       _input_size(m, model.inputs))
                if decoder is not None:
                    info["decoder_expects"] = [e.describe() for e in decoder.expectations()]
                    decoder.bind(model.outputs)
                    info["decoder_fits"] = "yes"
            except EdgeRuntimeError as exc:
                info["decoder_fits"] = f"NO: {exc.message}"
        if m.accuracy is not None:
            info["accuracy"] = {
                "metric": m.accuracy.metric,
                "value": m.accuracy.value,
                "fp32_value": m.accuracy.fp32_value,
                "held_out_samples": m.accuracy.held_out_samples,
            }
        if m.card_path is not None:
            info["card"] = str(m.card_path)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for key in (
        "name",
        "description",
        "task",
        "path",
        "format",
        "backend",
        "quantization",
        "sha256",
    ):
        if key in info:
            print(f"{key:13} {info[key]}")
            if key == "quantization" and "manifest_quantization" in info:
                print(f"{'':13} (the manifest says {info['manifest_quantization']}; "
                      "the file decides)")
    print(f"{'size':13} {info['size_kb']} KB")
    if "accuracy" in info:
        a = info["accuracy"]
        fp32 = f" (fp32: {a['fp32_value']:.4g})" if a["fp32_value"] is not None else ""
        print(
            f"{'accuracy':13} {a['metric']} {a['value']:.4g}{fp32} on {a['held_out_samples']} "
            "held-out samples"
        )
    if info.get("labels"):
        print(f"{'labels':13} {', '.join(info['labels'])}")
    for key in ("preprocessing", "postprocessing"):
        table = dict(info.get(key, {}))
        anchors = table.pop("anchors", None)
        if table:
            print(f"{key:13} " + ", ".join(f"{k}={v}" for k, v in table.items()
                                           if v is not None and v != []))
        if anchors:
            print(f"{'  anchors':13} " + ", ".join(f"{k}={v}" for k, v in anchors.items()
                                                 if v != []))
    for key, title in (("inputs", "inputs"), ("outputs", "outputs"),
                       ("decoder_expects", "decoder needs")):
        for i, text in enumerate(info.get(key, [])):
            print(f"{title if i == 0 else '':13} {text}")
    if "decoder_fits" in info:
        print(f"{'decoder fits':13} {info['decoder_fits']}")
    if "card" in info:
        print(f"{'card':13} {info['card']}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from edge_runtime.errors import ModelNotFoundError
    from edge_runtime.models.manifest import sha256_file
    from edge_runtime.models.registry import find_model, is_shipped, list_models, mismatch_hint

    models = [find_model(n) for n in args.names] if args.names else list_models()
    bad = 0
    shipped_bad = 0
    for i, m in enumerate(models, 1):
        prefix = f"[{i}/{len(models)}] {m.name}"
        if not m.model_path.is_file():
            print(f"{prefix}: MISSING {m.model_path}")
            bad += 1
            shipped_bad += is_shipped(m)
            continue
        digest = sha256_file(m.model_path)
        problem = _decoder_problem(m) if digest == m.sha256 else None
        if problem is not None:
            print(f"{prefix}: MANIFEST DOES NOT FIT THE MODEL: {problem}")
            bad += 1
        elif digest == m.sha256:
            print(f"{prefix}: ok")
        else:
            print(f"{prefix}: MISMATCH sha256 {digest[:12]}... (manifest {m.sha256[:12]}...)")
            bad += 1
            if is_shipped(m):
                shipped_bad += 1
            else:
                print(f"  {mismatch_hint(m, digest)}")
    if bad:
        todo = []
        if shipped_bad:
            todo.append("reinstall edge-runtime or rebuild the shipped models (models/README.md)")
        if bad > shipped_bad:
            todo.append("fix your own models as the lines above say (docs/models.md)")
        print(f"{bad} of {len(models)} models failed verification; {'; '.join(todo)}",
              file=sys.stderr)
        return 2
    if not models:
        raise ModelNotFoundError("no models to verify")
    print(f"all {len(models)} models match their manifests")
    return 0


def _table(struct: Any) -> dict[str, Any]:
    """A manifest table as plain values, its type first (for info)."""
    import msgspec

    doc = msgspec.json.decode(msgspec.json.encode(struct))  # tuples as lists
    tag = type(struct).__struct_config__.tag
    return {"type": tag, **{k: v for k, v in doc.items() if k != "type"}}


def _input_size(manifest: Any, inputs: Any) -> tuple[int, int]:
    from edge_runtime.pipelines.postprocess import input_size_of

    return input_size_of(manifest, inputs)


def _file_quantization(manifest: Any) -> str:
    """Quantization read from the model file ("?" when it cannot be opened)."""
    from edge_runtime.errors import EdgeRuntimeError
    from edge_runtime.models import load_model
    from edge_runtime.models.quantization import file_quantization

    try:
        with load_model(manifest.path, num_threads=1, warmup_runs=0) as model:
            return file_quantization(model)
    except EdgeRuntimeError:
        return "?"


def _decoder_problem(manifest: Any) -> str | None:
    """Why the manifest's decoder does not fit its model's outputs, or None."""
    from edge_runtime.errors import ManifestError
    from edge_runtime.models.verify import check_model

    try:
        check_model(manifest.path).model.close()
    except ManifestError as exc:
        return exc.message
    return None
