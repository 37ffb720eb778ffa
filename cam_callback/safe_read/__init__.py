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

The package is split by job: :mod:`~cam_callback.safe_read.files` (regular
files, bytes, JSON), :mod:`~cam_callback.safe_read.npy` (one array's header and
data) and :mod:`~cam_callback.safe_read.npz` (the archive). Every name is
re-exported here.
"""

from cam_callback.safe_read.files import (
    MAX_FILE_BYTES,
    MAX_JSON_BYTES,
    UnreadableFile,
    file_kind,
    open_regular,
    read_bytes,
    read_json,
)
from cam_callback.safe_read.npy import MAX_DIMS, MAX_HEADER_BYTES, parse_npy_header, read_npy
from cam_callback.safe_read.npz import MAX_DEFLATE_RATIO, MAX_MEMBERS, ArrayCheck, read_npz

__all__ = [
    "MAX_DEFLATE_RATIO",
    "MAX_DIMS",
    "MAX_FILE_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_JSON_BYTES",
    "MAX_MEMBERS",
    "ArrayCheck",
    "UnreadableFile",
    "file_kind",
    "open_regular",
    "parse_npy_header",
    "read_bytes",
    "read_json",
    "read_npy",
    "read_npz",
]
