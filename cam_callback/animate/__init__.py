"""From the run record to GIF/MP4 animations: one per probe, and a grid of all.

The package is split by job: :mod:`~cam_callback.animate.gif` encodes and
streams GIFs, :mod:`~cam_callback.animate.video` writes MP4 and picks the
format, :mod:`~cam_callback.animate.layout` sizes grids and samples epochs,
:mod:`~cam_callback.animate.sequences` turns a run into frames,
:mod:`~cam_callback.animate.render` renders a record's files and
:mod:`~cam_callback.animate.compare` puts two runs side by side. Every name is
re-exported here, so ``cam_callback.animate.render_animations`` keeps working.

Example:
    >>> from cam_callback.animate import render_animations
    >>> render_animations("runs/a", formats="gif")  # doctest: +SKIP
"""

from cam_callback.animate.compare import compare_animations, side_by_side
from cam_callback.animate.gif import (
    GIF_TRAILER,
    PARTIAL,
    GifStream,
    delay_ms,
    gif_bytes,
    gif_frame,
    gif_header,
    read_gif,
    write_gif,
)
from cam_callback.animate.layout import (
    CAPTION_MIN_SIDE,
    GRID_MAX,
    GRID_SIDE,
    MIN_GRID_SIDE,
    grid_layout,
    grid_side,
    sample_positions,
)
from cam_callback.animate.render import PROCESS_MIN_JOBS, render_animations
from cam_callback.animate.sequences import (
    grid_frames,
    grid_tile,
    probe_frames,
    probe_ids,
    tile_caption,
)
from cam_callback.animate.video import (
    FORMATS,
    MissingVideoExtra,
    normalize_formats,
    write_animation,
    write_mp4,
)

__all__ = [
    "CAPTION_MIN_SIDE",
    "FORMATS",
    "GIF_TRAILER",
    "GRID_MAX",
    "GRID_SIDE",
    "MIN_GRID_SIDE",
    "PARTIAL",
    "PROCESS_MIN_JOBS",
    "GifStream",
    "MissingVideoExtra",
    "compare_animations",
    "delay_ms",
    "gif_bytes",
    "gif_frame",
    "gif_header",
    "grid_frames",
    "grid_layout",
    "grid_side",
    "grid_tile",
    "normalize_formats",
    "probe_frames",
    "probe_ids",
    "read_gif",
    "render_animations",
    "sample_positions",
    "side_by_side",
    "tile_caption",
    "write_animation",
    "write_gif",
    "write_mp4",
]
