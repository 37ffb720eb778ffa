"""The frame stage: each probe's frame drawn once, for TensorBoard and the animations.

:class:`FrameStage` is handed what it draws on (the probes, the TensorBoard writer, the
animation files and their :class:`~.plan.AnimationPlan`) and draws one
:class:`~.recording.RecordedEpoch` at a time. The pipeline runs it on its frame thread, at
nice 19, so it only takes CPU that training leaves idle. When drawing an animated epoch
costs more than :data:`ANIMATION_BUDGET` of an epoch, the rest of the plan is thinned
evenly, once, with a notice.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from cam_callback import animate, metrics
from cam_callback import frames as F
from cam_callback.record import BASELINE_EPOCH
from cam_callback.record.tensorboard import SummaryWriter, probe_tag
from cam_callback.tracker.pipeline.animations import AnimationFiles
from cam_callback.tracker.pipeline.plan import AnimationPlan, Probes
from cam_callback.tracker.pipeline.recording import RecordedEpoch

# The live animations may use this share of an epoch's time on one core, and never thin below
# ANIMATION_FLOOR_S of drawing per epoch: only hundreds of probes on short epochs go over.
ANIMATION_BUDGET = 0.10
ANIMATION_FLOOR_S = 0.5


class FrameStage:
    """Draws recorded epochs for TensorBoard and the animations, each frame once.

    Args:
        probes: The probes drawn.
        summaries: The TensorBoard writer, or ``None`` for no TensorBoard.
        tensorboard_probes: Probe ids with their own image tag (with ``summaries``).
        animations: The animation files, or ``None`` for no animations.
        plan: Which epochs the animations keep.
        present: Whether the record is still there; nothing is written once it is not.
        top_k: Classes in the probability bars.
        alpha: Weight of the heatmap in the overlay.

    Example:
        >>> stage = FrameStage(probes, None, [], files, AnimationPlan(100, 1),  # doctest: +SKIP
        ...                    present=lambda: True)
        >>> stage.draw(recorded_epoch)  # doctest: +SKIP
        True
    """

    def __init__(
        self,
        probes: Probes,
        summaries: SummaryWriter | None,
        tensorboard_probes: Sequence[int],
        animations: AnimationFiles | None,
        plan: AnimationPlan,
        *,
        present: Callable[[], bool],
        top_k: int = 3,
        alpha: float = 0.5,
    ) -> None:
        self.probes = probes
        self.summaries = summaries
        self.tb_probes = list(tensorboard_probes) if summaries is not None else []
        self.animations = animations
        self.plan = plan
        self.present = present
        self.top_k = top_k
        self.alpha = alpha
        self.tags = {i: probe_tag(i, probes.label_name(i)) for i in self.tb_probes}
        self.grid_side, self.grid_captions = animate.grid_layout(probes.n)
        self.notices: list[str] = []  # said once each by the callback, as TrackerWarnings
        self._renderers: dict[int, F.FrameRenderer] = {}

    @property
    def draws(self) -> bool:
        """Whether there is anything to draw (TensorBoard, or animations)."""
        return self.summaries is not None or self.animations is not None

    @property
    def what(self) -> str:
        """What this stage does, for messages."""
        if self.summaries is None:
            return "drawing the animation frames"
        if self.animations is not None:
            return "drawing the TensorBoard and animation frames"
        return "drawing the TensorBoard frames"

    def start(
        self,
        first: int,
        total: int | None,
        earlier: Sequence[int],
        read: Callable[[int], RecordedEpoch | None],
    ) -> None:
        """Plans the animations at ``fit``'s first epoch and opens them with ``earlier``
        recorded epochs (a resumed record), read with ``read``."""
        if self.animations is None:
            self.plan.started = True
            return
        for e in self.plan.start(first, total, earlier):
            recorded = read(e)
            if recorded is not None:
                self.draw(recorded, tensorboard=False)

    def frame(self, epoch: RecordedEpoch) -> None:
        """Draws one epoch handed over by the record stage, within the animation budget."""
        start = time.thread_time()
        animated = self.draw(epoch)
        if animated and epoch.interval is not None:
            self._budget(epoch.epoch, time.thread_time() - start, epoch.interval)

    def draw(self, epoch: RecordedEpoch, tensorboard: bool = True) -> bool:
        """Draws one epoch for TensorBoard and the animations; returns whether it animated."""
        p, e = self.probes, epoch.epoch
        animated = self.animations is not None and self.plan.animates(e)
        shown = self.summaries is not None and tensorboard
        needed = range(p.n) if animated else (self.tb_probes if shown else ())
        # Each frame is drawn once, then used by TensorBoard and by the animation.
        drawn = {
            i: self._renderer(i).draw(
                epoch.heatmaps[i], epoch.probabilities[i], e, target=int(epoch.targets[i])
            )
            for i in needed
        }
        grid = self._grid(epoch) if shown or animated else None
        if not self.present():  # deleted while drawing: writing would recreate its folders
            return False
        if shown and grid is not None and self.summaries is not None:
            self._show(self.summaries, epoch, drawn, grid)
        if animated and grid is not None and self.animations is not None:
            self.animations.append(e, [drawn[i] for i in range(p.n)], grid)
        return animated

    def finish(self, last: RecordedEpoch) -> list[Path]:
        """Completes the animation files, ending on ``last``: O(probes), whatever the epochs."""
        if self.animations is None:
            return []
        if not self.animations.ends_on(last.epoch):
            # fit stopped before its planned end (or the plan was unknown): always end on
            # the last recorded epoch. Fewer planned epochs ran, so max_frames still holds.
            self.plan.keep_all()
            self.draw(last, tensorboard=False)
        return self.animations.finish()

    def _show(
        self,
        summaries: SummaryWriter,
        epoch: RecordedEpoch,
        drawn: dict[int, np.ndarray],
        grid: np.ndarray,
    ) -> None:
        """Writes the epoch's images and scalars to TensorBoard."""
        p = self.probes
        if epoch.epoch == BASELINE_EPOCH:  # its own tag: TensorBoard's steps stay Keras's
            summaries.write(0, {"cam/before_training": grid}, {})
            return
        images = {self.tags[i]: drawn[i] for i in self.tb_probes}
        images["cam/grid"] = grid
        values = epoch.metrics or {}
        groups = metrics.summary_scalars(
            values,
            labels=p.labels,
            class_names=p.class_names,
            mask_kind=p.mask_kind,
            targets=epoch.targets,
        )
        if p.mask_kind == "cue":
            groups.update(metrics.group_scalars(values, p.labels, p.masks, p.class_names))
        summaries.write(epoch.epoch, images, {f"cam/{k}": v for k, v in groups.items()})

    def _grid(self, epoch: RecordedEpoch) -> np.ndarray:
        p = self.probes
        tiles = [
            F.tile(
                p.display[i],
                epoch.heatmaps[i],
                epoch.probabilities[i],
                p.label(i),
                self.alpha,
                self.grid_side,
                caption=animate.tile_caption(i, p.label_name(i)) if self.grid_captions else None,
            )
            for i in range(p.n)
        ]
        legend = F.TILE_LEGEND if p.labels is not None else None
        return F.grid(tiles, title=F.epoch_label(epoch.epoch), legend=legend)

    def _renderer(self, i: int) -> F.FrameRenderer:
        r = self._renderers.get(i)
        if r is None:
            r = F.FrameRenderer(
                self.probes.display[i],
                label=self.probes.label(i),
                class_names=self.probes.class_names,
                top_k=self.top_k,
                alpha=self.alpha,
            )
            if i in self.tags:  # drawn every epoch: keep its laid-out base; others are cheap
                self._renderers[i] = r
        return r

    def _budget(self, epoch: int, cpu_s: float, interval: float) -> None:
        """Thins the rest of the animation plan, once, when drawing outruns its budget."""
        allowed = ANIMATION_BUDGET * interval
        if self.plan.stride > 1 or cpu_s <= max(ANIMATION_FLOOR_S, allowed):
            return
        stride = math.ceil(cpu_s / allowed)
        self.plan.thin(epoch, stride)
        self.notices.append(
            f"drawing the animation frames of {self.probes.n} probes took {cpu_s:.2f} s of CPU "
            f"at epoch {epoch}, more than {ANIMATION_BUDGET:.0%} of an epoch ({interval:.2f} s); "
            f"the live animations now keep one epoch in {stride} (the last one always), so "
            "training is not slowed. The record keeps every epoch: `cam-callback render "
            "LOG_DIR --max-frames all` draws them all after training, or pass "
            "animate=None to skip the live animations."
        )
