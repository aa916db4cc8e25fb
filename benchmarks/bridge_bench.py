"""Firmware bridge benchmark: decode throughput, a million-input fuzz, max pty rate.

    python benchmarks/bridge_bench.py [--quick]

Writes benchmarks/results/bridge.json with a description of the machine. Three parts:

1. Decode throughput of the host stream decoder (frames/s and samples/s), median of
   repeated runs over a recorded stream of SAMPLE batches and heartbeats.
2. Fuzz: 1,000,000 hostile inputs (random bytes, truncated frames, bit flips that
   break the CRC, oversized runs, random payloads under a valid CRC) fed to one decoder,
   each followed by a good frame. Checks that no exception escapes, the buffer stays
   under MAX_ENCODED_LEN, memory does not grow, and the good frame after each input is
   decoded. The C core's receive path gets the same count through vectors_test.
3. Highest sustained sample rate over a real pty from the C simulator to BridgeClient
   with no loss: for rising rates, three 2-second trials each; a rate passes when every
   trial lost nothing (sequence and index gaps, device TX drops, host queue drops) and
   the median delivered rate is within 2 % of the rate asked for.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine_info  # noqa: E402
from firmware_bridge import cobs  # noqa: E402
from firmware_bridge.client import BridgeClient  # noqa: E402
from firmware_bridge.framing import FrameDecoder  # noqa: E402
from firmware_bridge.protocol import (  # noqa: E402
    MAX_ENCODED_LEN,
    Heartbeat,
    SampleBatch,
    encode_frame,
    encode_raw,
)
from firmware_bridge.timing import DEFAULT_TIMING  # noqa: E402

FIRMWARE = ROOT / "firmware_bridge" / "firmware"
RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """The common machine description plus the C compiler the firmware was built with."""
    gcc = subprocess.run(["gcc", "--version"], capture_output=True, text=True, check=False)
    return {**machine_info(), "gcc": gcc.stdout.splitlines()[0] if gcc.stdout else None}


# --- 1. decode throughput --------------------------------------------------------------


def decode_throughput(repeats: int) -> dict[str, Any]:
    rng = random.Random(1)
    frames = []
    samples = 0
    for i in range(20_000):
        if i % 50 == 49:
            frames.append(encode_frame(Heartbeat(i * 1000, 0), i))
        else:
            count = rng.choice((1, 10, 32))
            values = tuple(rng.uniform(-10, 10) for _ in range(count))
            frames.append(encode_frame(SampleBatch(0, i * 32, i * 1000, 100, count, values), i))
            samples += count
    stream = b"".join(frames)
    chunks = [stream[i : i + 4096] for i in range(0, len(stream), 4096)]
    rates = []
    for _ in range(repeats):
        decoder = FrameDecoder()
        start = time.perf_counter()
        decoded = 0
        for chunk in chunks:
            decoded += len(decoder.feed(chunk))
        elapsed = time.perf_counter() - start
        assert decoded == len(frames), (decoded, len(frames))
        rates.append(len(frames) / elapsed)
    median = statistics.median(rates)
    return {
        "frames": len(frames),
        "bytes": len(stream),
        "repeats": repeats,
        "frames_per_s_median": round(median),
        "frames_per_s_all": [round(r) for r in rates],
        "samples_per_s_median": round(median * samples / len(frames)),
        "mbytes_per_s_median": round(median * len(stream) / len(frames) / 1e6, 2),
    }


# --- 2. fuzz ----------------------------------------------------------------------------


def fuzz(count: int) -> dict[str, Any]:
    rng = random.Random(2)
    good = encode_frame(Heartbeat(4242, 0), 7)
    templates = [
        encode_raw(SampleBatch(1, 5, 1000, 100, 3, (1.0, 2.0, 3.0)), 1),
        encode_raw(Heartbeat(1, 2), 2),
        encode_raw(SampleBatch(0, 0, 0, 0, 59, tuple([0.5] * 59)), 3),
    ]
    kinds = {"random": 0, "truncated": 0, "bad_crc": 0, "oversized": 0, "random_payload": 0}
    decoder = FrameDecoder()
    escaped = 0
    missed_good = 0
    max_buffered = 0
    rss_start_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    for i in range(count):
        pick = i % 5
        if pick == 0:
            data = rng.randbytes(rng.randrange(0, 300))
            kinds["random"] += 1
        elif pick == 1:
            raw = rng.choice(templates)
            encoded = cobs.encode(raw)
            data = b"\x00" + encoded[: rng.randrange(0, len(encoded))]
            kinds["truncated"] += 1
        elif pick == 2:
            raw = bytearray(rng.choice(templates))
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
            data = b"\x00" + cobs.encode(bytes(raw))
            kinds["bad_crc"] += 1
        elif pick == 3:
            data = bytes(rng.randrange(1, 256) for _ in range(8)) * rng.randrange(33, 200)
            kinds["oversized"] += 1
        else:
            body = bytes((1, rng.randrange(256), 0, 0)) + rng.randbytes(rng.randrange(0, 260))
            data = b"\x00" + cobs.encode(encode_raw_any(body))
            kinds["random_payload"] += 1
        try:
            # Split at a random point too: frames arrive in arbitrary read sizes.
            cut = rng.randrange(len(data) + 1)
            decoder.feed(data[:cut])
            decoder.feed(data[cut:])
            max_buffered = max(max_buffered, decoder.buffered_len)
            frames = decoder.feed(good)
        except Exception:
            escaped += 1
            decoder = FrameDecoder()
            continue
        if not frames or frames[-1].message != Heartbeat(4242, 0):
            missed_good += 1
    elapsed = time.perf_counter() - start
    rss_end_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stats = decoder.stats
    return {
        "inputs": count,
        "kinds": kinds,
        "seconds": round(elapsed, 1),
        "exceptions_escaped": escaped,
        "good_frame_missed_after_input": missed_good,
        "max_buffered_bytes": max_buffered,
        "buffer_limit_bytes": MAX_ENCODED_LEN,
        "max_rss_growth_kb": rss_end_kb - rss_start_kb,
        "decoder_stats": {
            "resyncs": stats.resyncs,
            "cobs_errors": stats.cobs_errors,
            "crc_errors": stats.crc_errors,
            "oversize_frames": stats.oversize_frames,
            "malformed_frames": stats.malformed_frames,
        },
    }


def encode_raw_any(body: bytes) -> bytes:
    """A frame with a correct CRC around any header and payload (tests the payload parsers)."""
    from firmware_bridge.crc import crc16_ccitt_false

    return body + crc16_ccitt_false(body).to_bytes(2, "little")


def c_fuzz(build: Path, count: int) -> dict[str, Any]:
    out = subprocess.run(
        [str(build / "vectors_test"), str(FIRMWARE / "test_vectors.txt"), str(count)],
        capture_output=True,
        text=True,
        check=True,
    )
    return {"inputs": count, "output": out.stdout.strip().splitlines()[-2:]}


# --- 3. max sustained rate over a pty ---------------------------------------------------


def build_c(tmp: Path) -> Path:
    src = FIRMWARE / "EdgeBridge" / "src"
    flags = ["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", f"-I{src}"]
    core = [str(p) for p in sorted(src.glob("*.c"))]
    for name, main in (("fb_sim", "sim_main.c"), ("vectors_test", "vectors_test.c")):
        subprocess.run(
            [*flags, str(FIRMWARE / "host" / main), *core, "-lm", "-o", str(tmp / name)],
            check=True,
        )
    return tmp


TIMING = replace(DEFAULT_TIMING, command_timeout_s=1.0)


async def one_trial(link: Path, rate_hz: float, seconds: float) -> dict[str, Any]:
    async with BridgeClient(port=str(link), timing=TIMING, queue_batches=100_000) as dev:
        await dev.set_rate("counter", 0.0)
        await dev.set_rate("counter", rate_hz)
        received = 0
        first_t: int | None = None
        last_t = 0
        warmup_until = time.monotonic() + 0.3
        end = warmup_until + seconds
        base = None
        async for batch in dev.sample_batches("counter"):
            now = time.monotonic()
            if now < warmup_until:
                continue
            if base is None:
                stats = dev.stats
                base = (
                    stats.frames_lost,
                    stats.channel(0).samples_lost,
                    stats.device_tx_dropped,
                    stats.channel(0).samples_dropped_host,
                )
                first_t = batch[0].device_time_us
            received += len(batch)
            last_t = batch[-1].device_time_us
            if now >= end:
                break
        stats = dev.stats
        assert base is not None and first_t is not None
        span_s = (last_t - first_t) * 1e-6
        return {
            "samples": received,
            "delivered_hz": (received - 1) / span_s if span_s > 0 else 0.0,
            "frames_lost": stats.frames_lost - base[0],
            "samples_lost": stats.channel(0).samples_lost - base[1],
            "device_tx_dropped": stats.device_tx_dropped - base[2],
            "host_dropped": stats.channel(0).samples_dropped_host - base[3],
        }


def max_pty_rate(build: Path, rates: list[float], trials: int, seconds: float) -> dict[str, Any]:
    link = build / "ttyBENCH"
    proc = subprocess.Popen(
        [str(build / "fb_sim"), "--link", str(link), "--counter-max-hz", "1000000"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    results = []
    best = 0.0
    try:
        for rate in rates:
            runs = [asyncio.run(one_trial(link, rate, seconds)) for _ in range(trials)]
            median_hz = statistics.median(r["delivered_hz"] for r in runs)
            lossless = all(
                r["frames_lost"] == 0
                and r["samples_lost"] == 0
                and r["device_tx_dropped"] == 0
                and r["host_dropped"] == 0
                for r in runs
            )
            ok = lossless and median_hz >= 0.98 * rate
            results.append(
                {"rate_hz": rate, "median_delivered_hz": round(median_hz), "ok": ok, "trials": runs}
            )
            print(f"  {rate:>9g} Hz: median {median_hz:9.0f} Hz, lossless={lossless}", flush=True)
            if not ok:
                break
            best = rate
    finally:
        proc.terminate()
        proc.wait(10)
    return {"max_sustained_hz": best, "trial_seconds": seconds, "steps": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    args = parser.parse_args()
    fuzz_count = 20_000 if args.quick else 1_000_000
    rates = [1e3, 1e4, 2.5e4, 5e4, 1e5, 1.25e5, 2e5, 2.5e5, 5e5]
    results: dict[str, Any] = {"machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        build = build_c(Path(tmp))
        print("decode throughput ...", flush=True)
        results["decode"] = decode_throughput(3 if args.quick else 7)
        print(f"  {results['decode']['frames_per_s_median']} frames/s", flush=True)
        print(f"fuzz: {fuzz_count} inputs ...", flush=True)
        results["fuzz_python"] = fuzz(fuzz_count)
        print(f"  {results['fuzz_python']}", flush=True)
        results["fuzz_c"] = c_fuzz(build, fuzz_count)
        print("max sustained rate over pty ...", flush=True)
        results["pty"] = max_pty_rate(
            build, rates[:3] if args.quick else rates, 1 if args.quick else 3, 2.0
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "bridge.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"decode {results['decode']['frames_per_s_median']} frames/s; "
        f"fuzz {fuzz_count} inputs, {results['fuzz_python']['exceptions_escaped']} escaped; "
        f"max lossless pty rate {results['pty']['max_sustained_hz']:g} Hz -> {out}"
    )


if __name__ == "__main__":
    main()
