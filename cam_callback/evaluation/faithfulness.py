"""The tracker's deletion test: blur the map's top share minus blur a random share."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from cam_callback._imageops import deletion_blur, resize_bilinear
from cam_callback.core.engine import probabilities
from cam_callback.core.inspection import inspect, prepare_images


def deletion_faithfulness(
    model: keras.Model,
    images: Any,
    heatmaps: np.ndarray,
    targets: np.ndarray,
    *,
    output: int | str | None = None,
    share: float = 0.2,
    batch_size: int = 32,
    seed: int = 0,
    head: str = "auto",
) -> np.ndarray:
    """The deletion test: is a map telling the truth?

    Blurs the most-attended ``share`` of each image (the map upsampled to the
    image), and, apart, a random ``share`` (the same cells every call, by
    ``seed``). Returns ``drop_top - drop_random`` of the target's probability:
    positive when the map points at what the model uses.

    Example:
        >>> res = compute_cams(model, x)  # doctest: +SKIP
        >>> deletion_faithfulness(model, x, res.heatmaps, res.targets)  # doctest: +SKIP
        array([0.31, 0.02, ...], dtype=float32)
    """
    x = prepare_images(model, images)
    _, used, _, _ = inspect(model, x, None, False, output, "probability", head)
    n, h, w = x.shape[:3]
    up = resize_bilinear(np.asarray(heatmaps, np.float32), h, w)
    k = max(1, int(round(share * h * w)))
    flat = up.reshape(n, -1)
    top = np.zeros_like(flat, dtype=bool)
    np.put_along_axis(top, np.argsort(-flat, axis=1, kind="stable")[:, :k], True, axis=1)
    rng = np.random.default_rng(seed)
    rand = np.zeros_like(top)
    for i in range(n):
        rand[i, rng.choice(h * w, size=k, replace=False)] = True
    blurred = deletion_blur(x.astype(np.float32)).astype(x.dtype)
    masks = np.stack([top, rand]).reshape(2, n, h, w, 1)
    variants = np.where(masks, blurred[None], x[None]).reshape(2 * n, *x.shape[1:])
    probs = probabilities(model, used, np.concatenate([x, variants]), batch_size)
    picked = probs[np.arange(3 * n), np.tile(np.asarray(targets, np.int64), 3)]
    base, after_top, after_rand = picked[:n], picked[n : 2 * n], picked[2 * n :]
    return ((base - after_top) - (base - after_rand)).astype(np.float32)
