"""Filling removed pixels from their surroundings: ROAD's noisy linear imputation (a leaf).

Rong et al. 2022 (Remove And Debias): each removed pixel is the weighted mean of its 8
neighbours, so a removed region is filled from what surrounds it and leaks no shape of
its own. Used by ROAD (:mod:`cam_callback.evaluation.road`) and by the tracker's
interventions (:mod:`cam_callback.metrics.interventions`): numpy, and SciPy on use.
"""

from __future__ import annotations

import numpy as np

ROAD_NOISE = 0.01
# How ROAD's noise is scaled: "range" (the default) multiplies it by each image's value range;
# "absolute" adds it as it is, in the input's own units, as ROAD's code does. See impute().
ROAD_NOISE_SCALE = "range"
NOISE_SCALES = ("range", "absolute")
# Rong et al. 2022 (and their road_evaluation code): (row, column) offset and weight.
ROAD_NEIGHBOURS: tuple[tuple[int, int, float], ...] = (
    (-1, -1, 1 / 12), (-1, 0, 1 / 6), (-1, 1, 1 / 12), (0, -1, 1 / 6),
    (0, 1, 1 / 6), (1, -1, 1 / 12), (1, 0, 1 / 6), (1, 1, 1 / 12),
)  # fmt: skip


def cast_like(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``values`` as ``dtype``: integer images rounded and clipped to the dtype's range, so
    a fill or a noise step never wraps around (uint8 -1 would become 255).

    Example:
        >>> cast_like(np.array([-3.2, 127.6, 300.0]), np.dtype(np.uint8)).tolist()
        [0, 128, 255]
    """
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return np.asarray(values).astype(dtype)


def impute(
    x: np.ndarray,
    removed: np.ndarray,
    *,
    seed: int = 0,
    noise: float = ROAD_NOISE,
    noise_scale: str = ROAD_NOISE_SCALE,
) -> np.ndarray:
    """ROAD's noisy linear imputation of the ``removed`` pixels (bool ``[N, H, W]``).

    Each removed pixel is the weighted mean of its 8 neighbours, weights
    :data:`ROAD_NEIGHBOURS` (1/6 edge-adjacent, 1/12 diagonal; neighbours
    outside the image left out), kept pixels fixed: one sparse linear system per
    mask, every image with that mask and every channel a right-hand side, solved
    exactly by SciPy's SuperLU (the fill of a linear ramp is the ramp). Then seeded
    Gaussian noise on the removed pixels. Kept pixels are untouched.

    The noise's standard deviation (``noise_scale``):

    - ``"range"`` (the default): ``noise`` times the image's value range (max - min
      over its pixels and channels). On images in [0, 1] this is exactly ROAD's
      noise; it scales with the input, so it does not vanish on 0-255 inputs (Keras
      models that carry their own preprocessing), where an absolute 0.01 is a
      rounding error. On ImageNet-standardised inputs (a range of about 4.8) it is
      4-5x ROAD's.
    - ``"absolute"``: ``noise`` itself, in the input's units, as ROAD's own code
      (``NoisyLinearImputer``, and pytorch-grad-cam's copy of it) adds it to the
      standardised images it is given. Use it to compare with their numbers.

    Args:
        x: ``[N, H, W, C]`` images.
        removed: bool ``[N, H, W]`` the pixels to fill.
        seed: Seeds the noise.
        noise: The noise's standard deviation, scaled as ``noise_scale`` says.
        noise_scale: ``"range"`` or ``"absolute"``, see above.

    Raises:
        ValueError: An image with every pixel removed (nothing to impute from), or an
            unknown ``noise_scale``.
        ImportError: SciPy is not installed.

    Example:
        >>> out = impute(np.ones((1, 4, 4, 1)), np.eye(4, dtype=bool)[None], noise=0.0)
        >>> bool(np.allclose(out, 1))
        True
        >>> x = np.zeros((1, 8, 8, 1)); x[0, 0, 0] = 255.0  # the range is 255
        >>> hole = np.zeros((1, 8, 8), bool); hole[0, 4:, 4:] = True  # filled with 0 + noise
        >>> ranged, absolute = (impute(x, hole, noise_scale=s) for s in ("range", "absolute"))
        >>> bool(np.allclose(ranged[hole], 255 * absolute[hole]))  # the same draws
        True
    """
    if noise_scale not in NOISE_SCALES:
        raise ValueError(
            f"`noise_scale` must be one of {NOISE_SCALES}. Received: noise_scale={noise_scale!r}"
        )
    try:  # an optional dependency: evaluation.py itself needs only numpy
        from scipy.sparse import coo_matrix
        from scipy.sparse.linalg import splu
    except ImportError as exc:
        raise ImportError("ROAD's imputation needs SciPy: pip install scipy") from exc
    xf = x.astype(np.float64)
    n, h, w, c = xf.shape
    removed = np.asarray(removed, bool).reshape(n, h * w)
    out = xf.reshape(n, h * w, c).copy()
    groups: dict[bytes, list[int]] = {}  # images sharing a mask share one factorisation
    for i in range(n):
        groups.setdefault(removed[i].tobytes(), []).append(i)
    for members in groups.values():
        i = members[0]
        idx = np.flatnonzero(removed[i])
        if len(idx) == h * w:
            raise ValueError(
                f"`removed` removes every pixel of image {i}; the imputation needs some kept "
                f"pixels. Received: removed[{i}].all() == True"
            )
        if not len(idx):
            continue
        images = xf[members].reshape(len(members), h * w, c)
        var = np.full(h * w, -1)
        var[idx] = np.arange(len(idx))  # pixel -> unknown's index
        row, col = np.divmod(idx, w)
        diag, rhs = np.zeros(len(idx)), np.zeros((len(idx), len(members), c))
        rows, cols, vals = [np.arange(len(idx))], [np.arange(len(idx))], []
        for dr, dc, weight in ROAD_NEIGHBOURS:
            r, q = row + dr, col + dc
            inside = (r >= 0) & (r < h) & (q >= 0) & (q < w)
            eq, nb = np.flatnonzero(inside), (r * w + q)[inside]
            diag[eq] += weight
            unknown = removed[i, nb]
            rows.append(eq[unknown])
            cols.append(var[nb[unknown]])
            vals.append(np.full(int(unknown.sum()), -weight))
            rhs[eq[~unknown]] += weight * images[:, nb[~unknown]].transpose(1, 0, 2)
        a = coo_matrix(
            (np.concatenate([diag, *vals]), (np.concatenate(rows), np.concatenate(cols))),
            shape=(len(idx), len(idx)),
        ).tocsc()
        solved = splu(a).solve(rhs.reshape(len(idx), -1)).reshape(rhs.shape)
        out[np.ix_(np.asarray(members), idx)] = solved.transpose(1, 0, 2)
    spread = (xf.max(axis=(1, 2, 3)) - xf.min(axis=(1, 2, 3)))[:, None, None, None]
    if noise_scale == "absolute":
        spread = np.ones_like(spread)
    jitter = np.random.default_rng(seed).normal(0.0, noise, size=x.shape) * spread
    filled = out.reshape(x.shape) + jitter
    return cast_like(np.where(removed.reshape(n, h, w, 1), filled, xf), x.dtype)
