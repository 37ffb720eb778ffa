"""Opening files that may be hostile: regular files only, never through a symlink, never
blocking on a FIFO, sizes capped; bytes and JSON read through that."""

from __future__ import annotations

import json
import os
import stat
from typing import Any, BinaryIO

MAX_FILE_BYTES = 2**31  # one .npz: its size on disk, and what its members expand to together
MAX_JSON_BYTES = 64 * 2**20  # record.json, flags.json, evaluation.json
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO swapped in after the check still cannot block
    | getattr(os, "O_NOFOLLOW", 0)  # nor can a symlink swapped in be followed
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


class UnreadableFile(ValueError):
    """A file that is not what it must be; the message says what is wrong, not which file."""


def file_kind(mode: int) -> str:
    """What a ``st_mode`` is, in words: ``"a regular file"``, ``"a FIFO (named pipe)"``, ...

    Example:
        >>> file_kind(os.lstat(".").st_mode)
        'a directory'
    """
    for test, name in (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str | os.PathLike, max_bytes: int) -> BinaryIO:
    """Opens ``path`` for reading if it is a regular file of at most ``max_bytes``.

    The file is checked with ``lstat`` before it is opened (a FIFO or device is
    never opened), and again on the open descriptor.

    Raises:
        FileNotFoundError: Nothing at ``path``.
        UnreadableFile: A symlink, directory, FIFO, device or socket, or too large.
        OSError: It cannot be opened (permissions).

    Example:
        >>> with open_regular("runs/a/cam/record.json", MAX_JSON_BYTES) as f:  # doctest: +SKIP
        ...     f.read(1)
        b'{'
    """
    _check_stat(os.lstat(path), max_bytes)
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if os.path.islink(path):  # replaced by a symlink since the check: ELOOP
            raise UnreadableFile("is a symbolic link, not a regular file") from None
        raise exc from None
    try:
        _check_stat(os.fstat(fd), max_bytes)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _check_stat(st: os.stat_result, max_bytes: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableFile(f"is {file_kind(st.st_mode)}, not a regular file")
    if st.st_size > max_bytes:
        raise UnreadableFile(f"holds {st.st_size} bytes, more than the {max_bytes} allowed")


def read_bytes(path: str | os.PathLike, max_bytes: int) -> bytes:
    """The bytes of the regular file ``path``, refused past ``max_bytes``.

    See :func:`open_regular` for what is refused.

    Example:
        >>> read_bytes("runs/a/cam/record.json", MAX_JSON_BYTES)[:1]  # doctest: +SKIP
        b'{'
    """
    with open_regular(path, max_bytes) as f:
        data = f.read(max_bytes + 1)  # a file still growing is cut here, not read on
    if len(data) > max_bytes:
        raise UnreadableFile(f"holds more than the {max_bytes} bytes allowed")
    return data


def read_json(path: str | os.PathLike, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """The JSON value in the regular file ``path``.

    Raises:
        FileNotFoundError: Nothing at ``path``.
        UnreadableFile: Not a regular file, too large, or not JSON (absurd nesting,
            an integer of more than 4300 digits, bad UTF-8 included).

    Example:
        >>> read_json("runs/a/evaluation.json")["scores"]  # doctest: +SKIP
        {'gradcam': {'deletion_auc': 0.12}}
    """
    raw = read_bytes(path, max_bytes)
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurd nesting
        raise UnreadableFile(f"not readable JSON ({type(exc).__name__}: {exc})"[:300]) from None
