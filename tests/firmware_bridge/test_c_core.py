"""The C core on the host: shared vectors, a fuzz of its receive path, and sanitizers."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from firmware_bridge.client import BridgeClient

from .conftest import FIRMWARE, Binaries, SimDevice
from .test_pty_e2e import FAST, collect

VECTORS = FIRMWARE / "test_vectors.txt"


def test_c_core_passes_the_shared_vectors(binaries: Binaries) -> None:
    result = subprocess.run(
        [str(binaries.vectors), str(VECTORS), "20000"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(" passed, 0 failed")


def test_sanitized_core_vectors_fuzz_and_pty_session(binaries: Binaries, tmp_path: Path) -> None:
    """ASan/UBSan builds: vectors, 100k random inputs, then a live session with glitches."""
    result = subprocess.run(
        [str(binaries.sanitized("vectors")), str(VECTORS), "100000"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "runtime error" not in result.stderr

    device = SimDevice(binaries.sanitized("sim"), tmp_path / "ttyASAN").start()

    async def body() -> None:
        async with BridgeClient(port=str(device.link), timing=FAST) as dev:
            await dev.set_rate("counter", 1000.0)
            await dev.set_rate("accel", 200.0)
            await dev.gpio_write(1, 1)
            for _ in range(3):
                device.glitch()
                await collect(dev, "counter", count=100)
            assert dev.stats.channel(1).samples_received > 0

    try:
        asyncio.run(asyncio.wait_for(body(), 30))
    finally:
        stderr = device.stop()
    assert "ERROR: AddressSanitizer" not in stderr, stderr
    assert "runtime error" not in stderr, stderr
