"""Pure numpy/Pillow drawing of the per-epoch frame: no TensorFlow, no I/O.

A frame is ``[caption]`` over ``[display image | CAM overlay | top-k bars]``.
Small probes are scaled up and large ones down so the frame stays legible
from 32-px to 512-px inputs. The package is split by job:
:mod:`~cam_callback.frames.draw` (palette, colours, overlays),
:mod:`~cam_callback.frames.text` (font and text),
:mod:`~cam_callback.frames.renderer` (:class:`FrameRenderer`) and
:mod:`~cam_callback.frames.grids` (tiles and grids). Every name is re-exported
here, so ``cam_callback.frames.activation_grid`` keeps working.

Example:
    >>> from cam_callback.frames import colorize
    >>> colorize(np.ones((2, 2))).shape  # doctest: +SKIP
    (2, 2, 3)
"""

from cam_callback.frames.draw import (
    BACKGROUND,
    BAR_EDGE,
    CAPTION_H,
    MAX_SIDE,
    MAX_WIDTH,
    MIN_SIDE,
    MIN_TEXT,
    MUTED,
    OTHER,
    PANEL_W,
    RIGHT,
    TEXT,
    WRONG,
    caption_height,
    colorize,
    desaturate,
    display_size,
    epoch_label,
    overlay,
    panel_width,
    text_size,
    to_display,
    turbo_lut,
    upsample,
)
from cam_callback.frames.grids import (
    GRID_TITLE_H,
    TILE_CAPTION_H,
    TILE_LEGEND,
    activation_grid,
    draw_legend,
    grid,
    legend_width,
    tile,
)
from cam_callback.frames.renderer import FrameRenderer
from cam_callback.frames.text import (
    MAX_NAME,
    clean_name,
    fit_text,
    font,
    put_text,
    target_rule,
    text_mask,
)

__all__ = [
    "BACKGROUND",
    "BAR_EDGE",
    "CAPTION_H",
    "GRID_TITLE_H",
    "MAX_NAME",
    "MAX_SIDE",
    "MAX_WIDTH",
    "MIN_SIDE",
    "MIN_TEXT",
    "MUTED",
    "OTHER",
    "PANEL_W",
    "RIGHT",
    "TEXT",
    "TILE_CAPTION_H",
    "TILE_LEGEND",
    "WRONG",
    "FrameRenderer",
    "activation_grid",
    "caption_height",
    "clean_name",
    "colorize",
    "desaturate",
    "draw_legend",
    "display_size",
    "epoch_label",
    "fit_text",
    "font",
    "grid",
    "legend_width",
    "overlay",
    "panel_width",
    "put_text",
    "target_rule",
    "text_mask",
    "text_size",
    "tile",
    "to_display",
    "turbo_lut",
    "upsample",
]
