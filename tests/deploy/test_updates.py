"""``edge-runtime update``: good, corrupt, foreign-key and replayed artefacts; a crash
(SIGKILL, through the EDGE_RUNTIME_TEST_CRASH_AT test hook) after each step of the swap;
health-check rollback; signatures interoperable with the real minisign binary."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_runtime import control, load_model
from edge_runtime.deploy import minisign
from edge_runtime.deploy.updates import CRASH_ENV, STEPS, Updater
from edge_runtime.errors import HealthCheckError, ReplayError, SelfTestError, SignatureError
from edge_runtime.models.registry import find_model

REPO = Path(__file__).resolve().parents[2]
OLD = find_model("digits-int8-onnx").model_path
NEW = find_model("digits-fp32-onnx").model_path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Node:
    """A node's config folder, state folder and the fleet's key pair."""

    def __init__(self, root: Path, extra: str = "") -> None:
        self.root = root
        self.key = minisign.SecretKey.generate()
        (root / "etc").mkdir()
        self.config = root / "etc" / "config.toml"
        self.state = root / "state"
        self.config.write_text(f'[node]\nname = "n1"\nstate_dir = "{self.state}"\n{extra}')
        (root / "etc" / "fleet.pub").write_text(self.key.public.to_text())
        self.target = self.state / "models" / "digits.onnx"

    def artefact(self, source: Path | bytes, version: str | None, *, name: str = "digits",
                 key: minisign.SecretKey | None = None, file_name: str = "digits.onnx") -> Path:
        """A copy of ``source`` in its own folder, signed (unless version is None)."""
        folder = Path(tempfile.mkdtemp(dir=self.root))
        path = folder / file_name
        path.write_bytes(source if isinstance(source, bytes) else source.read_bytes())
        if version is not None:
            sig = minisign.sign(path.read_bytes(), key or self.key,
                                f"name={name} version={version}")
            (folder / f"{file_name}.minisig").write_text(sig)
        return path

    def updater(self, **kwargs: Any) -> Updater:
        return Updater(self.config, **kwargs)


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path)


def test_signed_updates_install_and_replays_are_refused(node: Node) -> None:
    first = node.updater().update("model", node.artefact(OLD, "1"))
    assert first.changed and first.target == node.target and sha(node.target) == sha(OLD)
    assert "no daemon running" in first.health
    second = node.updater().update("model", node.artefact(NEW, "2"))
    assert second.changed and sha(node.target) == sha(NEW)
    assert sha(node.target.with_name("digits.onnx.previous")) == sha(OLD)
    # The old artefact, validly signed, cannot be replayed as new...
    with pytest.raises(ReplayError, match="not newer"):
        node.updater().update("model", node.artefact(OLD, "1"))
    # ...nor another file under the installed version number.
    with pytest.raises(ReplayError):
        node.updater().update("model", node.artefact(OLD, "2"))
    assert sha(node.target) == sha(NEW)
    again = node.updater().update("model", node.artefact(NEW, "2"))  # a retry
    assert not again.changed and "already installed" in again.message


def test_corrupt_tampered_foreign_and_unsigned_are_refused(node: Node) -> None:
    node.updater().update("model", node.artefact(OLD, "1"))
    truncated = OLD.read_bytes()[: len(OLD.read_bytes()) // 2]
    with pytest.raises(SelfTestError, match="does not load"):  # signed, but broken
        node.updater().update("model", node.artefact(truncated, "2"))
    tampered = node.artefact(NEW, "3")
    tampered.write_bytes(tampered.read_bytes()[:-1] + b"\0")
    with pytest.raises(SignatureError, match="does not match"):
        node.updater().update("model", tampered)
    other = minisign.SecretKey.generate()
    with pytest.raises(SignatureError, match="not by the fleet key"):
        node.updater().update("model", node.artefact(NEW, "4", key=other))
    with pytest.raises(SignatureError, match="not signed"):
        node.updater().update("model", node.artefact(NEW, None))
    # A trusted comment changed after signing.
    forged = node.artefact(NEW, "5")
    sig = forged.with_name("digits.onnx.minisig")
    sig.write_text(sig.read_text().replace("version=5", "version=6"))
    with pytest.raises(SignatureError, match="trusted comment was changed"):
        node.updater().update("model", forged)
    # Through all of that the old model kept serving.
    assert sha(node.target) == sha(OLD)
    load_model(node.target).close()


def test_config_update_is_checked_like_check(node: Node) -> None:
    good = node.config.read_text().replace('"n1"', '"n2"')
    bad = good + "[nonsense]\nx = 1\n"
    with pytest.raises(SelfTestError, match="nonsense"):
        node.updater().update("config", node.artefact(bad.encode(), "1", name="node",
                                                      file_name="config.toml"))
    assert '"n1"' in node.config.read_text()
    node.updater().update("config", node.artefact(good.encode(), "1", name="node",
                                                  file_name="config.toml"))
    assert '"n2"' in node.config.read_text()
    assert '"n1"' in node.config.with_name("config.toml.previous").read_text()


@pytest.mark.parametrize("step", STEPS)
def test_a_crash_after_any_step_leaves_old_or_new(node: Node, step: str) -> None:
    node.updater().update("model", node.artefact(OLD, "1"))
    new = node.artefact(NEW, "2")
    command = [sys.executable, "-m", "edge_runtime", "update", "--model", str(new),
               "--node-config", str(node.config)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    crashed = subprocess.run(command, env={**env, CRASH_ENV: step}, capture_output=True,
                             timeout=120, check=False)
    assert crashed.returncode == -9, crashed.stderr.decode()  # killed at that step
    # The next start finds a model that loads: the old one or the new one.
    assert sha(node.target) in {sha(OLD), sha(NEW)}
    load_model(node.target).close()
    # And the same update, run again, completes.
    done = subprocess.run(command, env=env, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert sha(node.target) == sha(NEW)


class StubDaemon:
    """A control socket that answers like a daemon; ``comes_up`` says whether a reload
    ever completes (a real daemon whose new generation never builds does not)."""

    def __init__(self, path: Path, *, comes_up: bool) -> None:
        self.path, self.comes_up = path, comes_up
        self.reloads = 0
        self.reload_requests = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stub-daemon")

    async def _handle(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("cmd") == "reload":
            self.reload_requests += 1
            if self.comes_up:
                self.reloads += 1
            return {"ok": True}
        return {"reloads": self.reloads, "reload_errors": 0, "generation": self.reloads + 1}

    def _run(self) -> None:
        async def main() -> None:
            server = await control.start_server(self.path, self._handle)
            self._stop = asyncio.Event()
            self._ready.set()
            await self._stop.wait()
            server.close()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:  # the connections still being served
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            await server.wait_closed()

        self._loop.run_until_complete(main())
        self._loop.close()

    def __enter__(self) -> StubDaemon:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def short_root() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="upd-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_health_check_reloads_and_rolls_back(short_root: Path) -> None:
    node = Node(short_root)
    node.updater().update("model", node.artefact(OLD, "1"))
    sock = node.state / "control.sock"
    with StubDaemon(sock, comes_up=True) as daemon:
        result = node.updater(health_timeout_s=5).update("model", node.artefact(NEW, "2"))
        assert result.health.startswith("healthy") and daemon.reload_requests == 1
    assert sha(node.target) == sha(NEW)
    third = find_model("machine-temp-int8-onnx").model_path  # another model, as version 3
    with StubDaemon(sock, comes_up=False) as daemon, \
            pytest.raises(HealthCheckError, match="rolled back"):
        node.updater(health_timeout_s=1).update(
            "model", node.artefact(third.read_bytes(), "3"))
    assert daemon.reload_requests == 2  # the update's, then the rollback's
    assert sha(node.target) == sha(NEW)  # back to the version that worked
    assert node.updater().installed()["model:digits"]["version"] == "2"


def test_signatures_interoperate_with_minisign(tmp_path: Path) -> None:
    pub, sec = tmp_path / "m.pub", tmp_path / "m.key"
    subprocess.run(["minisign", "-G", "-W", "-p", str(pub), "-s", str(sec)], check=True,
                   capture_output=True, timeout=30)
    public = minisign.parse_public_key(pub.read_text())
    data = OLD.read_bytes()
    model = tmp_path / "digits.onnx"
    model.write_bytes(data)
    for legacy in (False, True):  # minisign's default (prehashed) and -l (legacy)
        subprocess.run(["minisign", "-S", *(["-l"] if legacy else []), "-s", str(sec),
                        "-m", str(model), "-t", "name=digits version=7"], check=True,
                       capture_output=True, timeout=30)
        sig = minisign.parse_signature(model.with_name("digits.onnx.minisig").read_text())
        assert sig.algorithm == (b"Ed" if legacy else b"ED")
        minisign.verify(data, sig, public)
        assert sig.fields() == {"name": "digits", "version": "7"}
        with pytest.raises(SignatureError):
            minisign.verify(data + b"x", sig, public)
    # The runtime signs with minisign's own secret key file; minisign -V accepts it.
    secret = minisign.parse_secret_key(sec.read_text())
    assert secret.public.key_id == public.key_id
    for prehash in (True, False):
        model.with_name("digits.onnx.minisig").write_text(
            minisign.sign(data, secret, "name=digits version=8", prehash=prehash))
        subprocess.run(["minisign", "-V", "-p", str(pub), "-m", str(model)], check=True,
                       capture_output=True, timeout=30)
    # A key pair the runtime made works with minisign -S and -V.
    ours = tmp_path / "ours"
    subprocess.run([sys.executable, "-m", "edge_runtime", "update", "--keygen", str(ours)],
                   check=True, capture_output=True, timeout=60,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    subprocess.run(["minisign", "-S", "-W", "-s", str(ours / "fleet.key"), "-m", str(model),
                    "-t", "name=digits version=9"], check=True, capture_output=True,
                   timeout=30)
    done = subprocess.run(["minisign", "-V", "-p", str(ours / "fleet.pub"), "-m", str(model)],
                          check=False, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "version=9" in done.stdout, done.stderr
