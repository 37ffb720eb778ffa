"""The pipeline's defaults, the probes both stages read, the TensorBoard probe choice, and the
epochs an animation plans.

Pure values and functions of the probes and ``fit``'s epoch count; no threads, no TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cam_callback import animate

STOP = object()  # put on a pipeline queue: the thread reading it returns
DEFAULT_TENSORBOARD_PROBES = 16
DEFAULT_MAX_FRAMES = 100
FRAME_QUEUE = 4  # epochs waiting to be drawn; beyond this, training waits (memory stays flat)


@dataclass(frozen=True, eq=False)
class Probes:
    """What the record and frame stages know of the probes, fixed for a ``fit``.

    Attributes:
        display: uint8 ``[N, H, W, 3]`` display images.
        labels: int ``[N]`` true classes (``-1``: none), or ``None``.
        masks: bool ``[N, H, W]`` probe masks, or ``None``.
        class_names: Names of the classes, or ``None``.
        mask_kind: ``"object"`` or ``"cue"``: which flagged group gets its own scalars.

    Example:
        >>> probes = Probes(np.zeros((2, 4, 4, 3), np.uint8), np.array([1, -1]), None, ["a", "b"])
        >>> probes.n, probes.label_name(0), probes.label_name(1)
        (2, 'b', None)
    """

    display: np.ndarray
    labels: np.ndarray | None
    masks: np.ndarray | None
    class_names: Sequence[str] | None
    mask_kind: str = "object"

    @property
    def n(self) -> int:
        """The number of probes."""
        return len(self.display)

    def label(self, i: int) -> int | None:
        """Probe ``i``'s true class, or ``None`` without labels."""
        return None if self.labels is None else int(self.labels[i])

    def label_name(self, i: int) -> str | None:
        """The name of probe ``i``'s true class (its id without names), or ``None``."""
        c = self.label(i)
        if c is None or c < 0:
            return None
        if self.class_names is not None and c < len(self.class_names):
            return self.class_names[c]
        return str(c)


@dataclass(frozen=True)
class Drawing:
    """How each epoch is drawn: TensorBoard images and the animations, checked by the tracker.

    Attributes:
        top_k: Classes in the probability bars.
        alpha: Weight of the heatmap in the overlay.
        tensorboard: Write summaries into the record folder.
        tensorboard_probes: A count, or probe ids, that get their own image tag (chosen
            once per ``fit`` by :func:`choose_tensorboard_probes`).
        formats: Animation formats, e.g. ``("gif",)``; empty for none.
        fps: Frames per second of the animations.
        max_frames: Most frames per animation, ``None`` for every epoch.

    Example:
        >>> Drawing(formats=()).fps
        4.0
    """

    top_k: int = 3
    alpha: float = 0.5
    tensorboard: bool = True
    tensorboard_probes: int | Sequence[int] = DEFAULT_TENSORBOARD_PROBES
    formats: tuple[str, ...] = ("gif",)
    fps: float = 4.0
    max_frames: int | None = DEFAULT_MAX_FRAMES


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


class AnimationPlan:
    """Which recorded epochs the animations keep: planned at the first epoch handed over,
    thinned at most once when drawing outruns its budget.

    Args:
        max_frames: Most frames per animation, ``None`` for every epoch.
        every_n: The tracker's cadence.

    Example:
        >>> plan = AnimationPlan(max_frames=3, every_n=1)
        >>> plan.start(0, total=5, earlier=[])
        []
        >>> [e for e in range(5) if plan.animates(e)]
        [0, 2, 4]
    """

    def __init__(self, max_frames: int | None, every_n: int) -> None:
        self.max_frames = max_frames
        self.every_n = every_n
        self.started = False
        self.keep: set[int] | None = None  # the epochs kept; None: all (fit's length unknown)
        self.stride = 1  # with an unknown plan, animate every stride-th epoch (budget)
        self._since_kept = 0

    def start(self, first: int, total: int | None, earlier: Sequence[int]) -> list[int]:
        """Plans from ``fit``'s first epoch handed over, in the record's numbering.

        Args:
            first: That epoch.
            total: The record's number of ``fit``'s last epoch plus one, or ``None``.
            earlier: Epochs the record holds before ``first`` (a resumed record).

        Returns:
            The earlier epochs that open the animations, in order.
        """
        self.started = True
        plan = planned_epochs(first, total, self.every_n, earlier)
        if plan is None:  # fit's length unknown: keep all, and sample when finishing
            return [earlier[p] for p in animate.sample_positions(len(earlier), self.max_frames)]
        self.keep = {plan[p] for p in animate.sample_positions(len(plan), self.max_frames)}
        return [e for e in earlier if e in self.keep]

    def animates(self, epoch: int) -> bool:
        """Whether ``epoch`` goes into the animations (call once per epoch, in order)."""
        if self.keep is not None and epoch not in self.keep:
            return False
        if self.keep is None and self.stride > 1:  # unknown plan, thinned: count epochs
            self._since_kept += 1
            if self._since_kept < self.stride:
                return False
            self._since_kept = 0
        return True

    def thin(self, after: int, stride: int) -> None:
        """Keeps one epoch in ``stride`` after epoch ``after`` (the last one always)."""
        self.stride = stride
        if self.keep is not None:  # a known plan: thin its later epochs evenly, keep the last
            later = sorted(e for e in self.keep if e > after)
            thinned = set(later[stride - 1 :: stride]) | set(later[-1:])
            self.keep = {e for e in self.keep if e <= after} | thinned

    def keep_all(self) -> None:
        """Animates every epoch from now on (the last one, when ``fit`` stopped early)."""
        self.keep, self.stride = None, 1
