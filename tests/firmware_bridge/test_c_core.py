"""The C core on the host: shared vectors, a fuzz of its receive path, and sanitizers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
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


ARDUINO_STUB = """
#include <stddef.h>
#include <stdint.h>
#define HIGH 1
#define LOW 0
#define OUTPUT 1
#define A0 14
#define NUM_DIGITAL_PINS 20
struct SerialStub {
    void begin(long) {}
    int available() { return 0; }
    int read() { return -1; }
    int availableForWrite() { return 64; }
    size_t write(const uint8_t *, size_t n) { return n; }
};
static SerialStub Serial;
static inline unsigned long micros() { return 0; }
static inline int analogRead(int) { return 512; }
static inline void pinMode(int, int) {}
static inline void digitalWrite(int, int) {}
"""


def test_arduino_sketch_and_avr_sizes_compile(tmp_path: Path) -> None:
    """No Arduino toolchain here: compile the sketch against a stub of the Arduino API,
    and the core with the small AVR buffer sizes, to keep both building."""
    src = FIRMWARE / "EdgeBridge" / "src"
    (tmp_path / "Arduino.h").write_text(ARDUINO_STUB)
    sketch = tmp_path / "sketch.cpp"
    ino = FIRMWARE / "EdgeBridge" / "examples" / "SensorBridge" / "SensorBridge.ino"
    sketch.write_text(
        '#include "Arduino.h"\n' + ino.read_text() + "\nint main() { setup(); loop(); return 0; }\n"
    )
    warn = ["-Wall", "-Wextra", "-Werror", "-O2", f"-I{src}", f"-I{tmp_path}"]
    objects = []
    for c_file in sorted(src.glob("*.c")):
        obj = tmp_path / (c_file.stem + ".o")
        subprocess.run(
            [
                "gcc",
                "-std=c99",
                *warn,
                "-DFB_MAX_PAYLOAD=96u",
                "-DFB_BATCH_MAX_VALUES=8u",
                "-c",
                str(c_file),
                "-o",
                str(obj),
            ],
            check=True,
            capture_output=True,
        )
        objects.append(str(obj))
    subprocess.run(
        ["g++", "-std=c++11", *warn, str(sketch), *objects, "-o", str(tmp_path / "sketch")],
        check=True,
        capture_output=True,
    )
    assert subprocess.run([str(tmp_path / "sketch")], check=False).returncode == 0


def test_library_does_not_import_the_runtime() -> None:
    code = (
        "import sys, firmware_bridge, firmware_bridge.client;"
        "bad = [m for m in sys.modules if m.startswith('edge_runtime')];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
