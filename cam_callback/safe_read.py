"""Reading files that may be hostile: regular files only, sizes capped, ``.npz`` parsed with bounds.

numpy only. The record reader, the review page and the TensorBoard plugin read
through it, so a FIFO never hangs them, ``/dev/zero`` never fills memory and one
flipped byte never raises anything but :class:`UnreadableFile`.

What is refused, whatever ``record.json`` claims:

- anything but a regular file: symbolic links (never followed, dangling or not),
  directories, FIFOs, devices and sockets; a FIFO is never opened for reading;
- a file larger than its cap: ``MAX_JSON_BYTES`` for JSON, ``MAX_FILE_BYTES`` for
  an ``.npz``, whose members together may also expand to no more than that;
- a compressed member that would expand more than ``MAX_DEFLATE_RATIO`` times
  (the tracker writes members uncompressed), more than ``MAX_MEMBERS`` members,
  or an ``.npy`` header that is not exactly numpy's dict of ``descr``,
  ``fortran_order`` and ``shape`` with a plain bool, int, uint or float dtype.

Example:
    >>> read_json("runs/a/cam/record.json")["format"]  # doctest: +SKIP
    'cam-callback-record'
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

MAX_FILE_BYTES = 2**31  # one .npz: its size on disk, and what its members expand to together
MAX_JSON_BYTES = 64 * 2**20  # record.json, flags.json, evaluation.json
MAX_DEFLATE_RATIO = 100  # how many times a compressed member may expand
MAX_MEMBERS = 64  # arrays in one .npz (a record's files hold 3 to about 12)
MAX_HEADER_BYTES = 4096  # of one .npy header; numpy writes 128 bytes or so
MAX_DIMS = 8  # dimensions of one array
_CHUNK = 16 * 2**20  # bytes read at a time into an array
_CENTRAL_DIR_BYTES = 2**20  # the zip's table of contents, read whole by zipfile
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


# ---------------------------------------------------------------------- .npy and .npz

ArrayCheck = Callable[[str, np.dtype, tuple[int, ...]], None]
_DTYPE = re.compile(r"[<>|=]?(b1|[iu][1248]|f[248])")
_PAIR = re.compile(r"\s*'(\w{1,20})'\s*:\s*('[^']{0,40}'|True|False|\([0-9 ,]{0,200}\))\s*(,|$)")


def parse_npy_header(text: str) -> tuple[np.dtype, bool, tuple[int, ...]]:
    """``(dtype, fortran_order, shape)`` of an ``.npy`` header dict, parsed strictly.

    Only what numpy writes for a plain array is accepted: exactly the keys
    ``descr`` (bool, int, uint or float of 1 to 8 bytes), ``fortran_order`` and
    ``shape`` (a tuple of at most ``MAX_DIMS`` ints). No Python is evaluated.

    Raises:
        UnreadableFile: Anything else.

    Example:
        >>> parse_npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }")
        (dtype('float32'), False, (2, 3))
    """
    body = text.strip(" \n\t\r\x00")
    if not (body.startswith("{") and body.endswith("}")):
        raise UnreadableFile(f"an .npy header that is not a dict: {text[:60]!r}")
    body, pos, found = body[1:-1], 0, {}
    while body[pos:].strip():
        m = _PAIR.match(body, pos)
        if m is None or m.group(1) in found:
            raise UnreadableFile(f"an .npy header numpy did not write: {text[:80]!r}")
        found[m.group(1)] = m.group(2)
        pos = m.end()
    if sorted(found) != ["descr", "fortran_order", "shape"]:
        raise UnreadableFile(f"an .npy header with keys {sorted(found)}")
    descr = found["descr"][1:-1] if found["descr"].startswith("'") else ""
    if not _DTYPE.fullmatch(descr):
        raise UnreadableFile(f"dtype {found['descr'][:40]} is not bool, int or float")
    if found["fortran_order"] not in ("True", "False"):
        raise UnreadableFile(f"fortran_order {found['fortran_order'][:40]}")
    inner = found["shape"].strip("()").replace(" ", "")
    parts = inner.split(",")
    if parts[-1] == "" and len(parts) > 1:  # "(2,)" and "(2, 3,)"
        parts = parts[:-1]
    if inner == "":
        parts = []
    elif len(parts) == 1 and not inner.endswith(","):  # "(2)" is an int, not a tuple
        raise UnreadableFile(f"shape {found['shape']} is not a tuple")
    if len(parts) > MAX_DIMS or not all(p.isdigit() and len(p) <= 15 for p in parts):
        raise UnreadableFile(f"shape {found['shape'][:60]}")
    return np.dtype(descr), found["fortran_order"] == "True", tuple(int(p) for p in parts)


def read_npy(stream: BinaryIO, size: int, check: Callable[[np.dtype, tuple], None]) -> np.ndarray:
    """One ``.npy`` array of exactly ``size`` bytes from ``stream``, in native byte order.

    ``check(dtype, shape)`` runs on the parsed header, before anything is
    allocated, and raises to refuse the array. The data must fill ``size``
    exactly: a header claiming more (or less) than the bytes there is refused.

    Raises:
        UnreadableFile: A damaged header, a size that disagrees, or short data.
    """
    magic = _read_exact(stream, 8, "the .npy magic")
    if magic[:6] != b"\x93NUMPY" or magic[6] not in (1, 2, 3) or magic[7] != 0:
        raise UnreadableFile(f"not an .npy array (starts {magic!r})")
    width = 2 if magic[6] == 1 else 4
    length = int.from_bytes(_read_exact(stream, width, "the header length"), "little")
    start = 8 + width
    if length > MAX_HEADER_BYTES or start + length > size:
        raise UnreadableFile(
            f"its .npy header length field says {length} bytes; the member holds "
            f"{size - start} after it (at most {MAX_HEADER_BYTES} allowed)"
        )
    raw = _read_exact(stream, length, "the .npy header")
    try:
        text = raw.decode("utf-8" if magic[6] == 3 else "latin-1")
    except UnicodeDecodeError:
        raise UnreadableFile("an .npy header that is not UTF-8") from None
    dtype, fortran, shape = parse_npy_header(text)
    check(dtype, shape)
    nbytes = math.prod(shape) * dtype.itemsize
    if start + length + nbytes != size:
        raise UnreadableFile(
            f"the header claims {nbytes} bytes of {dtype} {shape}, "
            f"the member holds {size - start - length}"
        )
    buf = np.empty(nbytes, np.uint8)
    view, done = memoryview(buf), 0
    while done < nbytes:
        got = stream.readinto(view[done : done + _CHUNK])
        if not got:
            raise UnreadableFile(f"truncated: {done} of {nbytes} data bytes")
        done += got
    if dtype.kind == "b":  # any nonzero byte is True; stored as clean 0/1
        arr = buf != 0
    else:
        arr = buf.view(dtype)
        if not dtype.isnative:
            arr = arr.astype(dtype.newbyteorder("="))
    return arr.reshape(shape, order="F" if fortran else "C")


def _read_exact(stream: BinaryIO, n: int, what: str) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise UnreadableFile(f"truncated in {what}")
    return data


def read_npz(
    path: str | os.PathLike, check: ArrayCheck, max_bytes: int = MAX_FILE_BYTES
) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` at ``path``, by name (``.npy`` dropped).

    Before anything is decompressed, the archive's table of contents, member count,
    claimed sizes and compression ratios are checked; ``check(name, dtype, shape)``
    then sees each array's header before its data is allocated. Every problem with
    one array is reported as ``"array 'name': problem"``.

    Raises:
        FileNotFoundError: Nothing at ``path``.
        UnreadableFile: Any damage, any cap exceeded, or refused by ``check``.

    Example:
        >>> read_npz("runs/a/cam/probes.npz", lambda name, dtype, shape: None)  # doctest: +SKIP
        {'images': array(...), 'labels': array(...)}
    """
    with open_regular(path, max_bytes) as f:
        size = os.fstat(f.fileno()).st_size
        _check_directory(f, size)
        try:
            with zipfile.ZipFile(f) as zf:
                members = _check_members(zf.infolist(), size, max_bytes)
                out = {}
                for name, info in members:
                    with zf.open(info) as stream:
                        try:
                            out[name] = read_npy(
                                stream, info.file_size, lambda d, s, n=name: check(n, d, s)
                            )
                        except UnreadableFile as exc:
                            raise UnreadableFile(f"array {name[:60]!r}: {exc}") from None
                return out
        except UnreadableFile:
            raise
        # zipfile and zlib raise these on bytes they cannot make sense of.
        except (
            zipfile.BadZipFile,
            zlib.error,
            EOFError,
            NotImplementedError,
            OSError,
            ValueError,
            OverflowError,
            struct.error,
        ) as exc:
            raise UnreadableFile(f"unreadable zip ({type(exc).__name__}: {exc})"[:300]) from None


