"""Suite-wide guards: the event loop never blocks, and no thread outlives its test.

Both are on for every test (autouse), in the spirit of python-zeroconf's conftest:

- **No blocking call on a loop.** blockbuster wraps the blocking primitives (``time.sleep``,
  file reads and writes, ``os.stat`` and friends, blocking sockets, a ``Lock.acquire``
  that would wait, ...) so that calling one *while an asyncio loop runs in the calling
  thread* raises ``BlockingError``. That covers every loop a test runs, including the
  daemons run in-process with ``asyncio.run``. Worker and executor threads run no loop,
  so they may block as they please. The daemon catches broad exceptions in places (an
  action that fails must not stop a pipeline), which would hide the error, so every
  ``BlockingError`` raised is also recorded and the test fails at teardown if any was,
  with the stack of the blocking call.
- **No thread outlives its test.** The threads alive after the test (after a short grace
  for threads that are ending) must be the ones alive before it. Whoever starts a thread
  or a pool stops and joins it.

Known exceptions are listed below, each with its reason. Never add the project's own
code here: fix it (run it in an executor, join the thread).
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator

import blockbuster.blockbuster as bb_impl
import pytest
from blockbuster import BlockBuster

#: Blocking calls allowed on a loop: (blockbuster function, file suffix, functions, why).
#: None so far: blockbuster already lets through the stdlib's own loop machinery
#: (executor submit, a Unix server's stat and unlink, imports, linecache) and pytest's
#: assertion rewriting.
KNOWN_BLOCKING: list[tuple[str, str, set[str], str]] = []

#: Files whose writes cannot block, by path, with why (a log line on the loop reaches them).
KNOWN_NONBLOCKING_FILES: list[tuple[str, str]] = [
    # pytest's logging plugin always adds a FileHandler, on os.devnull without --log-file.
    (os.devnull, "pytest's log-file handler; /dev/null never blocks"),
]

#: Threads allowed to outlive a test, by name prefix, with why.
#: None so far. Checked: onnxruntime's and LiteRT's inference pools are native threads
#: that ``threading`` never lists; ``asyncio.run`` joins its default executor (no test
#: keeps a loop open across tests); session fixtures start their threads before the
#: first test's snapshot.
KNOWN_THREADS: list[tuple[str, str]] = []

#: How long threads that are ending get to end after the test (seconds).
THREAD_GRACE_S = 2.0


class RecordedBlockingError(bb_impl.BlockingError):
    """blockbuster's error, remembering where it was raised even if someone catches it."""

    raised: list[str] = []  # noqa: RUF012 (one list for the session, read per test)
    _lock = threading.Lock()

    def __init__(self, func: str) -> None:
        super().__init__(func)
        where = "".join(traceback.format_stack()[:-1][-12:])
        with RecordedBlockingError._lock:
            RecordedBlockingError.raised.append(f"{self}:\n{where}")


def _unless_quiet(may_block: Callable[..., bool], quiet: set[str]) -> Callable[..., bool]:
    """A write predicate that also lets writes to the ``quiet`` files through."""

    def predicate(file: object, *args: object, **kwargs: object) -> bool:
        return getattr(file, "name", None) in quiet or may_block(file, *args, **kwargs)

    return predicate


@pytest.fixture(scope="session")
def _blockbuster() -> Iterator[BlockBuster]:
    with pytest.MonkeyPatch.context() as mp:
        # blockbuster raises by the module-level name; ours records as well.
        mp.setattr(bb_impl, "BlockingError", RecordedBlockingError)
        buster = BlockBuster()
        quiet = {path for path, _why in KNOWN_NONBLOCKING_FILES}
        for name in ("io.TextIOWrapper.write", "io.BufferedWriter.write"):
            write = buster.functions[name]
            write.can_block_predicate = _unless_quiet(write.can_block_predicate, quiet)
        for func, filename, functions, _why in KNOWN_BLOCKING:
            buster.functions[func].can_block_in(filename, functions)
        buster.activate()
        try:
            yield buster
        finally:
            buster.deactivate()


@pytest.fixture(autouse=True)
def _loop_never_blocks(_blockbuster: BlockBuster) -> Iterator[None]:
    """Fail the test if any blocking call was made on a running event loop."""
    with RecordedBlockingError._lock:
        RecordedBlockingError.raised.clear()
    yield
    with RecordedBlockingError._lock:
        found = list(RecordedBlockingError.raised)
        RecordedBlockingError.raised.clear()
    if found:
        pytest.fail(f"{len(found)} blocking call(s) on the event loop; the first:\n{found[0]}",
                    pytrace=False)


def _known_thread(thread: threading.Thread) -> bool:
    return any(thread.name.startswith(prefix) for prefix, _why in KNOWN_THREADS)


@pytest.fixture(autouse=True)
def _no_thread_outlives_its_test() -> Iterator[None]:
    """Fail the test if a thread it started (daemon or not) is still alive after it."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + THREAD_GRACE_S
    while True:
        extra = [t for t in set(threading.enumerate()) - before
                 if t.is_alive() and not _known_thread(t)]
        if not extra or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    if extra:
        names = ", ".join(sorted(f"{t.name} (daemon={t.daemon})" for t in extra))
        pytest.fail(f"thread(s) outlived the test: {names}", pytrace=False)
