"""A ``fit`` left without ``on_train_end`` (Ctrl-C in a notebook, or an error raised
through ``fit``), ended as a finished one, and the ``fit`` after it, which continues the
record.

Keras calls no callback when ``fit`` raises. The tracker watches its ``fit``
(:class:`~cam_callback.tracker.watch.FitWatch`) and, when it is gone without ``on_train_end``,
joins the threads, releases the record's lock, writes the flags, animations and page
from what was recorded, prints one line, and notes the interruption in
``record.json``'s ``history``. The model's weights then descend from the last epoch
that fit saw through training this process watched: ``fit`` again with the same
tracker, or a new tracker on the same model object, continues the record from them
(:func:`cam_callback.tracker.lineage.note_watched`); other weights are refused as before.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

from cam_callback.core.fingerprint import weights_fingerprint
from cam_callback.record import BASELINE_EPOCH, epoch_files, record_dir
from cam_callback.tracker import lineage
from cam_callback.tracker.pipeline import EpochPipeline
from cam_callback.tracker.watch import FitWatch

# Ending a fit (on_train_end, or a fit left without it) is done by one thread at a time.
_ENDING = threading.RLock()
# Record folder (real path) -> the tracker whose fit writes it now, in this process.
_WRITING: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()


class InterruptSteps:
    """The steps of ``CAMTracker`` around an interrupted ``fit`` (a mixin over its state).

    Example:
        >>> issubclass(CAMTracker, InterruptSteps)  # doctest: +SKIP
        True
    """

    _watch: FitWatch | None = None  # notices a fit that leaves without on_train_end
    _from = BASELINE_EPOCH  # the recorded epoch this fit's weights descend from
    _interrupted = False  # the last fit was interrupted: the next one continues after it

    def _decide(self, session: EpochPipeline, weights: str, epoch: int) -> Any:
        """``lineage.decide`` for this fit's first epoch; a fit after an interrupted one
        (this tracker's, or another's on this very model object) continues after it."""
        writer = session.record
        noted = None if self._own else lineage.watched(writer.path, self.model)
        own = self._own or noted
        plan = lineage.decide(
            weights,
            writer.fingerprints() or {},
            list(epoch_files(writer.path)),
            epoch,
            log_dir=str(self.log_dir),
            own=own,
            renumber=self._next_epoch is not None or noted is not None,
        )
        resumed = (self._interrupted or noted is not None) and own is not None
        if plan.kind == "continue" and resumed and (plan.after, weights) == tuple(own):
            try:
                writer.add_history(
                    "continued after the interruption",
                    after_epoch=plan.after,
                    first_epoch=plan.next_epoch,
                    weights=weights,
                )
            except OSError as exc:
                self._fail("noting the continuation", None, exc, "Recording stopped", stop=True)
            self._interrupted = False
            lineage.forget_watched(writer.path)
        return plan

    def _watch_fit(self, session: EpochPipeline) -> None:
        """Starts watching this fit, to end it even if it leaves without ``on_train_end``."""
        _WRITING[os.path.realpath(session.record.path)] = self
        self._watch = FitWatch(self.model, self._end_abandoned)

    def _stop_watch(self) -> FitWatch | None:
        """``on_train_end`` runs: the watch calls back no more. Join it outside ``_ENDING``."""
        with _ENDING:
            watch, self._watch = self._watch, None
            if watch is not None:
                watch.stop(join=False)
        return watch

    @staticmethod
    def _end_abandoned_writer(log_dir: Any) -> None:
        """Ends the fit of another tracker of this process that writes ``log_dir`` and
        was left without ``on_train_end`` (its watch may not have looked yet)."""
        with _ENDING:  # and waits for an end in progress on the watch's thread
            other = _WRITING.get(os.path.realpath(record_dir(log_dir)))
            watch = None if other is None else other._watch
            if watch is not None and watch.abandoned():
                other._end_abandoned(watch)

    def _end_abandoned(self, watch: FitWatch | None = None) -> None:
        """Ends a fit that left without ``on_train_end`` (Ctrl-C, or an error raised
        through ``fit``) as a finished one: threads joined, lock released, flags,
        animations and page written from what was recorded, and one printed line.

        Called by the fit's :class:`FitWatch` (from its thread), at the next
        ``on_train_begin``, and when a ``with`` block around ``fit`` exits. The
        interruption goes into ``record.json``'s ``history``, and the model's weights are
        noted as descending from the last epoch this fit saw, so that ``fit`` again
        (this tracker, or a new one on the same model object) continues the record.
        """
        with _ENDING:
            if watch is not None and watch is not self._watch:
                return  # on_train_end ran, or this end was handled already
            session = self._session
            if session is None:
                return
            current, self._watch = self._watch, None
            if current is not None:
                current.stop(join=False)
            try:
                self._end_interrupted(session)
            except Exception as exc:  # noqa: BLE001 - reported, never raised from a thread
                self._warn(f"ending the interrupted fit failed: {type(exc).__name__}: {exc}")
            finally:
                self.close()

    def _end_interrupted(self, session: EpochPipeline) -> None:
        self._later = None  # holds the other callbacks
        weights = weights_fingerprint(self.model)
        known = {**(session.record.fingerprints() or {}), **self._seen}
        held = lineage.final_weights_epoch(weights, known, None, 0)
        after = held if held is not None else max(self._seen, default=self._from)
        if session.started:  # else the weights are as before this fit: nothing new to note
            self._own, self._next_epoch, self._interrupted = (after, weights), after + 1, True
            lineage.note_watched(session.record.path, self.model, after, weights)
            during = "" if held is not None else f" during epoch {after + 1}"
            session.record.add_history(
                "interrupted", after_epoch=after, weights=weights, weights_epoch=held
            )
        else:
            during = " before its first epoch"
        self._finish(session, held)
        print(
            f"CAMTracker: fit was interrupted{during} (Ctrl-C, or an error raised through "
            f"fit); the record in {self.record_path} "
            f"keeps what was recorded, and its flags, animations and page are written. "
            "fit again (this tracker, or a new one on this model) continues it."
        )
