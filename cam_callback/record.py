"""The run record: the single source of truth on disk. numpy only, no TensorFlow.

Layout (format version 1), under ``LOG_DIR/cam/`` beside Keras's ``train/``::

    flags.json               per-probe flags (see ``metrics.flags``) as of the end of
                             training, with the number of epochs they cover
    record.json              format, version, layer, method, fingerprint, class names,
                             probe count, image shape; written last, so its presence
                             means the probes are complete. ``final_weights_epoch``
                             (optional): the epoch whose weights the model held when
                             ``fit`` returned (null: none the record knows)
    probes.npz               images (uint8 [N, H, W, 3] display images, whatever the
                             model's channel count), labels (int64 [N], -1 where
                             unknown), masks (bool [N, H, W], optional)
    weights.json             the writer's: a fingerprint of the model's weights at
                             every epoch the tracker saw (see ``cam_callback.lineage``)
    set_aside/               epochs of another line of weights, moved out of the
                             record when a fit continued it from an earlier epoch
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

Reading treats the record as untrusted (see :mod:`cam_callback.safe_read`): only
regular files are read, no symlink inside the record is followed (the log folder
and its ``cam`` folder may be links), a FIFO is never opened, every file's size is
capped, each ``.npy`` header is parsed strictly and checked against ``record.json``
before anything is allocated, and an image or map holds at most
``MAX_IMAGE_PIXELS`` pixels.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import re
import secrets
import shutil
import stat
import threading
import time
import warnings
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cam_callback.safe_read import UnreadableFile, read_json, read_npz

FORMAT = "cam-callback-record"
VERSION = 1
SUBDIR = "cam"
FLAGS_FILE = "flags.json"
LOCK_FILE = ".writer.lock"
_EPOCH_FILE = re.compile(r"^epoch_(\d{6,})\.npz$")
BASELINE_EPOCH = -1  # the state before training, recorded at on_train_begin
BASELINE_FILE = "baseline.npz"
WEIGHTS_FILE = "weights.json"  # the weights fingerprint of each recorded epoch (the writer's)
SET_ASIDE = "set_aside"  # epochs of another line of weights, moved out of the record

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one writer per record is then up to the user
    fcntl = None  # type: ignore[assignment]


class RecordError(ValueError):
    """A damaged or unreadable run record; the message names the file and the problem."""


class RecordBusy(ValueError):
    """Another tracker or process is writing this record."""


class RecordDeleted(OSError):
    """The record's folder disappeared while it was being written; nothing more is written."""


# Kept in record.json for information; a newer cam-callback may continue an older run.
_NOT_COMPARED = ("package_version", "backend")  # maps agree across backends within 1e-4
_ABSENT = object()


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


def atomic_write_bytes(path: Path, data: bytes, make_dirs: bool = True) -> None:
    """Writes ``data`` to ``path`` by write-then-rename, durable on return.

    ``make_dirs=False`` writes only into an existing folder (``FileNotFoundError``
    otherwise), so a record deleted mid-run is never recreated in part.
    """
    if make_dirs:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    # 0o666 through os.open: the kernel applies the live umask, as for any file the user makes.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
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
        computed = compute_flags(self)
        try:
            data = read_json(self.path / FLAGS_FILE)
        except (OSError, UnreadableFile):
            return computed  # missing or damaged: the metrics are the source of truth
        table = data.get("flags") if isinstance(data, dict) else None
        n_epochs = data.get("n_epochs") if isinstance(data, dict) else None
        if not isinstance(table, dict) or not _is_int(n_epochs) or n_epochs != len(self.epochs):
            return computed  # older, damaged or of another epoch count
        stored = {}
        for key in computed:
            value = table.get(key)
            if not isinstance(value, list) or len(value) != self.n_probes:
                return computed
            if not all(isinstance(v, bool) for v in value):
                return computed
            stored[key] = np.array(value, bool)
        return stored

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
        heatmaps=run.heatmaps,
    )


