"""The live TensorBoard view: a lazily created writer in the record's own run folder.

Images are PNG-encoded here with Pillow, as 256-colour palette images at zlib
level 1, and written with the image plugin's metadata: what ``tf.summary.image``
writes, at a fifth of its cost on a CPU that is also training (measured in
``benchmarks/bench_tracker.py``).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping

import numpy as np
from PIL import Image


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


class SummaryWriter:
    """Writes frames and scalars at ``step = epoch`` into ``logdir``.

    No folder or event file exists until the first write; :meth:`close` is safe
    to call any number of times.

    Args:
        logdir: The run folder, e.g. ``LOG_DIR/cam``, beside Keras's ``train/``.

    Example:
        >>> w = SummaryWriter("runs/a/cam")  # doctest: +SKIP
        >>> w.write(0, {"cam/grid": frame}, {"cam/mean_drift": 0.0})  # doctest: +SKIP
        >>> w.close()  # doctest: +SKIP
    """

    def __init__(self, logdir: str | os.PathLike) -> None:
        self.logdir = os.fspath(logdir)
        self._writer = None

    @property
    def is_open(self) -> bool:
        """Whether an event file is open."""
        return self._writer is not None

    def write(
        self, step: int, images: Mapping[str, np.ndarray], scalars: Mapping[str, float]
    ) -> None:
        """Writes uint8 ``[H, W, 3]`` images and float scalars, then flushes."""
        import tensorflow as tf
        from tensorboard.plugins.image import metadata as image_metadata

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.logdir)
        with self._writer.as_default(step=step):
            for tag, image in images.items():
                h, w = image.shape[:2]
                # The image plugin's layout: [width, height, png, ...], one image per tag.
                tensor = tf.constant([str(w).encode(), str(h).encode(), png_bytes(image)])
                meta = image_metadata.create_summary_metadata(display_name=tag, description="")
                # Like tf.summary.image, this returns False when no writer is active.
                if not tf.summary.write(tag, tensor, step=step, metadata=meta):
                    raise RuntimeError(f"TensorBoard wrote nothing for tag {tag!r}")
            for tag, value in scalars.items():
                if not tf.summary.scalar(tag, value, step=step):
                    raise RuntimeError(f"TensorBoard wrote nothing for tag {tag!r}")
        self._writer.flush()  # a crash later loses nothing already shown

    def close(self) -> None:
        """Flushes and closes the event file."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
