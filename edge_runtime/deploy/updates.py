"""Model and config updates that never take a node down (``edge-runtime update``).

An update goes through these steps, in this order; a step that fails leaves the
installed version as it was:

1. **stage**: the artefact is copied into ``<state_dir>/updates/staging/`` and fsynced;
   everything after reads that copy, never the original again.
2. **verify**: its sha256 against ``--sha256`` (when given); its minisign signature
   (``FILE.minisig`` or ``--signature``) against the fleet key (``fleet.pub`` beside the
   node config, or ``--public-key``). With a fleet key, an unsigned artefact is refused.
   The signature's trusted comment names the artefact and its version
   (``name=digits version=3``); a version not newer than the installed one of that name
   is refused (a replay), except the very same file again (a retry).
3. **self-test**: a model is loaded (first in a child process, see
   ``models/probe.py``) and runs one inference on zeros; a config gets the checks of
   ``edge-runtime check``, with its relative paths resolved where it will live.
4. **record**: the new version is written to ``<state_dir>/updates/installed.json``
   (before the swap, so a crash cannot reopen the door to a replay).
5. **keep the previous**: the installed file is hard-linked to ``TARGET.previous``.
6. **swap**: the new bytes go to a temporary file beside the target (fsynced), which is
   renamed over the target; the folder is fsynced. The target is always either the old
   or the new file, whatever moment the power goes.
7. **health check**: if a daemon is running (its control socket answers), it is asked to
   reload; it is healthy when its reload count goes up within ``health_timeout_s``
   (default :data:`HEALTH_TIMEOUT_S`) without a new reload error. If not, the previous
   file is put back the same way (and the daemon reloaded again): the update is rolled
   back by itself. Without a running daemon the self-test is the health check.

Targets: a model goes to ``<state_dir>/models/<name><suffix>`` (point the config's
``model`` there); a config replaces the node's config file. New files get the owner of
the folder they land in (the service user owns the state folder), replaced files keep
their owner and mode.

**Test hook.** ``EDGE_RUNTIME_TEST_CRASH_AT=<step>`` (one of :data:`STEPS`) kills the
process with SIGKILL right after that step: the tests use it to check that a crash at
any step leaves a working old or new version. Never set it on a node.

Everything here blocks (file I/O, model loading, waiting for the daemon).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.deploy import minisign
from edge_runtime.errors import (
    DaemonError,
    EdgeRuntimeError,
    FileWriteError,
    HealthCheckError,
    ReplayError,
    SelfTestError,
    SignatureError,
    UpdateError,
)
from edge_runtime.files import fsync_folder, state_folder, write_atomic

#: The steps, in order; ``EDGE_RUNTIME_TEST_CRASH_AT`` names one (test hook).
STEPS = ("staged", "verified", "self_tested", "recorded", "previous_kept", "copied",
         "swapped", "reloaded")
CRASH_ENV = "EDGE_RUNTIME_TEST_CRASH_AT"
#: How long the daemon gets to come up with the new artefact after the reload (s).
HEALTH_TIMEOUT_S = 60.0
#: How often the daemon's status is asked during the health check (s).
HEALTH_POLL_S = 0.25
#: The fleet key's file name, looked for beside the node config.
FLEET_KEY_NAME = "fleet.pub"
KINDS = ("model", "config")


@dataclass
class UpdateResult:
    """What an update did; ``message`` is the line the CLI prints."""

    kind: str
    name: str
    version: str | None
    target: Path
    changed: bool
    health: str
    message: str


def crash_point(step: str) -> None:
    """The test hook: die here (SIGKILL, like a power cut) if asked to."""
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def version_key(version: str, where: str) -> tuple[int, ...]:
    """``"3"`` or ``"1.4.2"`` as a comparable tuple; SignatureError for anything else."""
    try:
        parts = tuple(int(p) for p in version.split("."))
    except ValueError:
        parts = ()
    if not parts or any(p < 0 for p in parts):
        raise SignatureError(f"{where}: version {version!r} is not a number like 3 or 1.4.2")
    return parts


class Updater:
    """Updates one node: its config file, state folder, fleet key and running daemon."""

    def __init__(self, node_config: Path, *, public_key: Path | None = None,
                 health_timeout_s: float = HEALTH_TIMEOUT_S) -> None:
        from edge_runtime.config import load_config

        self.node_config = node_config
        self.config = load_config(node_config)
        self.state_dir = self.config.state_dir
        self.updates_dir = self.state_dir / "updates"
        self.health_timeout_s = health_timeout_s
        key_path = public_key if public_key is not None else node_config.parent / FLEET_KEY_NAME
        self.public_key: minisign.PublicKey | None = None
        if public_key is not None or key_path.exists():
            try:
                text = key_path.read_text()
            except OSError as exc:
                raise SignatureError(f"cannot read the fleet key {key_path}: {exc.strerror}",
                                     hint="give --public-key with a readable .pub file"
                                     ) from exc
            self.public_key = minisign.parse_public_key(text, str(key_path))

    # -- the installed versions ---------------------------------------------------------

    @property
    def installed_path(self) -> Path:
        return self.updates_dir / "installed.json"

    def installed(self) -> dict[str, dict[str, Any]]:
        """``{"model:digits": {"version": "3", "sha256": ..., "previous": {...}}}``."""
        try:
            data = json.loads(self.installed_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise UpdateError(f"cannot read {self.installed_path}: {exc}",
                              hint="restore it, or delete it to accept any version once"
                              ) from exc
        return data if isinstance(data, dict) else {}

    def _write_installed(self, data: dict[str, dict[str, Any]]) -> None:
        write_atomic(self.installed_path, json.dumps(data, indent=1, sort_keys=True).encode(),
                     mode=0o644)

    # -- the update ---------------------------------------------------------------------

    def update(self, kind: str, artefact: Path, *, signature: Path | None = None,
               sha256: str | None = None, name: str | None = None) -> UpdateResult:
        """Run every step (module docstring); raises an UpdateError (or another
        EdgeRuntimeError) when the artefact is refused or rolled back."""
        if kind not in KINDS:
            raise UpdateError(f"unknown kind {kind!r}", hint=f"one of {', '.join(KINDS)}")
        state_folder(self.updates_dir / "staging")
        try:
            data = artefact.read_bytes()
        except OSError as exc:
            raise UpdateError(f"cannot read {artefact}: {exc.strerror}") from exc
        staged = self.updates_dir / "staging" / artefact.name
        write_atomic(staged, data, mode=0o600)
        data = staged.read_bytes()  # from here on, only the staged copy counts
        crash_point("staged")

        digest = hashlib.sha256(data).hexdigest()
        if sha256 is not None and sha256.lower() != digest:
            raise UpdateError(f"{artefact}: sha256 is {digest}, not {sha256}",
                              hint="download the file again")
        name, version = self._verify(artefact, data, signature, name)
        key = f"{kind}:{name}"
        installed = self.installed()
        now = installed.get(key)
        target = self._target(kind, name, artefact)
        if version is not None and now is not None and now.get("version") is not None:
            new_v = version_key(version, str(artefact))
            old_v = version_key(str(now["version"]), str(self.installed_path))
            same = now.get("sha256") == digest
            if new_v < old_v or (new_v == old_v and not same):
                raise ReplayError(f"{artefact}: version {version} of {name!r} is not newer "
                                  f"than the installed version {now['version']}")
            if same and target.exists() and _sha256_of(target) == digest:
                staged.unlink()
                return UpdateResult(kind, name, version, target, False, "unchanged",
                                    f"{name} version {version} is already installed at "
                                    f"{target}")
        crash_point("verified")

        self._self_test(kind, staged, data, target)
        crash_point("self_tested")

        previous = {k: v for k, v in (now or {}).items() if k != "previous"} or None
        installed[key] = {"version": version, "sha256": digest, "path": str(target),
                          "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                          "previous": previous}
        self._write_installed(installed)
        crash_point("recorded")

        backup = target.with_name(target.name + ".previous")
        had_old = target.exists()
        if had_old:
            _link_atomic(target, backup)
        crash_point("previous_kept")
        _install_bytes(target, data)
        staged.unlink()
        health = self._health_check()
        crash_point("reloaded")
        if health.startswith("failed"):
            if had_old:
                _install_bytes(backup, backup.read_bytes(), target=target)
                if previous is not None:
                    installed[key] = {**previous, "previous": None}
                else:
                    installed.pop(key, None)
                self._write_installed(installed)
                self._health_check()
                raise HealthCheckError(f"{name}: {health}; rolled back to the previous "
                                       f"version at {target}")
            raise HealthCheckError(f"{name}: {health}; there is no previous version to "
                                   "roll back to")
        label = f"{name} version {version}" if version else name
        return UpdateResult(kind, name, version, target, True, health,
                            f"installed {label} at {target} ({health})")

    def _verify(self, artefact: Path, data: bytes, signature: Path | None,
                name: str | None) -> tuple[str, str | None]:
        """The artefact's name and version; checks the signature when there is one."""
        sig_path = signature if signature is not None else \
            artefact.with_name(artefact.name + ".minisig")
        if not sig_path.exists():
            if signature is not None:
                raise SignatureError(f"no signature file {sig_path}")
            if self.public_key is not None:
                raise SignatureError(f"{artefact} is not signed ({sig_path} is missing) and "
                                     "this node has a fleet key: only signed updates")
            return name or _stem(artefact), None
        if self.public_key is None:
            raise SignatureError(f"{artefact} is signed but this node has no fleet key",
                                 hint=f"install the fleet's public key as "
                                 f"{self.node_config.parent / FLEET_KEY_NAME} or give "
                                 "--public-key")
        sig = minisign.parse_signature(sig_path.read_text(), str(sig_path))
        minisign.verify(data, sig, self.public_key, str(artefact))
        fields = sig.fields()
        if "name" not in fields or "version" not in fields:
            raise SignatureError(f"{sig_path}: the trusted comment {sig.trusted_comment!r} "
                                 "does not say name=... version=...",
                                 hint="sign with -t 'name=NAME version=N'")
        if name is not None and name != fields["name"]:
            raise SignatureError(f"{artefact} is signed as {fields['name']!r}, not {name!r}")
        version_key(fields["version"], str(sig_path))
        return fields["name"], fields["version"]

    def _target(self, kind: str, name: str, artefact: Path) -> Path:
        if kind == "config":
            return self.node_config
        if not name.replace("-", "").replace("_", "").replace(".", "").isalnum() \
                or name.startswith("."):
            raise UpdateError(f"model name {name!r}: use letters, digits, '-', '_' and '.'")
        folder = self.state_dir / "models"
        if not folder.exists():
            state_folder(folder)
            _own_like(folder, self.state_dir)
        return folder / f"{name}{artefact.suffix}"

    def _self_test(self, kind: str, staged: Path, data: bytes, target: Path) -> None:
        if kind == "config":
            from edge_runtime.cli.check import check_loaded_config
            from edge_runtime.config import decode_config

            try:
                config = decode_config(data, base_dir=target.parent, source=str(staged))
                check_loaded_config(config)
            except EdgeRuntimeError as exc:
                raise SelfTestError(f"the new config does not validate: {exc}") from exc
            return
        import numpy as np

        from edge_runtime.models import load_model

        model_file = staged.with_name(f"selftest-{os.getpid()}{target.suffix}")
        try:
            model_file.write_bytes(data)
            model = load_model(model_file, num_threads=1)
            try:
                feeds = {spec.name: np.zeros([d or 1 for d in spec.shape],
                                             np.float32 if spec.dtype.kind == "f" else spec.dtype)
                         for spec in model.inputs}
                model.run(feeds)
            finally:
                model.close()
        except EdgeRuntimeError as exc:
            raise SelfTestError(f"the new model does not load or run: {exc}") from exc
        finally:
            with contextlib.suppress(OSError):
                model_file.unlink()

    def _health_check(self) -> str:
        """``"healthy ..."``, ``"no daemon running ..."`` or ``"failed: ..."``."""
        from edge_runtime import control

        sock = self.config.control_socket
        try:
            before = control.request(sock, "status", timeout_s=3.0)
        except DaemonError:
            return "no daemon running; the self-test passed"
        reloads, errors = before.get("reloads", 0), before.get("reload_errors", 0)
        deadline = time.monotonic() + self.health_timeout_s
        try:
            control.request(sock, "reload", timeout_s=3.0)
        except DaemonError as exc:
            return f"failed: the daemon did not take the reload ({exc})"
        last: dict[str, Any] = before
        while time.monotonic() < deadline:
            time.sleep(HEALTH_POLL_S)
            with contextlib.suppress(DaemonError):
                last = control.request(sock, "status", timeout_s=3.0)
                if last.get("reload_errors", 0) > errors:
                    return f"failed: the daemon refused it ({last.get('last_reload_error')})"
                if last.get("reloads", 0) > reloads:
                    return f"healthy: the daemon reloaded (generation {last.get('generation')})"
        return (f"failed: the daemon did not come up with it within "
                f"{self.health_timeout_s:.0f} s")


