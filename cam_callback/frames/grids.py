"""Grids: captioned overlay tiles framed by correctness, tiled grids under a title, and grids
of a layer's strongest channels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from cam_callback.frames.draw import BACKGROUND, OTHER, RIGHT, TEXT, WRONG, colorize, overlay
from cam_callback.frames.text import fit_text, font, put_text

TILE_CAPTION_H = 15
GRID_TITLE_H = 16
LEGEND_SIZE = 11  # font size of a grid's legend
TITLE_ROOM = "before training"  # the longest epoch title a grid with a legend makes room for
# What a tile's border means (see :func:`tile`): the legend of a grid of labelled probes.
TILE_LEGEND = (("top-1 right", RIGHT), ("top-1 wrong", WRONG))


def tile(
    image: np.ndarray,
    heatmap: np.ndarray,
    probabilities: np.ndarray,
    label: int | None,
    alpha: float = 0.5,
    side: int = 96,
    caption: str | None = None,
) -> np.ndarray:
    """A small overlay for grids, framed green when top-1 is right, red when wrong.

    Args:
        caption: Written in a strip under the overlay (the probe id and its true
            class), cut to fit.

    Example:
        >>> t = tile(np.zeros((8, 8, 3), np.uint8), np.ones((2, 2)), np.array([0.9, 0.1]), 0)
        >>> t.shape, t[0, 0].tolist()
        ((100, 100, 3), [46, 160, 67])
    """
    scale = side / max(image.shape[:2])
    w = max(1, round(image.shape[1] * scale))
    h = max(1, round(image.shape[0] * scale))
    small = np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))
    strip = TILE_CAPTION_H if caption is not None else 0
    out = np.empty((side + 4 + strip, side + 4, 3), np.uint8)
    if label is None:
        out[:] = OTHER
    else:
        finite = bool(np.isfinite(probabilities).all())  # argmax(NaN) is 0, never right
        out[:] = RIGHT if finite and int(np.argmax(probabilities)) == label else WRONG
    out[2 : 2 + h, 2 : 2 + w] = overlay(small, heatmap, alpha)
    if caption is not None:
        out[side + 4 :] = BACKGROUND
        put_text(out, 2, side + 5, fit_text(caption, 11, side), TEXT, 11)
    return out


def legend_width(entries: Sequence[tuple[str, tuple[int, int, int]]]) -> int:
    """Pixels a legend takes: per entry a 9-px swatch, 3 px, its text and 10 px after.

    Example:
        >>> legend_width(TILE_LEGEND) > 100
        True
    """
    face = font(LEGEND_SIZE)
    return sum(9 + 3 + int(np.ceil(face.getlength(text))) + 10 for text, _ in entries) - 10


def draw_legend(
    strip: np.ndarray, x: int, entries: Sequence[tuple[str, tuple[int, int, int]]]
) -> int:
    """Draws ``entries`` (text, colour) as swatch-and-text pairs into ``strip`` (a
    ``GRID_TITLE_H``-high strip) from ``x``; returns the x after the last one."""
    for text, colour in entries:
        strip[4:13, x : x + 9] = colour
        x = put_text(strip, x + 12, 2, text, TEXT, LEGEND_SIZE) + 10
    return x - 10


def grid(
    frames: Sequence[np.ndarray],
    cols: int | None = None,
    title: str | None = None,
    legend: Sequence[tuple[str, tuple[int, int, int]]] | None = None,
) -> np.ndarray:
    """Tiles equally sized frames into a grid, row by row, 4 px apart.

    Args:
        frames: uint8 ``[H, W, 3]`` images.
        cols: Columns; about the square root of the count by default.
        title: Written in a strip above the grid (the epoch, in animations).
        legend: ``(text, colour)`` pairs drawn right-aligned in the title strip, such
            as :data:`TILE_LEGEND` for tiles framed by :func:`tile`. A grid too
            narrow for the legend and a title as long as ``TITLE_ROOM`` is widened to
            hold both, so every epoch of an animation has the same width.

    Example:
        >>> grid([np.zeros((2, 2, 3), np.uint8)] * 3, cols=2).shape
        (8, 8, 3)
        >>> grid([np.zeros((2, 2, 3), np.uint8)], title="epoch 1", legend=TILE_LEGEND).shape[0]
        18
    """
    if not frames:
        raise ValueError("`frames` is empty: nothing to tile. Received: frames=[]")
    n = len(frames)
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    h = max(f.shape[0] for f in frames)
    w = max(f.shape[1] for f in frames)
    gap = 4
    top = GRID_TITLE_H if title is not None or legend else 0
    width = cols * (w + gap) - gap
    key_w = legend_width(legend) if legend else 0
    if legend:  # room for the longest epoch title, so every frame of an animation is as wide
        title_w = int(np.ceil(font(13).getlength(max(title or "", TITLE_ROOM, key=len))))
        width = max(width, 4 + title_w + 16 + key_w + 4)
    out = np.empty((top + rows * (h + gap) - gap, width, 3), np.uint8)
    out[:] = BACKGROUND
    for i, f in enumerate(frames):
        r, c = divmod(i, cols)
        y, x = top + r * (h + gap), c * (w + gap)
        out[y : y + f.shape[0], x : x + f.shape[1]] = f
    if title is not None:  # drawn in its own strip, so nothing spills onto the tiles
        put_text(out[:top], 4, 1, title, TEXT, 13)
    if legend:
        draw_legend(out[:top], width - 4 - key_w, legend)
    return out


def activation_grid(activations: np.ndarray, top: int = 16, side: int = 64) -> np.ndarray:
    """Tiles the strongest channels of one image's ``[h, w, C]`` activations.

    Channels are ranked by mean activation; each is scaled to its own max and
    drawn with turbo, so a user sees where feature extraction fires, or fails to.

    Args:
        activations: One image's layer output, ``[h, w, C]``.
        top: How many channels to show.
        side: Tile size in pixels.

    Returns:
        uint8 RGB grid, strongest channel first.

    Example:
        >>> activation_grid(np.random.rand(6, 6, 32), top=4).shape
        (132, 132, 3)
    """
    a = np.asarray(activations, dtype=np.float32)
    if a.ndim != 3:
        raise ValueError(f"`activations` must be [h, w, channels]. Received: shape {a.shape}")
    strength = a.reshape(-1, a.shape[-1]).mean(0)
    order = np.argsort(-strength, kind="stable")[:top]
    tiles = []
    for c in order:
        ch = np.maximum(a[..., c], 0)
        peak = ch.max()
        tiles.append(colorize(ch / peak if peak > 0 else ch, (side, side)))
    return grid(tiles)
