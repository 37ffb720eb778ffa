"""Video output: the formats animations come in, MP4 through imageio-ffmpeg, and the
writer that picks GIF or MP4."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cam_callback.animate.gif import write_gif

FORMATS = ("gif", "mp4")


class MissingVideoExtra(ImportError):
    """MP4 needs imageio-ffmpeg, installed by ``pip install "cam-callback[video]"``."""


def normalize_formats(formats: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"gif"``, ``"mp4"``, a sequence of them, or ``None`` as a tuple; checks each.

    Example:
        >>> normalize_formats(("gif", "mp4"))
        ('gif', 'mp4')
    """
    if formats is None:
        return ()
    items = (formats,) if isinstance(formats, str) else tuple(formats)
    for item in items:
        if item not in FORMATS:
            raise ValueError(f"`animate` formats must be among {FORMATS}. Received: {formats!r}")
    return tuple(dict.fromkeys(items))


def write_mp4(path: str | os.PathLike, frames: Sequence[np.ndarray], fps: float = 4.0) -> Path:
    """Writes an H.264 MP4 (needs the ``[video]`` extra), atomically.

    Raises:
        MissingVideoExtra: imageio-ffmpeg is not installed.
    """
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError as exc:
        raise MissingVideoExtra(
            'MP4 output needs imageio-ffmpeg: pip install "cam-callback[video]"'
        ) from exc
    import imageio.v2 as imageio

    if not frames:
        raise ValueError("`frames` is empty: nothing to animate. Received: frames=[]")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    ph, pw = -h % 16, -w % 16  # H.264 wants multiples of 16: pad, never rescale
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.mp4")
    try:
        writer = imageio.get_writer(
            tmp, format="FFMPEG", fps=fps, codec="libx264", quality=8, macro_block_size=16
        )
        with writer:
            for f in frames:
                writer.append_data(np.pad(f, ((0, ph), (0, pw), (0, 0)), mode="edge"))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_animation(
    path: str | os.PathLike, frames: Sequence[np.ndarray], fmt: str, fps: float
) -> Path:
    """Writes ``frames`` as ``fmt`` (``"gif"`` or ``"mp4"``)."""
    return (write_gif if fmt == "gif" else write_mp4)(path, frames, fps)
