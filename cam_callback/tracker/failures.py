"""How a failure inside the tracker is reported: re-raised (``on_error="raise"``), or
warned about once, as a :class:`TrackerWarning`, and contained, so that training goes on.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from cam_callback.record import RecordDeleted
from cam_callback.tracker.pipeline import EpochPipeline

ON_ERROR = ("warn", "raise")
STOPPED = "Recording stopped"


class TrackerWarning(UserWarning):
    """A part of the tracker failed and stopped; training went on."""


def warn(message: str, category: type[Warning] = TrackerWarning) -> None:
    """Warns ``CAMTracker: message``, pointing at the hook's caller."""
    warnings.warn(f"CAMTracker: {message}", category, stacklevel=4)


class Failures:
    """Reports a failure inside the tracker: re-raised (``on_error="raise"``), or warned
    about once and contained, so that training goes on.

    Args:
        on_error: ``"warn"`` or ``"raise"``.
        record_path: The record folder, named in the warnings.
        formats: The animation formats: what stops with the frames.
        stop: Ends all recording of this ``fit`` (and releases the record's lock).

    Example:
        >>> failures = Failures("warn", Path("runs/a/cam"), (), stop=lambda: None)
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     failures.fail("writing", 3, OSError("disk full"), "Recording stopped")
        >>> str(caught[0].message)[:55]
        'CAMTracker: writing at epoch 3 failed: OSError: disk fu'
    """

    def __init__(
        self, on_error: str, record_path: Path, formats: Sequence[str], stop: Callable[[], None]
    ) -> None:
        self.on_error = on_error
        self.record_path = record_path
        self.formats = tuple(formats)
        self.stop = stop

    def fail(
        self, what: str, epoch: int | None, exc: BaseException, consequence: str, stop: bool = False
    ) -> None:
        """One failure: re-raised, or warned about; ``stop`` ends all recording of the fit."""
        if self.on_error == "raise":
            raise exc
        if stop:
            self.stop()
        at = "" if epoch is None else f" at epoch {epoch}" if epoch >= 0 else " before training"
        if isinstance(exc, RecordDeleted):  # nothing is kept there: say so, not "keeps"
            warn(
                f"{exc} (noticed while {what}{at}). Recording stopped and the folder is not "
                f'recreated; training goes on. Pass on_error="raise" to stop training instead.'
            )
            return
        warn(
            f"{what}{at} failed: {type(exc).__name__}: {exc}. {consequence}; "
            f"training goes on, and the record in {self.record_path} keeps what was written. "
            f'Pass on_error="raise" to stop training instead.'
        )

    def check_background(self, pipeline: EpochPipeline) -> bool:
        """Says the pipeline's notices, and raises or warns once about each failed stage.

        Returns:
            Whether recording goes on (``False`` once the record stage failed).
        """
        while pipeline.notices:
            warn(pipeline.notices.pop(0))
        while (failure := pipeline.take_error()) is not None:
            stage, what, epoch, exc = failure
            if self.on_error == "raise" and stage == "frames":
                at = f"of epoch {epoch}" if epoch is None or epoch >= 0 else "before training"
                raise RuntimeError(f"{what} {at} failed: {exc}") from exc
            if stage == "record":
                self.fail("recording", epoch, exc, STOPPED, stop=True)
                return False
            consequence = "TensorBoard frames stopped"
            if self.formats:
                consequence = (
                    "TensorBoard frames and animations stopped (cam-callback render "
                    "LOG_DIR draws the animations from the record)"
                )
            self.fail(what, epoch, exc, consequence)
        return True