def write_flags(run: Run) -> Path:
    """Stores ``run``'s flags in ``flags.json`` atomically."""
    flags = compute_flags(run)
    data = {"n_epochs": len(run.epochs), "flags": {k: v.tolist() for k, v in flags.items()}}
    path = run.path / FLAGS_FILE
    atomic_write_bytes(path, json.dumps(data).encode())
    return path


MAX_IMAGE_PIXELS = 2**24  # pixels of one probe image, or cells of one map (4096 x 4096)
_MAX_COUNT = 2**20  # probes or classes
_MAX_SIDE = 2**14  # pixels of an image side, or cells of a map side


def _damaged(file: Path, problem: str) -> RecordError:
    return RecordError(f"damaged cam-callback record: {file}: {problem}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_meta(meta: dict[str, Any], meta_file: Path) -> None:
    """Checks the fields a reader relies on, so a hand-edited file fails here, by name."""

    def need(ok: bool, key: str, expected: str) -> None:
        if not ok:
            raise _damaged(meta_file, f"`{key}` must be {expected}, got {meta.get(key)!r:.80}")

    for key in ("n_probes", "n_classes"):
        value = meta.get(key)
        need(_is_int(value) and 1 <= value <= _MAX_COUNT, key, f"an int in 1..{_MAX_COUNT}")
    shape = meta.get("map_shape")
    need(
        isinstance(shape, list)
        and len(shape) == 2
        and all(_is_int(v) and 1 <= v <= _MAX_SIDE for v in shape)
        and shape[0] * shape[1] <= MAX_IMAGE_PIXELS,
        "map_shape",
        f"two ints in 1..{_MAX_SIDE}, of at most {MAX_IMAGE_PIXELS} cells",
    )
    for key in ("layer", "method", "fingerprint"):
        need(isinstance(meta.get(key, ""), str), key, "a string")
    need(isinstance(meta.get("score"), (str, type(None))), "score", "a string")
    names = meta.get("class_names")
    need(
        names is None
        or (
            isinstance(names, list)
            and len(names) == meta["n_classes"]
            and all(isinstance(c, str) for c in names)
        ),
        "class_names",
        f"null or a list of {meta['n_classes']} strings",
    )
    low = meta.get("low_confidence", 0.5)
    need(
        isinstance(low, (int, float)) and not isinstance(low, bool) and 0.0 <= low <= 1.0,
        "low_confidence",
        "a number in [0, 1]",
    )
    need(meta.get("mask_kind", "object") in ("object", "cue"), "mask_kind", '"object" or "cue"')
    final = meta.get("final_weights_epoch")  # optional: which epoch's weights fit returned with
    need(
        final is None or (_is_int(final) and final >= BASELINE_EPOCH),
        "final_weights_epoch",
        "null or an epoch >= -1",
    )


def read_meta(path: Path) -> dict[str, Any]:
    """Reads and checks ``record.json`` in the record folder ``path``.

    Raises:
        FileNotFoundError: No ``record.json`` there.
        RecordError: It is not a readable cam-callback record of a version this reads
            (not a regular file, larger than ``MAX_JSON_BYTES``, not JSON, a field wrong).
    """
    meta_file = path / "record.json"
    try:
        meta = read_json(meta_file)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no cam-callback record at {path}: {meta_file} does not exist"
        ) from None
    except UnreadableFile as exc:
        raise _damaged(meta_file, str(exc)) from None
    except OSError as exc:
        raise _damaged(meta_file, f"cannot be read ({exc.strerror or exc})") from None
    if not isinstance(meta, dict):
        raise _damaged(meta_file, f"must hold a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise RecordError(
            f"{meta_file} is not a cam-callback record (format={meta.get('format')!r:.80})"
        )
    version = meta.get("version", 0)
    if not _is_int(version):
        raise _damaged(meta_file, f"`version` must be an int, got {version!r:.80}")
    if version > VERSION:
        raise RecordError(
            f"{meta_file} has record version {version}; this cam-callback reads up to "
            f"{VERSION}. Upgrade cam-callback."
        )
    _check_meta(meta, meta_file)
    return meta


