"""The durable outbox: every message is stored in SQLite before any sink sees it.

One table, ``messages`` (``seq`` primary key = per-node order, the message's JSON in
``body``, and ``pending``: a bit mask of the sinks that have not confirmed it yet). A row
is deleted once its mask is zero, i.e. only after *every* sink confirmed it.

Durability and cost (SD cards wear out):

- WAL journal, ``synchronous=FULL``: a commit that returned survives a power cut.
- Group commit: one writer thread owns the write connection and commits at most once per
  ``commit_interval_s`` (0.1 s), whatever the message rate, so the steady state costs
  about 10 fsyncs per second plus two per checkpoint (we checkpoint ourselves, so we can
  count them). The asyncio loop only puts tuples on a queue (:meth:`Outbox.put`,
  :meth:`Outbox.ack`); it never waits for SQLite.
- Sinks read committed rows through a second connection (:meth:`Outbox.fetch`, blocking:
  call it from an executor). WAL lets reads run beside the writer.
- Bytes written are counted from the writer thread's ``/proc/thread-self/io``.

Disk cap (``max_bytes``, counted as payload plus a fixed per-row overhead): when the
stored rows exceed it, the writer first merges the oldest summaries of each pipeline
into coarser ones (:func:`~.summary.merge_summaries`), then drops the oldest rows by kind:
summaries, statuses, snapshots, and events last. What it dropped or merged is counted
(persisted in the ``meta`` table) and reported upstream as an ``upstream``/``outbox_loss``
event, at most once per ``loss_report_interval_s``; never silent.

Recovery: ``PRAGMA integrity_check`` at open. A file that fails it (or is not a database)
is moved aside to ``<name>.corrupt-<UTC time>`` (with its -wal/-shm), a new one is
started, and an ``upstream``/``outbox_corrupt`` event says so.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.errors import OutboxClosedError, OutboxError
from edge_runtime.upstream.schema import AnyMessage, MessageFactory, Summary, decode, encode
from edge_runtime.upstream.summary import merge_summaries

log = logging.getLogger(__name__)

#: Bytes counted per row on top of its JSON (key, columns, index, page slack).
ROW_OVERHEAD_BYTES = 96
#: Compaction stops once the rows fit in this share of the cap (hysteresis).
CAP_TARGET = 0.9
#: Summaries merged into one per compaction step, and the most windows one may cover.
MERGE_FACTOR = 8
MAX_MERGED = 1440
#: Kinds dropped, in this order, when merging is not enough: events go last.
DROP_ORDER = ("summary", "status", "snapshot", "event")
#: Checkpoint the WAL after this many commits or WAL bytes, whichever comes first.
#: While the disk is full: messages kept in memory at most, and the retry delays (s).
MAX_PENDING_MESSAGES = 10_000
MIN_RETRY_S = 0.5
MAX_RETRY_S = 5.0
CHECKPOINT_EVERY_COMMITS = 50
CHECKPOINT_EVERY_BYTES = 4_000_000
MAX_SINKS = 62

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    pipeline TEXT,
    created_s REAL NOT NULL,
    size INTEGER NOT NULL,
    pending INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS sinks (name TEXT PRIMARY KEY, bit INTEGER NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Row:
    """A stored message as a sink receives it: ``body`` is the message's JSON."""

    seq: int
    id: str
    kind: str
    pipeline: str | None
    body: bytes


def _retryable(exc: sqlite3.OperationalError) -> bool:
    """A commit that may work later: the disk is full, an I/O error, a lock held."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_IOERR, _SQLITE_FULL)
    text = str(exc).lower()
    return "full" in text or "i/o" in text or "locked" in text


_SQLITE_BUSY, _SQLITE_IOERR, _SQLITE_FULL = 5, 10, 13


def _read_thread_io() -> dict[str, int]:
    """This thread's I/O counters (Linux); empty where /proc has none."""
    out: dict[str, int] = {}
    try:
        with open("/proc/thread-self/io") as f:
            for line in f:
                key, _, value = line.partition(":")
                out[key.strip()] = int(value)
    except (OSError, ValueError):
        pass
    return out


