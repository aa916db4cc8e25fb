"""Snapshots: the JPEG of the frame that fired a rule, kept in a folder within a byte cap.

:meth:`SnapshotStore.write` blocks (OpenCV encoding and a file write): the facade calls it
on an executor thread. Files are written to a temporary name and renamed, so a power cut
leaves no half file under a snapshot's name (the newest snapshot may be lost: it is not
fsynced, to spare the SD card). The oldest files go first when the folder exceeds
``max_bytes``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_runtime.errors import SnapshotError

#: A box: (x0, y0, x1, y1, label, score) in pixels, or as 0..1 fractions of the frame.
Box = Sequence[Any]


class SnapshotStore:
    """A folder of JPEGs bounded by ``max_bytes``; see the module docstring."""

    def __init__(self, folder: Path, *, max_bytes: int = 20_000_000, jpeg_quality: int = 80
                 ) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.jpeg_quality = jpeg_quality
        self._files: list[tuple[str, int]] = []  # oldest first
        self.total_bytes = 0
        self.written = 0
        self.removed = 0

    def scan(self) -> None:
        """Learn what is already in the folder (blocking)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        found = []
        for p in self.folder.glob("*.jpg"):
            try:
                st = p.stat()
            except OSError:
                continue
            found.append((st.st_mtime, p.name, st.st_size))
        found.sort()
        self._files = [(name, size) for _, name, size in found]
        self.total_bytes = sum(size for _, size in self._files)
        for tmp in self.folder.glob("*.jpg.tmp"):
            tmp.unlink(missing_ok=True)

    def write(self, name: str, frame: Any, boxes: Sequence[Box] = ()) -> tuple[int, int, int]:
        """Encode ``frame`` (HxW or HxWx3 uint8, BGR) with ``boxes`` drawn, store it as
        ``name``; returns (bytes, width, height). Blocking."""
        import cv2
        import numpy as np

        img = np.asarray(frame)
        if img.ndim not in (2, 3) or img.size == 0:
            raise SnapshotError(f"snapshot {name}: expected an image array, got shape "
                                f"{img.shape}")
        if img.dtype != np.uint8:
            img = np.clip(img, 0, 255).astype(np.uint8)
        if boxes:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img.copy()
            h, w = img.shape[:2]
            for box in boxes:
                x0, y0, x1, y1 = (float(v) for v in box[:4])
                if max(x0, y0, x1, y1) <= 1.0:
                    x0, x1, y0, y1 = x0 * w, x1 * w, y0 * h, y1 * h
                p0, p1 = (int(x0), int(y0)), (int(x1), int(y1))
                cv2.rectangle(img, p0, p1, (0, 255, 0), 2)
                label = " ".join(str(v) if not isinstance(v, float) else f"{v:.2f}"
                                 for v in box[4:6])
                if label:
                    cv2.putText(img, label, (p0[0], max(10, p0[1] - 4)),
                                cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 0), 1)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise SnapshotError(f"snapshot {name}: OpenCV could not encode the frame")
        data = buf.tobytes()
        path = self.folder / name
        tmp = path.with_name(name + ".tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as exc:
            raise SnapshotError(f"cannot write snapshot {path}: {exc.strerror}") from exc
        self._files.append((name, len(data)))
        self.total_bytes += len(data)
        self.written += 1
        self._enforce_cap()
        return len(data), int(img.shape[1]), int(img.shape[0])

    def _enforce_cap(self) -> None:
        while self.total_bytes > self.max_bytes and len(self._files) > 1:
            name, size = self._files.pop(0)
            (self.folder / name).unlink(missing_ok=True)
            self.total_bytes -= size
            self.removed += 1

    def status(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "files": len(self._files),
                "bytes": self.total_bytes, "max_bytes": self.max_bytes,
                "written": self.written, "removed": self.removed}
