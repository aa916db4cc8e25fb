"""The systemd unit (deploy/systemd/edge-runtime.service): it verifies, its exposure
stays at or below 2.0, and the hardening it turns on does not break the engines.

Both ``systemd-analyze`` commands work without a running systemd (tests run in
containers): ``verify`` only needs the commands the unit runs to exist, so the unit is
templated onto a prefix this test creates, the way ``install.sh --prefix`` does.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "systemd" / "edge-runtime.service"
#: The issue's target: ``systemd-analyze security`` exposure at most 2.0.
MAX_EXPOSURE = 2.0


def templated_unit(tmp_path: Path) -> Path:
    """The unit with /opt/edge-runtime replaced by a prefix holding a stand-in binary."""
    prefix = tmp_path / "opt" / "edge-runtime"
    (prefix / "bin").mkdir(parents=True)
    binary = prefix / "bin" / "edge-runtime"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    unit = tmp_path / "edge-runtime.service"
    unit.write_text(UNIT.read_text().replace("/opt/edge-runtime", str(prefix)))
    return unit


def test_unit_verifies(tmp_path: Path) -> None:
    unit = templated_unit(tmp_path)
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    # verify prints warnings (an unknown key, a bad value) but may still exit 0.
    assert done.stderr.strip() == "", done.stderr


def test_unit_exposure_at_most_2(tmp_path: Path) -> None:
    unit = templated_unit(tmp_path)
    done = subprocess.run(["systemd-analyze", "security", "--offline=true",
                           f"--threshold={round(MAX_EXPOSURE * 10)}", str(unit)],
                          capture_output=True, text=True, timeout=60, check=False)
    match = re.search(r"Overall exposure level for edge-runtime\.service: (\d+\.\d+)",
                      done.stdout)
    assert match is not None, done.stdout + done.stderr
    exposure = float(match.group(1))
    assert exposure <= MAX_EXPOSURE, done.stdout
    assert done.returncode == 0, done.stdout + done.stderr


def test_unit_keeps_what_the_runtime_needs() -> None:
    """The settings the runtime depends on (read by systemd, not by the analyzer)."""
    text = UNIT.read_text()
    for line in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "StartLimitBurst=",
                 "StateDirectory=edge-runtime", "ProtectSystem=strict", "UMask=0027",
                 "CapabilityBoundingSet=\n", "MemoryDenyWriteExecute=yes",
                 "DevicePolicy=closed", "DeviceAllow=char-gpiochip rw",
                 "DeviceAllow=char-video4linux rw", "DeviceAllow=char-i2c rw",
                 "DeviceAllow=char-spi rw", "DeviceAllow=char-ttyACM rw"):
        assert line in text, line
    # The docs it points at are the ones install.sh copies into the venv.
    install = (REPO / "deploy" / "install.sh").read_text()
    for doc in re.findall(r"Documentation=file:///opt/edge-runtime/(\S+)", text):
        assert doc.rsplit("/", 1)[-1] in install, doc


def test_engines_run_with_memory_deny_write_execute() -> None:
    """MemoryDenyWriteExecute=yes is only in the unit because this passes: every shipped
    model runs on onnxruntime and LiteRT in a process that may not map memory both
    writable and executable (the kernel's PR_SET_MDWE, the rule systemd applies)."""
    script = textwrap.dedent("""
        import ctypes, mmap
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
        assert libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) == 0, \\
            ctypes.get_errno()
        try:  # the restriction is on: a writable+executable mapping is refused
            mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        except PermissionError:
            pass
        else:
            raise SystemExit("PR_SET_MDWE did not take")
        import numpy as np
        import edge_runtime
        from edge_runtime.models.registry import list_models
        for manifest in list_models():
            model = edge_runtime.load_model(manifest.name, num_threads=2)
            x = np.zeros([d or 1 for d in model.inputs[0].shape], np.float32)
            model.run(x)
            model.close()
        import cv2, aiohttp, paho.mqtt.client, zeroconf
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        key = Ed25519PrivateKey.generate()
        key.public_key().verify(key.sign(b"x"), b"x")
        print("ran", len(list_models()), "models")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ran" in done.stdout
