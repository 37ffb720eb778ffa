"""How a tracker's ``fit`` ends, and what it hands on to the next: at ``on_train_end``, or,
left without it (Ctrl-C in a notebook, or an error raised through ``fit``), as a finished
one, and the ``fit`` after it, which continues the record.

:class:`FitGuard` holds the fit while it records and ends it either way
(:meth:`FitGuard.end`, :meth:`FitGuard.end_abandoned`); :class:`RecordLine` is what one
fit hands on to the next and decides how the next one continues the record.

Keras calls no callback when ``fit`` raises. The tracker's :class:`FitGuard` watches its
``fit`` (:class:`~cam_callback.tracker.watch.FitWatch`) and, when it is gone without
``on_train_end``, ends it (:func:`end_interrupted`): joins the threads, releases
the record's lock, writes the flags, animations and page from what was recorded, prints one
line, and notes the interruption in ``record.json``'s ``history``. The model's weights then
descend from the last epoch that fit saw through training this process watched: ``fit``
again with the same tracker (its :class:`RecordLine`), or a new tracker on the same model
object, continues the record from them (:func:`cam_callback.tracker.lineage.note_watched`);
other weights are refused as before.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cam_callback.core.fingerprint import weights_fingerprint
from cam_callback.record import epoch_files, record_dir
from cam_callback.tracker import lineage
from cam_callback.tracker.failures import STOPPED, warn
from cam_callback.tracker.steps import FitState, FitSteps
from cam_callback.tracker.watch import FitWatch

# Ending a fit (on_train_end, or a fit left without it) is done by one thread at a time.
_ENDING = threading.RLock()
# Record folder (real path) -> the guard of the tracker whose fit writes it now.
_WRITING: weakref.WeakValueDictionary[str, FitGuard] = weakref.WeakValueDictionary()


@dataclass
class RecordLine:
    """What a tracker's ``fit`` hands on to its next ``fit``, in this process.

    Attributes:
        next_epoch: The record's number after the last epoch an earlier fit trained.
        own: ``(epoch, weights)`` the model held at the end of the last fit.
        interrupted: The last fit was interrupted: the next one continues after it.
        wrote: This tracker wrote the record: ``overwrite=True`` applies no more.

    Example:
        >>> RecordLine().next_epoch is None
        True
    """

    next_epoch: int | None = None
    own: tuple[int, str] | None = None
    interrupted: bool = False
    wrote: bool = False

    def decide(
        self, steps: FitSteps, model: Any, weights: str, epoch: int, log_dir: str
    ) -> lineage.Continuation:
        """:func:`lineage.decide` for a fit's first epoch (Keras's ``epoch``) over the record
        of ``steps``; a fit after an interrupted one (this tracker's, or another's on this
        very model object) continues after it, noted in the record's history."""
        writer = steps.pipeline.record
        noted = None if self.own else lineage.watched(writer.path, model)
        own = self.own or noted
        plan = lineage.decide(
            weights,
            writer.fingerprints() or {},
            list(epoch_files(writer.path)),
            epoch,
            log_dir=log_dir,
            own=own,
            renumber=self.next_epoch is not None or noted is not None,
        )
        resumed = (self.interrupted or noted is not None) and own is not None
        if plan.kind == "continue" and resumed and (plan.after, weights) == tuple(own or ()):
            try:
                writer.add_history(
                    "continued after the interruption",
                    after_epoch=plan.after,
                    first_epoch=plan.next_epoch,
                    weights=weights,
                )
            except OSError as exc:
                steps.failures.fail("noting the continuation", None, exc, STOPPED, stop=True)
            self.interrupted = False
            lineage.forget_watched(writer.path)
        return plan

    def ended(self, fit: FitState, weights: str, ledger: Mapping[int, str]) -> int | None:
        """Notes, at ``on_train_end``, which recorded epoch's weights the model holds
        (``weights``; ``ledger``: the record's fingerprints), and returns that epoch."""
        known = {**ledger, **fit.seen}
        held = lineage.final_weights_epoch(weights, known, fit.later, fit.offset)
        fit.later = None  # holds the other callbacks (EarlyStopping's best weights)
        self.own = None if held is None else (held, known.get(held, weights))
        return held


