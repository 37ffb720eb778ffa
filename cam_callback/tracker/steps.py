"""The tracker's steps inside a ``fit``, as objects the callback holds and calls.

- :func:`open_record` and :func:`start_pipeline`: a fit's record opened and its pipeline
  started, a failure of either contained (:class:`~.failures.Failures`);
- :class:`FitState`: what one ``fit`` has seen (its epochs' weights, the recorded ones,
  how its epochs are numbered), kept after recording stopped;
- :class:`FitSteps`: the steps over one ``fit``'s pipeline while it records: keep each
  epoch's fingerprint, record an epoch, continue the record, finish the files.

The maps themselves come from :func:`cam_callback.tracker.session.epoch_maps`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cam_callback.metrics import empty_map_notice
from cam_callback.record import BASELINE_EPOCH, RecordWriter, Run, load_run, write_flags
from cam_callback.report import write_report
from cam_callback.tracker.failures import STOPPED, Failures, warn
from cam_callback.tracker.lineage import Continuation
from cam_callback.tracker.pipeline import EpochPipeline
from cam_callback.tracker.session import set_aside_notice

# heatmaps, probabilities, targets, extra metrics: the maps of the model now
Maps = tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]


def open_record(
    log_dir: Path,
    owner: str,
    meta: Mapping[str, Any],
    arrays: Mapping[str, Any],
    overwrite: bool,
    failures: Failures,
) -> RecordWriter | None:
    """The record in ``log_dir`` opened (and locked, by ``owner``) for a fit, with ``meta``
    and the probes' ``arrays`` (``images``, ``labels``, ``masks``). ``None``, reported, on a
    full or failing disk; a record that cannot be continued raises ``ValueError``.

    Example:
        >>> writer = open_record(log_dir, "a tracker", cfg.to_json(),  # doctest: +SKIP
        ...                      dict(images=display), overwrite=False, failures=failures)
    """
    writer = RecordWriter(log_dir, owner=owner)
    try:
        writer.open(meta, **arrays, overwrite=overwrite)
    except OSError as exc:
        failures.fail("opening the record", None, exc, "Nothing is recorded in this fit")
        return None
    return writer


def start_pipeline(
    writer: RecordWriter, build: Callable[[RecordWriter], EpochPipeline], failures: Failures
) -> EpochPipeline | None:
    """``build(writer)``: the fit's pipeline over the opened record (it builds the
    interventions' altered probes: sparse solves, memory). ``None``, reported and the
    record released, when that fails: the observer never stops ``fit``.

    Example:
        >>> pipe = start_pipeline(writer, build_pipeline_for_fit, failures)  # doctest: +SKIP
    """
    try:
        return build(writer)
    except Exception as exc:  # noqa: BLE001 - contained and reported
        writer.close()
        failures.fail("starting the pipeline", None, exc, "Nothing is recorded in this fit")
        return None


@dataclass
class FitState:
    """What one ``fit`` has seen; kept after its recording stopped, for the next ``fit``.

    Attributes:
        chief: This process writes the record.
        seen: This fit's epochs (record numbers) to the fingerprint of their weights.
        recorded: This fit's recorded epochs.
        after: The recorded epoch this fit's weights descend from.
        offset: Added to Keras's epochs in this fit (the record's numbering).
        later: The callbacks after the tracker in ``fit``'s list, until ``on_train_end``.
        started: This fit's first epoch began (the continuation was decided).
    """

    chief: bool = False
    seen: dict[int, str] = field(default_factory=dict)
    recorded: set[int] = field(default_factory=set)
    after: int = BASELINE_EPOCH
    offset: int = 0
    later: list[Any] | None = None
    started: bool = False


class FitSteps:
    """The steps over one ``fit``'s pipeline, while it records.

    Args:
        pipeline: The fit's pipeline, over the opened record.
        fit: What the fit has seen; the recorded epochs and the offset are noted here.
        failures: How failures are reported.
        maps: Computes the maps of the model now, on the training thread.
        report: Write the review page at the end.
        low_confidence: The review page's low-confidence threshold.
        fps: Frames per second of the page's animations.
        on_page: Called with the review page once it is written.

    Example:
        >>> steps = FitSteps(pipeline, FitState(chief=True), failures,  # doctest: +SKIP
        ...                  maps=lambda: epoch_maps(tracker, pipeline))
        >>> if steps.keep(0, weights, "recording"):  # doctest: +SKIP
        ...     steps.record(0, "recording")
    """

    def __init__(
        self,
        pipeline: EpochPipeline,
        fit: FitState,
        failures: Failures,
        maps: Callable[[], Maps],
        *,
        report: bool = True,
        low_confidence: float = 0.5,
        fps: float = 4.0,
        on_page: Callable[[Path], None] = lambda page: None,
    ) -> None:
        self.pipeline = pipeline
        self.fit = fit
        self.failures = failures
        self.maps = maps
        self.log_dir = pipeline.record.path.parent  # the record is read back from there
        self.report = report
        self.low_confidence = low_confidence
        self.fps = fps
        self.on_page = on_page

    def keep(self, epoch: int, weights: str, what: str) -> bool:
        """Stores the fingerprint of an epoch's weights, durably before the next callback
        runs: a ``BackupAndRestore`` listed after the tracker backs up only known weights."""
        try:
            self.pipeline.record.add_fingerprint(epoch, weights)
            return True
        except Exception as exc:
            at = None if epoch == BASELINE_EPOCH else epoch
            self.failures.fail(what, at, exc, STOPPED, stop=True)
            return False

    def record(self, epoch: int, what: str) -> None:
        """Computes the maps of ``epoch`` and hands them to the pipeline."""
        try:
            self.pipeline.submit(epoch, *self.maps())  # the rest runs in the background
            self.fit.recorded.add(epoch)
        except Exception as exc:
            at = None if epoch == BASELINE_EPOCH else epoch
            self.failures.fail(what, at, exc, STOPPED, stop=True)

    def check_background(self) -> bool:
        """See :meth:`Failures.check_background`; whether recording goes on."""
        return self.failures.check_background(self.pipeline)

    def begin(self, plan: Continuation, weights: str, epoch: int) -> None:
        """Starts this fit's part of the record as ``plan`` says, at Keras's ``epoch``: a new
        record first records the state before training, an older one is continued."""
        if plan.kind == "new":  # where attention was before any learning: animations start here
            what = "recording the state before training"
            if self.keep(BASELINE_EPOCH, weights, what):
                self.record(BASELINE_EPOCH, what)
            return
        self.continue_record(plan, epoch)

    def record_last(self, weights: str) -> None:
        """At ``on_train_end``, records the fit's last epoch if it was not due (stopped early
        by a callback after this tracker) and the model still holds its weights."""
        seen = self.fit.seen
        last = max(seen, default=None)
        if last is not None and last not in self.fit.recorded and seen[last] == weights:
            if self.check_background():
                self.record(last, "recording")

    def continue_record(self, plan: Continuation, epoch: int) -> None:
        """Continues the record as ``plan`` says from Keras's ``epoch``: renumbers this
        fit's epochs, warns, and sets aside a line of weights left behind."""
        after, first = plan.after, plan.next_epoch
        if after is None or first is None:
            raise ValueError(f"`plan` must be a continuation. Received: plan={plan!r}")
        self.fit.after = after
        self.pipeline.offset = self.fit.offset = first - epoch
        if plan.message:
            warn(plan.message)
        if plan.set_aside:
            try:
                folder = self.pipeline.record.set_aside(plan.set_aside, after)
            except OSError as exc:
                self.failures.fail("setting aside later epochs", None, exc, STOPPED, stop=True)
                return
            warn(set_aside_notice(plan.set_aside, after, folder))

    def finish(self, held: int | None) -> None:
        """Waits for the background work, notes the final weights' epoch, writes the flags,
        the animations and the page; each failure is reported on its own."""
        pipeline = self.pipeline
        pipeline.drain()
        if not self.check_background():  # recording failed and stopped
            return
        try:
            pipeline.record.note_final_weights(held)
            run = load_run(self.log_dir)
        except Exception as exc:
            self.failures.fail("reading back the record", None, exc, "No flags or animations")
            return
        if not run.epochs:
            return
        try:
            write_flags(run)
        except Exception as exc:  # the flags are recomputed from the metrics on read
            self.failures.fail("writing flags.json", None, exc, "flags.json is not updated")
        _warn_empty(run)
        if pipeline.frames.animations is not None:
            try:
                pipeline.finish_animations()  # O(probes): the frames are on disk
            except Exception as exc:
                self.failures.fail("writing the animations", None, exc, "Animations stopped")
        if self.report:
            self._write_report(run)

    def _write_report(self, run: Run) -> None:
        """Writes the review page (:func:`write_report`): it hardlinks the tracker's GIFs
        that are newer than the record and draws only what is missing, at the tracker's
        ``fps``. A failure warns (even with ``on_error="raise"``): the record is complete,
        and ``cam-callback report LOG_DIR`` writes the page from it."""
        try:
            page = write_report(run, threshold=self.low_confidence, fps=self.fps)
        except Exception as exc:
            warn(
                f"writing the review page failed: {type(exc).__name__}: {exc}. The record in "
                f"{self.failures.record_path} is complete; `cam-callback report {self.log_dir}` "
                "writes the page from it."
            )
            return
        self.on_page(page)


def _warn_empty(run: Run) -> None:
    """Warns once per fit when most probes end with an empty map (``empty_map``)."""
    try:
        empty = run.flags["empty_map"]
    except Exception:  # the flags are the record's; reading them is best effort here
        return
    notice = empty_map_notice(
        empty, layer=run.layer, method=run.method, score=run.meta.get("score", "?")
    )
    if notice is not None:
        warn(notice, UserWarning)
