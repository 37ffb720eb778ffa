"""Numpy maths the context methods share: weighted sums, principal components, masks."""

from __future__ import annotations

import numpy as np

from cam_callback._imageops import resize_bilinear


def weighted(weights: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``sum_k w_k A_k``: ``[N, K]`` weights on ``[N, h, w, K]`` activations.

    Example:
        >>> weighted(np.ones((1, 2)), np.ones((1, 1, 1, 2))).tolist()
        [[[2.0]]]
    """
    return np.einsum("nk,nhwk->nhw", weights, a.astype(np.float64))


def principal_component(m: np.ndarray) -> np.ndarray:
    """First principal component of each ``[h*w, K]`` map projected back to ``[h, w]``.

    The rows are centred over positions (as pytorch-grad-cam's ``get_2d_projection``)
    and the sign is fixed so the projection correlates positively with the mean over
    channels: an SVD's sign is arbitrary. One batched SVD decomposes the whole batch.

    Example:
        >>> principal_component(np.zeros((2, 3, 3, 4))).shape
        (2, 3, 3)
    """
    n, h, w, k = m.shape
    flat = m.reshape(n, h * w, k).astype(np.float64)
    centred = flat - flat.mean(1, keepdims=True)
    live = np.any(centred != 0, axis=(1, 2))  # a constant map has no component: zeros
    out = np.zeros((n, h * w))
    if live.any():
        _, _, vt = np.linalg.svd(centred[live], full_matrices=False)
        proj = np.einsum("npk,nk->np", centred[live], vt[:, 0])
        mean = flat[live].mean(2)
        agree = np.sum(
            (proj - proj.mean(1, keepdims=True)) * (mean - mean.mean(1, keepdims=True)), 1
        )
        out[live] = np.where((agree < 0)[:, None], -proj, proj)
    return out.reshape(n, h, w)


def upsampled_masks(a: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """``([K, H, W] masks, bool [K] varies)``: channels upsampled and min-max scaled to [0, 1].

    A channel constant after upsampling has no mask (all zeros, ``varies`` False).

    Example:
        >>> upsampled_masks(np.ones((2, 2, 1)), 4, 4)[1].tolist()
        [False]
    """
    up = resize_bilinear(np.moveaxis(a, -1, 0).astype(np.float64), h, w)
    lo = up.min(axis=(1, 2), keepdims=True)
    span = up.max(axis=(1, 2), keepdims=True) - lo
    masks = np.where(span > 0, (up - lo) / np.where(span > 0, span, 1.0), 0.0)
    return masks, span.reshape(-1) > 0
