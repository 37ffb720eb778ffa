"""The record stage: an epoch's metrics, then the epoch appended to the record.

:class:`RecordStage` is handed the opened record it writes and the probes; its
:meth:`~RecordStage.record` takes the :class:`EpochMaps` the training thread computed and
returns the :class:`RecordedEpoch` the frame stage draws. The pipeline runs it on its record
thread, and hands epoch ``k`` over only once epoch ``k - 1`` is on disk
(:meth:`~cam_callback.tracker.pipeline.EpochPipeline.submit`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cam_callback import metrics
from cam_callback.record import RecordWriter, epoch_files
from cam_callback.tracker.pipeline.plan import Probes


@dataclass(frozen=True, eq=False)
class EpochMaps:
    """One epoch as the training thread hands it over.

    Attributes:
        epoch: The record's epoch number (``-1``: before training).
        heatmaps: float ``[N, h, w]`` maps.
        probabilities: float ``[N, C]``.
        targets: int ``[N]`` explained classes.
        extra: Metrics computed with the model (faithfulness, interventions, evidence).
        interval: Seconds since the previous epoch was handed over, or ``None``.
    """

    epoch: int
    heatmaps: np.ndarray
    probabilities: np.ndarray
    targets: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    interval: float | None = None


@dataclass(frozen=True, eq=False)
class RecordedEpoch:
    """One epoch as the record holds it: what the frame stage draws.

    Attributes:
        epoch: The record's epoch number.
        heatmaps: The recorded maps (``NaN`` where a probe's probabilities are not finite).
        probabilities: float ``[N, C]``.
        targets: int ``[N]``.
        metrics: The epoch's metrics, or ``None`` for an epoch read back from the record.
        interval: Seconds since the previous epoch was handed over, or ``None``.
    """

    epoch: int
    heatmaps: np.ndarray
    probabilities: np.ndarray
    targets: np.ndarray
    metrics: dict[str, np.ndarray] | None = None
    interval: float | None = None


class RecordPresence:
    """Whether the record folder is still there: once it is gone, it stays gone (a deleted
    record is never written to, nor recreated, again).

    Args:
        path: The record folder, ``log_dir/cam``.

    Example:
        >>> present = RecordPresence(Path("no/such/cam"))
        >>> present(), present.gone
        (False, True)
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.gone = False

    def __call__(self) -> bool:
        if not self.gone and not (self.path / "record.json").is_file():
            self.gone = True
        return not self.gone


class RecordStage:
    """Computes each epoch's metrics and appends the epoch to ``record``.

    It keeps the previous and first recorded maps (for drift), read back from the record
    when it continues one.

    Args:
        record: The opened :class:`~cam_callback.record.RecordWriter` it writes.
        probes: The probes (labels, masks and mask kind enter the metrics).

    Example:
        >>> stage = RecordStage(writer, probes)  # doctest: +SKIP
        >>> recorded = stage.record(EpochMaps(0, maps, probabilities, targets))  # doctest: +SKIP
    """

    def __init__(self, record: RecordWriter, probes: Probes) -> None:
        self.writer = record
        self.probes = probes
        self.last: RecordedEpoch | None = None  # the newest epoch written
        self._previous: np.ndarray | None = None
        self._previous_epoch: int | None = None
        self._first: np.ndarray | None = None

    def record(self, maps: EpochMaps) -> RecordedEpoch:
        """Writes one epoch with its metrics; returns it as recorded."""
        p = self.probes
        # A probe whose probabilities are not finite has no map: NaN, not an all-zero map.
        heatmaps = metrics.mark_not_computed(maps.heatmaps, maps.probabilities)
        previous, first = self._history(maps.epoch)
        values = metrics.epoch_metrics(
            heatmaps,
            maps.probabilities,
            labels=p.labels,
            previous=previous,
            first=first,
            masks=p.masks,
        )
        values.update(maps.extra)
        if p.mask_kind == "cue":  # worst-group accuracy: class x cue mask empty or not
            values.update(metrics.group_metrics(values, p.labels, p.masks))
        self.writer.write_epoch(
            maps.epoch,
            heatmaps=heatmaps,
            probabilities=maps.probabilities,
            targets=maps.targets,
            metrics=values,
        )
        self._previous, self._previous_epoch = heatmaps, maps.epoch
        if self._first is None:
            self._first = heatmaps
        self.last = RecordedEpoch(
            maps.epoch, heatmaps, maps.probabilities, maps.targets, values, maps.interval
        )
        return self.last

    def recorded_before(self, epoch: int) -> list[int]:
        """The epochs the record holds before ``epoch``, in order."""
        return [e for e in epoch_files(self.writer.path) if e < epoch]

    def read(self, epoch: int) -> RecordedEpoch | None:
        """A recorded epoch read back (without its metrics), or ``None`` when it is gone."""
        data = self.writer.read_epoch(epoch)
        if data is None:
            return None
        return RecordedEpoch(epoch, data["heatmaps"], data["probabilities"], data["targets"])

    def _history(self, epoch: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Maps of the previous and first recorded epochs before ``epoch`` (resume-aware)."""
        if self._previous is None or self._previous_epoch is None or self._previous_epoch >= epoch:
            prev_epoch = self.writer.previous_epoch(epoch)
            data = self.writer.read_epoch(prev_epoch) if prev_epoch is not None else None
            self._previous = None if data is None else data["heatmaps"]
        if self._first is None:
            first_epoch = self.writer.first_epoch()
            if first_epoch is not None and first_epoch < epoch:
                data = self.writer.read_epoch(first_epoch)
                self._first = None if data is None else data["heatmaps"]
        return self._previous, self._first
