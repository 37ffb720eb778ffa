"""Which class each image's map explains: ``target=`` checked against the head."""

from __future__ import annotations

from typing import Any

import numpy as np


def prepare_targets(target: Any, n: int, n_classes: int) -> np.ndarray:
    """int32 ``[n]`` class ids from ``target``; -1 where the predicted class is asked.

    Example:
        >>> prepare_targets("predicted", 2, 3).tolist(), prepare_targets(1, 2, 3).tolist()
        ([-1, -1], [1, 1])
    """
    if isinstance(target, str):
        if target != "predicted":
            raise ValueError(
                '`target` must be "predicted", a class id or one class id per image. '
                f"Received: target={target!r}"
            )
        return np.full(n, -1, dtype=np.int32)
    if isinstance(target, bool):
        raise TypeError(
            f"`target` must be an int class id, not a bool. Received: target={target!r}"
        )
    arr = np.asarray(target)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(
            f"`target` must be integer class ids. Received: target with dtype {arr.dtype}"
        )
    if arr.ndim == 0:
        arr = np.full(n, int(arr))
    elif arr.shape != (n,):
        raise ValueError(
            f"`target` must hold one class id per image: expected shape ({n},). "
            f"Received: target.shape={arr.shape}"
        )
    bad = arr[(arr < 0) | (arr >= n_classes)]
    if bad.size:
        raise ValueError(
            f"`target` class {int(bad[0])} is outside the model's {n_classes} classes "
            f"(0..{n_classes - 1}). Received: target={target!r}"
        )
    return arr.astype(np.int32)
