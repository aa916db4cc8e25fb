"""Writing files so that a power cut, a full disk or an odd target never leaves a mess.

:func:`write_atomic` is the one way the runtime and the CLI replace a file (a result
CSV, a drawn image, ``summary.json``): the data goes to a temporary file beside the
target, is fsynced and renamed over it, and the folder is fsynced, so the target holds
either the old or the new content. What it does with targets that are not plain files
is deliberate:

- a **symlink** is followed: the file it points to is replaced and the link stays;
- a **FIFO, character device or socket** (``/dev/null``, ``/dev/stdout``, a named pipe
  a script reads) is written through, in place: renaming over it would turn
  ``/dev/null`` into a regular file when run as root;
- a **directory** is refused with :class:`FileWriteError`;
- on any error the temporary file is removed.

:func:`state_folder` creates the node's state folder (0750) and tells which mode the
files in it get: 0600, or 0640 when the folder belongs to another group than the
daemon's (a group the operator set up so that others may read the node's files).

Both block (disk I/O): call them from an executor in async code.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from edge_runtime.errors import FileWriteError


def write_atomic(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> Path:
    """Replace ``path`` with ``data`` (see the module docstring); returns the path written.

    ``mode`` applies to a new file; a replaced file keeps its own mode.
    """
    target = Path(path)
    try:
        resolved = target.resolve(strict=False)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        raise FileWriteError(f"{target}: cannot follow this path ({_reason(exc)})") from exc
    try:
        st = resolved.stat()
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise FileWriteError(f"{target}: {_reason(exc)}") from exc
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise FileWriteError(f"{target} is a folder", hint="give a file name inside it")
    if st is not None and not stat.S_ISREG(st.st_mode):
        _write_through(target, resolved, data)
        return resolved
    keep_mode = stat.S_IMODE(st.st_mode) if st is not None else mode
    folder = resolved.parent
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{resolved.name}.", suffix=".tmp")
    except OSError as exc:
        raise FileWriteError(f"{target}: cannot write in {folder} ({_reason(exc)})") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), keep_mode)
            os.fsync(fh.fileno())
        os.replace(tmp, resolved)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise FileWriteError(f"{target}: cannot write ({_reason(exc)})") from exc
    fsync_folder(folder)
    return resolved


#: Mode of a state folder the runtime creates: the group may look, others may not.
STATE_FOLDER_MODE = 0o750


def state_folder(path: str | os.PathLike[str]) -> int:
    """Create ``path`` (and its parents) as a state folder if missing; return the mode
    its files should get: 0o640 when the folder's group is not the process's (the
    operator shares the node's files with a group), else 0o600."""
    folder = Path(path)
    try:
        folder.mkdir(mode=STATE_FOLDER_MODE, parents=True, exist_ok=True)
        st = folder.stat()
    except OSError as exc:
        raise FileWriteError(f"cannot create the state folder {folder} ({_reason(exc)})",
                             hint="set node.state_dir to a folder this user may write, "
                             "e.g. /var/lib/edge-runtime") from exc
    return 0o640 if st.st_gid != os.getegid() else 0o600


def _write_through(target: Path, resolved: Path, data: bytes) -> None:
    try:
        # O_NONBLOCK: a FIFO nobody reads fails at once instead of hanging the caller.
        fd = os.open(resolved, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise FileWriteError(f"{target}: cannot open for writing ({_reason(exc)})",
                             hint="for a named pipe, start its reader first") from exc
    try:
        os.set_blocking(fd, True)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:
        raise FileWriteError(f"{target}: cannot write ({_reason(exc)})") from exc
    finally:
        os.close(fd)


def fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort: some filesystems refuse)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
