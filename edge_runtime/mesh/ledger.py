"""The books of shared work: per peer, what it did for this node and this node for it.

Each node keeps, per peer: the requests it sent there and how many failed, the compute
seconds the peer reported for them and the bytes both ways (*consumed*); and the same
for the requests it served that peer (*served*). Totals survive restarts: they are
persisted in ``STATE_DIR/mesh/ledger.json`` (atomic replace) by the daemon every few
seconds while they change and at stop, and shown by ``edge-runtime peers`` and in the
upstream status. A fleet can then see who carries whom.

Threads: the counters are updated on the daemon's loop (plain additions); :meth:`Ledger.load`
and :meth:`Ledger.save` are blocking (an executor).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

LEDGER_FILE = "ledger.json"


@dataclass
class PeerBooks:
    """One peer's account. Seconds are the compute time the serving side measured."""

    consumed_requests: int = 0
    consumed_failures: int = 0
    consumed_compute_s: float = 0.0
    consumed_bytes: int = 0
    served_requests: int = 0
    served_compute_s: float = 0.0
    served_bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["consumed_compute_s"] = round(self.consumed_compute_s, 6)
        out["served_compute_s"] = round(self.served_compute_s, 6)
        return out


class Ledger:
    """Per-peer :class:`PeerBooks`, loaded from and saved to ``folder/ledger.json``."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LEDGER_FILE
        self.books: dict[str, PeerBooks] = {}
        self.dirty = False

    def of(self, peer_id: str) -> PeerBooks:
        books = self.books.get(peer_id)
        if books is None:
            books = self.books[peer_id] = PeerBooks()
        return books

    def consumed(self, peer_id: str, *, ok: bool, compute_s: float, bytes_total: int) -> None:
        """A request this node sent to ``peer_id`` came back (``ok``) or failed."""
        b = self.of(peer_id)
        b.consumed_requests += 1
        if not ok:
            b.consumed_failures += 1
        b.consumed_compute_s += max(0.0, compute_s)
        b.consumed_bytes += max(0, bytes_total)
        self.dirty = True

    def served(self, peer_id: str, *, compute_s: float, bytes_total: int) -> None:
        """This node answered a request of ``peer_id``."""
        b = self.of(peer_id)
        b.served_requests += 1
        b.served_compute_s += max(0.0, compute_s)
        b.served_bytes += max(0, bytes_total)
        self.dirty = True

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {peer: b.as_dict() for peer, b in sorted(self.books.items())}

    def load(self) -> Ledger:
        """Read the totals (a missing or damaged file: start from zero, file kept)."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return self
        peers = data.get("peers") if isinstance(data, dict) else None
        if not isinstance(peers, dict):
            return self
        names = {f.name: f.type for f in fields(PeerBooks)}
        for peer, raw in peers.items():
            if not isinstance(raw, dict):
                continue
            b = self.of(str(peer))
            for key, value in raw.items():
                if key in names and isinstance(value, int | float) and value >= 0:
                    setattr(b, key, float(value) if key.endswith("_s") else int(value))
        return self

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """The totals to :meth:`write` (on the loop); clears :attr:`dirty`."""
        self.dirty = False
        return self.as_dict()

    def write(self, snapshot: dict[str, dict[str, Any]] | None = None) -> None:
        """Write ``snapshot`` (default: the totals now) atomically. Blocking."""
        data = self.snapshot() if snapshot is None else snapshot
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".ledger-")
        with os.fdopen(fd, "w") as fh:
            json.dump({"version": 1, "peers": data}, fh, indent=1)
        os.replace(tmp, self.path)
