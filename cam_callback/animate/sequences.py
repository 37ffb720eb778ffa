"""A run's frames: one frame per recorded epoch for a probe, and grid frames of many probes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from cam_callback import frames as F
from cam_callback.animate.layout import GRID_SIDE, grid_layout
from cam_callback.record import Run


def probe_ids(probes: Iterable[int] | None, n: int) -> list[int]:
    """The chosen probe indices (all ``n`` when ``probes`` is ``None``), each checked to exist.

    Raises:
        ValueError: An index is outside ``0..n-1``.

    Example:
        >>> probe_ids(None, 3), probe_ids([2, 0], 3)
        ([0, 1, 2], [2, 0])
    """
    chosen = list(range(n)) if probes is None else [int(p) for p in probes]
    unknown = [p for p in chosen if not 0 <= p < n]
    if unknown:
        raise ValueError(
            f"`probes` {unknown} do not exist: the record has probes 0..{n - 1}. "
            f"Received: probes={chosen}"
        )
    return chosen


def probe_frames(
    run: Run,
    index: int,
    *,
    top_k: int = 3,
    alpha: float = 0.5,
    limit: int | None = None,
    positions: Sequence[int] | None = None,
) -> list[np.ndarray]:
    """One frame per recorded epoch for probe ``index``, in epoch order.

    ``limit`` keeps the first epochs only; ``positions`` picks recorded epochs by
    position (see :func:`sample_positions`).
    """
    label = None if run.labels is None else int(run.labels[index])
    renderer = F.FrameRenderer(
        run.images[index], label=label, class_names=run.class_names, top_k=top_k, alpha=alpha
    )
    chosen = range(len(run.epochs[:limit])) if positions is None else positions
    return [
        renderer.draw(
            run.heatmaps[e, index],
            run.probabilities[e, index],
            run.epochs[e],
            target=int(run.targets[e, index]),
        )
        for e in chosen
    ]


def grid_tile(
    run: Run,
    epoch_pos: int,
    index: int,
    alpha: float = 0.5,
    side: int = GRID_SIDE,
    caption: bool = True,
) -> np.ndarray:
    """Probe ``index`` at the ``epoch_pos``-th recorded epoch as a grid tile, captioned
    with its id and true class."""
    label = None if run.labels is None else int(run.labels[index])
    return F.tile(
        run.images[index],
        run.heatmaps[epoch_pos, index],
        run.probabilities[epoch_pos, index],
        label,
        alpha,
        side,
        caption=tile_caption(index, None if label is None else run.class_name(label))
        if caption
        else None,
    )


def tile_caption(index: int, true_name: str | None) -> str:
    """A grid tile's caption: ``"003 · homer"`` (the id alone without labels).

    Example:
        >>> tile_caption(3, "homer")
        '003 · homer'
    """
    return f"{index:03d}" + (f" · {true_name}" if true_name is not None else "")


def grid_frames(
    run: Run,
    probes: Sequence[int],
    alpha: float = 0.5,
    positions: Sequence[int] | None = None,
) -> list[np.ndarray]:
    """One grid image of the given probes per recorded epoch (or per chosen position),
    titled with the epoch, with the legend of its tiles' borders when labels are known."""
    side, captioned = grid_layout(len(probes))
    chosen = range(len(run.epochs)) if positions is None else positions
    return [
        F.grid(
            [grid_tile(run, e, i, alpha, side, captioned) for i in probes],
            title=F.epoch_label(run.epochs[e]),
            legend=F.TILE_LEGEND if run.labels is not None else None,
        )
        for e in chosen
    ]
