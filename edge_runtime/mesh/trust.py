"""Which peers this node trusts: the quarantine list, persisted, and the comparison that
puts a peer on it.

A peer's answer is *spot-checked* by running the same input on this node and comparing
the two (:func:`agree`): not byte for byte (two engines, or two CPUs, round differently)
but as the task sees it. A peer that disagrees is quarantined: :class:`TrustStore`
writes it to ``STATE_DIR/mesh/trust.json`` (atomic replace), so a restart does not
forget it, and only an operator clears it (``edge-runtime peers CONFIG --clear NODE``,
or by deleting the entry). The daemon re-reads the file when it changes, so a clear
takes effect without a restart.

Comparison modes (``[mesh] verify_compare``):

- ``top1``: every row's highest-scoring class is the same (a classifier);
- ``allclose``: every element within ``tolerance`` x the largest magnitude of this
  node's answer (at least 1 quantization step for quantized outputs);
- ``auto`` (default): ``top1`` for an output shaped ``(batch, classes)`` with more than
  one class, ``allclose`` for every other output.

Threads: the store's reads and writes are blocking (call them in an executor); its
queries (:meth:`TrustStore.is_quarantined`, :meth:`TrustStore.entries`) only read a
dictionary.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edge_runtime.models.types import TensorSpec

CompareMode = Literal["auto", "top1", "allclose"]
TRUST_FILE = "trust.json"


def _dequantized(array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    values = np.asarray(array)
    q = spec.quant
    if q is None or not np.issubdtype(values.dtype, np.integer):
        return values.astype(np.float64, copy=False)
    scale = np.asarray(q.scale, np.float64)
    zero = np.asarray(q.zero_point, np.float64)
    if q.axis is not None and scale.size > 1:
        shape = [1] * values.ndim
        shape[q.axis] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (values.astype(np.float64) - zero) * scale


def agree(theirs: Sequence[np.ndarray], ours: Sequence[np.ndarray],
          specs: Sequence[TensorSpec], *, mode: CompareMode = "auto",
          tolerance: float = 0.02) -> tuple[bool, str]:
    """Whether a peer's raw outputs (``theirs``) tell the same as this node's (``ours``),
    output by output; and, when not, why (one line)."""
    if len(theirs) != len(ours):
        return False, f"{len(theirs)} outputs where this node has {len(ours)}"
    for a, b, spec in zip(theirs, ours, specs, strict=False):
        a_arr, b_arr = np.asarray(a), np.asarray(b)
        if a_arr.shape != b_arr.shape:
            return False, f"output {spec.name!r} has shape {a_arr.shape}, not {b_arr.shape}"
        fa, fb = _dequantized(a_arr, spec), _dequantized(b_arr, spec)
        use = mode
        if use == "auto":
            use = "top1" if fb.ndim == 2 and fb.shape[1] > 1 else "allclose"
        if use == "top1":
            rows_a = fa.reshape(fa.shape[0], -1) if fa.ndim else fa.reshape(1, 1)
            rows_b = fb.reshape(fb.shape[0], -1) if fb.ndim else fb.reshape(1, 1)
            la, lb = np.argmax(rows_a, axis=1), np.argmax(rows_b, axis=1)
            if not np.array_equal(la, lb):
                return False, (f"output {spec.name!r}: top-1 class {la.tolist()} where this "
                               f"node finds {lb.tolist()}")
            continue
        if not (np.all(np.isfinite(fa) == np.isfinite(fb))):
            return False, f"output {spec.name!r}: non-finite values differ"
        finite = np.isfinite(fb)
        scale = float(np.max(np.abs(fb[finite]))) if finite.any() else 0.0
        step = max(spec.quant.scale) if spec.quant is not None else 0.0
        atol = max(tolerance * scale, step, 1e-12)
        worst = float(np.max(np.abs(fa[finite] - fb[finite]))) if finite.any() else 0.0
        if worst > atol:
            return False, (f"output {spec.name!r}: differs by up to {worst:.4g} (tolerance "
                           f"{atol:.4g})")
    return True, ""


class TrustStore:
    """The quarantined peers of this node, in ``folder/trust.json`` (see the module
    docstring). Blocking: :meth:`load`, :meth:`quarantine`, :meth:`clear`,
    :meth:`reload_if_changed`."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / TRUST_FILE
        self._entries: dict[str, dict[str, Any]] = {}
        self._stamp: tuple[int, int, int] | None = None
        #: Why the file could not be read when nothing was known yet (then every peer
        #: counts as quarantined: a damaged list must not let a known liar back in).
        self.damaged: str | None = None
        self._loaded = False

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def load(self) -> TrustStore:
        """Read the file (missing: nobody quarantined; unreadable: kept as it was)."""
        self._stamp = self._file_stamp()
        first, self._loaded = not self._loaded, True
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            self._entries, self.damaged = {}, None
            return self
        except (OSError, ValueError) as exc:
            return self._unreadable(first, f"{self.path}: {exc}")
        peers = data.get("quarantined") if isinstance(data, dict) else None
        if not isinstance(peers, dict):
            return self._unreadable(first, f"{self.path}: no 'quarantined' table")
        self._entries = {str(k): dict(v) if isinstance(v, dict) else {}
                         for k, v in peers.items()}
        self.damaged = None
        return self

    def _unreadable(self, first: bool, why: str) -> TrustStore:
        # Running: a damaged file keeps what we knew. At start nothing is known, so
        # nobody is trusted until it is mended (or deleted, which trusts everyone).
        if first:
            self.damaged = why
        return self

    def reload_if_changed(self) -> bool:
        """Re-read the file when it changed on disk (an operator cleared a peer)."""
        if self._file_stamp() == self._stamp:
            return False
        self.load()
        return True

    def is_quarantined(self, peer_id: str) -> bool:
        return self.damaged is not None or peer_id in self._entries

    def entries(self) -> dict[str, dict[str, Any]]:
        """Quarantined peers: ``{peer: {"since_unix_s", "reason"}}``."""
        return {k: dict(v) for k, v in self._entries.items()}

    def mark(self, peer_id: str, reason: str) -> dict[str, Any]:
        """Put ``peer_id`` on the list in memory (not blocking: on the loop); returns its
        entry, for :meth:`write`."""
        entry = {"since_unix_s": round(time.time(), 3), "reason": reason}
        self._entries = {**self._entries, peer_id: entry}
        return entry

    def write(self, peer_id: str, entry: dict[str, Any]) -> None:
        """Add ``peer_id``'s entry to the file as it is now (what an operator cleared
        meanwhile stays cleared) and write it. Blocking."""
        disk = TrustStore(self.path.parent).load()
        if disk.damaged is not None:  # never overwrite a list an operator must mend
            raise OSError(f"the trust list cannot be read ({disk.damaged}); {peer_id} is "
                          "quarantined in memory only")
        self._entries = {**disk.entries(), peer_id: entry}
        self._save()

    def quarantine(self, peer_id: str, reason: str) -> None:
        """Put ``peer_id`` on the list and write it down (blocking)."""
        self.write(peer_id, self.mark(peer_id, reason))

    def clear(self, peer_id: str) -> bool:
        """Take ``peer_id`` off the list (False: it was not on it)."""
        self.load()
        if self.damaged is not None:
            from edge_runtime.errors import ConfigError

            raise ConfigError(f"the trust list cannot be read ({self.damaged})",
                              hint="mend it, or delete it to trust every fleet member again")
        if self._entries.pop(peer_id, None) is None:
            return False
        self._save()
        return True

    def _save(self) -> None:
        self.damaged = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".trust-")
        with os.fdopen(fd, "w") as fh:
            json.dump({"version": 1, "quarantined": self._entries}, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self._stamp = self._file_stamp()
