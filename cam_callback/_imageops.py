"""Pure numpy image operations shared by the tracker's metrics and ``evaluate``.

One copy of each, so the per-epoch faithfulness number and the evaluation table
perturb and upsample images the same way. No Keras, no I/O.
"""

from __future__ import annotations

import numpy as np


def resize_bilinear(maps: np.ndarray, h: int, w: int) -> np.ndarray:
    """``[N, h0, w0]`` to ``[N, h, w]``, bilinear with half-pixel centres (as tf.image.resize).

    Computes in the dtype of ``maps`` (pass float64 for a reference-grade result).

    Example:
        >>> resize_bilinear(np.ones((1, 2, 2), np.float32), 4, 4).shape
        (1, 4, 4)
    """
    if maps.shape[1:] == (h, w):
        return maps.copy()

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), (src - lo).astype(maps.dtype)

    y0, y1, fy = axis(maps.shape[1], h)
    x0, x1, fx = axis(maps.shape[2], w)
    rows = maps[:, y0] * (1 - fy)[None, :, None] + maps[:, y1] * fy[None, :, None]
    return rows[:, :, x0] * (1 - fx) + rows[:, :, x1] * fx


def deletion_blur(x: np.ndarray) -> np.ndarray:
    """The deletion baseline: a box blur of an odd quarter of the shorter side, mirrored edges.

    A strong blur removes the evidence in a region while keeping its mean colour, so
    the model sees no sharp hole. ``[N, H, W, C]`` in, the same dtype out.

    Example:
        >>> float(deletion_blur(np.ones((1, 8, 8, 1), np.float32)).max())
        1.0
    """
    h, w = x.shape[1:3]
    size = max(3, (min(h, w) // 4) | 1)
    r = size // 2
    padded = np.pad(x.astype(np.float64), [(0, 0), (r, r), (r, r), (0, 0)], mode="symmetric")
    c = np.pad(np.cumsum(np.cumsum(padded, axis=1), axis=2), [(0, 0), (1, 0), (1, 0), (0, 0)])
    total = (
        c[:, size : size + h, size : size + w]
        - c[:, :h, size : size + w]
        - c[:, size : size + h, :w]
        + c[:, :h, :w]
    )
    return (total / (size * size)).astype(x.dtype)
