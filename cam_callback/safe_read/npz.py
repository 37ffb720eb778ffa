"""An ``.npz`` read as hostile input: its table of contents, member count, claimed sizes and
compression ratios checked before anything is decompressed, then each member through
:func:`~cam_callback.safe_read.npy.read_npy`."""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from functools import partial
from typing import BinaryIO, cast

import numpy as np

from cam_callback.safe_read.files import MAX_FILE_BYTES, UnreadableFile, open_regular
from cam_callback.safe_read.npy import read_npy

MAX_DEFLATE_RATIO = 100  # how many times a compressed member may expand
MAX_MEMBERS = 64  # arrays in one .npz (a record's files hold 3 to about 12)
_CENTRAL_DIR_BYTES = 2**20  # the zip's table of contents, read whole by zipfile

ArrayCheck = Callable[[str, np.dtype, tuple[int, ...]], None]


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
                    # A ZipExtFile (it has readinto); typeshed says IO[bytes].
                    with cast(zipfile.ZipExtFile, zf.open(info)) as stream:
                        try:
                            out[name] = read_npy(stream, info.file_size, partial(check, name))
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
    members: list[tuple[str, zipfile.ZipInfo]] = []
    total = 0
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
