"""The run record: the single source of truth on disk. numpy only, no TensorFlow.

Layout (format version 1), under ``LOG_DIR/cam/`` beside Keras's ``train/``::

    flags.json               per-probe flags (see ``metrics.flags``) as of the end of
                             training, with the number of epochs they cover
    record.json              format, version, layer, method, fingerprint, class names,
                             probe count, image shape; written last, so its presence
                             means the probes are complete
    probes.npz               images (uint8 [N, H, W, 3] display images), labels
                             (int64 [N], -1 where unknown), masks (bool [N, H, W], optional)
    epochs/epoch_000012.npz  one recorded epoch: heatmaps (float32 [N, h, w] at the
                             layer's native resolution), probabilities (float32 [N, C]),
                             targets (int64 [N]), and metric_<name> (float32 [N]) arrays
    epochs/baseline.npz      the same arrays for the untrained model, recorded in
                             ``on_train_begin`` (not when resuming); read back as epoch
                             ``BASELINE_EPOCH`` (-1), first in ``Run.epochs``
    events.out.tfevents.*    the live TensorBoard summaries (not part of the record)
    animations/              GIF/MP4 files rendered from the record

Every file is written to a temporary name in the same folder, flushed, fsynced
and renamed over its final name, so a process killed at any instant leaves
either the old file or the new one, never a torn one. A reader sees only
complete epochs, also while training is still writing.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "cam-callback-record"
VERSION = 1
SUBDIR = "cam"
FLAGS_FILE = "flags.json"
_EPOCH_FILE = re.compile(r"^epoch_(\d{6,})\.npz$")
BASELINE_EPOCH = -1  # the state before training, recorded at on_train_begin
BASELINE_FILE = "baseline.npz"
_UMASK = os.umask(0)  # read once: mkstemp makes 0600 files, ours follow the umask like open()
os.umask(_UMASK)


def record_dir(log_dir: str | os.PathLike) -> Path:
    """The record's folder inside ``log_dir``."""
    return Path(log_dir) / SUBDIR


