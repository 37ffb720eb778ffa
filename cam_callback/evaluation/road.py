"""ROAD (Remove And Debias, Rong et al. 2022): the target's probability as the top pixels are
removed and filled by noisy linear imputation (:func:`cam_callback.imputation.impute`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cam_callback.evaluation.curves import rank_pixels
from cam_callback.evaluation.results import ROAD_FRACTIONS
from cam_callback.imputation import ROAD_NOISE_SCALE, impute

__all__ = ["impute", "road"]


def road(
    x: np.ndarray,
    maps: np.ndarray,
    targets: np.ndarray,
    probs: Callable[[np.ndarray], np.ndarray],
    *,
    seed: int = 0,
    noise_scale: str = ROAD_NOISE_SCALE,
) -> np.ndarray:
    """ROAD, most-relevant first: mean target probability over :data:`ROAD_FRACTIONS`.

    Args:
        x: ``[N, H, W, C]`` images in the model's input space.
        maps: ``[N, H, W]`` maps at the images' size.
        targets: int ``[N]`` the explained classes.
        probs: ``images -> probabilities [N, C]``.
        seed: Seeds the noise (``seed + i`` at the ``i``-th fraction).
        noise_scale: ``"range"`` (the default: 0.01 times each image's value range) or
            ``"absolute"`` (0.01 in the input's units, as ROAD's own code on standardised
            images); see :func:`cam_callback.imputation.impute`.

    Example:
        >>> x = np.random.default_rng(0).random((2, 6, 6, 1))
        >>> flat = lambda images: np.tile([0.25, 0.75], (len(images), 1))
        >>> road(x, x[..., 0], np.array([1, 1]), flat).tolist()  # a model that reads nothing
        [0.75, 0.75]
    """
    n, h, w = x.shape[:3]
    order = rank_pixels(maps)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(h * w)[None].repeat(n, 0), axis=1)
    total = np.zeros(n)
    for i, f in enumerate(ROAD_FRACTIONS):  # one fraction's copies at a time
        removed = (rank < int(round(f * h * w))).reshape(n, h, w)
        filled = impute(x, removed, seed=seed + i, noise_scale=noise_scale)
        total += probs(filled)[np.arange(n), targets]
    return total / len(ROAD_FRACTIONS)