class Outbox:
    """SQLite outbox with group commit from one writer thread; see the module docstring.

    Thread use: :meth:`open` and :meth:`close` block (call them from an executor);
    :meth:`put`, :meth:`ack`, :meth:`flush` and :meth:`stats` never block and may be
    called from any thread (the loop); :meth:`fetch` blocks briefly on the read
    connection (call it from one executor thread). ``on_commit`` is called on the writer
    thread after each commit with the highest stored ``seq``.
    """

    def __init__(self, path: Path, *, sinks: Sequence[str], factory: MessageFactory,
                 max_bytes: int = 50_000_000, commit_interval_s: float = 0.1,
                 loss_report_interval_s: float = 60.0,
                 on_commit: Callable[[int], None] | None = None) -> None:
        if len(set(sinks)) != len(sinks) or len(sinks) > MAX_SINKS:
            raise ValueError(f"sink names must be unique and at most {MAX_SINKS}: {sinks}")
        self.path = Path(path)
        self.sink_names = list(sinks)
        self.factory = factory
        self.max_bytes = max_bytes
        self.commit_interval_s = commit_interval_s
        self.loss_report_interval_s = loss_report_interval_s
        self.on_commit = on_commit
        #: Where a corrupt file was moved at open (None: the file was fine).
        self.recovered_to: Path | None = None
        self.recovery_reason = ""
        self._bits: dict[str, int] = {}
        self._mask = 0
        self._q: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._rlock = threading.Lock()
        #: Tickets of :meth:`ack` calls; ``committed_ticket``: the last one committed.
        self._ack_ticket = 0
        self.committed_ticket = 0
        self._closed = False
        self._failure: BaseException | None = None
        # counters (written by the writer thread, read anywhere)
        self.total_bytes = 0
        self.rows = 0
        self.backlog: dict[str, int] = {}
        self.lost: dict[str, int] = {}
        self.merged = 0
        self.commits = 0
        self.checkpoints = 0
        self.enqueued = 0
        self.stored = 0
        self.compactions = 0
        self.last_seq = 0
        self._opened_mono = 0.0
        self._io_start: dict[str, int] = {}
        self._io_now: dict[str, int] = {}
        self._last_loss_report_mono = -1e18
        self._loss_unreported = False
        #: Commits that failed and were retried (a full disk), and the last such error.
        self.write_errors = 0
        self.last_write_error: str | None = None
        self._write_error_logged_mono = -1e18

    # -- open / close (blocking) -----------------------------------------------------------

    def open(self) -> None:
        """Check and open the file (moving a corrupt one aside), start the writer thread."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                conn = self._connect_checked()
            except sqlite3.DatabaseError as exc:
                self._move_aside(str(exc))
                conn = self._connect_checked()
            self._setup(conn)
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(f"cannot open the outbox {self.path}: {exc}") from exc
        self._wconn = conn
        self._rconn = sqlite3.connect(self.path, check_same_thread=False,
                                      isolation_level=None)
        self._opened_mono = time.monotonic()
        self._thread = threading.Thread(target=self._writer, name="upstream-outbox",
                                        daemon=True)
        self._thread.start()
        if self.recovered_to is not None:
            self.put(self.factory.event(
                type="upstream", name="outbox_corrupt", state="recovered",
                data={"moved_to": str(self.recovered_to), "reason": self.recovery_reason}))

    def _connect_checked(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            # Small pages: a commit writes whole pages to the WAL, and SD cards wear out.
            # (Only takes effect when the file is created.)
            conn.execute("PRAGMA page_size=1024")
            result = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
            if result != ["ok"]:
                raise sqlite3.DatabaseError("integrity_check: " + "; ".join(result[:3]))
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError:
            conn.close()
            raise
        return conn

    def _move_aside(self, reason: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                os.replace(src, str(target) + suffix)
        self.recovered_to = target
        self.recovery_reason = reason
        log.error("outbox %s is damaged (%s): moved it to %s and started a new one",
                  self.path, reason, target)

    def _setup(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA synchronous=FULL")
        # We checkpoint ourselves (counted); keep the WAL file from growing without bound.
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute("PRAGMA journal_size_limit=8000000")
        known = dict(conn.execute("SELECT name, bit FROM sinks").fetchall())
        conn.execute("BEGIN IMMEDIATE")
        for name, bit in list(known.items()):
            if name not in self.sink_names:
                # A sink removed from the config: nothing is kept for it any more.
                conn.execute("UPDATE messages SET pending = pending & ? WHERE pending & ?",
                             (~(1 << bit), 1 << bit))
                conn.execute("DELETE FROM sinks WHERE name = ?", (name,))
                del known[name]
        used = set(known.values())
        for name in self.sink_names:
            if name not in known:
                bit = next(b for b in range(MAX_SINKS) if b not in used)
                used.add(bit)
                known[name] = bit
                conn.execute("INSERT INTO sinks VALUES (?, ?)", (name, bit))
        conn.execute("DELETE FROM messages WHERE pending = 0")
        conn.execute("COMMIT")
        self._bits = {n: known[n] for n in self.sink_names}
        self._mask = sum(1 << b for b in self._bits.values())
        self.backlog = dict.fromkeys(self.sink_names, 0)
        total = rows = 0
        for pending, size in conn.execute("SELECT pending, size FROM messages"):
            total += size
            rows += 1
            for name, bit in self._bits.items():
                if pending >> bit & 1:
                    self.backlog[name] += 1
        self.total_bytes, self.rows = total, rows
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        max_seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM messages").fetchone()[0]
        next_seq = max(int(meta.get("next_seq", 1)), max_seq + 1)
        self.last_seq = next_seq - 1
        self.lost = {str(k): int(v) for k, v in json.loads(meta.get("lost", "{}")).items()}
        self.merged = int(meta.get("merged", 0))

    def close(self, timeout_s: float = 5.0) -> None:
        """Commit what is queued, stop the writer thread, close both connections."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._q.put(("stop",))
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error("outbox writer did not stop within %.1f s", timeout_s)
        with self._rlock:
            if self._rconn is not None:
                self._rconn.close()
                self._rconn = None

    # -- the loop's side (never blocks) ----------------------------------------------------

    def put(self, message: AnyMessage) -> None:
        """Queue a message for storage; it reaches sinks once committed. The writer
        thread sets its ``seq`` and encodes it: do not touch ``message`` afterwards."""
        if self._closed:
            raise OutboxClosedError("the outbox is closed")
        self.enqueued += 1
        self._q.put(("put", message))

    def ack(self, sink: str, rows: Iterable[tuple[int, str]]) -> int:
        """``sink`` confirmed these ``(seq, id)``; the rows go once every sink did.
        Returns a ticket: the acknowledgement is on disk once ``committed_ticket`` has
        reached it (until then :meth:`fetch` still returns the rows: skip them).
        Call from one thread (the loop)."""
        self._ack_ticket += 1
        self._q.put(("ack", self._bits[sink], list(rows), self._ack_ticket))
        return self._ack_ticket

    def flush(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the writer thread) once everything queued so far is
        committed."""
        self._q.put(("flush", callback))

    # -- reading (blocking, one executor thread) ------------------------------------------

    def fetch(self, sink: str, *, after_seq: int, limit: int,
              skip: set[int] | frozenset[int] = frozenset()) -> list[Row]:
        """Committed rows ``sink`` has not confirmed, in ``seq`` order after ``after_seq``,
        leaving out ``skip`` (rows in flight, or acknowledged but not yet committed)."""
        bit = self._bits[sink]
        with self._rlock:
            if self._rconn is None:
                raise OutboxClosedError("the outbox is closed")
            cur = self._rconn.execute(
                "SELECT seq, id, kind, pipeline, body FROM messages "
                "WHERE seq > ? AND pending & ? ORDER BY seq LIMIT ?",
                (after_seq, 1 << bit, limit + len(skip)))
            rows = [Row(s, i, k, p, bytes(b)) for s, i, k, p, b in cur if s not in skip]
        return rows[:limit]

    # -- stats (never blocks) --------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        elapsed_s = max(1e-9, time.monotonic() - self._opened_mono)
        io0, io1 = self._io_start, self._io_now
        wchar = io1.get("wchar", 0) - io0.get("wchar", 0)
        disk = io1.get("write_bytes", 0) - io0.get("write_bytes", 0)
        return {
            "path": str(self.path), "rows": self.rows, "stored_bytes": self.total_bytes,
            "max_bytes": self.max_bytes, "backlog": dict(self.backlog),
            "lost": dict(self.lost), "merged": self.merged, "enqueued": self.enqueued,
            "stored": self.stored, "commits": self.commits, "checkpoints": self.checkpoints,
            # WAL + FULL: one fsync per commit, two per checkpoint.
            "fsyncs": self.commits + 2 * self.checkpoints,
            "written_bytes": wchar, "disk_written_bytes": disk,
            "written_bytes_per_day": round(wchar / elapsed_s * 86400),
            "uptime_s": round(elapsed_s, 3),
            "recovered_to": str(self.recovered_to) if self.recovered_to else None,
            "failed": repr(self._failure) if self._failure else None,
        }

    # -- the writer thread -----------------------------------------------------------------

    def _writer(self) -> None:
        conn = self._wconn
        assert conn is not None
        self._io_start = self._io_now = _read_thread_io()
        last_commit = 0.0
        last_io = time.monotonic()
        wal_commits = 0
        wal_bytes = 0
        stop = False
        #: A batch whose commit failed on a full disk (or an I/O or lock error): kept in
        #: memory, bounded, and retried with backoff until the disk has room again.
        pending: list[tuple[Any, ...]] = []
        retry_s = 0.0
        try:
            while not stop:
                if pending:
                    try:
                        ops = [*pending, self._q.get(timeout=retry_s)]
                    except queue.Empty:
                        ops = list(pending)
                else:
                    ops = [self._q.get()]
                    wait_s = last_commit + self.commit_interval_s - time.monotonic()
                    if wait_s > 0 and ops[0][0] != "stop":
                        time.sleep(wait_s)
                while True:
                    try:
                        ops.append(self._q.get_nowait())
                    except queue.Empty:
                        break
                if pending:
                    ops = self._bound_pending(ops)
                callbacks: list[Callable[[], None]] = []
                saved = self._counters()
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    written, ticket = self._apply(conn, ops, callbacks)
                    if self.total_bytes > self.max_bytes:
                        self._compact(conn)
                    self._maybe_report_loss(conn)
                    conn.execute("INSERT OR REPLACE INTO meta VALUES ('next_seq', ?)",
                                 (str(self.last_seq + 1),))
                    conn.execute("COMMIT")
                except sqlite3.OperationalError as exc:
                    if not _retryable(exc):
                        raise
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    self._restore(saved)
                    if any(op[0] == "stop" for op in ops):
                        # Stopping with the disk still full: what waits in memory cannot
                        # be kept; say how much, once, and stop cleanly.
                        lost = sum(op[0] == "put" for op in ops)
                        log.error("outbox %s: stopping while commits fail (%s); %d "
                                  "message(s) not stored", self.path, exc, lost)
                        break
                    pending = ops
                    retry_s = min(MAX_RETRY_S, max(MIN_RETRY_S, retry_s * 2))
                    self.write_errors += 1
                    self.last_write_error = str(exc)
                    if time.monotonic() - self._write_error_logged_mono >= 60.0:
                        self._write_error_logged_mono = time.monotonic()
                        log.error("outbox %s: cannot commit (%s); %d message(s) wait in "
                                  "memory, retrying every %.0f s at most (error %d)",
                                  self.path, exc, sum(op[0] == "put" for op in ops),
                                  MAX_RETRY_S, self.write_errors)
                    continue
                if pending:
                    log.warning("outbox %s: committing again after %d failed attempt(s)",
                                self.path, self.write_errors)
                pending = []
                retry_s = 0.0
                last_commit = time.monotonic()
                self.commits += 1
                wal_commits += 1
                wal_bytes += written
                self.committed_ticket = max(self.committed_ticket, ticket)
                if wal_commits >= CHECKPOINT_EVERY_COMMITS or wal_bytes >= CHECKPOINT_EVERY_BYTES:
                    with contextlib.suppress(sqlite3.OperationalError):  # full disk: later
                        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                        self.checkpoints += 1
                        wal_commits = wal_bytes = 0
                if last_commit - last_io >= 1.0:
                    self._io_now = _read_thread_io()
                    last_io = last_commit
                stop = any(op[0] == "stop" for op in ops)
                if self.on_commit is not None:
                    self.on_commit(self.last_seq)
                for cb in callbacks:
                    cb()
            # PASSIVE at stop: TRUNCATE would wait (the busy timeout, seconds) for every
            # reader to let go, and a reload opens the next outbox on this file at once;
            # what is left in the WAL is checkpointed by the next writer.
            with contextlib.suppress(sqlite3.OperationalError):  # a full disk: next writer
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                self.checkpoints += 1
            self._io_now = _read_thread_io()
        except BaseException as exc:  # a dead writer must be loud, never silent
            self._failure = exc
            log.exception("outbox writer failed; messages are no longer stored")
            raise
        finally:
            conn.close()

    #: In-memory counters a batch changes; restored when its commit fails.
    _COUNTERS = ("last_seq", "rows", "stored", "total_bytes", "merged", "compactions",
                 "_loss_unreported", "_last_loss_report_mono")

    def _counters(self) -> tuple[Any, ...]:
        return (tuple(getattr(self, name) for name in self._COUNTERS), dict(self.backlog),
                dict(self.lost))

    def _restore(self, saved: tuple[Any, ...]) -> None:
        values, backlog, lost = saved
        for name, value in zip(self._COUNTERS, values, strict=True):
            setattr(self, name, value)
        self.backlog.clear()
        self.backlog.update(backlog)
        self.lost.clear()
        self.lost.update(lost)

    def _bound_pending(self, ops: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """While commits fail, at most :data:`MAX_PENDING_MESSAGES` messages wait in
        memory: beyond that the oldest are dropped, summaries before events, and counted
        as lost (reported once the outbox commits again)."""
        puts = [i for i, op in enumerate(ops) if op[0] == "put"]
        excess = len(puts) - MAX_PENDING_MESSAGES
        if excess <= 0:
            return ops
        rank = {kind: n for n, kind in enumerate(DROP_ORDER)}
        order = sorted(puts, key=lambda i: (rank.get(ops[i][1].__struct_config__.tag, 0), i))
        drop = set(order[:excess])
        for i in drop:
            kind = ops[i][1].__struct_config__.tag
            self.lost[kind] = self.lost.get(kind, 0) + 1
        self._loss_unreported = True
        return [op for i, op in enumerate(ops) if i not in drop]

    def _apply(self, conn: sqlite3.Connection, ops: list[tuple[Any, ...]],
               callbacks: list[Callable[[], None]]) -> tuple[int, int]:
        inserts: list[tuple[Any, ...]] = []
        acks: dict[int, list[tuple[int, str]]] = {}
        written = ticket = 0
        for op in ops:
            tag = op[0]
            if tag == "put":
                if not self._mask:
                    continue
                row = self._numbered(op[1])
                inserts.append(row)
                written += row[5]
            elif tag == "ack":
                # Sinks only see committed rows, so no ack is for a row of this batch.
                _, bit, done, ticket = op
                acks.setdefault(bit, []).extend(done)
            elif tag == "flush":
                callbacks.append(op[1])
        if inserts:
            self._insert(conn, inserts)
        for bit, done in acks.items():
            self._apply_ack(conn, bit, done)
        return written, ticket

    def _numbered(self, msg: AnyMessage) -> tuple[Any, ...]:
        """The next ``seq`` for ``msg`` and its row tuple (writer thread only)."""
        self.last_seq += 1
        msg.seq = self.last_seq
        body = encode(msg)
        return (msg.seq, msg.id, msg.__struct_config__.tag, msg.pipeline, msg.ts_s,
                len(body) + ROW_OVERHEAD_BYTES, self._mask, body)

    def _insert(self, conn: sqlite3.Connection, inserts: list[tuple[Any, ...]]) -> None:
        conn.executemany("INSERT OR REPLACE INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         inserts)
        self.rows += len(inserts)
        self.stored += len(inserts)
        self.total_bytes += sum(r[5] for r in inserts)
        for name in self.sink_names:
            self.backlog[name] += len(inserts)

    def _apply_ack(self, conn: sqlite3.Connection, bit: int, done: list[tuple[int, str]]
                   ) -> None:
        mask = 1 << bit
        cur = conn.executemany(
            "UPDATE messages SET pending = pending & ? WHERE seq = ? AND id = ? AND pending & ?",
            [(~mask, seq, msg_id, mask) for seq, msg_id in done])
        name = next(n for n, b in self._bits.items() if b == bit)
        self.backlog[name] -= max(0, cur.rowcount)
        seqs = [seq for seq, _ in done]
        for i in range(0, len(seqs), 500):  # by key: never a scan of the whole table
            chunk = seqs[i:i + 500]
            marks = ",".join("?" * len(chunk))
            gone = conn.execute(f"DELETE FROM messages WHERE seq IN ({marks}) AND pending = 0 "
                                "RETURNING size", chunk).fetchall()
            self.rows -= len(gone)
            self.total_bytes -= sum(g[0] for g in gone)

    def _delete(self, conn: sqlite3.Connection, seqs: list[int]) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        for i in range(0, len(seqs), 500):
            chunk = seqs[i:i + 500]
            marks = ",".join("?" * len(chunk))
            out += conn.execute(f"DELETE FROM messages WHERE seq IN ({marks}) "
                                "RETURNING kind, pending, size", chunk).fetchall()
        for _kind, pending, size in out:
            self.rows -= 1
            self.total_bytes -= size
            for name, bit in self._bits.items():
                if pending >> bit & 1:
                    self.backlog[name] -= 1
        return out

    def _compact(self, conn: sqlite3.Connection) -> None:
        target = int(self.max_bytes * CAP_TARGET)
        self.compactions += 1
        before_lost = dict(self.lost)
        before_merged = self.merged
        # 1. merge the oldest summaries of each pipeline into coarser ones
        while self.total_bytes > target and self._merge_pass(conn, target):
            pass
        # 2. drop the oldest rows, events last
        for kind in DROP_ORDER:
            while self.total_bytes > target:
                seqs = [r[0] for r in conn.execute(
                    "SELECT seq FROM messages WHERE kind = ? ORDER BY seq LIMIT 256", (kind,))]
                if not seqs:
                    break
                for k, _, _ in self._delete(conn, seqs):
                    self.lost[k] = self.lost.get(k, 0) + 1
        if self.lost != before_lost or self.merged != before_merged:
            self._loss_unreported = True
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('lost', ?)",
                         (json.dumps(self.lost),))
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('merged', ?)",
                         (str(self.merged),))
            log.warning("outbox over its cap of %d bytes: %d summaries merged, lost so far "
                        "%s (reported upstream)", self.max_bytes, self.merged, self.lost)

    def _merge_pass(self, conn: sqlite3.Connection, target: int) -> bool:
        """Merge runs of the oldest summaries; False when nothing could be merged."""
        rows = conn.execute("SELECT seq, pipeline, pending, body FROM messages "
                            "WHERE kind = 'summary' ORDER BY seq LIMIT 4096").fetchall()
        by_pipe: dict[str | None, list[tuple[int, int, Summary]]] = {}
        for seq, pipeline, pending, body in rows:
            msg = decode(bytes(body))
            if isinstance(msg, Summary):
                by_pipe.setdefault(pipeline, []).append((seq, pending, msg))
        progress = False
        for parts in by_pipe.values():
            group: list[tuple[int, int, Summary]] = []
            for item in [*parts, None]:
                fits = (item is not None and len(group) < MERGE_FACTOR
                        and sum(g[2].merged for g in group) + item[2].merged <= MAX_MERGED)
                if fits and item is not None:
                    group.append(item)
                    continue
                if len(group) >= 2:
                    self._merge_group(conn, group)
                    progress = True
                    if self.total_bytes <= target:
                        return True
                group = [item] if item is not None else []
        return progress

    def _merge_group(self, conn: sqlite3.Connection, group: list[tuple[int, int, Summary]]
                     ) -> None:
        first_seq = group[0][0]
        pending = 0
        for _, p, _ in group:
            pending |= p
        merged = merge_summaries([g[2] for g in group], id=self.factory.header()["id"],
                                 seq=first_seq)
        self._delete(conn, [g[0] for g in group])
        body = encode(merged)
        size = len(body) + ROW_OVERHEAD_BYTES
        conn.execute("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (first_seq, merged.id, "summary", merged.pipeline, merged.ts_s, size,
                      pending, body))
        self.rows += 1
        self.total_bytes += size
        for name, bit in self._bits.items():
            if pending >> bit & 1:
                self.backlog[name] += 1
        self.merged += len(group) - 1

    def _maybe_report_loss(self, conn: sqlite3.Connection) -> None:
        now = time.monotonic()
        if (not self._loss_unreported or not self._mask
                or now - self._last_loss_report_mono < self.loss_report_interval_s):
            return
        self._loss_unreported = False
        self._last_loss_report_mono = now
        event = self.factory.event(type="upstream", name="outbox_loss", state="active",
                                   data={"lost": dict(self.lost), "merged": self.merged,
                                         "max_bytes": self.max_bytes})
        self._insert(conn, [self._numbered(event)])
