"""ROAD (Remove And Debias, Rong et al. 2022): the target's probability as the top pixels are
removed and filled by noisy linear imputation (:func:`cam_callback.imputation.impute`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cam_callback.evaluation.curves import rank_pixels
from cam_callback.evaluation.results import ROAD_FRACTIONS
from cam_callback.imputation import impute

__all__ = ["impute", "road"]


def road(
    x: np.ndarray,
    maps: np.ndarray,
    targets: np.ndarray,
    probs: Callable[[np.ndarray], np.ndarray],
    *,
    seed: int = 0,
) -> np.ndarray:
    """ROAD, most-relevant first: mean target probability over :data:`ROAD_FRACTIONS`."""
    n, h, w = x.shape[:3]
    order = rank_pixels(maps)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(h * w)[None].repeat(n, 0), axis=1)
    total = np.zeros(n)
    for i, f in enumerate(ROAD_FRACTIONS):  # one fraction's copies at a time
        filled = impute(x, (rank < int(round(f * h * w))).reshape(n, h, w), seed=seed + i)
        total += probs(filled)[np.arange(n), targets]
    return total / len(ROAD_FRACTIONS)