def fingerprint(images: np.ndarray, labels: np.ndarray | None = None) -> str:
    """A short hash identifying a probe set: model-space images and labels.

    Example:
        >>> fingerprint(np.zeros((1, 2, 2, 3))) == fingerprint(np.zeros((1, 2, 2, 3)))
        True
    """
    h = hashlib.sha256()
    x = np.ascontiguousarray(images, dtype=np.float32)
    h.update(repr(x.shape).encode())
    h.update(x.tobytes())
    if labels is not None:
        h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` by write-then-rename, durable on return."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where the OS allows it
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # uncompressed: maps are small, and speed matters at epoch end
    return buf.getvalue()


@dataclass
class Run:
    """A run record read back by :func:`load_run`.

    Attributes:
        path: The record folder (``LOG_DIR/cam``).
        epochs: Sorted 0-based epoch indices, as Keras reports them, led by
            ``BASELINE_EPOCH`` (-1) when the state before training was recorded.
        heatmaps: float32 ``[E, N, h, w]``.
        probabilities: float32 ``[E, N, C]``.
        targets: int64 ``[E, N]``, the class each map explains.
        images: uint8 ``[N, H, W, 3]`` display images.
        labels: int64 ``[N]`` true classes, or ``None`` when not given.
        class_names: Names of the classes, or ``None``.
        masks: bool ``[N, H, W]`` probe masks, or ``None``.
        layer: Path of the explained layer.
        method: The CAM method.
        fingerprint: Identifies the probe set.
        metrics: Name to float32 ``[E, N]`` per-epoch, per-probe numbers.
        meta: Everything in ``record.json``.
    """

    path: Path
    epochs: list[int]
    heatmaps: np.ndarray
    probabilities: np.ndarray
    targets: np.ndarray
    images: np.ndarray
    labels: np.ndarray | None
    class_names: list[str] | None
    masks: np.ndarray | None
    layer: str
    method: str
    fingerprint: str
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_probes(self) -> int:
        """How many probes the record holds."""
        return int(self.images.shape[0])

    @property
    def has_baseline(self) -> bool:
        """Whether the first entry is the untrained model's state (epoch ``-1``)."""
        return bool(self.epochs) and self.epochs[0] == BASELINE_EPOCH

    @property
    def flags(self) -> dict[str, np.ndarray]:
        """Per-probe bool flags: ``flags.json`` when it covers every epoch read, else
        computed from the stored metrics with the thresholds in ``record.json``."""
        stored = self.path / FLAGS_FILE
        if stored.is_file():
            data = json.loads(stored.read_text())
            if data.get("n_epochs") == len(self.epochs):
                return {k: np.asarray(v, bool) for k, v in data["flags"].items()}
        return compute_flags(self)

    def class_name(self, cls: int) -> str:
        """The name of class ``cls``, or its id as text."""
        if self.class_names is not None and 0 <= cls < len(self.class_names):
            return self.class_names[cls]
        return str(cls)


def compute_flags(run: Run, low_confidence: float | None = None) -> dict[str, np.ndarray]:
    """Flags of ``run`` from its metrics; thresholds default to those the tracker stored."""
    from cam_callback.metrics import flags

    return flags(
        run.metrics,
        run.probabilities,
        low_confidence=run.meta.get("low_confidence", 0.5)
        if low_confidence is None
        else low_confidence,
        mask_kind=run.meta.get("mask_kind", "object"),
    )


def write_flags(run: Run) -> Path:
    """Stores ``run``'s flags in ``flags.json`` atomically."""
    flags = compute_flags(run)
    data = {"n_epochs": len(run.epochs), "flags": {k: v.tolist() for k, v in flags.items()}}
    path = run.path / FLAGS_FILE
    atomic_write_bytes(path, json.dumps(data).encode())
    return path


def read_meta(path: Path) -> dict[str, Any]:
    """Reads and checks ``record.json`` in the record folder ``path``."""
    meta_file = path / "record.json"
    if not meta_file.is_file():
        raise FileNotFoundError(f"no cam-callback record at {path}: {meta_file} does not exist")
    meta = json.loads(meta_file.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(
            f"{meta_file} is not a cam-callback record (format={meta.get('format')!r})"
        )
    if meta.get("version", 0) > VERSION:
        raise ValueError(
            f"{meta_file} has record version {meta['version']}; this cam-callback reads up to "
            f"{VERSION}. Upgrade cam-callback."
        )
    return meta


def epoch_files(path: Path) -> dict[int, Path]:
    """Complete epoch files of the record folder ``path``, by epoch; the baseline is -1."""
    folder = path / "epochs"
    if not folder.is_dir():
        return {}
    found = {}
    for entry in folder.iterdir():
        m = _EPOCH_FILE.match(entry.name)
        if m:
            found[int(m.group(1))] = entry
        elif entry.name == BASELINE_FILE:
            found[BASELINE_EPOCH] = entry
    return dict(sorted(found.items()))


def load_run(log_dir: str | os.PathLike, *, epochs: slice | None = None) -> Run:
    """Reads a run record written by ``CAMTracker``.

    Safe while training is still writing, and after a crash: only complete
    epochs are read.

    Args:
        log_dir: The ``log_dir`` given to the tracker (or its ``cam`` folder).
        epochs: Optionally, a slice of the recorded epochs to load.

    Returns:
        A :class:`Run`.

    Raises:
        FileNotFoundError: No record there; the path is named.

    Example:
        >>> run = load_run("runs/a")  # doctest: +SKIP
        >>> run.epochs, run.heatmaps.shape  # doctest: +SKIP
        ([0, 1, 2], (3, 16, 6, 6))
    """
    path = Path(log_dir)
    if not (path / "record.json").is_file() and (path / SUBDIR / "record.json").is_file():
        path = path / SUBDIR
    elif not (path / "record.json").is_file():
        raise FileNotFoundError(
            f"no cam-callback record in {Path(log_dir)}: expected {record_dir(log_dir)}/record.json"
        )
    meta = read_meta(path)
    with np.load(path / "probes.npz") as probes:
        images = probes["images"]
        labels = probes["labels"] if "labels" in probes.files else None
        masks = probes["masks"] if "masks" in probes.files else None
    files = epoch_files(path)
    chosen = list(files.items())[epochs] if epochs is not None else list(files.items())
    n = images.shape[0]
    kept, maps, probs, targets = [], [], [], []
    metrics: dict[str, list[np.ndarray]] = {}
    for epoch, file in chosen:
        try:
            with np.load(file) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError) as exc:  # only possible if edited by hand
            warnings.warn(f"skipping unreadable epoch file {file}: {exc}", stacklevel=2)
            continue
        kept.append(epoch)
        maps.append(arrays["heatmaps"])
        probs.append(arrays["probabilities"])
        targets.append(arrays["targets"])
        for key, value in arrays.items():
            if key.startswith("metric_"):
                metrics.setdefault(key[len("metric_") :], []).append(value)
    h, w = meta.get("map_shape") or (0, 0)
    c = int(meta.get("n_classes") or 0)
    return Run(
        path=path,
        epochs=kept,
        heatmaps=np.stack(maps) if maps else np.zeros((0, n, h, w), np.float32),
        probabilities=np.stack(probs) if probs else np.zeros((0, n, c), np.float32),
        targets=np.stack(targets) if targets else np.zeros((0, n), np.int64),
        images=images,
        labels=None if labels is None or (labels < 0).all() else labels,
        class_names=meta.get("class_names"),
        masks=masks,
        layer=meta.get("layer", ""),
        method=meta.get("method", ""),
        fingerprint=meta.get("fingerprint", ""),
        metrics={k: np.stack(v) for k, v in metrics.items() if len(v) == len(kept)},
        meta=meta,
    )


class RecordWriter:
    """Creates or continues a record and appends epochs atomically.

    Args:
        log_dir: The run's log folder; the record goes into ``log_dir/cam``.

    Example:
        >>> w = RecordWriter("runs/a")  # doctest: +SKIP
        >>> w.open(meta, images=display, labels=labels)  # doctest: +SKIP
        >>> w.write_epoch(0, heatmaps=m, probabilities=p, targets=t)  # doctest: +SKIP
    """

    def __init__(self, log_dir: str | os.PathLike) -> None:
        self.path = record_dir(log_dir)

    def open(
        self,
        meta: Mapping[str, Any],
        *,
        images: np.ndarray,
        labels: np.ndarray | None = None,
        masks: np.ndarray | None = None,
    ) -> bool:
        """Writes the probes and metadata, or checks them against a record already there.

        Returns:
            ``True`` when an existing record is continued.

        Raises:
            ValueError: The folder holds a record of different probes.
        """
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
                    f"Use a new `log_dir` for a new probe set. Received: log_dir={where!r}"
                )
            for key in ("layer", "method"):
                if key in meta and old.get(key) != meta[key]:
                    raise ValueError(
                        f"`{key}` differs from the record in {where} ({old.get(key)!r} there, "
                        f"{meta[key]!r} now): continuing would mix maps of both. Use a new "
                        f"`log_dir`. Received: {key}={meta[key]!r}"
                    )
            return True
        arrays: dict[str, np.ndarray] = {"images": np.asarray(images, np.uint8)}
        n = len(arrays["images"])
        arrays["labels"] = (
            np.full(n, -1, np.int64) if labels is None else np.asarray(labels, np.int64)
        )
        if masks is not None:
            arrays["masks"] = np.asarray(masks, bool)
        atomic_write_bytes(self.path / "probes.npz", _npz_bytes(arrays))
        full = {"format": FORMAT, "version": VERSION, **meta}
        atomic_write_bytes(self.path / "record.json", json.dumps(full, indent=2).encode())
        return False

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
        epoch again replaces it with the newest data."""
        arrays = {
            "heatmaps": np.asarray(heatmaps, np.float32),
            "probabilities": np.asarray(probabilities, np.float32),
            "targets": np.asarray(targets, np.int64),
        }
        for name, value in (metrics or {}).items():
            arrays[f"metric_{name}"] = np.asarray(value, np.float32)
        name = BASELINE_FILE if epoch == BASELINE_EPOCH else f"epoch_{epoch:06d}.npz"
        file = self.path / "epochs" / name
        atomic_write_bytes(file, _npz_bytes(arrays))
        return file

    def read_epoch(self, epoch: int) -> dict[str, np.ndarray] | None:
        """The arrays of a recorded epoch, or ``None``."""
        file = epoch_files(self.path).get(epoch)
        if file is None:
            return None
        with np.load(file) as data:
            return {k: data[k] for k in data.files}

    def previous_epoch(self, epoch: int) -> int | None:
        """The latest recorded epoch before ``epoch``, for resuming."""
        earlier = [e for e in epoch_files(self.path) if e < epoch]
        return earlier[-1] if earlier else None

    def first_epoch(self) -> int | None:
        """The first recorded epoch."""
        files = epoch_files(self.path)
        return next(iter(files)) if files else None
