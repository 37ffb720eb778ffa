"""Perturbation curves: pixel ranks, the blurred baseline, deletion/insertion and their AUC."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cam_callback._imageops import deletion_blur, resize_bilinear


def upsample_maps(maps: np.ndarray, h: int, w: int) -> np.ndarray:
    """``[N, h0, w0]`` to ``[N, h, w]``, bilinear with half-pixel centres, float64.

    Example:
        >>> upsample_maps(np.ones((1, 2, 2)), 4, 4).shape
        (1, 4, 4)
    """
    return resize_bilinear(np.asarray(maps, np.float64), h, w)


def blur(x: np.ndarray) -> np.ndarray:
    """The deletion baseline: the tracker's box blur (odd box of a quarter side, mirrored).

    Example:
        >>> float(blur(np.ones((1, 8, 8, 1), np.float32)).max())
        1.0
    """
    return deletion_blur(x)


def rank_pixels(maps: np.ndarray) -> np.ndarray:
    """Pixel indices ``[N, H*W]``, most relevant first; ties keep raster order."""
    return np.argsort(-maps.reshape(len(maps), -1), axis=1, kind="stable")


def perturbation_curve(
    x: np.ndarray,
    baseline: np.ndarray,
    order: np.ndarray,
    targets: np.ndarray,
    probs: Callable[[np.ndarray], np.ndarray],
    steps: int,
    mode: str,
) -> np.ndarray:
    """The target's probability at ``steps + 1`` fractions of pixels removed or revealed.

    ``"deletion"`` replaces the top ``k`` pixels of ``x`` by ``baseline``;
    ``"insertion"`` puts them from ``x`` into ``baseline``. Returns ``[N, steps + 1]``.
    """
    n, h, w = x.shape[:3]
    hw = h * w
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(hw)[None].repeat(n, 0), axis=1)
    curve = np.empty((n, steps + 1))
    for i in range(steps + 1):  # one step's copies at a time: memory of N images, not N * steps
        k = int(round(i / steps * hw))
        top = (rank < k).reshape(n, h, w, 1)
        batch = np.where(top, baseline, x) if mode == "deletion" else np.where(top, x, baseline)
        curve[:, i] = probs(batch)[np.arange(n), targets]
    return curve


def auc(curve: np.ndarray) -> np.ndarray:
    """Trapezoid area of ``[N, K]`` curves over x in [0, 1]."""
    dx = 1.0 / (curve.shape[1] - 1)
    return (curve[:, 1:] + curve[:, :-1]).sum(1) * dx / 2


def unit_maps(maps: np.ndarray) -> np.ndarray:
    """Each map scaled to [0, 1] by its max (negative parts cut): the Grad-CAM++ mask.

    Example:
        >>> unit_maps(np.array([[[-1.0, 2.0]]])).tolist()
        [[[0.0, 1.0]]]
    """
    pos = np.maximum(maps, 0.0)
    peak = pos.reshape(len(pos), -1).max(1)[:, None, None]
    return np.where(peak > 0, pos / np.where(peak > 0, peak, 1.0), 0.0)
