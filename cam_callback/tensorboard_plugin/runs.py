"""The runs the CAM dashboard shows: record folders found under the logdir, a signature of
their files on disk, a run's summary from its small files only, and a run's probes as
JSON-ready rows."""

from __future__ import annotations

import math
import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from cam_callback.record import (
    BASELINE_EPOCH,
    FLAGS_FILE,
    SUBDIR,
    RecordError,
    Run,
    epoch_files,
    read_meta,
)
from cam_callback.report import probe_rows
from cam_callback.safe_read import MAX_FILE_BYTES, file_kind

SIGNED = ("record.json", "probes.npz", FLAGS_FILE)  # with the epoch files


def discover_runs(logdir: str | os.PathLike) -> dict[str, Path]:
    """Every run record under ``logdir``: run name (the log folder, relative) to record folder.

    A record in ``logdir`` itself (``tensorboard --logdir runs/spurious``) is named
    after that folder (``spurious``), never ``.``, unless a run below already has that name.

    A record is a ``cam/`` folder holding an entry named ``record.json`` (which
    :func:`cam_callback.load_run` then reads, or refuses when it is not a regular
    file). Symlinked folders are not descended into, hidden folders are skipped, and
    nothing inside a record is searched. ``logdir`` itself may be a symlink.

    Example:
        >>> discover_runs("runs")  # doctest: +SKIP
        {'inception': PosixPath('runs/inception/cam'), 'vgg19': PosixPath('runs/vgg19/cam')}
    """
    root = Path(logdir)
    found: dict[str, Path] = {}
    if not root.is_dir():
        return found
    own = None  # the record of the logdir itself, named once the others are known
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here.name == SUBDIR and "record.json" in filenames:
            name = "." if here == root else here.parent.relative_to(root).as_posix() or "."
            if name == ".":
                own = here
            else:
                found[name] = here
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    if own is not None:
        name = (own.parent if own == root else root).resolve().name
        found[name if name and name not in found else "."] = own
    return dict(sorted(found.items()))


def signature(path: Path) -> tuple:
    """What changes on disk when an epoch is added, rewritten or removed, or when flags
    or any record file are replaced. ``lstat`` only: a symlink (dangling or not) or a
    FIFO is signed as it is, never followed or opened, and never raises.

    Example:
        >>> signature(Path("runs/a/cam")) == signature(Path("runs/a/cam"))  # doctest: +SKIP
        True
    """

    def sign(file: Path) -> tuple | None:
        try:
            st = os.lstat(file)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode)

    epochs = tuple((e, sign(f)) for e, f in epoch_files(path).items())
    return epochs, tuple(sign(path / name) for name in SIGNED)


@dataclass
class RunSummary:
    """What the run list shows of a record, read from ``record.json`` and the names and
    ``lstat`` of its files: no ``.npz`` is opened.

    Attributes:
        path: The record folder.
        meta: Everything in ``record.json``, checked by :func:`cam_callback.record.read_meta`.
        epochs: The recorded epochs whose files are regular files within the size cap
            (a file damaged inside is found, and skipped, when the run is read in full).

    Example:
        >>> summarize(Path("runs/a/cam")).epochs  # doctest: +SKIP
        [-1, 0, 1, 2]
    """

    path: Path
    meta: dict[str, Any] = field(default_factory=dict)
    epochs: list[int] = field(default_factory=list)

    @property
    def n_probes(self) -> int:
        """How many probes the record holds."""
        return int(self.meta["n_probes"])

    @property
    def has_baseline(self) -> bool:
        """Whether the first entry is the untrained model's state (epoch ``-1``)."""
        return bool(self.epochs) and self.epochs[0] == BASELINE_EPOCH

    @property
    def class_names(self) -> list[str] | None:
        """The class names ``record.json`` holds, or ``None``."""
        return self.meta.get("class_names")


