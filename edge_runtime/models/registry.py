"""Where shipped models live and how a name becomes a manifest.

Model folders are searched in this order, first match of a name wins:

1. each folder in ``EDGE_RUNTIME_MODELS`` (``os.pathsep``-separated), for your own models;
2. ``edge_runtime/_shipped_models`` inside the installed package (wheel installs);
3. ``models/`` of a source checkout (editable installs and running from the repo).

A folder is any directory holding ``*.toml`` manifests (see ``manifest.py``).
"""

from __future__ import annotations

import difflib
import os
from functools import cache
from pathlib import Path

from edge_runtime.errors import ModelNotFoundError
from edge_runtime.models.manifest import Manifest, load_manifest

ENV_MODELS = "EDGE_RUNTIME_MODELS"
_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def model_dirs() -> list[Path]:
    """The model folders that exist, in search order."""
    candidates = [Path(p) for p in os.environ.get(ENV_MODELS, "").split(os.pathsep) if p]
    candidates += [_PACKAGE_DIR / "_shipped_models", _PACKAGE_DIR.parent / "models"]
    seen: list[Path] = []
    for folder in candidates:
        resolved = folder.resolve()
        if resolved.is_dir() and resolved not in seen:
            seen.append(resolved)
    return seen


@cache
def _manifests_in(folder: Path) -> tuple[Manifest, ...]:
    return tuple(load_manifest(p) for p in sorted(folder.glob("*.toml")))


def list_models() -> list[Manifest]:
    """Every model reachable by name, first folder wins on duplicate names."""
    found: dict[str, Manifest] = {}
    for folder in model_dirs():
        for manifest in _manifests_in(folder):
            found.setdefault(manifest.name, manifest)
    return sorted(found.values(), key=lambda m: m.name)


def find_model(name: str) -> Manifest:
    """The manifest of the model called ``name``; suggests close names when unknown."""
    models = list_models()
    for manifest in models:
        if manifest.name == name:
            return manifest
    names = [m.name for m in models]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(names) or 'none'}"
    raise ModelNotFoundError(f"no model file or shipped model named {name!r} ({hint})")


def is_shipped(manifest: Manifest) -> bool:
    """True for a model that ships with edge-runtime (not one from ``EDGE_RUNTIME_MODELS``
    or a manifest given by path)."""
    shipped = (_PACKAGE_DIR / "_shipped_models", _PACKAGE_DIR.parent / "models")
    folder = manifest.path.parent
    return any(folder == d.resolve() for d in shipped)


def mismatch_hint(manifest: Manifest, digest: str) -> str:
    """What to do when a model file's sha256 (``digest``) is not its manifest's."""
    if is_shipped(manifest):
        return ("the shipped file was modified or damaged; reinstall edge-runtime, or "
                "rebuild the models (models/README.md)")
    return (f"if you changed the model on purpose, set sha256 = \"{digest}\" in "
            f"{manifest.path}; otherwise copy the model file again")


def manifest_for_file(path: Path) -> Manifest | None:
    """The manifest of a model folder that describes this exact file, if any."""
    resolved = path.resolve()
    for manifest in list_models():
        if manifest.model_path == resolved:
            return manifest
    return None


def data_file(name: str) -> Path:
    """A data file shipped beside the models (``<models folder>/data/NAME``)."""
    for folder in model_dirs():
        candidate = folder / "data" / name
        if candidate.is_file():
            return candidate
    raise ModelNotFoundError(f"shipped data file {name!r} not found in {model_dirs()}")
