"""Every error's hint says what to do, concretely (issue #9: placeholder hints, a user's
sha256 mismatch that said "reinstall edge-runtime", a library hint naming our CLI)."""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import edge_runtime.errors as er
import firmware_bridge.errors as fe
from edge_runtime import load_model
from edge_runtime.cli import main
from edge_runtime.errors import IntegrityError
from edge_runtime.models import registry
from edge_runtime.models.manifest import load_manifest

MODELS = Path(__file__).resolve().parents[1] / "models"

#: A quoted command with a metavariable in it ('edge-runtime models info MODEL'):
#: the user cannot run it as written.
_COMMAND_WITH_METAVAR = re.compile(r"'(?:edge-runtime|systemctl)\b[^']*\b[A-Z][A-Z_]{2,}\b[^']*'")
_PLACEHOLDERS = re.compile(r"\bCOMMAND\b|<[a-z_ -]+>|\bTODO\b|\bFIXME\b|\bXXX\b|\.\.\.")


def _all_subclasses(root: type[BaseException]) -> Iterator[type[BaseException]]:
    for cls in root.__subclasses__():
        yield cls
        yield from _all_subclasses(cls)


ERROR_CLASSES = sorted({*_all_subclasses(er.EdgeRuntimeError), *_all_subclasses(fe.BridgeError)},
                       key=lambda c: f"{c.__module__}.{c.__qualname__}")


def _placeholder_in(hint: str) -> str | None:
    found = _COMMAND_WITH_METAVAR.search(hint) or _PLACEHOLDERS.search(hint)
    return found.group(0) if found else None


def test_error_classes_are_found() -> None:
    names = {c.__name__ for c in ERROR_CLASSES}
    assert {"CliUsageError", "IntegrityError", "DaemonError", "UnknownChannelError"} <= names


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_default_hint_is_concrete(cls: type[er.EdgeRuntimeError | fe.BridgeError]) -> None:
    """A leaf error (what is raised) has a hint, and no hint is a placeholder."""
    hint: str = cls.hint
    if not cls.__subclasses__():
        assert hint.strip(), f"{cls.__name__} has no hint"
    assert _placeholder_in(hint) is None, f"{cls.__name__}: placeholder in {hint!r}"
    assert not hint.endswith((".", ";")) and hint == hint.strip()  # appended after '; '


@pytest.mark.parametrize("hint", [
    "see 'edge-runtime COMMAND --help'",
    "see 'edge-runtime models info MODEL' for what the model expects",
    "check the value against 'edge-runtime bridge probe PORT'",
    "set <state_dir> to something",
    "TODO",
])
def test_the_placeholder_check_catches_what_the_issue_listed(hint: str) -> None:
    assert _placeholder_in(hint) is not None


@pytest.mark.parametrize("cls", [c for c in ERROR_CLASSES if issubclass(c, fe.BridgeError)],
                         ids=lambda c: c.__name__)
def test_firmware_bridge_hints_never_name_the_runtime(cls: type[fe.BridgeError]) -> None:
    """firmware_bridge is a standalone library: its users may not have edge-runtime."""
    assert "edge-runtime" not in cls.hint and "edge_runtime" not in cls.hint


def test_firmware_bridge_source_never_mentions_runtime_commands() -> None:
    root = Path(fe.__file__).parent
    for path in root.glob("*.py"):
        for line in path.read_text().splitlines():
            assert "'edge-runtime " not in line, f"{path.name}: {line.strip()}"


def test_runtime_gives_its_cli_hint_for_an_unknown_bridge_channel() -> None:
    from edge_runtime.errors import ConfigError
    from edge_runtime.sources.bridge import translate_error

    err = translate_error(fe.UnknownChannelError("no channel 'temp' on the device"))
    assert isinstance(err, ConfigError)
    assert "'edge-runtime bridge probe'" in str(err)


def test_cli_usage_hint_names_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "digits-int8-onnx", "--seconds", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("edge-runtime: error: --seconds must be positive, got 0.0; "
                   "see 'edge-runtime bench --help'")


# --- sha256 mismatch: a user's manifest vs a shipped model ---------------------------------


@pytest.fixture
def user_zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A user's model folder whose model file was changed after its manifest was written."""
    folder = tmp_path / "zoo"
    folder.mkdir()
    shutil.copy(MODELS / "digits-int8.onnx", folder / "digits-int8.onnx")
    manifest = (MODELS / "digits-int8-onnx.toml").read_text()
    (folder / "mine.toml").write_text(manifest.replace('"digits-int8-onnx"', '"my-digits"'))
    data = bytearray((folder / "digits-int8.onnx").read_bytes())
    data[-10] ^= 0xFF
    (folder / "digits-int8.onnx").write_bytes(bytes(data))
    monkeypatch.setenv(registry.ENV_MODELS, str(folder))
    registry._manifests_in.cache_clear()
    yield folder
    registry._manifests_in.cache_clear()


def test_user_manifest_mismatch_names_the_manifest_and_the_fix(user_zoo: Path) -> None:
    digest = hashlib.sha256((user_zoo / "digits-int8.onnx").read_bytes()).hexdigest()
    manifest_path = (user_zoo / "mine.toml").resolve()
    for how in ("my-digits", user_zoo / "mine.toml"):
        with pytest.raises(IntegrityError) as caught:
            load_model(how)
        text = str(caught.value)
        assert str(manifest_path) in caught.value.message
        assert f'set sha256 = "{digest}" in {manifest_path}' in caught.value.hint
        assert "reinstall" not in text


def test_models_verify_tells_a_user_model_from_a_shipped_one(
        user_zoo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "verify", "my-digits"]) == 2
    out, err = capsys.readouterr()
    assert "MISMATCH" in out and "set sha256 = " in out and "mine.toml" in out
    assert "reinstall" not in err and "fix your own models" in err


def test_shipped_model_mismatch_may_still_say_reinstall() -> None:
    shipped = load_manifest(MODELS / "digits-int8-onnx.toml")
    assert registry.is_shipped(shipped)
    assert "reinstall edge-runtime" in registry.mismatch_hint(shipped, "0" * 64)
