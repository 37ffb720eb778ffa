"""Fragility of a map (Ghorbani et al. 2019, "Interpretation of Neural Networks is Fragile").

A map is fragile when noise too small to change the prediction moves its most
attended cells elsewhere: the picture would then say more about the noise than about
the model. :func:`perturbed_copies` makes ``copies`` seeded copies of each probe once,
``x + noise * range(x) * s`` with ``s`` uniform random signs (Ghorbani's random sign
perturbation); each epoch the copies are explained for the same target, and

``fragility_i = 1 - mean_k |T(m_i) & T(m_ik)| / K``

over the copies ``k`` whose predicted class (argmax) is the probe's own, where ``T``
is the set of a map's top ``K = ceil(TOP_SHARE * cells)`` cells (ties in raster
order; cells at the map's minimum left out). 0: every copy's top cells are the
probe's; 1: none are. NaN when no copy kept the prediction (the noise was not small
enough), a map is not finite, or the probe's map is constant (an empty map). A probe is
flagged ``fragile`` when its last fragility is above :data:`FRAGILITY_THRESHOLD`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from cam_callback.imputation import cast_like
from cam_callback.metrics.epoch import TOP_SHARE, finite_rows

FRAGILITY_COPIES = 3
FRAGILITY_NOISE = 0.02  # of each image's value range: about 5/255 on uint8-like inputs
FRAGILITY_THRESHOLD = 0.5


def perturbed_copies(
    images: np.ndarray,
    copies: int = FRAGILITY_COPIES,
    noise: float = FRAGILITY_NOISE,
    seed: int = 0,
) -> np.ndarray:
    """``[copies * N, ...]`` seeded random-sign copies, copy-major (copy ``k`` of probe ``i``
    at ``k * N + i``).

    Example:
        >>> x = np.array([[0.0, 4.0], [2.0, 2.0]])
        >>> np.abs(perturbed_copies(x, 1, 0.5) - x).tolist()  # 0.5 * range (1 when flat)
        [[2.0, 2.0], [0.5, 0.5]]
    """
    x = np.asarray(images)
    xf = x.astype(np.float64)
    axes = tuple(range(1, x.ndim))
    spread = (xf.max(axis=axes) - xf.min(axis=axes)).reshape(-1, *([1] * (x.ndim - 1)))
    spread = np.where(spread > 0, spread, 1.0)  # a flat image still gets its noise
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(copies, *x.shape))
    moved = xf[None] + noise * spread[None] * signs
    return cast_like(moved.reshape(copies * len(x), *x.shape[1:]), x.dtype)


def top_cells(maps: np.ndarray) -> np.ndarray:
    """bool ``[N, cells]``: each map's top ``ceil(TOP_SHARE * cells)`` cells, ties in raster
    order, leaving out cells at the map's minimum (they hold no attention): a map with one hot
    cell has one top cell, a constant (empty) map none.

    Example:
        >>> top_cells(np.arange(10.0)[None]).nonzero()[1].tolist()
        [9]
    """
    flat = np.asarray(maps, np.float64).reshape(len(maps), -1)
    k = max(1, int(np.ceil(TOP_SHARE * flat.shape[1])))
    top = np.zeros(flat.shape, bool)
    np.put_along_axis(top, np.argsort(-flat, axis=1, kind="stable")[:, :k], True, axis=1)
    return top & (flat > flat.min(axis=1, keepdims=True))


def fragility(
    maps: np.ndarray,
    probabilities: np.ndarray,
    copy_maps: np.ndarray,
    copy_probabilities: np.ndarray,
) -> np.ndarray:
    """Fragility per probe, float32 ``[N]`` (see the module doc).

    Args:
        maps: ``[N, h, w]`` the probes' maps.
        probabilities: ``[N, C]`` on the probes.
        copy_maps: ``[K * N, h, w]`` the copies' maps, copy-major.
        copy_probabilities: ``[K * N, C]``.

    Example:
        >>> m = np.zeros((1, 1, 10)); m[0, 0, 0] = 1
        >>> moved = np.zeros((2, 1, 10)); moved[0, 0, 0] = moved[1, 0, 5] = 1
        >>> p = np.array([[0.9, 0.1]])
        >>> fragility(m, p, moved, np.array([[0.8, 0.2], [0.7, 0.3]])).tolist()
        [0.5]
    """
    n = len(maps)
    k = len(copy_maps) // max(n, 1)
    cells = top_cells(maps)
    share = top_cells(copy_maps).reshape(k, n, -1) & cells[None]
    share = share.sum(-1) / np.maximum(cells.sum(-1), 1)[None]
    pred = np.asarray(probabilities).argmax(-1)
    cp = np.asarray(copy_probabilities).reshape(k, n, -1)
    same = (cp.argmax(-1) == pred[None]) & finite_rows(cp.reshape(k * n, -1)).reshape(k, n)
    same &= finite_rows(np.asarray(copy_maps).reshape(k * n, -1)).reshape(k, n)
    used = same.sum(0)
    kept = np.where(same, share, 0.0).sum(0) / np.maximum(used, 1)
    # An empty (constant) map has no top cells to move: its fragility is not defined.
    defined = (used > 0) & finite_rows(maps) & finite_rows(probabilities) & cells.any(-1)
    out = np.where(defined, 1.0 - kept, np.nan)
    return out.astype(np.float32)


def fragile_flag(
    metrics: Mapping[str, np.ndarray], threshold: float = FRAGILITY_THRESHOLD
) -> dict[str, np.ndarray]:
    """``{"fragile": last fragility > threshold}``, or ``{}`` without fragility recorded.

    Example:
        >>> fragile_flag({"fragility": np.array([[0.8, 0.1]])})["fragile"].tolist()
        [True, False]
    """
    if "fragility" not in metrics or not len(metrics["fragility"]):
        return {}
    last = np.asarray(metrics["fragility"][-1], np.float64)
    return {"fragile": np.isfinite(last) & (np.nan_to_num(last) > threshold)}
