"""Grids: captioned overlay tiles framed by correctness, tiled grids under a title, and grids
of a layer's strongest channels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from cam_callback.frames.draw import BACKGROUND, OTHER, RIGHT, TEXT, WRONG, colorize, overlay
from cam_callback.frames.text import fit_text, put_text

TILE_CAPTION_H = 15
GRID_TITLE_H = 16


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


def grid(
    frames: Sequence[np.ndarray], cols: int | None = None, title: str | None = None
) -> np.ndarray:
    """Tiles equally sized frames into a grid, row by row, 4 px apart.

    Args:
        frames: uint8 ``[H, W, 3]`` images.
        cols: Columns; about the square root of the count by default.
        title: Written in a strip above the grid (the epoch, in animations).

    Example:
        >>> grid([np.zeros((2, 2, 3), np.uint8)] * 3, cols=2).shape
        (8, 8, 3)
    """
    if not frames:
        raise ValueError("`frames` is empty: nothing to tile. Received: frames=[]")
    n = len(frames)
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    h = max(f.shape[0] for f in frames)
    w = max(f.shape[1] for f in frames)
    gap = 4
    top = GRID_TITLE_H if title is not None else 0
    out = np.empty((top + rows * (h + gap) - gap, cols * (w + gap) - gap, 3), np.uint8)
    out[:] = BACKGROUND
    for i, f in enumerate(frames):
        r, c = divmod(i, cols)
        y, x = top + r * (h + gap), c * (w + gap)
        out[y : y + f.shape[0], x : x + f.shape[1]] = f
    if title is not None:  # drawn in its own strip, so nothing spills onto the tiles
        put_text(out[:top], 4, 1, title, TEXT, 13)
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
