"""Record constants, errors, and the atomic write every record file goes through.

numpy only, no TensorFlow: the CLI and the plugin import this.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "cam-callback-record"
VERSION = 1
SUBDIR = "cam"
FLAGS_FILE = "flags.json"
LOCK_FILE = ".writer.lock"
EPOCH_FILE = re.compile(r"^epoch_(\d{6,})\.npz$")
BASELINE_EPOCH = -1  # the state before training, recorded at on_train_begin
BASELINE_FILE = "baseline.npz"
WEIGHTS_FILE = "weights.json"  # the weights fingerprint of each recorded epoch (the writer's)
SET_ASIDE = "set_aside"  # epochs of another line of weights, moved out of the record
MAX_IMAGE_PIXELS = 2**24  # pixels of one probe image, or cells of one map (4096 x 4096)
MAX_COUNT = 2**20  # probes or classes
MAX_SIDE = 2**14  # pixels of an image side, or cells of a map side


class RecordError(ValueError):
    """A damaged or unreadable run record; the message names the file and the problem."""


class RecordBusy(ValueError):
    """Another tracker or process is writing this record."""


class RecordDeleted(OSError):
    """The record's folder disappeared while it was being written; nothing more is written."""


def record_dir(log_dir: str | os.PathLike) -> Path:
    """The record's folder inside ``log_dir``."""
    return Path(log_dir) / SUBDIR


def fingerprint(images: np.ndarray, labels: np.ndarray | None = None) -> str:
    """A short hash identifying a probe set: model-space images and labels.

    Example:
        >>> fingerprint(np.zeros((1, 2, 2, 3))) == fingerprint(np.zeros((1, 2, 2, 3)))
        True
    """
    h = hashlib.sha256()
    x = np.ascontiguousarray(images, dtype=np.float32)
    h.update(repr(x.shape).encode())
    h.update(x.tobytes())
    if labels is not None:
        h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def atomic_write_bytes(path: Path, data: bytes, make_dirs: bool = True) -> None:
    """Writes ``data`` to ``path`` by write-then-rename, durable on return.

    ``make_dirs=False`` writes only into an existing folder (``FileNotFoundError``
    otherwise), so a record deleted mid-run is never recreated in part.
    """
    if make_dirs:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    # 0o666 through os.open: the kernel applies the live umask, as for any file the user makes.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where the OS allows it
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """The bytes of an uncompressed ``.npz`` holding ``arrays``.

    Example:
        >>> npz_bytes({"a": np.zeros(2)})[:2]
        b'PK'
    """
    # Numbers only: the reader takes bool, int and float arrays, never a pickle. Checked here,
    # not with savez's allow_pickle=, which numpy before 2.2 would store as an array so named.
    held = [k for k, v in arrays.items() if np.asarray(v).dtype.hasobject]
    if held:
        raise TypeError(f"`arrays` must hold numbers, not Python objects. Received: {held}")
    buf = io.BytesIO()
    savez: Any = np.savez  # its stub types the arrays' keywords as its own options
    savez(buf, **arrays)  # uncompressed: maps are small, and speed matters at epoch end
    return buf.getvalue()
