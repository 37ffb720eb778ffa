"""Rank statistics for the sanity checks: average ranks and Spearman correlation, numpy only."""

from __future__ import annotations

import numpy as np


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..M within each row of ``[N, ...]`` (flattened), ties sharing their mean rank.

    As ``scipy.stats.rankdata(method="average")``, per row.

    Example:
        >>> average_ranks(np.array([[0.0, 0.0, 5.0, 1.0]]))
        array([[1.5, 1.5, 4. , 3. ]])
    """
    flat = np.asarray(values).reshape(len(values), -1)
    out = np.empty(flat.shape, np.float64)
    for i, row in enumerate(flat):
        order = np.argsort(row, kind="stable")
        ordered = row[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        ends = np.r_[starts[1:], len(row)]
        out[i, order] = np.repeat((starts + ends + 1) / 2, ends - starts)
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation per pair of maps ``[N, ...]`` (0 where one is constant).

    The Pearson correlation of :func:`average_ranks`, as ``scipy.stats.spearmanr``:
    tied values (a map's zeros) share a rank instead of being ordered by position.
    """
    ra, rb = average_ranks(a), average_ranks(b)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    den = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    return np.where(den == 0, 0.0, (ra * rb).sum(1) / np.where(den == 0, 1.0, den))
