"""A detector that takes its time, to catch the daemon in the middle of a sample."""

from __future__ import annotations

import threading
import time

from edge_runtime.anomaly.protocols import DetectorBase

#: Set while an update is running.
IN_UPDATE = threading.Event()


class SlowDetector(DetectorBase):
    """``update`` sleeps ``delay_s`` and then scores every value 1.0."""

    def __init__(self, delay_s: float = 0.3) -> None:
        self.delay_s = delay_s
        self.updates = 0

    def update(self, t_s: float, value: float) -> float:
        IN_UPDATE.set()
        time.sleep(self.delay_s)
        self.updates += 1
        return 1.0
