"""The pipeline's frame thread: each probe's frame drawn once, for TensorBoard and the GIF.

It runs at nice 19, so it only takes CPU that training leaves idle. Which epochs the
animations keep is planned at the first epoch (:func:`~.plan.planned_epochs`);
when drawing an animated epoch costs more than :data:`ANIMATION_BUDGET` of an epoch, the
rest of the plan is thinned evenly, once, with a notice.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from cam_callback import animate, metrics
from cam_callback import frames as F
from cam_callback.record import BASELINE_EPOCH, epoch_files
from cam_callback.tracker.pipeline.plan import STOP, planned_epochs

# The live animations may use this share of an epoch's time on one core, and never thin below
# ANIMATION_FLOOR_S of drawing per epoch: only hundreds of probes on short epochs go over.
ANIMATION_BUDGET = 0.10
ANIMATION_FLOOR_S = 0.5


class FrameStage:
    """The frame thread of :class:`~cam_callback.tracker.pipeline.EpochPipeline` (a mixin).

    It reads the state :class:`~cam_callback.tracker.pipeline.EpochPipeline` sets up: the display
    images, the TensorBoard writer, the animation streams and the plan.

    Example:
        >>> issubclass(EpochPipeline, FrameStage)  # doctest: +SKIP
        True
    """

    def _frame_loop(self) -> None:
        # Linux schedules threads separately: at nice 19 drawing takes the CPU that
        # training leaves idle instead of competing with TensorFlow's workers.
        if hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
            except OSError:
                pass
        while not self._handover:  # drain() draws what is left
            job = self._frames.get()
            if job is STOP:
                return
            self._frame_job(job)
            if self._stop_requested:
                self._release()
                return

    def _frame_job(self, job: tuple) -> None:
        if self.frames_failed or not self._present():  # keep draining so fit never blocks
            return
        try:
            if not self._planned:
                self._plan(job[0])
            *args, interval = job
            start = time.thread_time()
            animated = self._draw(*args)
            if animated and interval is not None:
                self._budget(job[0], time.thread_time() - start, interval)
        except BaseException as exc:
            if self._present():  # a deleted record is reported once, by the record's stage
                self._fail("frames", self.frames_what, job[0], exc)

    def _present(self) -> bool:
        """Whether the record is still there (a deleted one is never written to again)."""
        if not self.record_gone and not (self.record.path / "record.json").is_file():
            self.record_gone = True
        return not self.record_gone

    @property
    def frames_what(self) -> str:
        """What the frame thread does, for messages."""
        if self.writer is None:
            return "drawing the animation frames"
        if self.streams:
            return "drawing the TensorBoard and animation frames"
        return "drawing the TensorBoard frames"

    def _label_name(self, i: int) -> str | None:
        if self.labels is None or self.labels[i] < 0:
            return None
        c = int(self.labels[i])
        if self.class_names is not None and c < len(self.class_names):
            return self.class_names[c]
        return str(c)

    def _renderer(self, i: int) -> F.FrameRenderer:
        r = self._renderers.get(i)
        if r is None:
            r = F.FrameRenderer(
                self.display[i],
                label=None if self.labels is None else int(self.labels[i]),
                class_names=self.class_names,
                top_k=self.top_k,
                alpha=self.alpha,
            )
            if i in self.tags:  # drawn every epoch: keep its laid-out base; others are cheap
                self._renderers[i] = r
        return r

    def _plan(self, first_epoch: int) -> None:
        """Chooses the epochs the animations keep, and draws the earlier recorded ones."""
        self._planned = True
        if not self.streams:
            return
        earlier = [e for e in epoch_files(self.record.path) if e < first_epoch]
        total = None if self.total_epochs is None else self.total_epochs + self.offset
        plan = planned_epochs(first_epoch, total, self.every_n, earlier)
        if plan is not None:
            self._keep = {plan[p] for p in animate.sample_positions(len(plan), self.max_frames)}
            seed = [e for e in earlier if e in self._keep]
        else:  # fit's length unknown: keep all, and sample when finishing
            seed = [earlier[p] for p in animate.sample_positions(len(earlier), self.max_frames)]
        for e in seed:  # a resumed record: its earlier epochs open the animations
            data = self.record.read_epoch(e)
            if data is not None:
                self._draw(
                    e, data["heatmaps"], data["probabilities"], data["targets"], None,
                    tensorboard=False,
                )

    def _budget(self, epoch: int, cpu_s: float, interval: float) -> None:
        """Thins the rest of the animation plan, once, when drawing outruns its budget."""
        allowed = ANIMATION_BUDGET * interval
        if self._stride > 1 or cpu_s <= max(ANIMATION_FLOOR_S, allowed):
            return
        stride = self._stride = math.ceil(cpu_s / allowed)
        if self._keep is not None:  # a known plan: thin its later epochs evenly, keep the last
            later = sorted(e for e in self._keep if e > epoch)
            thinned = set(later[stride - 1 :: stride]) | set(later[-1:])
            self._keep = {e for e in self._keep if e <= epoch} | thinned
        self.notices.append(
            f"drawing the animation frames of {self.n} probes took {cpu_s:.2f} s of CPU at "
            f"epoch {epoch}, more than {ANIMATION_BUDGET:.0%} of an epoch ({interval:.2f} s); "
            f"the live animations now keep one epoch in {stride} (the last one always), so "
            "training is not slowed. The record keeps every epoch: `cam-callback render "
            "LOG_DIR --max-frames all` draws them all after training, or pass "
            "animate=None to skip the live animations."
        )

    def _animates(self, epoch: int) -> bool:
        if not self.streams or (self._keep is not None and epoch not in self._keep):
            return False
        if self._keep is None and self._stride > 1:  # unknown plan, thinned: count epochs
            self._since_kept += 1
            if self._since_kept < self._stride:
                return False
            self._since_kept = 0
        return True

    def _draw(
        self,
        epoch: int,
        heatmaps: np.ndarray,
        probabilities: np.ndarray,
        targets: np.ndarray,
        values: dict[str, np.ndarray] | None,
        tensorboard: bool = True,
    ) -> bool:
        """Draws one epoch for TensorBoard and the animations; returns whether it animated."""
        animated = self._animates(epoch)
        shown = self.writer is not None and tensorboard
        needed = range(self.n) if animated else (self.tb_probes if shown else ())
        # Each frame is drawn once, then used by TensorBoard and by the animation.
        drawn = {
            i: self._renderer(i).draw(heatmaps[i], probabilities[i], epoch, target=int(targets[i]))
            for i in needed
        }
        grid = None
        if shown or animated:
            grid = F.grid(
                [
                    F.tile(
                        self.display[i],
                        heatmaps[i],
                        probabilities[i],
                        None if self.labels is None else int(self.labels[i]),
                        self.alpha,
                        self.grid_side,
                        caption=animate.tile_caption(i, self._label_name(i))
                        if self.grid_captions
                        else None,
                    )
                    for i in range(self.n)
                ],
                title=F.epoch_label(epoch),
                legend=F.TILE_LEGEND if self.labels is not None else None,
            )
        if not self._present():  # deleted while drawing: writing would recreate its folders
            return False
        if shown and epoch == BASELINE_EPOCH:  # its own tag: TensorBoard's steps stay Keras's
            self.writer.write(0, {"cam/before_training": grid}, {})
        elif shown:
            images = {self.tags[i]: drawn[i] for i in self.tb_probes}
            images["cam/grid"] = grid
            groups = metrics.summary_scalars(
                values or {},
                labels=self.labels,
                class_names=self.class_names,
                mask_kind=self.mask_kind,
                targets=targets,
            )
            if self.mask_kind == "cue":
                groups.update(
                    metrics.group_scalars(values or {}, self.labels, self.masks, self.class_names)
                )
            scalars = {f"cam/{k}": v for k, v in groups.items()}
            self.writer.write(epoch, images, scalars)
        if animated:
            for i, stream in enumerate(self.streams):
                stream.append(epoch, drawn[i])
            self.grid_stream.append(epoch, grid)
        return animated

    def _finish_animations(self) -> list[Path]:
        """Completes each file: O(probes), whatever the number of epochs."""
        if not self.streams:
            return []
        epoch, heatmaps, probabilities, targets = self.last
        if not self.streams[0].index or self.streams[0].keys[-1] != epoch:
            # fit stopped before its planned end (or the plan was unknown): always end on
            # the last recorded epoch. Fewer planned epochs ran, so max_frames still holds.
            self._keep, self._stride = None, 1
            self._draw(epoch, heatmaps, probabilities, targets, None, tensorboard=False)
        streams = [*self.streams, self.grid_stream]
        written = []
        if "gif" in self.formats:
            written = [s.finish(self.max_frames) for s in streams]
        if "mp4" in self.formats:
            # MP4 is encoded here from the kept frames: at most max_frames per probe.
            def to_mp4(stream: animate.GifStream, gif: Path | None) -> Path:
                frames = stream.frames() if gif is None else animate.read_gif(gif)
                keep = animate.sample_positions(len(frames), self.max_frames)
                path = animate.write_mp4(
                    stream.path.with_suffix(".mp4"), [frames[p] for p in keep], self.fps
                )
                if gif is None:
                    stream.discard()
                return path

            gifs = written if written else [None] * len(streams)
            with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                written += list(pool.map(to_mp4, streams, gifs))
        with contextlib.suppress(OSError):  # gone once empty; a concurrent run may still use it
            self.streams[0].part.parent.rmdir()
        return written
