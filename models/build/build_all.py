"""Rebuild every shipped model: ``python models/build/build_all.py``.

Trains (seeded, single-threaded TensorFlow), exports ONNX and TFLite, quantizes to int8,
verifies every variant on held-out data with onnxruntime and LiteRT, measures latency,
and writes the artefacts, manifests, model cards, ``models/README.md`` and
``models/build/build_report.json``. Needs the ``build`` extra; never run by the runtime.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

# Quiet TensorFlow and pin its threads before it is imported anywhere.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PYTHONHASHSEED", "0")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    """Build all three families and print the summary table."""
    import digits
    import heavy
    import image_family
    import report
    import sensor

    t0 = time.perf_counter()
    split = image_family.load_split()
    image_family.write_heldout(split)
    print("== digits", flush=True)
    digits_res = digits.build(split)
    print("== digits-heavy", flush=True)
    heavy_res = heavy.build(split)
    print("== machine-temp", flush=True)
    sensor_res = sensor.build()
    rep = report.write_all(digits_res, heavy_res, sensor_res, time.perf_counter() - t0)
    print()
    print(f"CPU: {rep['environment']['cpu']}; latency = median, batch 1, 1 thread")
    print(report.summary_table(rep))
    print(f"\nwrote {report.BUILD_DIR / 'build_report.json'} in {rep['build_seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
