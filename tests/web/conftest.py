"""Fixtures of the web tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from blockbuster import BlockBuster


@pytest.fixture
def outside_loop_guard(_blockbuster: BlockBuster) -> Iterator[None]:
    """Lift the suite's blocking-call guard for this test only.

    Playwright's sync API runs its own asyncio loop in the test's thread, and its driver
    start-up stats and reads files there: that is Playwright's loop, not ours. Only tests
    whose daemon runs in a subprocess use this, so no project code runs under a lifted
    guard; the guard is back on when the test ends (the thread check stays on).
    """
    _blockbuster.deactivate()
    try:
        yield
    finally:
        _blockbuster.activate()
