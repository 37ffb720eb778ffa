"""The record's one-writer lock: a registry for this process, ``flock`` across processes.

The ``flock`` on ``cam/.writer.lock`` is released by the OS when the process dies, so a
killed run can resume; the registry names the holder inside this process, which the
``flock`` cannot.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from pathlib import Path

from cam_callback.record.paths import LOCK_FILE, RecordBusy

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one writer per record is then up to the user
    fcntl = None  # type: ignore[assignment]

# Records this process writes, by real path: who holds each (the flock cannot say).
_HELD: dict[str, str] = {}
_HELD_LOCK = threading.Lock()


class WriterLock:
    """Holds the writer lock of one record folder until :meth:`release` or garbage collection.

    Args:
        path: The record folder (``LOG_DIR/cam``); created if missing.
        owner: Who writes, named when another writer is refused.

    Raises:
        RecordBusy: Another writer in this process, or another process, holds it.

    Example:
        >>> lock = WriterLock(Path("runs/a/cam"), "my tracker")  # doctest: +SKIP
        >>> lock.release()  # doctest: +SKIP
    """

    def __init__(self, path: Path, owner: str) -> None:
        path.mkdir(parents=True, exist_ok=True)
        key = os.path.realpath(path)
        where = str(path.parent)
        with _HELD_LOCK:
            holder = _HELD.get(key)
            if holder is None:
                _HELD[key] = owner
        if holder is not None:  # flock would refuse too, but could not say who
            raise RecordBusy(
                f"`log_dir` {where} is being written by another tracker in this process "
                f"(pid {os.getpid()}): {holder}; one record has one writer. Close that "
                f"tracker (tracker.close(), or let its fit end), or use a new `log_dir`. "
                f"Received: log_dir={where!r}"
            )
        fd = None
        if fcntl is not None:
            fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                _unlock(None, key)
                who = f"process {holder}"
                if holder == str(os.getpid()):
                    who = f"in this process, pid {holder}: a writer not closed"
                raise RecordBusy(
                    f"`log_dir` {where} is being written by another tracker ({who}); one "
                    f"record has one writer. Wait for that fit to end, close that tracker, or "
                    f"use a new `log_dir`. Received: log_dir={where!r}"
                ) from None
            with contextlib.suppress(OSError):  # the pid is only for the message above
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        # Closing the descriptor releases the flock: on release(), or when the lock is dropped.
        self._finalize = weakref.finalize(self, _unlock, fd, key)

    def release(self) -> None:
        """Releases the lock; safe to repeat."""
        with contextlib.suppress(OSError):
            self._finalize()


def _unlock(fd: int | None, key: str) -> None:
    with _HELD_LOCK:
        _HELD.pop(key, None)
    if fd is not None:
        os.close(fd)
