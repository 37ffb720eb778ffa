"""The epoch pipeline: composes the record and frame stages, owns their two threads, the
hand-over between them, and the stopping and reporting of both.

The training thread calls :meth:`EpochPipeline.submit`; the record thread runs
:meth:`RecordStage.record <cam_callback.tracker.pipeline.RecordStage.record>` and hands what it
wrote to the frame thread, which runs
:meth:`FrameStage.frame <cam_callback.tracker.pipeline.FrameStage.frame>`.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from pathlib import Path

import numpy as np

from cam_callback.record import RecordDeleted, load_run, write_flags
from cam_callback.tracker.pipeline.drawing import FrameStage
from cam_callback.tracker.pipeline.evidence import EvidenceTransplant
from cam_callback.tracker.pipeline.interventions import ProbeInterventions
from cam_callback.tracker.pipeline.plan import FRAME_QUEUE, STOP
from cam_callback.tracker.pipeline.recording import (
    EpochMaps,
    RecordedEpoch,
    RecordPresence,
    RecordStage,
)


class EpochPipeline:
    """Records, draws, shows and animates the epochs handed to it, off the training thread.

    It composes the two stages: each epoch handed over goes to ``recorder`` on the record
    thread, and what it wrote to ``frames`` on the frame thread (at nice 19). Built by
    :func:`~cam_callback.tracker.pipeline.build_pipeline`.

    Args:
        recorder: The record stage, over the opened record it writes.
        frames: The frame stage; its thread runs only when it draws something.
        present: Whether the record is still there (shared with ``frames``).
        total_epochs: ``fit``'s ``epochs``, or ``None`` when unknown.
        interventions: The altered probes, run through the model each epoch, or ``None``.
        evidence: The evidence transplant, or ``None``.

    Example:
        >>> pipe = build_pipeline(writer, display=images, labels=y, masks=None,  # doctest: +SKIP
        ...                       class_names=None, tensorboard_probes=[0, 1])
        >>> pipe.submit(0, heatmaps, probabilities, targets)  # doctest: +SKIP
        >>> pipe.finish()  # doctest: +SKIP
    """

    def __init__(
        self,
        recorder: RecordStage,
        frames: FrameStage,
        *,
        present: RecordPresence,
        total_epochs: int | None = None,
        interventions: ProbeInterventions | None = None,
        evidence: EvidenceTransplant | None = None,
    ) -> None:
        self.recorder = recorder
        self.frames = frames
        self.record = recorder.writer
        self.present = present
        self.total_epochs = total_epochs
        self.offset = 0  # what the record adds to Keras's epochs (set before the first epoch)
        self.interventions = interventions  # run by the training thread (it needs the model)
        self.evidence = evidence
        self._submitted: float | None = None  # when the previous epoch was handed over
        # Failures: (stage, what, epoch, exception); "record" stops recording, "frames" stops
        # drawing. Each is reported once by take_error(); the stage stays stopped.
        self._errors: list[tuple[str, str, int | None, BaseException]] = []
        self.record_failed = False
        self.frames_failed = False
        self._stop_requested = False  # close() was called on one of our own threads
        self._handover = False  # drain() draws the queued epochs itself
        self._records: queue.Queue[EpochMaps | object] = queue.Queue()
        self._frames: queue.Queue[RecordedEpoch | object] = queue.Queue(maxsize=FRAME_QUEUE)
        self._record_thread: threading.Thread | None = threading.Thread(
            target=self._record_loop, name="cam-tracker-record", daemon=True
        )
        self._frame_thread: threading.Thread | None = (
            threading.Thread(target=self._frame_loop, name="cam-tracker-frames", daemon=True)
            if frames.draws
            else None
        )
        self._record_thread.start()
        if self._frame_thread is not None:
            self._frame_thread.start()

    @property
    def record_gone(self) -> bool:
        """Whether the record folder was deleted: nothing more is written."""
        return self.present.gone

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
        maps = EpochMaps(epoch, heatmaps, probabilities, targets, extra_metrics or {}, interval)
        self._records.put(maps)

    @property
    def notices(self) -> list[str]:
        """Notices to say once each (the animation budget); the caller pops them."""
        return self.frames.notices

    @property
    def last(self) -> RecordedEpoch | None:
        """The newest recorded epoch of this pipeline, or ``None``."""
        return self.recorder.last

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
            native = thread.native_id
            with contextlib.suppress(OSError, AttributeError):  # allowed for root only
                if native is not None:
                    os.setpriority(os.PRIO_PROCESS, native, 0)
            with contextlib.suppress(queue.Full):  # wakes it when idle; when full, it is busy
                self._frames.put_nowait(STOP)
            thread.join()
        while True:
            try:
                job = self._frames.get_nowait()
            except queue.Empty:
                break
            if isinstance(job, RecordedEpoch):
                self._draw(job)

    @property
    def animating(self) -> bool:
        """Whether the animations received every kept frame so far."""
        return (
            self.frames.animations is not None
            and not self.frames_failed
            and not self.record_failed
            and not self.record_gone
        )

    def finish_animations(self) -> list[Path]:
        """Completes the animation files (after :meth:`drain`): O(probes), whatever the epochs.

        Returns:
            The files written.
        """
        last = self.recorder.last
        if not self.animating or last is None:
            return []
        return self.frames.finish(last)

    def finish(self) -> list[Path]:
        """Drains, raises a background failure, writes flags and animations, and closes.

        Returns:
            The animation files written.
        """
        try:
            self.drain()
            self.raise_pending()
            if self.recorder.last is None:
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

    # -------------------------------------------------------------- the threads

    def _record_loop(self) -> None:
        """The record thread: each epoch written, then handed to the frame thread."""
        while True:
            job = self._records.get()
            try:
                if not isinstance(job, EpochMaps):
                    return
                if not self.record_failed:  # after a failure, keep draining so fit never blocks
                    recorded = self.recorder.record(job)
                    if self.frames.draws:
                        self._hand_to_frames(recorded)
            except BaseException as exc:
                if isinstance(exc, RecordDeleted):
                    self.present.gone = True
                self._fail("record", "writing the record", getattr(job, "epoch", None), exc)
            finally:
                self._records.task_done()
            if self._stop_requested:
                self._release()
                return

    def _hand_to_frames(self, job: RecordedEpoch) -> None:
        while not self.frames_failed and not self._stop_requested:
            try:
                self._frames.put(job, timeout=0.5)
                return
            except queue.Full:
                thread = self._frame_thread
                if thread is None or not thread.is_alive():
                    return  # a stopped frame thread must never block training

    def _frame_loop(self) -> None:
        """The frame thread, at nice 19: each recorded epoch drawn."""
        # Linux schedules threads separately: at nice 19 drawing takes the CPU that
        # training leaves idle instead of competing with TensorFlow's workers.
        if hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        while not self._handover:  # drain() draws what is left
            job = self._frames.get()
            if not isinstance(job, RecordedEpoch):
                return
            self._draw(job)
            if self._stop_requested:
                self._release()
                return

    def _draw(self, job: RecordedEpoch) -> None:
        """Has the frame stage draw one epoch; a failure stops drawing, never recording."""
        if self.frames_failed or not self.present():  # keep draining so fit never blocks
            return
        try:
            if not self.frames.plan.started:
                first = job.epoch
                total = None if self.total_epochs is None else self.total_epochs + self.offset
                earlier = self.recorder.recorded_before(first)
                self.frames.start(first, total, earlier, self.recorder.read)
            self.frames.frame(job)
        except BaseException as exc:
            if self.present():  # a deleted record is reported once, by the record's stage
                self._fail("frames", self.frames.what, job.epoch, exc)

    def _release(self) -> None:
        if self.frames.summaries is not None:
            self.frames.summaries.close()
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