# name -> (dtype kinds accepted, shape with None for "any size within the limits")
_Spec = Mapping[str, tuple[str, tuple[int | None, ...]]]


def _read_npz(file: Path, spec: _Spec | None, optional: tuple[str, ...] = ()) -> dict:
    """The arrays of an ``.npz``, each header checked against ``spec`` before allocating.

    Keys not in ``spec`` must be ``metric_*`` (float, shaped like ``targets``); with
    ``spec=None`` any array is read (the writer reading back its own files). The
    ``None`` sides of a shape (an image's height and width) are held to ``_MAX_SIDE``
    and together to ``MAX_IMAGE_PIXELS``; see :mod:`cam_callback.safe_read` for the
    file-level caps.

    Raises:
        RecordError: Not a regular file, unreadable, truncated, over a cap, a missing
            key, or a dtype or shape not expected.
    """

    def check(key: str, dtype: np.dtype, shape: tuple[int, ...]) -> None:
        if spec is None:
            return
        if key in spec:
            kinds, want = spec[key]
        elif key.startswith("metric_") and "targets" in spec:
            kinds, want = "f", spec["targets"][1]
        else:
            raise UnreadableFile("not expected in this file")
        if dtype.kind not in kinds:
            raise UnreadableFile(f"dtype {dtype}, expected kind {kinds!r}")
        free = [s for s, w in zip(shape, want, strict=False) if w is None]
        if (
            len(shape) != len(want)
            or any(w is not None and s != w for s, w in zip(shape, want, strict=True))
            or not all(1 <= s <= _MAX_SIDE for s in free)
            or math.prod(free) > MAX_IMAGE_PIXELS
        ):
            shown = tuple("?" if w is None else w for w in want)
            raise UnreadableFile(
                f"shape {shape}, expected {shown} "
                f"(sides 1..{_MAX_SIDE}, at most {MAX_IMAGE_PIXELS} pixels)"
            )

    try:
        out = read_npz(file, check)
    except UnreadableFile as exc:
        raise _damaged(file, str(exc)) from None
    except OSError as exc:  # missing, or not readable by this user
        raise _damaged(file, f"cannot be read ({exc.strerror or exc})") from None
    missing = [k for k in (spec or {}) if k not in out and k not in optional]
    if missing:
        raise _damaged(file, f"missing array {missing[0]!r}")
    return out


def _check_probes(arrays: dict, meta: dict, file: Path) -> None:
    images = arrays["images"]
    masks = arrays.get("masks")
    if masks is not None and masks.shape != images.shape[:3]:
        raise _damaged(file, f"masks of shape {masks.shape} for images {images.shape}")
    labels = arrays.get("labels")
    if labels is not None:
        c = meta["n_classes"]
        unknown = labels < 0
        if ((labels < -1) | (labels >= c)).any() or (unknown.any() and not unknown.all()):
            raise _damaged(file, f"labels must all be in 0..{c - 1} (or all -1: unknown)")