def _check_directory(f: BinaryIO, size: int) -> None:
    """Refuses a zip whose table of contents is larger than ``MAX_MEMBERS`` members need,
    before zipfile reads it whole."""
    tail_len = min(size, 22 + 65535)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        raise UnreadableFile("not a zip archive (no end of central directory)")
    _, _, _, _, entries, dir_size, _, _ = struct.unpack("<4s4H2LH", tail[at : at + 22])
    if (entries == 0xFFFF or dir_size == 0xFFFFFFFF) and at >= 20:  # zip64 end record
        sig, _, offset, _ = struct.unpack("<4sLQL", tail[at - 20 : at])
        if sig == b"PK\x06\x07" and offset + 56 <= size:
            f.seek(offset)
            record = f.read(56)
            if record[:4] == b"PK\x06\x06":
                entries, dir_size = struct.unpack("<QQ", record[32:48])
    if entries > MAX_MEMBERS or dir_size > _CENTRAL_DIR_BYTES:
        raise UnreadableFile(
            f"a zip of {entries} members in a {dir_size}-byte directory "
            f"(at most {MAX_MEMBERS} members)"
        )
    f.seek(0)


def _check_members(
    infos: list[zipfile.ZipInfo], size: int, max_bytes: int
) -> list[tuple[str, zipfile.ZipInfo]]:
    if len(infos) > MAX_MEMBERS:
        raise UnreadableFile(f"a zip of {len(infos)} members (at most {MAX_MEMBERS})")
    members, total = [], 0
    for info in infos:
        name = info.filename.removesuffix(".npy")
        shown = f"member {info.filename[:60]!r}"
        if any(name == n for n, _ in members):
            raise UnreadableFile(f"{shown} appears twice")
        if info.flag_bits & 0x1:
            raise UnreadableFile(f"{shown} is encrypted")
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size:
                raise UnreadableFile(
                    f"{shown} is stored, yet claims {info.file_size} bytes in {info.compress_size}"
                )
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            if info.file_size > info.compress_size * MAX_DEFLATE_RATIO + 4096:
                raise UnreadableFile(
                    f"{shown} would expand from {info.compress_size} to {info.file_size} bytes, "
                    f"more than {MAX_DEFLATE_RATIO} times"
                )
        else:
            raise UnreadableFile(f"{shown} uses zip compression {info.compress_type}")
        if info.header_offset + info.compress_size > size:
            raise UnreadableFile(
                f"{shown} claims {info.compress_size} bytes at offset {info.header_offset}; "
                f"the file holds {size}"
            )
        total += info.file_size
        if total > max_bytes:
            raise UnreadableFile(f"members expanding to more than {max_bytes} bytes")
        members.append((name, info))
    return members
