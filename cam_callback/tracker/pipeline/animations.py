"""The live animation files: one GIF per probe and one of the grid, growing on disk by one
encoded block per kept epoch (:class:`~cam_callback.animate.GifStream`), finished to GIF
and MP4 at the end of ``fit`` in O(probes), whatever the number of epochs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from cam_callback import animate


class AnimationFiles:
    """The animation streams of ``n`` probes and their grid, under ``folder``.

    Args:
        folder: ``cam/animations`` of an existing record; made here (the streams never
            create it, so a record deleted during training is not recreated by them).
        n: The number of probes.
        formats: ``("gif",)``, ``("mp4",)`` or both.
        fps: Frames per second.
        max_frames: Most frames per finished file, ``None`` for all.

    Example:
        >>> files = AnimationFiles(folder, 4, ("gif",), 4.0, 100)  # doctest: +SKIP
        >>> files.append(0, frames, grid)  # doctest: +SKIP
        >>> files.finish()  # doctest: +SKIP
    """

    def __init__(
        self, folder: Path, n: int, formats: Sequence[str], fps: float, max_frames: int | None
    ) -> None:
        folder.mkdir(exist_ok=True)
        self.formats = tuple(formats)
        self.fps = fps
        self.max_frames = max_frames
        self.streams = [
            animate.GifStream(folder / f"probe_{i:03d}.gif", fps, make_dirs=False) for i in range(n)
        ]
        self.grid = animate.GifStream(folder / "grid.gif", fps, make_dirs=False)

    def append(self, epoch: int, frames: Sequence[np.ndarray], grid: np.ndarray) -> None:
        """Adds one epoch: a frame per probe, in probe order, and the grid."""
        for stream, frame in zip(self.streams, frames, strict=True):
            stream.append(epoch, frame)
        self.grid.append(epoch, grid)

    def ends_on(self, epoch: int) -> bool:
        """Whether the newest frame added is ``epoch``'s."""
        first = self.streams[0]
        return bool(first.index) and first.keys[-1] == epoch

    def finish(self) -> list[Path]:
        """Completes each file; returns the files written."""
        streams = [*self.streams, self.grid]
        written: list[Path] = []
        if "gif" in self.formats:
            written = [s.finish(self.max_frames) for s in streams]
        if "mp4" in self.formats:
            # MP4 is encoded here from the kept frames: at most max_frames per probe.
            gifs: list[Path | None] = list(written) if written else [None] * len(streams)
            with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                written += list(pool.map(self._to_mp4, streams, gifs))
        with contextlib.suppress(OSError):  # gone once empty; a concurrent run may still use it
            self.streams[0].part.parent.rmdir()
        return written

    def _to_mp4(self, stream: animate.GifStream, gif: Path | None) -> Path:
        frames = stream.frames() if gif is None else animate.read_gif(gif)
        keep = animate.sample_positions(len(frames), self.max_frames)
        path = animate.write_mp4(
            stream.path.with_suffix(".mp4"), [frames[p] for p in keep], self.fps
        )
        if gif is None:
            stream.discard()
        return path