def regular_problem(file: Path) -> str | None:
    """Why ``file`` cannot be read as a record file, from ``lstat`` alone (never opened):
    not there, not a regular file, or over ``MAX_FILE_BYTES``; ``None`` when it may be.

    Example:
        >>> regular_problem(Path("no/such/probes.npz"))
        'does not exist'
    """
    try:
        st = os.lstat(file)
    except OSError as exc:
        return "does not exist" if isinstance(exc, FileNotFoundError) else str(exc.strerror)
    if not stat.S_ISREG(st.st_mode):
        return f"is {file_kind(st.st_mode)}, not a regular file"
    if st.st_size > MAX_FILE_BYTES:
        return f"holds {st.st_size} bytes, more than the {MAX_FILE_BYTES} allowed"
    return None


def summarize(path: Path) -> RunSummary:
    """The run list's view of the record folder ``path``: ``record.json`` read and checked,
    ``probes.npz`` and the epoch files checked by ``lstat`` as :func:`~cam_callback.load_run`
    would refuse them (an epoch it would skip is skipped, with the same warning).

    Raises:
        FileNotFoundError: No ``record.json``.
        RecordError: ``record.json`` is damaged, or ``probes.npz`` is missing, not a
            regular file or too large; the file and the problem are named.

    Example:
        >>> summarize(Path("runs/a/cam")).n_probes  # doctest: +SKIP
        16
    """
    meta = read_meta(path)
    problem = regular_problem(path / "probes.npz")
    if problem is not None:
        raise RecordError(f"damaged cam-callback record: {path / 'probes.npz'}: {problem}")
    epochs = []
    for epoch, file in epoch_files(path).items():
        problem = regular_problem(file)
        if problem is None:
            epochs.append(epoch)
        else:
            warnings.warn(f"skipping damaged cam-callback record: {file}: {problem}", stacklevel=2)
    return RunSummary(path, meta, epochs)


def finite_floats(values: ArrayLike) -> list[float]:
    """Floats for JSON: NaN and infinities (a diverged model) become 0, rounded to 5 digits.

    Example:
        >>> finite_floats(np.array([0.123456, np.nan, np.inf]))
        [0.12346, 0.0, 0.0]
    """
    return [round(float(v), 5) if math.isfinite(v) else 0.0 for v in np.ravel(values)]


def probe_table(run: Run) -> list[dict]:
    """The ``probes`` route's rows: the review page's rows (:func:`probe_rows`) with the
    prediction, its probability and the class the map explains at every epoch, and only
    finite numbers.

    Example:
        >>> probe_table(load_run("runs/a"))[0]["pred"]  # doctest: +SKIP
        [2, 2, 0]
    """
    rows = probe_rows(run, float(run.meta.get("low_confidence", 0.5)))
    # argmax of NaN is 0: a non-finite prediction is -1, never the true class.
    finite = np.isfinite(run.probabilities).all(-1)
    preds = np.where(finite, run.probabilities.argmax(-1), -1)
    top = np.take_along_axis(run.probabilities, run.probabilities.argmax(-1)[..., None], -1)
    out = []
    for r in rows:
        i = r["index"]
        out.append(
            {
                "index": i,
                "label": r["label"],
                "label_name": r["label_name"],
                "class": r["label_name"] or r["pred_name"],
                "pred": [int(p) for p in preds[:, i]],
                # Per epoch, for the caption the tab writes as text: p(pred) and the
                # class the map explains.
                "p_pred": finite_floats(top[:, i, 0]),
                "map": [int(t) for t in run.targets[:, i]],
                "curve": finite_floats(r["curve"]),
                "flags": r["flags"],
                "badges": r["badges"],
                "priority": [r["priority"][0], finite_floats([r["priority"][1]])[0]],
                "attention": [r["attention"][0], finite_floats([r["attention"][1]])[0]],
                "true_probability": finite_floats([r["true_probability"]])[0],
            }
        )
    return out
