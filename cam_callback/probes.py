"""Finding what to look at: misclassified and doubtful images, and probe sets."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from cam_callback import _validate
from cam_callback.cams import check_head, layer_activations, predict_probabilities

__all__ = [
    "find_misclassified",
    "find_misclassified_with_probabilities",
    "layer_activations",
    "select_probes",
]


def _labels(labels: Any, n: int) -> np.ndarray:
    return _validate.class_ids(labels, n, "labels")[0]


def find_misclassified_with_probabilities(
    model: keras.Model,
    images: Any,
    labels: Any,
    threshold: float = 0.8,
    *,
    batch_size: int = 64,
    output: int | str | None = None,
    head: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`find_misclassified`, also returning every image's probabilities.

    Returns:
        The indices, most doubtful first, and float32 ``[N, C]`` probabilities of all images.

    Example:
        >>> find = find_misclassified_with_probabilities
        >>> idx, probs = find(model, x_val, y_val)  # doctest: +SKIP
        >>> probs[idx[0]].round(2)  # doctest: +SKIP
        array([0.91, 0.06, 0.03], dtype=float32)
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"`threshold` must be in [0, 1]. Received: threshold={threshold}")
    check_head(head)
    probs = predict_probabilities(model, images, output=output, batch_size=batch_size, head=head)
    y = _labels(labels, len(probs))
    if y.max() >= probs.shape[1]:
        raise ValueError(
            f"`labels` holds class {int(y.max())} but the model has {probs.shape[1]} classes"
        )
    top = probs.max(1)
    doubtful = (probs.argmax(1) != y) | (top < threshold)
    true_p = probs[np.arange(len(y)), y]
    idx = np.flatnonzero(doubtful)
    # Most doubtful first: the least probability on the true class, then the least confidence.
    order = np.lexsort((top[idx], true_p[idx]))
    return idx[order], probs.astype(np.float32)


def find_misclassified(
    model: keras.Model,
    images: Any,
    labels: Any,
    threshold: float = 0.8,
    *,
    batch_size: int = 64,
    output: int | str | None = None,
    head: str = "auto",
) -> np.ndarray:
    """Indices of images that are misclassified or whose top probability is below ``threshold``.

    Args:
        model: The classifier.
        images: ``[N, H, W, C]`` in the model's input space.
        labels: Class ids ``[N]`` or one-hot ``[N, C]``.
        threshold: Top-1 probability under which a right answer is still doubtful.
        batch_size: Images per compiled call.
        output: The head of a multi-output model.
        head: How its output becomes probabilities (see
            :func:`cam_callback.compute_cams`); a linear ``from_logits`` output is
            softmaxed, so ``threshold`` is always on a probability.

    Returns:
        int64 indices, most doubtful (least probability on the true class) first.

    Example:
        >>> bad = find_misclassified(model, x_val, y_val, threshold=0.8)  # doctest: +SKIP
        >>> tracker = CAMTracker(x_val[bad], y_val[bad], log_dir="runs/a")  # doctest: +SKIP
    """
    idx, _ = find_misclassified_with_probabilities(
        model, images, labels, threshold, batch_size=batch_size, output=output, head=head
    )
    return idx


def select_probes(
    images: Any,
    labels: Any,
    per_class: int = 4,
    model: keras.Model | None = None,
    hard: int = 0,
    *,
    seed: int = 0,
    threshold: float = 0.8,
    head: str = "auto",
) -> np.ndarray:
    """Builds a probe set: a stratified pick per class, plus the hardest images.

    Args:
        images: ``[N, H, W, C]``.
        labels: Class ids ``[N]`` or one-hot.
        per_class: Images per class (fewer where a class has fewer).
        model: When given, ``hard`` more images are added, most doubtful first
            (see :func:`find_misclassified`), skipping ones already picked.
        hard: How many doubtful images to add.
        seed: Seeds the per-class pick, so a rerun selects the same probes.
        threshold: Passed to :func:`find_misclassified`.
        head: Passed to :func:`find_misclassified`.

    Returns:
        int64 indices: per class in class order, then the hard ones.

    Example:
        >>> idx = select_probes(x_val, y_val, per_class=4, model=model, hard=8)  # doctest: +SKIP
        >>> tracker = CAMTracker(x_val[idx], y_val[idx], log_dir="runs/a")  # doctest: +SKIP
    """
    x = np.asarray(images)
    y = _labels(labels, len(x))
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 0:
        raise ValueError(f"`per_class` must be an int >= 0. Received: per_class={per_class!r}")
    if isinstance(hard, bool) or not isinstance(hard, int) or hard < 0:
        raise ValueError(f"`hard` must be an int >= 0. Received: hard={hard!r}")
    check_head(head)
    if hard and model is None:
        raise ValueError(f"`hard`={hard} needs a `model` to find doubtful images. Received: none")
    rng = np.random.default_rng(seed)
    picked: list[int] = []
    for cls in np.unique(y):
        members = np.flatnonzero(y == cls)
        take = rng.choice(members, size=min(per_class, len(members)), replace=False)
        picked.extend(sorted(int(i) for i in take))
    if hard:
        chosen = set(picked)
        doubtful = find_misclassified(model, x, y, threshold, head=head)
        extra = [int(i) for i in doubtful if i not in chosen]
        picked.extend(extra[:hard])
    return np.asarray(picked, dtype=np.int64)
