"""Grid layout and frame sampling: how big a grid's tiles are, and which epochs a file keeps."""

from __future__ import annotations

import math

from cam_callback import frames as F

GRID_SIDE = 96  # largest grid tile; tiles shrink so a grid of many probes stays bounded
GRID_MAX = 1024  # a grid is at most this wide and high (up to ~900 probes, then 16-px tiles)
MIN_GRID_SIDE = 16


def grid_side(n_probes: int) -> int:
    """Tile side for a grid of ``n_probes`` that keeps it within ``GRID_MAX`` pixels.

    Example:
        >>> grid_side(32), grid_side(512)
        (96, 36)
    """
    cols = math.ceil(math.sqrt(max(1, n_probes)))
    # A tile is side + 4 px of frame, and tiles are 4 px apart.
    return max(MIN_GRID_SIDE, min(GRID_SIDE, (GRID_MAX + 4) // cols - 8))


CAPTION_MIN_SIDE = 64  # smaller tiles carry no caption: it would not be legible


def grid_layout(n_probes: int) -> tuple[int, bool]:
    """Tile side and whether tiles carry captions, for a grid of ``n_probes`` under an epoch
    title that stays within ``GRID_MAX`` pixels both ways.

    Example:
        >>> grid_layout(12), grid_layout(512)
        ((96, True), (36, False))
    """
    side = grid_side(n_probes)  # bounded by the width
    cols = math.ceil(math.sqrt(max(1, n_probes)))
    rows = math.ceil(max(1, n_probes) / cols)
    budget = GRID_MAX + 4 - F.GRID_TITLE_H
    captioned = min(side, budget // rows - 8 - F.TILE_CAPTION_H)
    if captioned >= CAPTION_MIN_SIDE:
        return captioned, True
    return max(MIN_GRID_SIDE, min(side, budget // rows - 8)), False


def sample_positions(n: int, max_frames: int | None) -> list[int]:
    """Positions of at most ``max_frames`` of ``n`` frames, evenly spread, first and last kept.

    Example:
        >>> sample_positions(10, 4)
        [0, 3, 6, 9]
        >>> sample_positions(3, 100)
        [0, 1, 2]
    """
    if max_frames is None or n <= max_frames:
        return list(range(n))
    if max_frames < 2:
        raise ValueError(f"`max_frames` must be >= 2 or None. Received: max_frames={max_frames}")
    # Spacing is > 1 when n > max_frames, so rounding never repeats a position.
    return [int(round(k * (n - 1) / (max_frames - 1))) for k in range(max_frames)]
