"""The epoch pipeline: hands epochs to the record thread, and stops and reports both threads.

The record thread's work is in :mod:`~cam_callback.tracker.pipeline.recording`, the frame
thread's in :mod:`~cam_callback.tracker.pipeline.drawing`.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cam_callback import animate
from cam_callback import frames as F
from cam_callback.record import RecordWriter, load_run, write_flags
from cam_callback.record.tensorboard import SummaryWriter, probe_tag
from cam_callback.tracker.pipeline.drawing import FrameStage
from cam_callback.tracker.pipeline.evidence import EvidenceOptions, EvidenceTransplant
from cam_callback.tracker.pipeline.interventions import FragilityOptions, ProbeInterventions
from cam_callback.tracker.pipeline.plan import DEFAULT_MAX_FRAMES, FRAME_QUEUE, STOP
from cam_callback.tracker.pipeline.recording import RecordStage


class EpochPipeline(RecordStage, FrameStage):
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
        probe_images: ``[N, H, W, C]`` probes in the model's input space: with ``masks``
            (and ``interventions``) or ``fragility``, the altered probes are built here,
            once, as :attr:`interventions`.
        interventions: Measure reliance, sufficiency and the transplant rate (needs masks).
        fragility: Fragility options, or ``None``.
        evidence: Evidence transplant options (with ``probe_images``), or ``None``: built
            as :attr:`evidence`.

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
        probe_images: np.ndarray | None = None,
        interventions: bool = True,
        fragility: FragilityOptions | None = None,
        evidence: EvidenceOptions | None = None,
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
        # Built once, before the first epoch and before any file is opened: each epoch then
        # only runs the model on them.
        self.interventions: ProbeInterventions | None = None
        if probe_images is not None and ((masks is not None and interventions) or fragility):
            self.interventions = ProbeInterventions(
                probe_images, masks if interventions else None, labels, mask_kind, fragility
            )
        self.evidence: EvidenceTransplant | None = None
        if probe_images is not None and evidence is not None:
            self.evidence = EvidenceTransplant(probe_images, labels, masks, evidence)
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
        # the newest recorded epoch: (epoch, heatmaps, probabilities, targets)
        self.last: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = None
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
                self._frames.put_nowait(STOP)
            thread.join()
        while True:
            try:
                job = self._frames.get_nowait()
            except queue.Empty:
                break
            if job is not STOP:
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
            self._records.put(STOP)
            with contextlib.suppress(queue.Full):
                self._frames.put_nowait(STOP)
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
            self._records.put(STOP)
            thread.join()

    def _stop_threads(self) -> None:
        self._stop_record_thread()
        thread, self._frame_thread = self._frame_thread, None
        if thread is not None and thread.is_alive():
            self._frames.put(STOP)
            thread.join()

    def _fail(self, stage: str, what: str, epoch: int | None, exc: BaseException) -> None:
        if stage == "record":
            self.record_failed = True
        else:
            self.frames_failed = True
        self._errors.append((stage, what, epoch, exc))
