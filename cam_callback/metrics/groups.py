"""Worst-group accuracy: the probes split by true class and by whether they carry the cue.

The spurious-correlation literature (Waterbirds, CelebA; GroupDRO, JTT, DFR) judges a model by
the accuracy of its worst group, a group being a class crossed with the presence or absence of
the spurious attribute: a model that learnt the shortcut is right on the groups where the cue
goes with the class and wrong on the others, whatever its mean accuracy. With cue masks
(``mask_kind="cue"``) a probe carries the cue when its mask covers any pixel; a probe whose
mask is empty does not.

Per epoch, per probe (stored as ``metric_group_accuracy``): the accuracy of the probe's own
group among the probes, so the record keeps the groups' accuracies in its ``[E, N]`` form and
``worst_group_accuracy`` is their minimum. Pure numpy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from cam_callback.metrics.summary import class_group_keys


def cue_present(masks: np.ndarray) -> np.ndarray:
    """bool ``[N]``: the probe's cue mask covers at least one pixel.

    Example:
        >>> cue_present(np.array([[[True, False]], [[False, False]]])).tolist()
        [True, False]
    """
    masks = np.asarray(masks, bool)
    return np.any(masks.reshape(len(masks), -1), axis=1)


def group_ids(labels: np.ndarray, present: np.ndarray) -> np.ndarray:
    """int ``[N]``: ``2 * label + present``; -1 where the label is unknown (negative).

    Example:
        >>> group_ids(np.array([0, 0, 1, -1]), np.array([True, False, True, True])).tolist()
        [1, 0, 3, -1]
    """
    labels = np.asarray(labels, np.int64)
    return np.where(labels >= 0, 2 * labels + np.asarray(present, bool), -1)


def group_accuracies(
    correct: np.ndarray, labels: np.ndarray, present: np.ndarray
) -> dict[tuple[int, bool], np.ndarray]:
    """Accuracy of each group present, over the last axis of ``correct`` (``[N]`` or ``[E, N]``).

    Args:
        correct: 1 where the probe is classified right, 0 where not (``metric_correct``).
        labels: int ``[N]`` true classes.
        present: bool ``[N]``, whether each probe carries the cue.

    Returns:
        ``(class, carries the cue)`` to the group's accuracy (a float, or ``[E]``).

    Example:
        >>> acc = group_accuracies(np.array([1, 1, 0, 1]), np.array([0, 0, 0, 1]),
        ...                        np.array([True, True, False, False]))
        >>> {k: float(v) for k, v in acc.items()}
        {(0, False): 0.0, (0, True): 1.0, (1, False): 1.0}
    """
    correct = np.asarray(correct, np.float64)
    ids = group_ids(labels, present)
    return {
        (int(g) // 2, bool(g % 2)): correct[..., ids == g].mean(-1)
        for g in np.unique(ids[ids >= 0])
    }


def worst_group_accuracy(
    correct: np.ndarray, labels: np.ndarray, present: np.ndarray
) -> float | np.ndarray:
    """The lowest group accuracy (a float, or ``[E]`` for ``[E, N]``); NaN with no groups.

    Example:
        >>> worst_group_accuracy(np.array([[1, 1, 0], [1, 1, 1]]), np.array([0, 0, 1]),
        ...                      np.array([True, True, False])).tolist()
        [0.0, 1.0]
    """
    acc = group_accuracies(correct, labels, present)
    if not acc:
        return np.full(np.shape(correct)[:-1], np.nan)[()]
    return np.min(np.stack(list(acc.values())), axis=0)[()]


def group_metrics(
    metrics: Mapping[str, np.ndarray], labels: np.ndarray | None, masks: np.ndarray | None
) -> dict[str, np.ndarray]:
    """``{"group_accuracy": [N]}``: each probe's group's accuracy at this epoch, or ``{}``
    without labels, masks or ``correct``.

    Example:
        >>> m = group_metrics({"correct": np.array([1.0, 0.0, 1.0])}, np.array([0, 0, 1]),
        ...                   np.array([[[1]], [[0]], [[0]]], bool))
        >>> m["group_accuracy"].tolist()
        [1.0, 0.0, 1.0]
    """
    if labels is None or masks is None or "correct" not in metrics:
        return {}
    ids = group_ids(labels, cue_present(masks))
    correct = np.asarray(metrics["correct"], np.float64)
    out = np.full(len(ids), np.nan, np.float32)
    for g in np.unique(ids[ids >= 0]):
        out[ids == g] = correct[ids == g].mean()
    return {"group_accuracy": out}


def group_scalars(
    metrics: Mapping[str, np.ndarray],
    labels: np.ndarray | None,
    masks: np.ndarray | None,
    class_names: Sequence[str] | None = None,
) -> dict[str, float]:
    """TensorBoard scalars of one epoch: ``worst_group_accuracy`` and, per class,
    ``class_<name>/accuracy_with_cue`` and ``class_<name>/accuracy_without_cue``.

    Example:
        >>> s = group_scalars({"correct": np.array([1.0, 0.0])}, np.array([0, 0]),
        ...                   np.array([[[1]], [[0]]], bool), ["homer"])
        >>> s["worst_group_accuracy"], s["class_homer/accuracy_without_cue"]
        (0.0, 0.0)
    """
    if labels is None or masks is None or "correct" not in metrics:
        return {}
    acc = group_accuracies(metrics["correct"], labels, cue_present(masks))
    keys = class_group_keys(np.asarray(labels), class_names)
    out = {
        f"{keys[cls]}/accuracy_{'with' if cue else 'without'}_cue": float(value)
        for (cls, cue), value in acc.items()
    }
    if acc:
        out["worst_group_accuracy"] = float(min(acc.values()))
    return out


def group_name(group: tuple[int, bool], class_names: Sequence[str] | None = None) -> str:
    """``"homer with the cue"`` / ``"square without the cue"``.

    Example:
        >>> group_name((0, False), ["homer"])
        'homer without the cue'
    """
    cls, cue = group
    name = class_names[cls] if class_names and cls < len(class_names) else str(cls)
    return f"{name} {'with' if cue else 'without'} the cue"
