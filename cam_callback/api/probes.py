"""Finding what to look at: misclassified and doubtful images, and probe sets."""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, Literal, overload

import keras
import numpy as np

from cam_callback import _validate
from cam_callback.api.maps import check_head, layer_activations, predict_probabilities

__all__ = [
    "DEFAULT_NUM_PROBES",
    "find_misclassified",
    "layer_activations",
    "select_probes",
    "take_probes",
]

DEFAULT_NUM_PROBES = 32
"""Examples :func:`take_probes` takes from a dataset when ``num_probes`` is not given."""


def _is_batch_source(value: Any) -> bool:
    # Arrays and tensors (numpy, tf, jax, torch) have a shape; lists and tuples are read as
    # arrays, as before. Anything else iterable (a tf.data.Dataset, a generator, a
    # PyDataset, a DataLoader) yields batches.
    if isinstance(value, (np.ndarray, list, tuple, str, bytes, Mapping)):
        return False
    if hasattr(value, "shape") or hasattr(value, "__array__"):
        return False
    return isinstance(value, Iterable)


def _split(element: Any, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(element, Mapping):
        raise TypeError(
            f"`probe_images` yielded a dict ({where}); probes are images. Pass arrays "
            f"(probe_images=x, probe_labels=y). Received: keys {sorted(map(str, element))}"
        )
    if isinstance(element, (tuple, list)):
        if not 1 <= len(element) <= 3:
            raise ValueError(
                f"`probe_images` yielded a tuple of {len(element)} ({where}); expected x, "
                "(x, y) or (x, y, sample_weight). Pass arrays instead."
            )
        x, y = element[0], (element[1] if len(element) > 1 else None)
    else:
        x, y = element, None
    x = np.asarray(x)
    y = None if y is None else np.asarray(y)
    if x.ndim == 3:  # one example, not a batch (an unbatched dataset)
        x, y = x[None], None if y is None else y[None]
    return x, y


def take_probes(data: Any, num_probes: int | None = None) -> tuple[Any, np.ndarray | None]:
    """The first ``num_probes`` examples of a dataset, and their labels; arrays unchanged.

    A ``tf.data.Dataset`` (batched or not), a generator, a ``keras.utils.PyDataset``
    or any iterable of batches is read once, in order, until ``num_probes``
    examples are taken (``DEFAULT_NUM_PROBES`` when ``None``). Elements may be
    ``x``, ``(x, y)`` or ``(x, y, sample_weight)``; the labels are returned when
    every element has them. A shuffled dataset gives other probes at each
    iteration, so the examples are taken once, here.

    Returns:
        ``(images, labels)``: numpy arrays (labels ``None`` without them), or
        ``(data, None)`` when ``data`` is not a dataset (an array, a list, a tensor).

    Raises:
        TypeError: Elements are dicts of features.
        ValueError: ``num_probes`` given with arrays, or more asked than the
            dataset holds, or an empty dataset.

    Example:
        >>> ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)  # doctest: +SKIP
        >>> images, labels = take_probes(ds, 12)  # doctest: +SKIP
        >>> images.shape, labels.shape  # doctest: +SKIP
        ((12, 32, 32, 3), (12,))
    """
    if not _is_batch_source(data):
        if num_probes is not None:
            raise ValueError(
                "`num_probes` takes the first examples of a dataset; with arrays, pass the "
                f"probes you want (x[:n]). Received: num_probes={num_probes!r} with "
                f"probe_images of type {type(data).__name__}"
            )
        return data, None
    asked = num_probes is not None
    if asked and (
        isinstance(num_probes, (bool, np.bool_))
        or not isinstance(num_probes, numbers.Integral)
        or num_probes < 1
    ):
        raise ValueError(
            f"`num_probes` must be a positive int. Received: num_probes={num_probes!r}"
        )
    n = int(num_probes) if asked else DEFAULT_NUM_PROBES
    source = data.as_numpy_iterator() if hasattr(data, "as_numpy_iterator") else iter(data)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray | None] = []
    got = 0
    for i, element in enumerate(source):
        x, y = _split(element, f"element {i}")
        xs.append(x[: n - got])
        ys.append(None if y is None else y[: n - got])
        got += len(xs[-1])
        if got >= n:
            break
    if not got:
        raise ValueError(
            f"`probe_images` is a {type(data).__name__} that yielded no examples. "
            "Pass arrays, or a dataset that holds the probes."
        )
    if asked and got < n:
        raise ValueError(
            f"`num_probes`={n} but `probe_images` (a {type(data).__name__}) holds only {got} "
            f"examples. Received: num_probes={num_probes!r}"
        )
    try:
        images = np.concatenate(xs)
        given = [y for y in ys if y is not None]
        labels = np.concatenate(given) if len(given) == len(ys) else None
    except ValueError as exc:
        raise ValueError(
            f"`probe_images` yielded batches of different shapes ({exc}). Pass arrays."
        ) from exc
    return images, labels