def read_epoch_file(file: Path, meta: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """One epoch file's arrays, checked against the record's config (``record.json``).

    Raises:
        RecordError: The file is damaged in any way; the message names it.
    """
    n, c = meta["n_probes"], meta["n_classes"]
    h, w = meta["map_shape"]
    arrays = _read_npz(
        file,
        {"heatmaps": ("f", (n, h, w)), "probabilities": ("f", (n, c)), "targets": ("iu", (n,))},
    )
    targets = arrays["targets"]
    if ((targets < 0) | (targets >= c)).any():
        raise _damaged(file, f"targets must be class ids in 0..{c - 1}")
    for key, value in arrays.items():
        if value.dtype.kind == "f":
            arrays[key] = value.astype(np.float32, copy=False)
    arrays["targets"] = targets.astype(np.int64, copy=False)
    return arrays


def epoch_files(path: Path) -> dict[int, Path]:
    """Epoch files of the record folder ``path``, by epoch; the baseline is -1.

    Names are listed, not opened: an entry that is not a regular file (a
    symlink, dangling or not, a FIFO, a folder) is listed here and refused when
    read, so :func:`load_run` skips it with a warning. An ``epochs`` that is a
    symlink is not followed: no epochs.
    """
    folder = path / "epochs"
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return {}
        names = os.listdir(folder)
    except OSError:
        return {}
    found = {}
    for name in names:
        m = _EPOCH_FILE.match(name)
        if m:
            found[int(m.group(1))] = folder / name
        elif name == BASELINE_FILE:
            found[BASELINE_EPOCH] = folder / name
    return dict(sorted(found.items()))


def find_record(log_dir: str | os.PathLike) -> Path:
    """The record folder of ``log_dir``: ``log_dir/cam``, or ``log_dir`` itself when it
    holds ``record.json`` (a ``record.json`` that is a symlink or FIFO counts as there,
    and is refused when read).

    Raises:
        FileNotFoundError: Neither holds a ``record.json``; both paths are named.
    """
    path = Path(log_dir)
    if os.path.lexists(path / "record.json"):
        return path
    if os.path.lexists(path / SUBDIR / "record.json"):
        return path / SUBDIR
    raise FileNotFoundError(
        f"no cam-callback record in {path}: expected {record_dir(log_dir)}/record.json"
    )


def load_run(log_dir: str | os.PathLike, *, epochs: slice | None = None) -> Run:
    """Reads a run record written by ``CAMTracker``.

    Safe while training is still writing, and after a crash: only complete
    epochs are read. Safe on a hostile record too: only regular files are read,
    symlinks inside the record are never followed, and every size is capped
    (``safe_read.MAX_FILE_BYTES`` per ``.npz``, ``MAX_IMAGE_PIXELS`` per image)
    whatever ``record.json`` claims.

    Args:
        log_dir: The ``log_dir`` given to the tracker (or its ``cam`` folder).
        epochs: Optionally, a slice of the recorded epochs to load.

    Returns:
        A :class:`Run`.

    Raises:
        FileNotFoundError: No record there; the path is named.
        RecordError: ``record.json`` or ``probes.npz`` is damaged; the file and the
            problem are named. A damaged epoch file is skipped with a warning naming it.

    Example:
        >>> run = load_run("runs/a")  # doctest: +SKIP
        >>> run.epochs, run.heatmaps.shape  # doctest: +SKIP
        ([0, 1, 2], (3, 16, 6, 6))
    """
    path = find_record(log_dir)
    meta = read_meta(path)
    n = meta["n_probes"]
    probes = _read_npz(
        path / "probes.npz",
        {
            "images": ("u", (n, None, None, 3)),
            "labels": ("iu", (n,)),
            "masks": ("b", (n, None, None)),
        },
        optional=("labels", "masks"),
    )
    _check_probes(probes, meta, path / "probes.npz")
    images = probes["images"].astype(np.uint8, copy=False)
    labels = probes["labels"].astype(np.int64, copy=False) if "labels" in probes else None
    masks = probes.get("masks")
    files = epoch_files(path)
    chosen = list(files.items())[epochs] if epochs is not None else list(files.items())
    kept, maps, probs, targets = [], [], [], []
    metrics: dict[str, list[np.ndarray]] = {}
    for epoch, file in chosen:
        try:
            arrays = read_epoch_file(file, meta)
        except RecordError as exc:  # a damaged epoch costs that epoch, not the record
            warnings.warn(f"skipping {exc}", stacklevel=2)
            continue
        kept.append(epoch)
        maps.append(arrays["heatmaps"])
        probs.append(arrays["probabilities"])
        targets.append(arrays["targets"])
        for key, value in arrays.items():
            if key.startswith("metric_"):
                metrics.setdefault(key[len("metric_") :], []).append(value)
    h, w = meta["map_shape"]
    c = meta["n_classes"]
    return Run(
        path=path,
        epochs=kept,
        heatmaps=np.stack(maps) if maps else np.zeros((0, n, h, w), np.float32),
        probabilities=np.stack(probs) if probs else np.zeros((0, n, c), np.float32),
        targets=np.stack(targets) if targets else np.zeros((0, n), np.int64),
        images=images,
        labels=None if labels is None or (labels < 0).any() else labels,
        class_names=meta.get("class_names"),
        masks=masks,
        layer=meta.get("layer", ""),
        method=meta.get("method", ""),
        fingerprint=meta.get("fingerprint", ""),
        metrics={k: np.stack(v) for k, v in metrics.items() if len(v) == len(kept)},
        meta=meta,
    )


# Records this process writes, by real path: who holds each (the flock cannot say).
_HELD: dict[str, str] = {}
_HELD_LOCK = threading.Lock()
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
        self._lock: weakref.finalize | None = None  # closes the lock's descriptor
        self._held: str | None = None  # our key in _HELD
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
            differ = [k for k in now if k not in _NOT_COMPARED and old.get(k, _ABSENT) != now[k]]
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
        atomic_write_bytes(self.path / "probes.npz", _npz_bytes(arrays))
        full = {"format": FORMAT, "version": VERSION, **meta}
        atomic_write_bytes(self.path / "record.json", json.dumps(full, indent=2).encode())
        return False

    def lock(self) -> None:
        """Takes the record's writer lock, or raises :class:`RecordBusy` naming the holder."""
        if self._lock is not None or self._held is not None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        key = os.path.realpath(self.path)
        where = str(self.path.parent)
        with _HELD_LOCK:
            holder = _HELD.get(key)
            if holder is None:
                _HELD[key] = self.owner
                self._held = key
        if holder is not None:  # flock would refuse too, but could not say who
            raise RecordBusy(
                f"`log_dir` {where} is being written by another tracker in this process "
                f"(pid {os.getpid()}): {holder}; one record has one writer. Close that "
                f"tracker (tracker.close(), or let its fit end), or use a new `log_dir`. "
                f"Received: log_dir={where!r}"
            )
        fd = None
        if fcntl is not None:
            fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                _unlock(None, key)
                self._held = None
                who = f"process {holder}"
                if holder == str(os.getpid()):
                    who = f"in this process, pid {holder}: a writer not closed"
                raise RecordBusy(
                    f"`log_dir` {where} is being written by another tracker ({who}); one "
                    f"record has one writer. Wait for that fit to end, close that tracker, or "
                    f"use a new `log_dir`. Received: log_dir={where!r}"
                ) from None
            with contextlib.suppress(OSError):  # the pid is only for the message above
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        # Closing the descriptor releases the flock: on close(), or when the writer is dropped.
        self._lock = weakref.finalize(self, _unlock, fd, key)

    def close(self) -> None:
        """Releases the writer lock; safe to repeat."""
        lock, self._lock = self._lock, None
        self._held = None
        if lock is not None:
            with contextlib.suppress(OSError):
                lock()

    # -------------------------------------------------------------- epochs

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
        arrays = {
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
            atomic_write_bytes(file, _npz_bytes(arrays), False)
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
            return _read_npz(file, None)
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

    # -------------------------------------------------------------- weights

    def fingerprints(self) -> dict[int, str] | None:
        """Recorded epoch to the fingerprint of its weights; ``None`` when the record
        keeps none (written by an older cam-callback) or ``weights.json`` is damaged."""
        if self._ledger is None:
            self._ledger = _read_ledger(self.path / WEIGHTS_FILE)
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


def _unlock(fd: int | None, key: str) -> None:
    with _HELD_LOCK:
        _HELD.pop(key, None)
    if fd is not None:
        os.close(fd)


def _read_ledger(file: Path) -> dict[int, str] | None:
    if not file.is_file():  # missing, or not a regular file: no fingerprints to go by
        return None
    try:
        with open(file, "rb") as f:
            data = json.loads(f.read(_MAX_JSON_BYTES + 1))
        weights = data["weights"]
        return {int(e): str(fp) for e, fp in weights.items() if isinstance(fp, str)}
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None
