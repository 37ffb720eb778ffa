"""The pipeline's defaults, the TensorBoard probe choice, and the epochs an animation plans.

Pure functions of the probes and ``fit``'s epoch count; no threads, no TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cam_callback import animate

STOP = object()  # put on a pipeline queue: the thread reading it returns
DEFAULT_TENSORBOARD_PROBES = 16
DEFAULT_MAX_FRAMES = 100
FRAME_QUEUE = 4  # epochs waiting to be drawn; beyond this, training waits (memory stays flat)


def check_tensorboard_probes(value: Any, n_probes: int) -> int | list[int]:
    """Validates ``tensorboard_probes``: a count (``>= 0``) or explicit probe ids.

    Example:
        >>> check_tensorboard_probes(16, 4), check_tensorboard_probes([3, 1], 4)
        (16, [1, 3])
    """
    if isinstance(value, bool):
        raise TypeError(
            "`tensorboard_probes` must be a count or a sequence of probe ids. "
            f"Received: tensorboard_probes={value!r}"
        )
    if isinstance(value, (int, np.integer)):
        if value < 0:
            raise ValueError(
                f"`tensorboard_probes` must be >= 0. Received: tensorboard_probes={value!r}"
            )
        return int(value)
    try:
        ids = [int(i) for i in value if not isinstance(i, bool) and int(i) == i]
        ok = len(ids) == len(value)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise TypeError(
            "`tensorboard_probes` must be a count or a sequence of probe ids. "
            f"Received: tensorboard_probes={value!r}"
        )
    bad = [i for i in ids if not 0 <= i < n_probes]
    if bad:
        raise ValueError(
            f"`tensorboard_probes` {bad} are not probe ids 0..{n_probes - 1}. "
            f"Received: tensorboard_probes={list(value)!r}"
        )
    return sorted(set(ids))


def choose_tensorboard_probes(
    count_or_ids: int | Sequence[int], n_probes: int, labels: np.ndarray | None = None
) -> list[int]:
    """The probes that get their own TensorBoard image tag, chosen once per ``fit``.

    A count takes probes class by class in turn (each class's probes in index
    order, classes in order of first appearance), so every class shows up
    before any shows twice; without labels, probes evenly spread over the
    indices, first and last included. The result depends only on the probes,
    so it is the same at every epoch and in every ``fit`` of the record.

    Example:
        >>> choose_tensorboard_probes(3, 6, np.array([0, 0, 0, 1, 1, 2]))
        [0, 3, 5]
        >>> choose_tensorboard_probes(3, 9)
        [0, 4, 8]
    """
    if not isinstance(count_or_ids, (int, np.integer)):
        return sorted(int(i) for i in count_or_ids)
    k = int(count_or_ids)
    if k >= n_probes:
        return list(range(n_probes))
    if k == 0:
        return []
    if labels is None:
        return [0] if k == 1 else animate.sample_positions(n_probes, k)
    by_class: dict[int, list[int]] = {}
    for i, c in enumerate(np.asarray(labels).tolist()):
        by_class.setdefault(int(c), []).append(i)
    chosen: list[int] = []
    queues = [list(reversed(ids)) for ids in by_class.values()]
    while len(chosen) < k:
        for q in queues:
            if q and len(chosen) < k:
                chosen.append(q.pop())
    return sorted(chosen)


def planned_epochs(
    first: int, total: int | None, every_n: int, earlier: Sequence[int]
) -> list[int] | None:
    """The epochs a record will hold when ``fit`` runs to its end: ``earlier`` ones
    already recorded, then the due epochs from ``first`` to ``total - 1`` (the
    last one always). ``None`` when ``fit``'s epoch count is unknown.

    Example:
        >>> planned_epochs(2, 6, 1, [0, 1])
        [0, 1, 2, 3, 4, 5]
        >>> planned_epochs(1, 5, 2, [])
        [1, 3, 4]
    """
    if total is None or first >= total:
        return None
    due = [first] + [e for e in range(first + 1, total) if (e + 1) % every_n == 0 or e == total - 1]
    return [e for e in earlier if e < first] + due