def _labels(labels: Any, n: int) -> np.ndarray:
    return _validate.class_ids(labels, n, "labels")[0]


@overload
def find_misclassified(
    model: keras.Model, images: Any, labels: Any, threshold: float = ..., *,
    batch_size: int = ..., output: int | str | None = ..., head: str = ...,
    return_probabilities: Literal[False] = ...,
) -> np.ndarray: ...  # fmt: skip


@overload
def find_misclassified(
    model: keras.Model, images: Any, labels: Any, threshold: float = ..., *,
    batch_size: int = ..., output: int | str | None = ..., head: str = ...,
    return_probabilities: Literal[True],
) -> tuple[np.ndarray, np.ndarray]: ...  # fmt: skip


def find_misclassified(
    model: keras.Model,
    images: Any,
    labels: Any,
    threshold: float = 0.8,
    *,
    batch_size: int = 64,
    output: int | str | None = None,
    head: str = "auto",
    return_probabilities: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
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
        return_probabilities: Also return every image's probabilities (one forward pass
            serves both).

    Returns:
        int64 indices, most doubtful (least probability on the true class) first; with
        ``return_probabilities``, ``(indices, float32 [N, C] probabilities of all images)``.

    Example:
        >>> bad = find_misclassified(model, x_val, y_val, threshold=0.8)  # doctest: +SKIP
        >>> tracker = CAMTracker(x_val[bad], y_val[bad], log_dir="runs/a")  # doctest: +SKIP
        >>> found = find_misclassified(model, x, y, return_probabilities=True)  # doctest: +SKIP
        >>> bad, probs = found  # doctest: +SKIP
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
    if return_probabilities:
        return idx[order], probs.astype(np.float32)
    return idx[order]


def _warn_if_untrained(model: keras.Model, hard: int) -> None:
    optimizer = getattr(model, "optimizer", None)
    iterations = getattr(optimizer, "iterations", None)
    if iterations is None:  # not compiled: nothing tells whether its weights were trained
        return
    if int(np.asarray(iterations.numpy())) == 0:
        warnings.warn(
            f"select_probes(hard={hard}): `model` has not been trained yet (its optimizer has "
            "taken no step), so its doubtful images are arbitrary, not hard ones. Select the "
            "hard probes after training, or after a first fit of one epoch; if the weights "
            "were loaded trained, ignore this.",
            UserWarning,
            stacklevel=3,
        )


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
        hard: How many doubtful images to add. They are doubtful for ``model`` as it
            is now: on a model not trained yet (its optimizer has taken no step) they
            are arbitrary, and a ``UserWarning`` says so. Select them after training,
            or after a first ``fit`` of one epoch.
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
        _warn_if_untrained(model, hard)
        chosen = set(picked)
        doubtful = find_misclassified(model, x, y, threshold, head=head)
        extra = [int(i) for i in doubtful if i not in chosen]
        picked.extend(extra[:hard])
    return np.asarray(picked, dtype=np.int64)
