"""The live TensorBoard view: a lazily created writer in the record's own run folder."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import numpy as np


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

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.logdir)
        with self._writer.as_default(step=step):
            for tag, image in images.items():
                # max_outputs is explicit: images beyond it are dropped silently.
                if not tf.summary.image(tag, image[None], step=step, max_outputs=1):
                    raise RuntimeError(f"tf.summary.image wrote nothing for tag {tag!r}")
            for tag, value in scalars.items():
                tf.summary.scalar(tag, value, step=step)
        self._writer.flush()  # a crash later loses nothing already shown

    def close(self) -> None:
        """Flushes and closes the event file."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
