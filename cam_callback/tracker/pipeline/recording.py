"""The pipeline's record thread: metrics of each epoch, then the epoch appended to the record.

The training thread hands epoch ``k`` over only once epoch ``k - 1`` is on disk
(:meth:`EpochPipeline.submit`), so a run killed at any instant loses at most the epoch
in flight. The thread then hands the epoch to the frame thread.
"""

from __future__ import annotations

import queue

import numpy as np

from cam_callback import metrics
from cam_callback.record import RecordDeleted
from cam_callback.tracker.pipeline.plan import STOP


class RecordStage:
    """The record thread of :class:`~cam_callback.tracker.pipeline.EpochPipeline` (a mixin).

    It reads the state :class:`~cam_callback.tracker.pipeline.EpochPipeline` sets up: ``record``,
    ``labels``, ``masks``, the queues and the metric history.

    Example:
        >>> issubclass(EpochPipeline, RecordStage)  # doctest: +SKIP
        True
    """

    def _record_loop(self) -> None:
        while True:
            job = self._records.get()
            try:
                if job is STOP:
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
        if self.mask_kind == "cue":  # worst-group accuracy: class x cue mask empty or not
            values.update(metrics.group_metrics(values, self.labels, self.masks))
        self.record.write_epoch(
            epoch, heatmaps=heatmaps, probabilities=probabilities, targets=targets, metrics=values
        )
        self._previous, self._previous_epoch = heatmaps, epoch
        if self._first is None:
            self._first = heatmaps
        self.last = (epoch, heatmaps, probabilities, targets)
        if self._draws:
            self._hand_to_frames((epoch, heatmaps, probabilities, targets, values, interval))

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
