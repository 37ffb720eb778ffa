"""Writing a record: :class:`RecordWriter` creates or continues one and appends epochs.

numpy only, no TensorFlow.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cam_callback.record.lock import WriterLock
from cam_callback.record.paths import (
    BASELINE_EPOCH,
    BASELINE_FILE,
    FLAGS_FILE,
    FORMAT,
    SET_ASIDE,
    VERSION,
    WEIGHTS_FILE,
    RecordDeleted,
    RecordError,
    atomic_write_bytes,
    npz_bytes,
    record_dir,
)
from cam_callback.record.reader import epoch_files, read_arrays, read_ledger, read_meta

# Kept in record.json for information; a newer cam-callback may continue an older run.
_NOT_COMPARED = ("package_version", "backend")  # maps agree across backends within 1e-4
_ABSENT = object()
# What the tracker writes in the record folder; overwrite=True removes exactly these.
_WRITTEN = (
    "record.json",
    "probes.npz",
    FLAGS_FILE,
    WEIGHTS_FILE,
    "evaluation.json",
    "epochs",
    "animations",
    "report",
    SET_ASIDE,
)


class RecordWriter:
    """Creates or continues a record and appends epochs atomically.

    Args:
        log_dir: The run's log folder; the record goes into ``log_dir/cam``.
        owner: Who writes, named when another writer in this process is refused.

    Example:
        >>> w = RecordWriter("runs/a")  # doctest: +SKIP
        >>> w.open(meta, images=display, labels=labels)  # doctest: +SKIP
        >>> w.write_epoch(0, heatmaps=m, probabilities=p, targets=t)  # doctest: +SKIP
    """

    def __init__(self, log_dir: str | os.PathLike, owner: str | None = None) -> None:
        self.path = record_dir(log_dir)
        self.owner = owner or f"a RecordWriter for log_dir {os.fspath(log_dir)!r}"
        self._lock: WriterLock | None = None
        self._ledger: dict[int, str] | None = None

    def open(
        self,
        meta: Mapping[str, Any],
        *,
        images: np.ndarray,
        labels: np.ndarray | None = None,
        masks: np.ndarray | None = None,
        overwrite: bool = False,
    ) -> bool:
        """Locks the record, then writes the probes and config or checks them against it.

        The lock (``flock`` on ``cam/.writer.lock``) is held until :meth:`close`;
        the OS releases it when the process dies, so a killed run can resume.

        Args:
            overwrite: Remove an existing record first (what the tracker wrote
                there: see ``_WRITTEN`` and the TensorBoard event files) and start over.

        Returns:
            ``True`` when an existing record is continued.

        Raises:
            RecordBusy: Another tracker or process writes this record.
            ValueError: The folder holds a record of different probes or settings.
        """
        self.lock()
        try:
            if overwrite:
                self._remove_record()
            return self._open(meta, images=images, labels=labels, masks=masks)
        except BaseException:
            self.close()
            raise

    def _remove_record(self) -> None:
        # record.json first: a run killed half-way leaves no record that claims to be whole.
        for name in _WRITTEN:
            entry = self.path / name
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            elif entry.exists() or entry.is_symlink():
                entry.unlink()
        for entry in self.path.glob("events.out.tfevents.*"):
            entry.unlink()
        self._ledger = None

    def _open(
        self,
        meta: Mapping[str, Any],
        *,
        images: np.ndarray,
        labels: np.ndarray | None,
        masks: np.ndarray | None,
    ) -> bool:
        try:
            old = read_meta(self.path)
        except FileNotFoundError:
            old = None
        if old is not None:
            where = str(self.path.parent)
            if old.get("fingerprint") != meta["fingerprint"]:
                raise ValueError(
                    f"`log_dir` {where} already holds a record of different probes "
                    f"(fingerprint {old.get('fingerprint')}, these are {meta['fingerprint']}). "
                    f"Use a new `log_dir` for a new probe set, or start the record over with "
                    f"overwrite=True. Received: log_dir={where!r}"
                )
            now = json.loads(json.dumps(dict(meta)))  # tuples as lists, as stored
            # A key newer than the record is absent there: absent means None (off, not asked).
            differ = [
                k
                for k in now
                if k not in _NOT_COMPARED
                and old.get(k, None if now[k] is None else _ABSENT) != now[k]
            ]
            if differ:
                shown = ", ".join(
                    f"{k}: {old.get(k, '(not recorded)')!r} there, {now[k]!r} now" for k in differ
                )
                raise ValueError(
                    f"`{differ[0]}` differs from the record in {where} ({shown}): continuing "
                    f"would mix maps of both settings in one record. Use a new `log_dir`, "
                    f"the record's settings, or overwrite=True to start the record over. "
                    f"Received: {differ[0]}={now[differ[0]]!r}"
                )
            return True
        arrays: dict[str, np.ndarray] = {"images": np.asarray(images, np.uint8)}
        n = len(arrays["images"])
        arrays["labels"] = (
            np.full(n, -1, np.int64) if labels is None else np.asarray(labels, np.int64)
        )
        if masks is not None:
            arrays["masks"] = np.asarray(masks, bool)
        atomic_write_bytes(self.path / "probes.npz", npz_bytes(arrays))
        full = {"format": FORMAT, "version": VERSION, **meta}
        atomic_write_bytes(self.path / "record.json", json.dumps(full, indent=2).encode())
        return False

    def lock(self) -> None:
        """Takes the record's writer lock, or raises :class:`RecordBusy` naming the holder."""
        if self._lock is None:
            self._lock = WriterLock(self.path, self.owner)

    def close(self) -> None:
        """Releases the writer lock; safe to repeat."""
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    def _check_present(self) -> None:
        """Raises :class:`RecordDeleted` when the record folder (or its record.json) is gone."""
        if not (self.path / "record.json").is_file():
            raise RecordDeleted(
                f"the record folder {self.path} (or its record.json) was deleted during "
                f"training; nothing more is written there"
            )

    def write_epoch(
        self,
        epoch: int,
        *,
        heatmaps: np.ndarray,
        probabilities: np.ndarray,
        targets: np.ndarray,
        metrics: Mapping[str, np.ndarray] | None = None,
    ) -> Path:
        """Writes one epoch (``BASELINE_EPOCH`` for the state before training); writing an
        epoch again replaces it with the newest data.

        Raises:
            RecordDeleted: The record folder was deleted; nothing is recreated.
        """
        arrays: dict[str, np.ndarray] = {
            "heatmaps": np.asarray(heatmaps, np.float32),
            "probabilities": np.asarray(probabilities, np.float32),
            "targets": np.asarray(targets, np.int64),
        }
        for name, value in (metrics or {}).items():
            arrays[f"metric_{name}"] = np.asarray(value, np.float32)
        name = BASELINE_FILE if epoch == BASELINE_EPOCH else f"epoch_{epoch:06d}.npz"
        file = self.path / "epochs" / name
        self._check_present()
        try:
            file.parent.mkdir(exist_ok=True)  # never its parents: a deleted record stays deleted
            atomic_write_bytes(file, npz_bytes(arrays), False)
        except FileNotFoundError:
            self._check_present()
            raise
        return file

    def read_epoch(self, epoch: int) -> dict[str, np.ndarray] | None:
        """The arrays of a recorded epoch, or ``None``."""
        file = epoch_files(self.path).get(epoch)
        if file is None:
            return None
        try:
            return read_arrays(file, None)
        except RecordError:  # a damaged epoch is no history to measure drift against
            return None

    def previous_epoch(self, epoch: int) -> int | None:
        """The latest recorded epoch before ``epoch``, for resuming."""
        earlier = [e for e in epoch_files(self.path) if e < epoch]
        return earlier[-1] if earlier else None

    def last_epoch(self) -> int | None:
        """The last recorded epoch, or ``None``."""
        files = epoch_files(self.path)
        return next(reversed(files)) if files else None

    def first_epoch(self) -> int | None:
        """The first recorded epoch."""
        files = epoch_files(self.path)
        return next(iter(files)) if files else None

    def fingerprints(self) -> dict[int, str] | None:
        """Recorded epoch to the fingerprint of its weights; ``None`` when the record
        keeps none (written by an older cam-callback) or ``weights.json`` is damaged."""
        if self._ledger is None:
            self._ledger = read_ledger(self.path / WEIGHTS_FILE)
        return None if self._ledger is None else dict(self._ledger)

    def add_fingerprint(self, epoch: int, weights: str) -> None:
        """Stores the fingerprint of ``epoch``'s weights, durably, before its maps are written.

        Raises:
            RecordDeleted: The record folder was deleted; nothing is recreated.
        """
        ledger = self.fingerprints() or {}
        ledger[epoch] = weights
        self._write_ledger(ledger)

    def _write_ledger(self, ledger: dict[int, str]) -> None:
        self._check_present()
        data = {"weights": {str(e): f for e, f in sorted(ledger.items())}}
        try:
            atomic_write_bytes(self.path / WEIGHTS_FILE, json.dumps(data).encode(), False)
        except FileNotFoundError:
            self._check_present()
            raise
        self._ledger = dict(ledger)

    def set_aside(self, epochs: list[int] | tuple[int, ...], after: int) -> Path:
        """Moves ``epochs`` (files and fingerprints) to ``cam/set_aside/after_epoch_<after>_*/``.

        Returns:
            The folder they were moved to.
        """
        stamp = time.strftime("%Y%m%d-%H%M%S")
        folder = self.path / SET_ASIDE / f"after_epoch_{after}_{stamp}"
        while folder.exists():
            folder = folder.with_name(f"{folder.name}_{secrets.token_hex(2)}")
        (folder / "epochs").mkdir(parents=True)
        files = epoch_files(self.path)
        ledger = self.fingerprints() or {}
        moved = {e: ledger.pop(e) for e in epochs if e in ledger}
        atomic_write_bytes(
            folder / WEIGHTS_FILE,
            json.dumps({"weights": {str(e): f for e, f in sorted(moved.items())}}).encode(),
        )
        for e in epochs:
            if e in files:
                os.replace(files[e], folder / "epochs" / files[e].name)
        self._write_ledger(ledger)
        return folder

    def note_final_weights(self, epoch: int | None) -> None:
        """Stores in ``record.json`` which recorded epoch's weights the model holds when
        ``fit`` returns (``final_weights_epoch``; ``None`` when they match none)."""
        self._check_present()
        meta = json.loads((self.path / "record.json").read_bytes())
        meta["final_weights_epoch"] = epoch
        atomic_write_bytes(self.path / "record.json", json.dumps(meta, indent=2).encode(), False)

    def add_history(self, event: str, **details: Any) -> None:
        """Appends ``{"event": event, "time": ..., **details}`` to ``record.json``'s
        ``history``: what happened to the record between its epochs (a fit interrupted,
        then continued), for whoever reads it later.

        Raises:
            RecordDeleted: The record folder was deleted; nothing is recreated.
        """
        self._check_present()
        meta = json.loads((self.path / "record.json").read_bytes())
        history = meta.get("history") if isinstance(meta.get("history"), list) else []
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        meta["history"] = [*history, {"event": event, "time": stamp, **details}]
        atomic_write_bytes(self.path / "record.json", json.dumps(meta, indent=2).encode(), False)
