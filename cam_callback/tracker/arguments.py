"""``CAMTracker``'s arguments, checked in ``__init__``: numpy only, no Keras.

Every check raises a ``ValueError``/``TypeError`` naming the argument, the value
received and what was expected. numpy scalars (``np.float32(0.5)``,
``np.int64(2)``) are accepted wherever a Python number is, and returned as
Python numbers.

How probes are drawn (:func:`display_copy`): the record stores a uint8 RGB
display copy of the probes, whatever their channel count. 1 channel is grey,
3 are RGB, 4 are RGB with the fourth channel (alpha, or near-infrared) left out;
2 or 5 and more channels (multispectral) show their first channel in grey. Each
image is min-max rescaled on its own. Pass ``display_images`` to draw
something else.
"""

from __future__ import annotations

import numbers
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from cam_callback import _validate, animate, frames

_INT64_MAX = np.iinfo(np.int64).max


def positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as an ``int >= minimum``; numpy integers are accepted.

    Raises:
        ValueError: Not an integer (a bool is not), or below ``minimum``.

    Example:
        >>> positive_int(np.int64(2), "every_n_epochs")
        2
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")
    if value < minimum:
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"`{name}` must be {what}. Received: {name}={value!r}")
    return int(value)


def unit_float(value: Any, name: str) -> float:
    """``value`` as a float in ``[0, 1]``; numpy floats and ints are accepted.

    Raises:
        ValueError: Not a real number, NaN, or outside ``[0, 1]``.

    Example:
        >>> unit_float(np.float32(0.5), "alpha")
        0.5
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"`{name}` must be a number in [0, 1]. Received: {name}={value!r}")
    if not 0.0 <= float(value) <= 1.0:  # NaN fails both comparisons
        raise ValueError(f"`{name}` must be in [0, 1]. Received: {name}={value!r}")
    return float(value)


def flag(value: Any, name: str) -> bool:
    """``value`` as a bool; ``np.bool_`` is accepted.

    Example:
        >>> flag(np.bool_(True), "tensorboard")
        True
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be a bool. Received: {name}={value!r}")
    return bool(value)


def log_dir(value: Any) -> Path:
    """The run's log folder; an empty path is refused (it would mean ``./cam``).

    Example:
        >>> log_dir("runs/a").as_posix()
        'runs/a'
    """
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(
            f"`log_dir` must be a path. Received: log_dir={value!r} of type {type(value).__name__}"
        )
    if os.fspath(value) in ("", b""):
        raise ValueError(
            "`log_dir` is empty; name the run's folder (e.g. \"runs/a\"), as for Keras's "
            f"TensorBoard callback. Received: log_dir={value!r}"
        )
    return Path(os.fsdecode(value))


def writable_log_dir(path: Path) -> None:
    """Checks before training that ``path`` is a folder, or can be made, and is writable.

    Raises:
        ValueError: ``path`` is a file, or it (or its nearest existing parent) is read-only.
    """
    if path.exists() and not path.is_dir():
        raise ValueError(
            f"`log_dir` {str(path)!r} exists and is a file; a folder is needed. "
            f"Received: log_dir={str(path)!r}"
        )
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(
            f"`log_dir` {str(path)!r} is not writable ({probe} is read-only). "
            f"Received: log_dir={str(path)!r}"
        )


def probes(images: Any) -> np.ndarray:
    """The probes as a non-empty ``[N, H, W, C]`` numeric batch, any channel count."""
    x = _validate.image_batch(images, "probe_images")
    if x.ndim != 4:
        raise ValueError(
            f"`probe_images` must be a non-empty [N, H, W, C] batch. Received: shape {x.shape}"
        )
    return x


def is_multi_label(value: Any) -> bool:
    """Whether ``probe_labels`` are multi-hot, so the classes are independent: where the
    model's output and loss do not say how to read it (``check.head_assumed``), the
    tracker reads sigmoids rather than assume a softmax, which would divide one image's
    probabilities between its classes.

    Example:
        >>> is_multi_label([[1, 1], [0, 0]]), is_multi_label([0, 1])
        (True, False)
    """
    return _validate.is_multi_hot(value)


def labels(value: Any, n: int) -> tuple[np.ndarray | None, int | None]:
    """int64 class ids ``[N]`` and the one-hot width (``None`` for ids), or ``(None, None)``.

    Multi-hot labels (:func:`cam_callback._validate.is_multi_hot`) give ``(None, None)``
    with a warning: no probe has one true class (:func:`is_multi_label` tells the head).

    Raises:
        ValueError: Unsigned ids beyond int64 (they would wrap negative), and
            everything :func:`cam_callback._validate.class_ids` refuses.

    Example:
        >>> labels(np.array([2, 0], np.uint64), 2)[0].tolist()
        [2, 0]
    """
    if value is None:
        return None, None
    if _validate.is_multi_hot(value):
        if len(value) != n:
            raise ValueError(
                f"`probe_labels` has {len(value)} labels for {n} images: one row per probe. "
                f"Received: probe_labels of shape {np.shape(value)}"
            )
        warnings.warn(
            "`probe_labels` are multi-hot (rows with zero or several ones): the classes are "
            "independent, so where the model's output and loss do not say how to read it, "
            "head='auto' reads sigmoids (a multi-label head). "
            "No probe has one true class, so target='label', `misclassified`, the true class's "
            "probability and the transplant are not recorded.",
            UserWarning,
            stacklevel=3,
        )
        return None, None
    raw = np.asarray(value)
    if raw.dtype.kind == "u" and raw.size and int(raw.max()) > _INT64_MAX:
        raise ValueError(
            f"`probe_labels` holds {int(raw.max())}, which is no class id (ids are 0 to "
            f"n_classes - 1). Received: probe_labels with dtype {raw.dtype} and values up to "
            f"{int(raw.max())}"
        )
    return _validate.class_ids(raw, n, "probe_labels")


