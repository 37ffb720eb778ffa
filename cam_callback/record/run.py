"""The record read back: :class:`Run`, :func:`load_run`, and the per-probe flags.

numpy only, no TensorFlow.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cam_callback.frames.notebook import run_html
from cam_callback.metrics import flags as metric_flags
from cam_callback.record.paths import BASELINE_EPOCH, FLAGS_FILE, RecordError, atomic_write_bytes
from cam_callback.record.reader import (
    check_probes,
    epoch_files,
    find_record,
    is_int,
    read_arrays,
    read_epoch_file,
    read_meta,
)
from cam_callback.safe_read import UnreadableFile, read_json


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
        if not isinstance(table, dict) or not is_int(n_epochs) or n_epochs != len(self.epochs):
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

    def __repr__(self) -> str:
        """One short line: the record folder, epochs, probes, layer, method and how many
        probes are flagged (never the arrays; :meth:`_repr_html_` draws them in a notebook).

        Example:
            >>> len(repr(load_run("runs/a")))  # doctest: +SKIP
            97
        """
        if not self.epochs:
            epochs = "[] (0)"
        elif len(self.epochs) == 1:
            epochs = f"[{self.epochs[0]}] (1)"
        else:
            epochs = f"[{self.epochs[0]}..{self.epochs[-1]}] ({len(self.epochs)})"
        flags = list(self.flags.values()) if self.epochs else []
        flagged = int(np.any(flags, axis=0).sum()) if flags else 0
        return (
            f"Run({str(self.path)!r}, epochs={epochs}, probes={self.n_probes}, "
            f"layer={self.layer!r}, method={self.method!r}, flagged={flagged} of {self.n_probes})"
        )

    def _repr_html_(self) -> str:
        """How Jupyter and Colab show a run: the grid animation (an inline GIF), the flags
        and the p(true) curves (an inline SVG), with no network (see
        :func:`cam_callback.frames.notebook.run_html`).

        Example:
            >>> run = load_run("runs/a")  # doctest: +SKIP
            >>> run  # the last line of a notebook cell shows it  # doctest: +SKIP
        """
        return run_html(self)

    def class_name(self, cls: int) -> str:
        """The name of class ``cls``, or its id as text."""
        if self.class_names is not None and 0 <= cls < len(self.class_names):
            return self.class_names[cls]
        return str(cls)


def compute_flags(run: Run, low_confidence: float | None = None) -> dict[str, np.ndarray]:
    """Flags of ``run`` from its metrics; thresholds default to those the tracker stored."""
    return metric_flags(
        run.metrics,
        run.probabilities,
        low_confidence=run.meta.get("low_confidence", 0.5)
        if low_confidence is None
        else low_confidence,
        mask_kind=run.meta.get("mask_kind", "object"),
        heatmaps=run.heatmaps,
        **flag_thresholds(run.meta),
    )


def flag_thresholds(meta: dict) -> dict[str, float]:
    """The interventions' and fragility's flag thresholds ``record.json`` keeps, as
    :func:`cam_callback.metrics.flags` keywords (its defaults where not kept)."""
    out = {}
    kept = meta.get("interventions") or {}
    for key in ("reliance_threshold", "ignore_threshold"):
        if isinstance(kept.get(key), (int, float)):
            out[key] = float(kept[key])
    fragility = meta.get("fragility") or {}
    if isinstance(fragility.get("threshold"), (int, float)):
        out["fragility_threshold"] = float(fragility["threshold"])
    evidence = meta.get("evidence") or {}
    if isinstance(evidence.get("threshold"), (int, float)):
        out["evidence_threshold"] = float(evidence["threshold"])
    return out


def write_flags(run: Run) -> Path:
    """Stores ``run``'s flags in ``flags.json`` atomically."""
    flags = compute_flags(run)
    data = {"n_epochs": len(run.epochs), "flags": {k: v.tolist() for k, v in flags.items()}}
    path = run.path / FLAGS_FILE
    atomic_write_bytes(path, json.dumps(data).encode())
    return path


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
    probes = read_arrays(
        path / "probes.npz",
        {
            "images": ("u", (n, None, None, 3)),
            "labels": ("iu", (n,)),
            "masks": ("b", (n, None, None)),
        },
        optional=("labels", "masks"),
    )
    check_probes(probes, meta, path / "probes.npz")
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
