"""Which weights a record describes: a fingerprint per recorded epoch, and the rule
for continuing a record.

A fit may continue a record only from the weights of a recorded epoch:

- from the last recorded epoch, it continues (the usual case);
- from an earlier one (a checkpoint older than the record, or
  ``BackupAndRestore`` after a crash between the tracker and its backup), the
  later epochs are set aside in ``cam/set_aside/`` and the record continues from
  there;
- from weights the record never held (a freshly initialised or another model),
  it is refused before the first batch. ``overwrite=True`` starts the record over.

The fingerprint is SHA-256 over every byte of every weight array, with its shape
and dtype, so it is equal only for the same weights bit for bit (a checkpoint
restores them so): one changed value anywhere changes it. See
:func:`~cam_callback.core.fingerprint.weights_fingerprint` for why a full hash and what it costs.
"""

from __future__ import annotations

import os
import sys
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import keras

# Record folder (real path) -> (model, epoch, weights): weights this process watched
# descend from that recorded epoch (a fit interrupted in the middle of the next one).
_WATCHED: dict[str, tuple[weakref.ref, int, str]] = {}


@dataclass(frozen=True)
class Continuation:
    """How a fit relates to the record it writes.

    Attributes:
        kind: ``"new"`` (an empty record: record the state before training),
            ``"continue"``, or ``"refuse"``.
        after: The recorded epoch whose weights the model holds (``"continue"``).
        set_aside: Recorded epochs after ``after``, to move out of the record.
        next_epoch: The record's number for this fit's first epoch.
        message: Why a fit is refused, with the fix; or a notice to warn about.
    """

    kind: str
    after: int | None = None
    set_aside: tuple[int, ...] = field(default=())
    next_epoch: int | None = None
    message: str = ""


def decide(
    weights: str,
    ledger: Mapping[int, str],
    recorded: Sequence[int],
    start: int,
    *,
    log_dir: str,
    own: tuple[int, str] | None = None,
    renumber: bool = False,
) -> Continuation:
    """Applies the continuation rule at a fit's first epoch.

    Args:
        weights: Fingerprint of the model's weights now.
        ledger: Recorded epoch to the fingerprint of its weights.
        recorded: Epochs with a file in the record (the baseline is ``-1``).
        start: Keras's number of this fit's first epoch.
        log_dir: For messages.
        own: ``(last epoch, fingerprint)`` of the weights this tracker saw at the
            end of its previous fit in this process, recorded or not.
        renumber: The same tracker fits again: its epochs follow the record's, whatever
            Keras counts from.

    Example:
        >>> decide("b", {-1: "a", 0: "b", 1: "c"}, [-1, 0, 1], 1, log_dir="r").set_aside
        (1,)
    """
    if not ledger and not recorded:
        return Continuation("new", next_epoch=start)
    matches = [e for e, f in ledger.items() if f == weights]
    if own is not None and own[1] == weights and (not matches or own[0] >= max(matches)):
        after = own[0]
    elif matches:
        after = max(matches)  # weights unchanged over epochs (all frozen): the latest
    elif not ledger:  # a record written before fingerprints were kept: numbering only
        after = max(recorded)
        return _numbered(after, start, (), log_dir, renumber, checked=False)
    else:
        last = max(ledger)
        return Continuation(
            "refuse",
            message=(
                f"the model's weights are not those of any epoch of the record in `log_dir` "
                f"{log_dir} (it goes up to epoch {last}): a freshly initialised or another "
                f"model would mix two runs in one record. Start the record over with "
                f"CAMTracker(..., overwrite=True), keep it and use a new `log_dir`, or "
                f"continue it from the weights of one of its epochs (a checkpoint, or "
                f"keras.callbacks.BackupAndRestore listed after the tracker). "
                f"Received: log_dir={log_dir!r}"
            ),
        )
    later = tuple(e for e in sorted(set(recorded) | set(ledger)) if e > after)
    return _numbered(after, start, later, log_dir, renumber, checked=True)