class FitGuard:
    """Holds the ``fit`` a tracker records and guarantees its end: the fit's steps while it
    records, a finalizer that closes its pipeline if the tracker is dropped, and a watch
    that ends the fit as a finished one, once, if it leaves without ``on_train_end``.

    Args:
        line: The tracker's :class:`RecordLine`, noted when its fit was interrupted.

    Example:
        >>> guard = FitGuard(RecordLine())
        >>> guard.end_abandoned()  # no fit held: nothing to end
        >>> guard.steps is None
        True
    """

    def __init__(self, line: RecordLine) -> None:
        self.line = line
        self.steps: FitSteps | None = None  # the fit's steps, while it records
        self.watch: FitWatch | None = None  # notices a fit that leaves without on_train_end
        self.finalizer: weakref.finalize | None = None
        self._model: Any = None

    def hold(self, owner: object, steps: FitSteps, model: Any) -> None:
        """Holds ``steps`` until :meth:`close`; closes its pipeline if ``owner`` (the tracker)
        is collected first, and watches ``model``'s running ``fit``."""
        self.steps, self._model = steps, model
        # Closes the writer and stops the threads even if fit raises and the tracker is dropped.
        self.finalizer = weakref.finalize(owner, steps.pipeline.close)
        _WRITING[os.path.realpath(steps.pipeline.record.path)] = self
        self.watch = FitWatch(model, self.end_abandoned)

    def end(self, fit: FitState, model: Any) -> None:
        """Ends ``fit`` at ``on_train_end``: notes which epoch's weights ``model`` holds,
        records the last epoch if it was not due and the model still holds its weights,
        waits for the background work, writes the flags, animations and page, and closes."""
        with _ENDING:  # the watch calls back no more; it is joined outside the lock
            watch = self._drop_watch()
        if watch is not None:
            watch.stop()
        weights = weights_fingerprint(model)
        steps = self.steps
        ledger = None if steps is None else steps.pipeline.record.fingerprints()
        held = self.line.ended(fit, weights, ledger or {})
        if steps is None:
            return
        try:  # the writer lock is held until the animations are written
            steps.record_last(weights)
            if self.steps is not None:  # else recording failed, and stopped
                steps.finish(held)
        finally:
            self.close()

    def close(self) -> None:
        """Stops watching and closes the fit's pipeline (threads, writers, lock); repeatable."""
        self._drop_watch()
        steps, self.steps, self._model = self.steps, None, None
        finalizer, self.finalizer = self.finalizer, None
        if finalizer is not None:
            finalizer.detach()  # the pipeline is closed here, not again when collected
        if steps is not None:
            steps.pipeline.close()

    def end_abandoned(self, watch: FitWatch | None = None) -> None:
        """Ends the fit if it left without ``on_train_end`` (Ctrl-C, or an error raised
        through ``fit``), with :func:`end_interrupted`, then closes.

        Called by the fit's :class:`FitWatch` (from its thread, with itself), at the next
        ``on_train_begin``, and when a ``with`` block around ``fit`` exits.
        """
        with _ENDING:
            if watch is not None and watch is not self.watch:
                return  # on_train_end ran, or this end was handled already
            steps = self.steps
            if steps is None:
                return
            self._drop_watch()
            try:
                end_interrupted(steps, self.line, self._model)
            except Exception as exc:  # noqa: BLE001 - reported, never raised from a thread
                warn(f"ending the interrupted fit failed: {type(exc).__name__}: {exc}")
            finally:
                self.close()

    @staticmethod
    def end_abandoned_writer(log_dir: str | os.PathLike[str]) -> None:
        """Ends the fit of another tracker of this process that writes ``log_dir`` and
        was left without ``on_train_end`` (its watch may not have looked yet)."""
        with _ENDING:  # and waits for an end in progress on the watch's thread
            other = _WRITING.get(os.path.realpath(record_dir(log_dir)))
            watch = None if other is None else other.watch
            if other is not None and watch is not None and watch.abandoned():
                other.end_abandoned(watch)

    def _drop_watch(self) -> FitWatch | None:
        watch, self.watch = self.watch, None
        if watch is not None:
            watch.stop(join=False)
        return watch


def end_interrupted(steps: FitSteps, line: RecordLine, model: Any) -> None:
    """Ends a fit left without ``on_train_end`` as a finished one: the flags, animations
    and page written from what was recorded (``steps.finish``), and one printed line.

    The interruption goes into ``record.json``'s ``history``, and the model's weights are
    noted (in ``line``, and for this very model object) as descending from the last epoch
    this fit saw, so that ``fit`` again (this tracker, or a new one on the same model
    object) continues the record.

    Example:
        >>> end_interrupted(guard.steps, guard.line, model)  # doctest: +SKIP
        CAMTracker: fit was interrupted during epoch 3 (Ctrl-C, ...
    """
    fit, record = steps.fit, steps.pipeline.record
    fit.later = None  # holds the other callbacks
    weights = weights_fingerprint(model)
    known = {**(record.fingerprints() or {}), **fit.seen}
    held = lineage.final_weights_epoch(weights, known, None, 0)
    after = held if held is not None else max(fit.seen, default=fit.after)
    if fit.started:  # else the weights are as before this fit: nothing new to note
        line.own, line.next_epoch, line.interrupted = (after, weights), after + 1, True
        lineage.note_watched(record.path, model, after, weights)
        during = "" if held is not None else f" during epoch {after + 1}"
        record.add_history("interrupted", after_epoch=after, weights=weights, weights_epoch=held)
    else:
        during = " before its first epoch"
    steps.finish(held)
    print(
        f"CAMTracker: fit was interrupted{during} (Ctrl-C, or an error raised through "
        f"fit); the record in {record.path} "
        f"keeps what was recorded, and its flags, animations and page are written. "
        "fit again (this tracker, or a new one on this model) continues it."
    )
