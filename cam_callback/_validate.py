"""Argument checks shared by compute_cams, CAMTracker and the finders: numpy only."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np


def image_batch(images: Any, name: str) -> np.ndarray:
    """``images`` as a non-empty numeric array with finite values.

    Raises:
        TypeError: Not an array, or not numeric.
        ValueError: Empty, or NaN/inf present; the message names ``name``.
    """
    try:
        x = np.asarray(images)
    except Exception as exc:
        raise TypeError(
            f"`{name}` must be an array of shape [N, H, W, C]. Received: {type(images).__name__}"
        ) from exc
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise TypeError(f"`{name}` must be numeric. Received: {name} with dtype {x.dtype}")
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(
            f"`{name}` is empty; at least one image is needed. Received: {name}.shape={x.shape}"
        )
    if np.issubdtype(x.dtype, np.floating):
        finite = np.isfinite(x).reshape(len(x), -1).all(axis=1)
        if not finite.all():
            raise ValueError(
                f"`{name}` contains NaN or inf values in {int((~finite).sum())} image(s); maps "
                f"of such inputs are meaningless. Received: {name} with non-finite values"
            )
    return x


def is_multi_hot(value: Any) -> bool:
    """True for ``[N, C]`` labels of 0s and 1s (C > 1) where a row has zero or several ones.

    Example:
        >>> is_multi_hot([[1, 0, 1], [0, 0, 0]]), is_multi_hot([[1, 0], [0, 1]])
        (True, False)
    """
    if value is None:
        return False
    y = np.asarray(value)
    return bool(
        y.ndim == 2 and y.shape[1] > 1 and y.size and np.isin(y, (0, 1)).all()
        and (y.sum(1) != 1).any()
    )  # fmt: skip


def class_ids(labels: Any, n: int, name: str) -> tuple[np.ndarray, int | None]:
    """Class ids from int ids ``[N]`` or one-hot ``[N, C]``, and the one-hot width.

    Raises:
        TypeError: Not integer ids.
        ValueError: Not one-hot, a count other than ``n``, or a negative id.
    """
    y = np.asarray(labels)
    width = None
    if y.ndim == 2:
        width = y.shape[1]
        if not np.all((y == 0) | (y == 1)) or not np.all(y.sum(1) == 1):
            raise ValueError(
                f"`{name}` of shape [N, C] must be one-hot (one 1 per row). "
                f"Received: shape {y.shape} with other values"
            )
        y = y.argmax(1)
    elif y.ndim == 1 and np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    elif y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise TypeError(
            f"`{name}` must be int class ids [N] or one-hot [N, C]. "
            f"Received: dtype {y.dtype}, shape {y.shape}"
        )
    if len(y) != n:
        raise ValueError(f"`{name}` has {len(y)} labels for {n} images. Received: shape {y.shape}")
    if (y < 0).any():
        raise ValueError(f"`{name}` must be >= 0. Received: {int(y.min())}")
    return y.astype(np.int64), width


def options(value: Any, cls: type, name: str) -> Any:
    """A tracker option given as a bool or a dict of a dataclass's fields: ``None`` for
    ``None`` or ``False``, the defaults for ``True``, else ``cls(**value)``. Ranges are the
    caller's to check.

    Raises:
        TypeError: Not a bool, ``None`` or a mapping.
        ValueError: An unknown key.

    Example:
        >>> @dataclasses.dataclass(frozen=True)
        ... class Opts:
        ...     copies: int = 3
        >>> options(True, Opts, "opts"), options({"copies": 2}, Opts, "opts").copies
        (Opts(copies=3), 2)
    """
    if value is None or value is False:
        return None
    if value is True:
        return cls()
    known = [f.name for f in dataclasses.fields(cls)]
    if not isinstance(value, Mapping):
        raise TypeError(
            f"`{name}` must be a bool or a dict with keys {', '.join(known)}. "
            f"Received: {name}={value!r}"
        )
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ValueError(
            f"`{name}` has unknown keys {unknown}; expected some of {sorted(known)}. "
            f"Received: {name}={dict(value)!r}"
        )
    return cls(**value)