def _numbered(
    after: int, start: int, later: tuple[int, ...], log_dir: str, renumber: bool, checked: bool
) -> Continuation:
    if renumber:
        return Continuation("continue", after, later, max(start, after + 1))
    if checked and start > after + 1:
        return Continuation(
            "refuse",
            message=(
                f"the model holds the weights of epoch {after} of the record in `log_dir` "
                f"{log_dir}, and this fit starts at epoch {start}: the record would claim "
                f"{start - after - 1} epoch(s) of training that did not happen. Continue with "
                f"model.fit(..., initial_epoch={after + 1}), start the record over with "
                f"CAMTracker(..., overwrite=True), or use a new `log_dir`. "
                f"Received: initial_epoch={start}, log_dir={log_dir!r}"
            ),
        )
    if start <= after:
        return Continuation(
            "refuse",
            message=(
                f"`log_dir` {log_dir} already holds epochs up to {after} from an earlier fit"
                f"{' (the weights of its epoch ' + str(after) + ')' if checked else ''}, and "
                f"this fit starts at epoch {start}: recording it would overwrite them. "
                f"Continue the numbering with model.fit(..., initial_epoch={after + 1}) (to "
                f"fine-tune: initial_epoch=history.epoch[-1] + 1), start the record over with "
                f"CAMTracker(..., overwrite=True), or use a new `log_dir`. "
                f"Received: initial_epoch={start}, log_dir={log_dir!r}"
            ),
        )
    notice = "" if checked else "no weights fingerprints (an older cam-callback): not checked"
    return Continuation("continue", after, later, start, notice)


def later_callbacks(callback: keras.callbacks.Callback) -> list[Any] | None:
    """The callbacks after ``callback`` in the running ``fit``'s list, read from the
    ``CallbackList`` calling it (``None`` when called otherwise).

    Keras calls callbacks in list order, so an ``EarlyStopping`` listed after the
    tracker restores its best weights after the tracker's ``on_train_end``.
    """
    frame: FrameType | None = sys._getframe(1)
    for _ in range(8):  # the hook's caller, through at most a few wrappers
        frame = None if frame is None else frame.f_back
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        if isinstance(owner, keras.callbacks.CallbackList):
            listed = list(owner.callbacks)
            for i, other in enumerate(listed):
                if other is callback:
                    return listed[i + 1 :]
            return None
    return None


def final_weights_epoch(
    weights: str, known: Mapping[int, str], later: Sequence[Any] | None, offset: int
) -> int | None:
    """The epoch whose weights the model holds when ``fit`` returns, or ``None``.

    Args:
        weights: Fingerprint of the weights at the tracker's ``on_train_end``.
        known: Epoch (record numbers) to the fingerprint of its weights.
        later: The callbacks after the tracker (see :func:`later_callbacks`).
        offset: Added to Keras's epochs in this fit.

    Example:
        >>> final_weights_epoch("b", {0: "a", 1: "b", 2: "c"}, [], 0)
        1
    """
    for other in reversed(later or ()):  # the last one to restore wins
        if (
            isinstance(other, keras.callbacks.EarlyStopping)
            and getattr(other, "restore_best_weights", False)
            and getattr(other, "best_weights", None) is not None
        ):
            return int(other.best_epoch) + offset
    matches = [e for e, f in known.items() if f == weights]
    return max(matches) if matches else None


def note_watched(record: str | os.PathLike, model: Any, epoch: int, weights: str) -> None:
    """Remembers, in this process, that ``model``'s weights ``weights`` descend from
    recorded ``epoch`` of ``record`` through training a tracker watched: a fit that
    was interrupted (Ctrl-C) in the middle of the epoch after it.

    A new tracker on the same model object continues the record from them
    (:func:`watched`); another model with those weights is not that model.

    Example:
        >>> note_watched("runs/a/cam", model, 2, "0123456789abcdef")  # doctest: +SKIP
    """
    _WATCHED[os.path.realpath(record)] = (weakref.ref(model), epoch, weights)


def watched(record: str | os.PathLike, model: Any) -> tuple[int, str] | None:
    """``(epoch, weights)`` noted by :func:`note_watched` for ``record`` and this very
    ``model`` object, or ``None``.

    Example:
        >>> watched("no/such/record", object()) is None
        True
    """
    noted = _WATCHED.get(os.path.realpath(record))
    if noted is None or noted[0]() is not model:
        return None
    return noted[1], noted[2]


def forget_watched(record: str | os.PathLike) -> None:
    """Drops what :func:`note_watched` noted for ``record`` (it was continued, or ended)."""
    _WATCHED.pop(os.path.realpath(record), None)
