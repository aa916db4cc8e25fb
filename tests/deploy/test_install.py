"""deploy/install.sh, run by dash (POSIX sh) into a temporary prefix: it installs the
working tree with pip, the installed ``edge-runtime check`` and ``demo`` work, a second
run changes nothing it should keep, ``--uninstall`` removes it; a 32-bit system and a
relative state_dir are refused with one line saying why and what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "deploy" / "install.sh"


def install(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["dash", str(INSTALL), *args], capture_output=True, text=True,
                          timeout=900, check=False, env={**os.environ, **(env or {})})


def test_install_twice_run_and_uninstall(tmp_path: Path) -> None:
    prefix = tmp_path / "root"
    first = install("--prefix", str(prefix))
    assert first.returncode == 0, first.stdout + first.stderr
    venv = prefix / "opt" / "edge-runtime"
    config = prefix / "etc" / "edge-runtime" / "config.toml"
    binary = venv / "bin" / "edge-runtime"
    assert f'state_dir = "{prefix}/var/lib/edge-runtime"' in config.read_text()
    unit = (prefix / "etc" / "systemd" / "system" / "edge-runtime.service").read_text()
    assert f"ExecStart={binary} run {config}" in unit
    # The docs the unit points at exist in the venv.
    for line in unit.splitlines():
        if line.startswith("Documentation=file://"):
            assert Path(line.removeprefix("Documentation=file://")).is_file(), line
    check = subprocess.run([str(binary), "check", str(config)], capture_output=True,
                           text=True, timeout=120, check=False)
    assert check.returncode == 0 and "ok" in check.stdout, check.stdout + check.stderr
    demo = subprocess.run([str(binary), "demo", "--frames", "5"], capture_output=True,
                          text=True, timeout=300, check=False, cwd=tmp_path)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    # Twice: the config the user edited stays, the install still works.
    config.write_text(config.read_text().replace("max_rate_hz = 0.1", "max_rate_hz = 0.2"))
    second = install("--prefix", str(prefix))
    assert second.returncode == 0, second.stdout + second.stderr
    assert "kept the existing" in second.stdout
    assert "max_rate_hz = 0.2" in config.read_text()
    assert subprocess.run([str(binary), "check", str(config)], capture_output=True,
                          timeout=120, check=False).returncode == 0
    gone = install("--prefix", str(prefix), "--uninstall")
    assert gone.returncode == 0, gone.stderr
    assert not venv.exists() and config.exists()  # the config and state are kept
    purged = install("--prefix", str(prefix), "--uninstall", "--purge")
    assert purged.returncode == 0 and not config.exists()


def test_32_bit_and_relative_state_dir_are_refused_with_a_reason(tmp_path: Path) -> None:
    done = install("--prefix", str(tmp_path / "p32"), env={"EDGE_RUNTIME_TEST_ARCH": "armv7l"})
    assert done.returncode == 2
    line = done.stderr.strip()
    assert "\n" not in line and "32-bit" in line and "onnxruntime" in line
    assert "64-bit" in line  # what to do
    assert not (tmp_path / "p32" / "opt").exists()  # stopped before doing anything
    relative = tmp_path / "relative.toml"
    relative.write_text('[node]\nname = "x"\nstate_dir = "state"\n')
    done = install("--prefix", str(tmp_path / "rel"), "--config", str(relative))
    assert done.returncode == 2 and "state_dir is relative" in done.stderr, done.stderr
    missing = install("--prefix", str(tmp_path / "m"), "--config", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no config file" in missing.stderr


def test_cloud_init_config_passes_check(tmp_path: Path) -> None:
    """The config cloud-init writes is one ``edge-runtime check`` accepts (state_dir moved
    into the test's folder), and its fleet enrolment line makes the node's key and CSR."""
    text = (REPO / "deploy" / "cloud-init" / "user-data").read_text()
    assert text.startswith("#cloud-config\n")
    assert "PLACEHOLDER" not in text and "deploy/install.sh" in text
    csr_line = next(line for line in text.splitlines() if " fleet csr " in line)
    command = csr_line.strip().removeprefix("- ").replace(
        "/opt/edge-runtime/bin/edge-runtime", f"{sys.executable} -m edge_runtime").replace(
        "/etc/edge-runtime/fleet", str(tmp_path / "fleet"))
    made = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60,
                          cwd=REPO, env={**os.environ, "PATH": os.environ.get("PATH", "")},
                          check=False)
    assert made.returncode == 0, made.stderr
    host = subprocess.run(["hostname"], capture_output=True, text=True, check=True).stdout
    key = tmp_path / "fleet" / f"{host.strip()}.key"
    assert key.exists() and (key.stat().st_mode & 0o777) == 0o600
    assert (tmp_path / "fleet" / f"{host.strip()}.csr").exists()
    lines = text.splitlines()
    start = lines.index("  - path: /etc/edge-runtime/config.toml") + 3
    assert lines[start - 1].strip() == "content: |"
    body = []
    for line in lines[start:]:
        if line.strip() and not line.startswith("      "):
            break
        body.append(line[6:])
    config = tmp_path / "config.toml"
    config.write_text("\n".join(body).replace("/var/lib/edge-runtime", str(tmp_path / "s")))
    from edge_runtime.cli import main

    assert main(["check", str(config)]) == 0
