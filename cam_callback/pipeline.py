"""The tracker's work off the training thread: the record, then frames drawn once.

``CAMTracker.on_epoch_end`` computes the maps (that needs the model) and hands
them to an :class:`EpochPipeline`. Two threads do the rest:

- the *record* thread computes the epoch's metrics and appends it to the run
  record. The training thread hands over epoch ``k`` only once epoch ``k - 1``
  is on disk, so a run killed at any instant loses at most the epoch in flight.
- the *frame* thread, at nice 19 so it only takes CPU that training leaves idle,
  draws each probe's frame once and uses it twice: the TensorBoard image (for
  the chosen ``tensorboard_probes``) and the probe's animation, which grows on
  disk by one encoded GIF block per kept epoch (:class:`~cam_callback.animate.GifStream`).
  Which epochs the animations keep (at most ``max_frames``, evenly spread, first
  and last kept) is planned at the first epoch from ``fit``'s epoch count. When
  drawing an animated epoch costs more than :data:`ANIMATION_BUDGET` of an
  epoch (hundreds of probes on short epochs), the rest of the plan is thinned
  evenly so that it fits, once, with a notice: the record keeps every epoch,
  and ``cam-callback render`` draws them all after training.

:meth:`EpochPipeline.finish` then only completes the files: one trailer byte per
GIF, plus the last epoch's frames when ``fit`` stopped early.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from cam_callback import animate, metrics
from cam_callback import frames as F
from cam_callback.record import (
    BASELINE_EPOCH,
    RecordDeleted,
    RecordWriter,
    epoch_files,
    load_run,
    write_flags,
)
from cam_callback.tensorboard import SummaryWriter, probe_tag

_STOP = object()
DEFAULT_TENSORBOARD_PROBES = 16
DEFAULT_MAX_FRAMES = 100
FRAME_QUEUE = 4  # epochs waiting to be drawn; beyond this, training waits (memory stays flat)
# The live animations may use this share of an epoch's time on one core, and never thin below
# ANIMATION_FLOOR_S of drawing per epoch: only hundreds of probes on short epochs go over.
ANIMATION_BUDGET = 0.10
ANIMATION_FLOOR_S = 0.5


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


class EpochPipeline:
    """Records, draws, shows and animates the epochs handed to it, off the training thread.

    Args:
        record: An opened :class:`~cam_callback.record.RecordWriter`.
        display: uint8 ``[N, H, W, 3]`` display images.
        labels: int ``[N]`` true classes, or ``None``.
        masks: bool ``[N, H, W]`` probe masks, or ``None``.
        class_names: Names of the classes, or ``None``.
        top_k: Classes in the probability bars.
        alpha: Weight of the heatmap in the overlay.
        tensorboard: Write summaries into the record folder.
        tensorboard_probes: Probe ids with their own image tag (see
            :func:`choose_tensorboard_probes`); the grid and the scalars cover all.
        formats: Animation formats, e.g. ``("gif",)``; empty for none.
        fps: Frames per second of the animations.
        max_frames: Most frames per animation, ``None`` for every epoch.
        every_n_epochs: The tracker's cadence, to plan which epochs to keep.
        total_epochs: ``fit``'s ``epochs``, or ``None`` when unknown.
        mask_kind: ``"object"`` or ``"cue"``: which flagged group gets its own scalars.

    Example:
        >>> pipe = EpochPipeline(writer, display=images, labels=y, masks=None,  # doctest: +SKIP
        ...                      class_names=None, tensorboard_probes=[0, 1])
        >>> pipe.submit(0, heatmaps, probabilities, targets)  # doctest: +SKIP
        >>> pipe.finish()  # doctest: +SKIP
    """

    def __init__(
        self,
        record: RecordWriter,
        *,
        display: np.ndarray,
        labels: np.ndarray | None,
        masks: np.ndarray | None,
        class_names: Sequence[str] | None,
        top_k: int = 3,
        alpha: float = 0.5,
        tensorboard: bool = True,
        tensorboard_probes: Sequence[int] = (),
        formats: Sequence[str] = ("gif",),
        fps: float = 4.0,
        max_frames: int | None = DEFAULT_MAX_FRAMES,
        every_n_epochs: int = 1,
        total_epochs: int | None = None,
        mask_kind: str = "object",
    ) -> None:
        self.record = record
        self.mask_kind = mask_kind  # for the per-group scalars
        self.display = display
        self.labels = labels
        self.masks = masks
        self.class_names = class_names
        self.top_k = top_k
        self.alpha = alpha
        self.n = len(display)
        self.tb_probes = list(tensorboard_probes) if tensorboard else []
        self.formats = tuple(formats)
        self.max_frames = max_frames
        self.every_n = every_n_epochs
        self.total_epochs = total_epochs
        self.writer = SummaryWriter(record.path, make_dirs=False) if tensorboard else None
        self.grid_side, self.grid_captions = animate.grid_layout(self.n)
        self.tags = {i: probe_tag(i, self._label_name(i)) for i in self.tb_probes}
        self._renderers: dict[int, F.FrameRenderer] = {}
        folder = record.path / "animations"
        self.streams: list[animate.GifStream] = []
        self.grid_stream: animate.GifStream | None = None
        if self.formats:
            # Made here, while the record exists; the streams never create it (a record
            # deleted during training is not recreated by its animations).
            folder.mkdir(exist_ok=True)
            self.streams = [
                animate.GifStream(folder / f"probe_{i:03d}.gif", fps, make_dirs=False)
                for i in range(self.n)
            ]
            self.grid_stream = animate.GifStream(folder / "grid.gif", fps, make_dirs=False)
        self.fps = fps
        self._keep: set[int] | None = None  # epochs the animations keep; None: all
        self._planned = False
        self._stride = 1  # with an unknown plan, animate every stride-th epoch (budget)
        self._since_kept = 0
        self._submitted: float | None = None  # when the previous epoch was handed over
        self.notices: list[str] = []  # said once each by the callback, as TrackerWarnings
        # Metric history, owned by the record thread.
        self._previous: np.ndarray | None = None
        self._previous_epoch: int | None = None
        self._first: np.ndarray | None = None
        self.last: tuple[int, np.ndarray, np.ndarray] | None = None  # the newest recorded epoch
        # Failures: (stage, what, epoch, exception); "record" stops recording, "frames" stops
        # drawing. Each is reported once by take_error(); the stage stays stopped.
        self._errors: list[tuple[str, str, int | None, BaseException]] = []
        self.record_failed = False
        self.frames_failed = False
        self.record_gone = False  # the record folder was deleted: nothing more is written
        self.started = False  # bookkeeping of the callback: this fit's first epoch was seen,
        self.offset = 0  # and what it adds to Keras's epoch when one tracker fits again
        self._stop_requested = False  # close() was called on one of our own threads
        self._handover = False  # drain() draws the queued epochs itself
        self._records: queue.Queue = queue.Queue()
        self._frames: queue.Queue = queue.Queue(maxsize=FRAME_QUEUE)
        self._draws = bool(self.writer is not None or self.streams)
        self._record_thread: threading.Thread | None = threading.Thread(
            target=self._record_loop, name="cam-tracker-record", daemon=True
        )
        self._frame_thread: threading.Thread | None = (
            threading.Thread(target=self._frame_loop, name="cam-tracker-frames", daemon=True)
            if self._draws
            else None
        )
        self._record_thread.start()
        if self._frame_thread is not None:
            self._frame_thread.start()

    # -------------------------------------------------------------- training thread

    def submit(
        self,
        epoch: int,
        heatmaps: np.ndarray,
        probabilities: np.ndarray,
        targets: np.ndarray,
        extra_metrics: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Hands one epoch over; returns once the epoch before it is on disk."""
        self._records.join()  # the promise: at most this epoch is not yet durable
        if self.record_failed or self._record_thread is None:
            return
        now = time.monotonic()
        interval = None if self._submitted is None else now - self._submitted
        self._submitted = now
        self._records.put((epoch, heatmaps, probabilities, targets, extra_metrics or {}, interval))

    def take_error(self) -> tuple[str, str, int | None, BaseException] | None:
        """The oldest unreported failure as ``(stage, what, epoch, exception)``, or ``None``.

        ``stage`` is ``"record"`` (nothing more is recorded) or ``"frames"``
        (TensorBoard and the animations stopped; recording goes on).
        """
        return self._errors.pop(0) if self._errors else None

    def raise_pending(self) -> None:
        """Raises the oldest unreported failure of a background thread."""
        failure = self.take_error()
        if failure is not None:
            _, what, epoch, exc = failure
            at = "" if epoch is None else f" of epoch {epoch}" if epoch >= 0 else " before training"
            raise RuntimeError(f"{what}{at} failed: {exc}") from exc

    def drain(self) -> None:
        """Waits until every epoch handed over is recorded and drawn, then stops the threads.

        The frame thread runs at nice 19, so on a busy machine it may be starved: it
        finishes its current epoch, and the calling thread draws the epochs still
        queued, in order, at its own priority.
        """
        self._stop_record_thread()
        thread, self._frame_thread = self._frame_thread, None
        if thread is not None and thread.is_alive():
            self._handover = True
            with contextlib.suppress(OSError, AttributeError):  # allowed for root only
                os.setpriority(os.PRIO_PROCESS, thread.native_id, 0)
            with contextlib.suppress(queue.Full):  # wakes it when idle; when full, it is busy
                self._frames.put_nowait(_STOP)
            thread.join()
        while True:
            try:
                job = self._frames.get_nowait()
            except queue.Empty:
                break
            if job is not _STOP:
                self._frame_job(job)

    @property
    def animating(self) -> bool:
        """Whether the animations received every kept frame so far."""
        return (
            bool(self.streams)
            and not self.frames_failed
            and not self.record_failed
            and not self.record_gone
        )

    def finish_animations(self) -> list[Path]:
        """Completes the animation files (after :meth:`drain`): O(probes), whatever the epochs.

        Returns:
            The files written.
        """
        if not self.animating or self.last is None:
            return []
        return self._finish_animations()

    def finish(self) -> list[Path]:
        """Drains, raises a background failure, writes flags and animations, and closes.

        Returns:
            The animation files written.
        """
        try:
            self.drain()
            self.raise_pending()
            if self.last is None:
                return []
            write_flags(load_run(self.record.path.parent))
            return self.finish_animations()
        finally:
            self.close()

    def close(self) -> None:
        """Stops the threads, closes the writer and releases the record; repeatable.

        Animations not finished stay partial. Also safe when the garbage
        collector runs a finalizer on one of the pipeline's own threads: that
        thread cannot join itself, so it stops after its current job.
        """
        me = threading.current_thread()
        if me is self._record_thread or me is self._frame_thread:
            self._stop_requested = True
            self._records.put(_STOP)
            with contextlib.suppress(queue.Full):
                self._frames.put_nowait(_STOP)
            return
        self._stop_threads()
        self._release()

    # -------------------------------------------------------------- threads

    def _release(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.record.close()

    def _stop_record_thread(self) -> None:
        """Lets the record thread write what was handed over, then joins it."""
        thread, self._record_thread = self._record_thread, None
        if thread is not None and thread.is_alive():
            self._records.put(_STOP)
            thread.join()

    def _stop_threads(self) -> None:
        self._stop_record_thread()
        thread, self._frame_thread = self._frame_thread, None
        if thread is not None and thread.is_alive():
            self._frames.put(_STOP)
            thread.join()

    def _fail(self, stage: str, what: str, epoch: int | None, exc: BaseException) -> None:
        if stage == "record":
            self.record_failed = True
        else:
            self.frames_failed = True
        self._errors.append((stage, what, epoch, exc))

    def _record_loop(self) -> None:
        while True:
            job = self._records.get()
            try:
                if job is _STOP:
                    return
                if not self.record_failed:  # after a failure, keep draining so fit never blocks
                    self._record(*job)
            except BaseException as exc:
                self.record_gone = self.record_gone or isinstance(exc, RecordDeleted)
                self._fail("record", "writing the record", job[0], exc)
            finally:
                self._records.task_done()
            if self._stop_requested:
                self._release()
                return

    def _hand_to_frames(self, job: tuple) -> None:
        while not self.frames_failed and not self._stop_requested:
            try:
                self._frames.put(job, timeout=0.5)
                return
            except queue.Full:
                thread = self._frame_thread
                if thread is None or not thread.is_alive():
                    return  # a stopped frame thread must never block training

    def _record(
        self,
        epoch: int,
        heatmaps: np.ndarray,
        probabilities: np.ndarray,
        targets: np.ndarray,
        extra: dict[str, np.ndarray],
        interval: float | None = None,
    ) -> None:
        # A probe whose probabilities are not finite has no map: NaN, not an all-zero map.
        heatmaps = metrics.mark_not_computed(heatmaps, probabilities)
        previous, first = self._history(epoch)
        values = metrics.epoch_metrics(
            heatmaps,
            probabilities,
            labels=self.labels,
            previous=previous,
            first=first,
            masks=self.masks,
        )
        values.update(extra)
        self.record.write_epoch(
            epoch, heatmaps=heatmaps, probabilities=probabilities, targets=targets, metrics=values
        )
        self._previous, self._previous_epoch = heatmaps, epoch
        if self._first is None:
            self._first = heatmaps
        self.last = (epoch, heatmaps, probabilities)
        if self._draws:
            self._hand_to_frames((epoch, heatmaps, probabilities, values, interval))

    def _history(self, epoch: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Maps of the previous and first recorded epochs before ``epoch`` (resume-aware)."""
        if self._previous is None or self._previous_epoch is None or self._previous_epoch >= epoch:
            prev_epoch = self.record.previous_epoch(epoch)
            data = self.record.read_epoch(prev_epoch) if prev_epoch is not None else None
            self._previous = None if data is None else data["heatmaps"]
        if self._first is None:
            first_epoch = self.record.first_epoch()
            if first_epoch is not None and first_epoch < epoch:
                self._first = self.record.read_epoch(first_epoch)["heatmaps"]
        return self._previous, self._first

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
            if job is _STOP:
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

    # -------------------------------------------------------------- drawing

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
                self._draw(e, data["heatmaps"], data["probabilities"], None, tensorboard=False)

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
        values: dict[str, np.ndarray] | None,
        tensorboard: bool = True,
    ) -> bool:
        """Draws one epoch for TensorBoard and the animations; returns whether it animated."""
        animated = self._animates(epoch)
        shown = self.writer is not None and tensorboard
        needed = range(self.n) if animated else (self.tb_probes if shown else ())
        # Each frame is drawn once, then used by TensorBoard and by the animation.
        drawn = {i: self._renderer(i).draw(heatmaps[i], probabilities[i], epoch) for i in needed}
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
        epoch, heatmaps, probabilities = self.last
        if not self.streams[0].index or self.streams[0].keys[-1] != epoch:
            # fit stopped before its planned end (or the plan was unknown): always end on
            # the last recorded epoch. Fewer planned epochs ran, so max_frames still holds.
            self._keep, self._stride = None, 1
            self._draw(epoch, heatmaps, probabilities, None, tensorboard=False)
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
