"""``edge-runtime check CONFIG``: validate a config without running it."""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_runtime.config import Config


def register(subparsers: Any) -> None:
    """Add the ``check`` command."""
    parser = subparsers.add_parser(
        "check",
        help="validate a config file without running it",
        description="Validate CONFIG: schema, cross references (sources, actions, models), "
        "files it names, detectors (built once and checked). Exit code 0 when valid, 2 "
        "with the offending key path otherwise.",
    )
    parser.add_argument("config", metavar="CONFIG", help="TOML config file")
    parser.set_defaults(handler=_check)


def _check(args: argparse.Namespace) -> int:
    from edge_runtime.config import load_config

    config = load_config(args.config)
    check_loaded_config(config)
    state_dir = check_state_dir(config)
    print(f"{args.config}: ok ({len(config.sources)} source(s), {len(config.pipelines)} "
          f"pipeline(s), {len(config.actions)} action(s)); state folder {state_dir} is "
          "writable")
    return 0


def check_loaded_config(config: Config) -> None:
    """What ``check`` adds to :func:`~edge_runtime.config.load_config` (which the daemon
    also runs on a reload), short of touching the state folder: ConfigError if any fails.
    """
    from edge_runtime.config import check_detectors

    # A user's module:Class detector is built once here and checked against the
    # Detector protocol, so a missing member fails now, not when the daemon starts.
    check_detectors(config)
    # Each model's manifest against the model's own tensors (decoder outputs, plugin).
    from edge_runtime.models.verify import check_config_models

    check_config_models(config)


def check_state_dir(config: Config) -> Path:
    """Check that the daemon can create and write its state folder; returns its path.

    A relative ``node.state_dir`` resolves next to the config file, which for an
    installed node is under /etc, where the service user cannot write: the daemon would
    only find out at its first event or at exit. Folders created for the check are
    removed again, so ``check`` leaves no trace.
    """
    from edge_runtime.errors import ConfigError

    path = config.state_dir
    created: list[Path] = []
    try:
        missing = [p for p in (path, *path.parents) if not p.exists()]
        for folder in reversed(missing):
            folder.mkdir()
            created.append(folder)
        fd, probe = tempfile.mkstemp(prefix=".edge-runtime-check-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        where = (f" (the relative {config.node.state_dir!r} resolves next to the config file)"
                 if not Path(config.node.state_dir).expanduser().is_absolute() else "")
        raise ConfigError(
            f"node.state_dir: cannot create or write {path}{where}: {exc.strerror or exc}",
            hint="set node.state_dir to an absolute folder the daemon's user can write, "
                 "such as /var/lib/edge-runtime",
        ) from exc
    finally:
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()
    return path