def class_names(names: Any) -> list[str] | None:
    """The class names as a list, a generator read once.

    Example:
        >>> class_names(n for n in ("cat", "dog"))
        ['cat', 'dog']
    """
    if names is None:
        return None
    if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
        raise TypeError(f"`class_names` must be a sequence of str. Received: class_names={names!r}")
    listed = list(names)  # once: a generator would be empty at the next look
    if not all(isinstance(c, str) for c in listed):
        raise TypeError(
            f"`class_names` must be a sequence of str. Received: class_names={listed!r}"
        )
    return listed


def display_copy(images: np.ndarray) -> np.ndarray:
    """uint8 RGB ``[N, H, W, 3]`` to draw model-space probes of any channel count.

    1 channel: grey. 3: RGB. 4: RGB, the fourth channel left out. 2, or 5 and
    more: the first channel in grey. Each image is min-max rescaled on its own.

    Example:
        >>> x = np.zeros((1, 1, 2, 13)); x[0, 0, 1, 0] = 5.0
        >>> display_copy(x)[0, 0].tolist()
        [[0, 0, 0], [255, 255, 255]]
    """
    x = np.asarray(images)
    c = x.shape[-1]
    if c == 4:
        x = x[..., :3]
    elif c not in (1, 3):
        x = x[..., :1]
    return frames.to_display(x)


def display(value: Any, n: int, probe_images: np.ndarray) -> np.ndarray:
    """The display images: ``value`` (uint8 RGB, or grey ``[N, H, W]``/``[N, H, W, 1]``),
    or :func:`display_copy` of the probes."""
    if value is None:
        return display_copy(probe_images)
    d = np.asarray(value)
    if d.dtype != np.uint8:
        raise TypeError(
            f"`display_images` must be uint8 RGB [N, H, W, 3]. Received: dtype {d.dtype}"
        )
    if d.ndim == 3 or (d.ndim == 4 and d.shape[-1] == 1):  # grey: drawn as RGB
        d = np.repeat(d.reshape(*d.shape[:3], 1), 3, axis=-1)
    if d.ndim != 4 or d.shape[-1] != 3 or len(d) != n:
        raise ValueError(
            f"`display_images` must be [{n}, H, W, 3], one per probe. Received: shape {d.shape}"
        )
    return d


def masks(value: Any, n: int, size: tuple[int, int]) -> np.ndarray | None:
    """bool ``[N, H, W]`` masks at the display images' size, or ``None``."""
    if value is None:
        return None
    m = np.asarray(value)
    if m.dtype != bool and not (np.issubdtype(m.dtype, np.integer) and np.isin(m, (0, 1)).all()):
        raise TypeError(f"`probe_masks` must be boolean [N, H, W]. Received: dtype {m.dtype}")
    if m.shape != (n, *size):
        raise ValueError(
            f"`probe_masks` must be [{n}, {size[0]}, {size[1]}], the display images' size. "
            f"Received: shape {m.shape}"
        )
    return m.astype(bool)


def target(value: Any, n: int, probe_labels: np.ndarray | None) -> Any:
    """``"predicted"``, the labels for ``"label"``, one class id, or int64 ids ``[N]``."""
    if isinstance(value, str):
        if value == "label":
            if probe_labels is None:
                raise ValueError(
                    '`target="label"` needs `probe_labels` with one class per probe (multi-hot '
                    "labels have none). Received: none"
                )
            return probe_labels
        if value != "predicted":
            raise ValueError(
                '`target` must be "predicted", "label", a class id or one per probe. '
                f"Received: target={value!r}"
            )
        return value
    arr = np.asarray(value)
    if isinstance(value, (bool, np.bool_)) or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"`target` must be integer class ids. Received: target={value!r}")
    if arr.ndim not in (0, 1) or (arr.ndim == 1 and len(arr) != n) or (arr < 0).any():
        raise ValueError(
            f"`target` must be one class id >= 0 or one per probe ({n}). Received: {value!r}"
        )
    if arr.dtype.kind == "u" and int(arr.max()) > _INT64_MAX:
        raise ValueError(
            f"`target` holds {int(arr.max())}, which is no class id. Received: {value!r}"
        )
    return int(arr) if arr.ndim == 0 else arr.astype(np.int64)


def formats(value: Any) -> tuple[str, ...]:
    """The animation formats, e.g. ``("gif",)``; ``()`` for none."""
    try:
        return animate.normalize_formats(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f'`animate` must be "gif", "mp4", ("gif", "mp4") or None. Received: animate={value!r}'
        ) from exc


def max_frames(value: Any) -> int | None:
    """``None`` (every epoch), or an int >= 2 (the first and the last epoch)."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 2:
        raise ValueError(
            f"`max_frames` must be an int >= 2 (first and last epoch) or None. "
            f"Received: max_frames={value!r}"
        )
    return int(value)


def choice(value: Any, choices: tuple[str, ...], name: str, expected: str = "") -> str:
    """``value``, checked to be one of ``choices`` (``expected`` words them for the error).

    Example:
        >>> choice("cue", ("object", "cue"), "mask_kind")
        'cue'
    """
    if not isinstance(value, str) or value not in choices:
        expected = expected or f"one of {choices}"
        raise ValueError(f"`{name}` must be {expected}. Received: {name}={value!r}")
    return value
