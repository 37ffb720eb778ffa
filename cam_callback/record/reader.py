"""Reading a record folder as untrusted input: ``record.json``, the probes and epoch files.

Every ``.npy`` header is checked against ``record.json`` before anything is allocated
(see :mod:`cam_callback.safe_read`). numpy only, no TensorFlow.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from cam_callback.record.paths import (
    BASELINE_EPOCH,
    BASELINE_FILE,
    EPOCH_FILE,
    FORMAT,
    MAX_COUNT,
    MAX_IMAGE_PIXELS,
    MAX_SIDE,
    SUBDIR,
    VERSION,
    RecordError,
    record_dir,
)
from cam_callback.safe_read import MAX_JSON_BYTES, UnreadableFile, read_json, read_npz


def damaged(file: Path, problem: str) -> RecordError:
    """The :class:`RecordError` for a damaged record file, naming it and the problem.

    Example:
        >>> str(damaged(Path("cam/record.json"), "not JSON"))
        'damaged cam-callback record: cam/record.json: not JSON'
    """
    return RecordError(f"damaged cam-callback record: {file}: {problem}")


def is_int(value: Any) -> TypeGuard[int]:
    """Whether ``value`` is an int and not a bool (JSON ``true`` is no count).

    Example:
        >>> is_int(3), is_int(True), is_int(3.0)
        (True, False, False)
    """
    return isinstance(value, int) and not isinstance(value, bool)


def check_meta(meta: dict[str, Any], meta_file: Path) -> None:
    """Checks the fields a reader relies on, so a hand-edited file fails here, by name."""

    def need(ok: bool, key: str, expected: str) -> None:
        if not ok:
            raise damaged(meta_file, f"`{key}` must be {expected}, got {meta.get(key)!r:.80}")

    for key in ("n_probes", "n_classes"):
        value = meta.get(key)
        need(is_int(value) and 1 <= value <= MAX_COUNT, key, f"an int in 1..{MAX_COUNT}")
    shape = meta.get("map_shape")
    need(
        isinstance(shape, list)
        and len(shape) == 2
        and all(is_int(v) and 1 <= v <= MAX_SIDE for v in shape)
        and shape[0] * shape[1] <= MAX_IMAGE_PIXELS,
        "map_shape",
        f"two ints in 1..{MAX_SIDE}, of at most {MAX_IMAGE_PIXELS} cells",
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
        final is None or (is_int(final) and final >= BASELINE_EPOCH),
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
        raise damaged(meta_file, str(exc)) from None
    except OSError as exc:
        raise damaged(meta_file, f"cannot be read ({exc.strerror or exc})") from None
    if not isinstance(meta, dict):
        raise damaged(meta_file, f"must hold a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise RecordError(
            f"{meta_file} is not a cam-callback record (format={meta.get('format')!r:.80})"
        )
    version = meta.get("version", 0)
    if not is_int(version):
        raise damaged(meta_file, f"`version` must be an int, got {version!r:.80}")
    if version > VERSION:
        raise RecordError(
            f"{meta_file} has record version {version}; this cam-callback reads up to "
            f"{VERSION}. Upgrade cam-callback."
        )
    check_meta(meta, meta_file)
    return meta


# name -> (dtype kinds accepted, shape with None for "any size within the limits")
Spec = Mapping[str, tuple[str, tuple[int | None, ...]]]


def read_arrays(file: Path, spec: Spec | None, optional: tuple[str, ...] = ()) -> dict:
    """The arrays of an ``.npz``, each header checked against ``spec`` before allocating.

    Keys not in ``spec`` must be ``metric_*`` (float, shaped like ``targets``); with
    ``spec=None`` any array is read (the writer reading back its own files). The
    ``None`` sides of a shape (an image's height and width) are held to ``MAX_SIDE``
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
            or not all(1 <= s <= MAX_SIDE for s in free)
            or math.prod(free) > MAX_IMAGE_PIXELS
        ):
            shown = tuple("?" if w is None else w for w in want)
            raise UnreadableFile(
                f"shape {shape}, expected {shown} "
                f"(sides 1..{MAX_SIDE}, at most {MAX_IMAGE_PIXELS} pixels)"
            )

    try:
        out = read_npz(file, check)
    except UnreadableFile as exc:
        raise damaged(file, str(exc)) from None
    except OSError as exc:  # missing, or not readable by this user
        raise damaged(file, f"cannot be read ({exc.strerror or exc})") from None
    missing = [k for k in (spec or {}) if k not in out and k not in optional]
    if missing:
        raise damaged(file, f"missing array {missing[0]!r}")
    return out


def check_probes(arrays: dict, meta: dict, file: Path) -> None:
    images = arrays["images"]
    masks = arrays.get("masks")
    if masks is not None and masks.shape != images.shape[:3]:
        raise damaged(file, f"masks of shape {masks.shape} for images {images.shape}")
    labels = arrays.get("labels")
    if labels is not None:
        c = meta["n_classes"]
        unknown = labels < 0
        if ((labels < -1) | (labels >= c)).any() or (unknown.any() and not unknown.all()):
            raise damaged(file, f"labels must all be in 0..{c - 1} (or all -1: unknown)")


def read_epoch_file(file: Path, meta: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """One epoch file's arrays, checked against the record's config (``record.json``).

    Raises:
        RecordError: The file is damaged in any way; the message names it.
    """
    n, c = meta["n_probes"], meta["n_classes"]
    h, w = meta["map_shape"]
    arrays = read_arrays(
        file,
        {"heatmaps": ("f", (n, h, w)), "probabilities": ("f", (n, c)), "targets": ("iu", (n,))},
    )
    targets = arrays["targets"]
    if ((targets < 0) | (targets >= c)).any():
        raise damaged(file, f"targets must be class ids in 0..{c - 1}")
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
        m = EPOCH_FILE.match(name)
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


def read_ledger(file: Path) -> dict[int, str] | None:
    """Epoch to weights fingerprint from ``weights.json``; ``None`` when it is missing,
    not a regular file, or damaged (no fingerprints to go by).

    Example:
        >>> read_ledger(Path("no/such/weights.json")) is None
        True
    """
    if not file.is_file():  # missing, or not a regular file: no fingerprints to go by
        return None
    try:
        with open(file, "rb") as f:
            data = json.loads(f.read(MAX_JSON_BYTES + 1))
        weights = data["weights"]
        return {int(e): str(fp) for e, fp in weights.items() if isinstance(fp, str)}
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None