def _stem(path: Path) -> str:
    return path.name.split(".")[0]


def _sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _own_like(path: Path, like: Path) -> None:
    """Give ``path`` the owner of ``like`` (only root can; others keep their own)."""
    if os.geteuid() != 0:
        return
    st = like.stat()
    with contextlib.suppress(OSError):
        os.chown(path, st.st_uid, st.st_gid)


def _link_atomic(source: Path, link: Path) -> None:
    """``link`` becomes a hard link to ``source`` (replacing an older one atomically)."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(source, tmp)
        os.replace(tmp, link)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise FileWriteError(f"cannot keep the previous version as {link}: {exc.strerror}"
                             ) from exc
    fsync_folder(link.parent)


def _install_bytes(source: Path, data: bytes, *, target: Path | None = None) -> None:
    """Write ``data`` over ``target`` (default ``source``): temporary file beside it,
    fsync, rename, fsync of the folder. The target keeps its owner and mode; a new one
    gets its folder's owner and mode 0644."""
    target = source if target is None else target
    folder = target.parent
    try:
        st = target.stat()
        mode, owner = st.st_mode & 0o7777, (st.st_uid, st.st_gid)
    except FileNotFoundError:
        fst = folder.stat()
        mode, owner = 0o644, (fst.st_uid, fst.st_gid)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            if os.geteuid() == 0:
                os.fchown(fh.fileno(), *owner)
            os.fsync(fh.fileno())
        crash_point("copied")
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise FileWriteError(f"{target}: cannot write ({exc.strerror})") from exc
    fsync_folder(folder)
    crash_point("swapped")
