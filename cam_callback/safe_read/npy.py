"""One ``.npy`` member read as hostile input: the header parsed by pattern (no Python
evaluated), checked before the data is allocated, and the data read in bounded chunks."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Protocol

import numpy as np

from cam_callback.safe_read.files import UnreadableFile

MAX_HEADER_BYTES = 4096  # of one .npy header; numpy writes 128 bytes or so
MAX_DIMS = 8  # dimensions of one array
_CHUNK = 16 * 2**20  # bytes read at a time into an array
_DTYPE = re.compile(r"[<>|=]?(b1|[iu][1248]|f[248])")
_PAIR = re.compile(r"\s*'(\w{1,20})'\s*:\s*('[^']{0,40}'|True|False|\([0-9 ,]{0,200}\))\s*(,|$)")


class ByteStream(Protocol):
    """What :func:`read_npy` reads from: a binary file, ``io.BytesIO`` or a zip member."""

    def read(self, size: int = -1, /) -> bytes: ...

    def readinto(self, buffer: memoryview, /) -> int: ...


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


def read_npy(stream: ByteStream, size: int, check: Callable[[np.dtype, tuple], None]) -> np.ndarray:
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
    view, done = buf.data, 0
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


def _read_exact(stream: ByteStream, n: int, what: str) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise UnreadableFile(f"truncated in {what}")
    return data
