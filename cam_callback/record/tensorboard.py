"""The live TensorBoard view: a lazily created writer in the record's own run folder.

Images are PNG-encoded here with Pillow, as 256-colour palette images at zlib
level 1, and written with the image plugin's metadata: what ``tf.summary.image``
writes, at a fifth of its cost on a CPU that is also training (measured in
``benchmarks/bench_tracker.py``).

The event file is written with TensorBoard's protos and record framing, the way
PyTorch's ``SummaryWriter`` does, so no backend imports TensorFlow for it. The
summaries have the layout of TF2's ``tf.summary`` (tensor values with plugin
metadata), so a real TensorBoard reads them alike. Each record's CRC-32C comes
from ``google-crc32c`` (C): TensorBoard's pure-Python fallback, used when
TensorFlow is not imported, takes about 65 ms per epoch's event on 2 cores,
three quarters of the writer's time.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import socket
import struct
import time
from collections.abc import Mapping

import google_crc32c
import numpy as np
from PIL import Image
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
from tensorboard.plugins.image import metadata as image_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata


def probe_tag(index: int, name: str | None = None) -> str:
    """The image tag of a probe, e.g. ``cam/probe_003_homer``.

    Example:
        >>> probe_tag(3, "Homer S.")
        'cam/probe_003_homer_s'
    """
    tag = f"cam/probe_{index:03d}"
    if name:
        slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
        tag += f"_{slug}" if slug else ""
    return tag


def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 ``[H, W, 3]`` image as a fast palette PNG.

    Example:
        >>> png_bytes(np.zeros((2, 2, 3), np.uint8))[:4]
        b'\\x89PNG'
    """
    pal = Image.fromarray(image).quantize(256, method=Image.Quantize.FASTOCTREE)
    buf = io.BytesIO()
    pal.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def masked_crc32c(data: bytes) -> int:
    """The masked CRC-32C that frames TFRecords (and so TensorBoard event files).

    Example:
        >>> masked_crc32c(b"")
        2726488792
    """
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def record_bytes(data: bytes) -> bytes:
    """``data`` framed as one TFRecord: length, its masked CRC, data, its masked CRC.

    Example:
        >>> len(record_bytes(b"abc"))
        19
    """
    header = struct.pack("<Q", len(data))
    return (
        header
        + struct.pack("<I", masked_crc32c(header))
        + data
        + struct.pack("<I", masked_crc32c(data))
    )


def _image_value(tag: str, image: np.ndarray) -> summary_pb2.Summary.Value:
    h, w = image.shape[:2]
    # The image plugin's layout: [width, height, png, ...], one image per tag.
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=3)]
        ),
        string_val=[str(w).encode(), str(h).encode(), png_bytes(image)],
    )
    meta = image_metadata.create_summary_metadata(display_name=tag, description="")
    return summary_pb2.Summary.Value(tag=tag, tensor=tensor, metadata=meta)


def _scalar_value(tag: str, value: float) -> summary_pb2.Summary.Value:
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(),
        float_val=[float(value)],
    )
    meta = scalar_metadata.create_summary_metadata(display_name=tag, description="")
    return summary_pb2.Summary.Value(tag=tag, tensor=tensor, metadata=meta)


class _EventFile:
    """One ``events.out.tfevents.*`` file, written with TensorBoard's record framing.

    TensorBoard's ``EventFileWriter`` goes through ``tensorboard.compat.tf``, which
    imports TensorFlow whenever it is installed: this stays on plain files.
    """

    _count = itertools.count()

    def __init__(self, logdir: str, make_dirs: bool = True) -> None:
        if make_dirs:
            os.makedirs(logdir, exist_ok=True)
        name = (
            f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
            f"{os.getpid()}.{next(self._count)}"
        )
        self.path = os.path.join(logdir, name)
        self._file = open(self.path, "wb")  # noqa: SIM115  (closed by close())
        self.write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def write(self, event: event_pb2.Event) -> None:
        self._file.write(record_bytes(event.SerializeToString()))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class SummaryWriter:
    """Writes frames and scalars at ``step = epoch`` into ``logdir``.

    No folder or event file exists until the first write; :meth:`close` is safe
    to call any number of times.

    Args:
        logdir: The run folder, e.g. ``LOG_DIR/cam``, beside Keras's ``train/``.
        make_dirs: Create ``logdir`` at the first write; ``False``: it must exist (a run
            record deleted during training is not recreated).

    Example:
        >>> w = SummaryWriter("runs/a/cam")  # doctest: +SKIP
        >>> w.write(0, {"cam/grid": frame}, {"cam/mean_drift": 0.0})  # doctest: +SKIP
        >>> w.close()  # doctest: +SKIP
    """

    def __init__(self, logdir: str | os.PathLike, make_dirs: bool = True) -> None:
        self.logdir = os.fspath(logdir)
        self.make_dirs = make_dirs
        self._writer: _EventFile | None = None

    @property
    def is_open(self) -> bool:
        """Whether an event file is open."""
        return self._writer is not None

    def write(
        self, step: int, images: Mapping[str, np.ndarray], scalars: Mapping[str, float]
    ) -> None:
        """Writes uint8 ``[H, W, 3]`` images and float scalars, then flushes."""
        values = [_image_value(tag, image) for tag, image in images.items()]
        values += [_scalar_value(tag, value) for tag, value in scalars.items()]
        if self._writer is None:
            self._writer = _EventFile(self.logdir, self.make_dirs)
        event = event_pb2.Event(
            wall_time=time.time(), step=int(step), summary=summary_pb2.Summary(value=values)
        )
        self._writer.write(event)
        self._writer.flush()  # a crash later loses nothing already shown

    def close(self) -> None:
        """Flushes and closes the event file."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
