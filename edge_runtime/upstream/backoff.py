"""Capped, jittered retry delays and a log that says a repeated thing once."""

from __future__ import annotations

import logging
import random
import time


class Backoff:
    """Exponential delay from ``min_s`` doubling to ``max_s``, with "equal jitter"
    (each delay is uniform in [d/2, d]) so a fleet that lost its broker together does not
    come back together. :meth:`reset` after a success."""

    def __init__(self, min_s: float, max_s: float, *, rng: random.Random | None = None
                 ) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError(f"need 0 < min_s <= max_s (got {min_s}, {max_s})")
        self.min_s = min_s
        self.max_s = max_s
        self.attempts = 0
        self._rng = rng or random.Random()

    def next_delay_s(self) -> float:
        base = min(self.max_s, self.min_s * 2.0 ** min(self.attempts, 60))
        self.attempts += 1
        return base / 2 + self._rng.random() * base / 2

    def reset(self) -> None:
        self.attempts = 0


class RateLimitedLog:
    """Logs a message the first time, then the same ``key`` at most once per
    ``every_s`` (saying how many were held back); other repeats go to DEBUG."""

    def __init__(self, logger: logging.Logger, *, every_s: float = 300.0) -> None:
        self.logger = logger
        self.every_s = every_s
        self._last: dict[str, tuple[float, int]] = {}

    def log(self, level: int, key: str, msg: str, *args: object) -> bool:
        """True if the line was logged at ``level``."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is None or now - last[0] >= self.every_s:
            held = last[1] if last else 0
            if held:
                msg += " (%d similar messages held back)"
                args = (*args, held)
            self.logger.log(level, msg, *args)
            self._last[key] = (now, 0)
            return True
        self._last[key] = (last[0], last[1] + 1)
        self.logger.debug(msg, *args)
        return False

    def forget(self, key: str) -> None:
        """The condition is over: the next occurrence is logged again."""
        self._last.pop(key, None)
