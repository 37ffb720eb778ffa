"""The tracker's steps inside a ``fit``: keep fingerprints, record epochs, report failures.

:class:`~cam_callback.tracker.callback.CAMTracker` holds the Keras hooks and inherits these
steps; the maps themselves come from :func:`cam_callback.tracker.session.epoch_maps`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from cam_callback.metrics import empty_map_notice
from cam_callback.record import (
    BASELINE_EPOCH,
    RecordDeleted,
    Run,
    load_run,
    record_dir,
    write_flags,
)
from cam_callback.report import write_report
from cam_callback.tracker.interrupts import InterruptSteps
from cam_callback.tracker.pipeline import EpochPipeline
from cam_callback.tracker.session import epoch_maps, set_aside_notice

ON_ERROR = ("warn", "raise")


class TrackerWarning(UserWarning):
    """A part of the tracker failed and stopped; training went on."""


class TrackerSteps(InterruptSteps):
    """The per-epoch, failure and closing steps of ``CAMTracker`` (a mixin over its state).

    Example:
        >>> issubclass(CAMTracker, TrackerSteps)  # doctest: +SKIP
        True
    """

    def _keep(self, session: EpochPipeline, epoch: int, weights: str, what: str) -> bool:
        """Stores the fingerprint of every epoch's weights, durably before the next callback
        runs: a ``BackupAndRestore`` listed after the tracker backs up only known weights."""
        try:
            session.record.add_fingerprint(epoch, weights)
            return True
        except Exception as exc:
            at = None if epoch == BASELINE_EPOCH else epoch
            self._fail(what, at, exc, "Recording stopped", stop=True)
            return False

    def _record(self, session: EpochPipeline, epoch: int, what: str) -> None:
        """Computes the maps of ``epoch`` and hands them over."""
        try:
            maps = epoch_maps(self.model, self.cam, self.probe_images, self.target,
                              faithfulness=self.faithfulness, session=session)  # fmt: skip
            session.submit(epoch, *maps)  # the rest runs in the background
            self._recorded.add(epoch)
        except Exception as exc:
            at = None if epoch == BASELINE_EPOCH else epoch
            self._fail(what, at, exc, "Recording stopped", stop=True)

    def _check_background(self, session: EpochPipeline) -> None:
        """Raises (``on_error="raise"``) or warns once about each failed background stage."""
        while session.notices:
            warnings.warn(f"CAMTracker: {session.notices.pop(0)}", TrackerWarning, stacklevel=3)
        while (failure := session.take_error()) is not None:
            stage, what, epoch, exc = failure
            if self.on_error == "raise" and stage == "frames":
                at = f"of epoch {epoch}" if epoch is None or epoch >= 0 else "before training"
                raise RuntimeError(f"{what} {at} failed: {exc}") from exc
            if stage == "record":
                self._fail("recording", epoch, exc, "Recording stopped", stop=True)
                return
            consequence = "TensorBoard frames stopped"
            if self.formats:
                consequence = (
                    "TensorBoard frames and animations stopped (cam-callback render "
                    "LOG_DIR draws the animations from the record)"
                )
            self._fail(what, epoch, exc, consequence)

    def _fail(
        self, what: str, epoch: int | None, exc: BaseException, consequence: str, stop: bool = False
    ) -> None:
        """One failure inside the tracker: re-raised, or warned about and contained.

        ``stop`` ends all recording for this fit (and releases the record's lock).
        """
        if self.on_error == "raise":
            raise exc
        if stop:
            self.close()
        at = "" if epoch is None else f" at epoch {epoch}" if epoch >= 0 else " before training"
        if isinstance(exc, RecordDeleted):  # nothing is kept there: say so, not "keeps"
            self._warn(
                f"{exc} (noticed while {what}{at}). Recording stopped and the folder is not "
                f'recreated; training goes on. Pass on_error="raise" to stop training instead.'
            )
            return
        self._warn(
            f"{what}{at} failed: {type(exc).__name__}: {exc}. {consequence}; "
            f"training goes on, and the record in {self.record_path} keeps what was written. "
            f'Pass on_error="raise" to stop training instead.'
        )

    @staticmethod
    def _warn(message: str) -> None:
        warnings.warn(f"CAMTracker: {message}", TrackerWarning, stacklevel=4)

    def _continue(self, session: EpochPipeline, plan: Any, epoch: int) -> None:
        """Continues the record as ``plan`` (a ``lineage.decide`` result) says: renumbers
        this fit's epochs, warns, and sets aside a line of weights left behind."""
        writer = session.record
        self._from = plan.after
        session.offset = self._offset = plan.next_epoch - epoch
        if plan.message:
            self._warn(plan.message)
        if plan.set_aside:
            try:
                folder = writer.set_aside(plan.set_aside, plan.after)
            except OSError as exc:
                self._fail("setting aside later epochs", None, exc, "Recording stopped", stop=True)
                return
            self._warn(set_aside_notice(plan.set_aside, plan.after, folder))

    def _finish(self, session: EpochPipeline, held: int | None) -> None:
        """Waits for the background work, notes the final weights' epoch, writes the flags
        and finishes the animations; each failure is reported on its own."""
        session.drain()
        self._check_background(session)
        if self._session is None:  # recording failed and stopped
            return
        try:
            session.record.note_final_weights(held)
            run = load_run(self.log_dir)
        except Exception as exc:
            self._fail("reading back the record", None, exc, "No flags or animations")
            return
        if run.epochs:
            try:
                write_flags(run)
            except Exception as exc:  # the flags are recomputed from the metrics on read
                self._fail("writing flags.json", None, exc, "flags.json is not updated")
            self._warn_empty(run)
        if self.formats and run.epochs:
            try:
                session.finish_animations()  # O(probes): the frames are on disk
            except Exception as exc:
                self._fail("writing the animations", None, exc, "Animations stopped")
        if self.report and run.epochs:
            self._write_report(run)

    def _warn_empty(self, run: Any) -> None:
        """Warns once per fit when most probes end with an empty map (``empty_map``)."""
        try:
            empty = run.flags["empty_map"]
        except Exception:  # the flags are the record's; reading them is best effort here
            return
        notice = empty_map_notice(
            empty, layer=run.layer, method=run.method, score=run.meta.get("score", "?")
        )
        if notice is not None:
            warnings.warn(f"CAMTracker: {notice}", UserWarning, stacklevel=4)

    def _write_report(self, run: Run) -> None:
        """Writes the review page (:func:`write_report`): it hardlinks the tracker's GIFs
        that are newer than the record and draws only what is missing, at the tracker's
        ``fps``. A failure warns (even with ``on_error="raise"``): the record is complete,
        and ``cam-callback report LOG_DIR`` writes the page from it."""
        try:
            page = write_report(run, threshold=self.low_confidence, fps=self.fps)
        except Exception as exc:
            self._warn(
                f"writing the review page failed: {type(exc).__name__}: {exc}. The record in "
                f"{self.record_path} is complete; `cam-callback report {self.log_dir}` "
                "writes the page from it."
            )
            return
        if self.report_page is None:  # once per tracker: the path stays the same
            print(f"CAMTracker: review page {page}")
        self.report_page = page

    def close(self) -> None:
        """Stops the background threads and closes the TensorBoard writer; safe to repeat.

        A ``fit`` that raises (Ctrl-C, or an error) calls no callback: the tracker
        notices it within a fraction of a second and ends it as a finished one (flags,
        animations and page written, one line printed); leaving a ``with`` block
        around ``fit`` does so at once. This only stops and closes, as garbage
        collection and the interpreter's exit do.
        """
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.stop(join=False)
        session, self._session = self._session, None
        finalizer, self._finalizer = self._finalizer, None
        if finalizer is not None:
            finalizer.detach()  # the tracker's session is closed here, not again when collected
        if session is not None:
            session.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._end_abandoned()  # fit raised inside the block: end it as a finished one
        self.close()

    @property
    def record_path(self) -> Path:
        """The record folder, ``log_dir/cam``."""
        return record_dir(self.log_dir)
