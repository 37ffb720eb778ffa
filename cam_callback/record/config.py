"""One frozen, validated tracker config per record: numpy only, no TensorFlow.

The config is checked here, in one place, written whole into ``record.json``,
and compared whole when a later ``fit`` continues the record, so one record
never mixes maps of two settings.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cam_callback import __version__

# A GIF stores each frame's delay as a uint16 count of 1/100 s, and browsers play delays under
# 2/100 s at 10 fps: only this range of fps plays as asked.
GIF_MIN_FPS = 100 / 65535
GIF_MAX_FPS = 50.0
# The live MP4 is staged as GIF frames, so a frame lasts at most 655 s there too. ffmpeg writes
# no playable file much below 1e-4 fps (no duration) and refuses 1e-9; above 240 fps no screen
# shows every frame.
MP4_MIN_FPS = GIF_MIN_FPS
MP4_MAX_FPS = 240.0


def check_fps(fps: Any, formats: Sequence[str] = ("gif",), name: str = "fps") -> float:
    """``fps`` as a float, checked to be a speed every format in ``formats`` can hold.

    numpy numbers (``np.float32(4.0)``) are accepted.

    Raises:
        ValueError: Not a finite positive number, or outside what a GIF
            (``GIF_MIN_FPS`` to ``GIF_MAX_FPS``) or an MP4 (``MP4_MIN_FPS`` to
            ``MP4_MAX_FPS``) can hold.

    Example:
        >>> check_fps(4)
        4.0
    """
    if (
        isinstance(fps, (bool, np.bool_))
        or not isinstance(fps, numbers.Real)
        or not math.isfinite(fps)
    ):
        raise ValueError(f"`{name}` must be a finite positive number. Received: {name}={fps!r}")
    value = float(fps)  # a numbers.Real (numpy's too), compared as the float it is
    if value <= 0:
        raise ValueError(f"`{name}` must be positive. Received: {name}={fps!r}")
    if "gif" in formats and not GIF_MIN_FPS <= value <= GIF_MAX_FPS:
        raise ValueError(
            f"`{name}` must be between {GIF_MIN_FPS:.4f} and {GIF_MAX_FPS:g} for a GIF (a frame "
            f"lasts between 1/50 s and 655 s). Received: {name}={fps!r}"
        )
    if "mp4" in formats and not MP4_MIN_FPS <= value <= MP4_MAX_FPS:
        raise ValueError(
            f"`{name}` must be between {MP4_MIN_FPS:.4f} and {MP4_MAX_FPS:g} for an MP4 (a "
            f"frame lasts between 1/240 s and 655 s). Received: {name}={fps!r}"
        )
    return value


def check_video(formats: Sequence[str]) -> None:
    """Checks that MP4 output can be written, before any epoch is spent.

    Raises:
        ValueError: ``"mp4"`` is asked for and imageio-ffmpeg is not installed.
    """
    if "mp4" in formats and importlib.util.find_spec("imageio_ffmpeg") is None:
        raise ValueError(
            '`animate` asks for "mp4", which needs imageio-ffmpeg: install the video extra with '
            f'pip install "cam-callback[video]". Received: animate={tuple(formats)!r}'
        )


def mask_fingerprint(masks: np.ndarray | None) -> str | None:
    """A short hash of bool probe masks, or ``None`` without masks.

    Example:
        >>> mask_fingerprint(None) is None
        True
    """
    if masks is None:
        return None
    m = np.asarray(masks, bool)
    return hashlib.sha256(repr(m.shape).encode() + np.packbits(m).tobytes()).hexdigest()[:16]


@dataclass(frozen=True)
class TrackerConfig:
    """Everything that decides what a record's maps mean.

    ``head`` is how the output was read (``ModelCheck.head``: ``"softmax"``,
    ``"logits"``, ``"binary"``, ...) and ``score`` the score the maps really
    explain (``"logit"``, ``"probability"`` or ``"none"``), whatever was asked.
    Two ``fit`` calls may write one record only when their configs are equal
    (``package_version`` aside); ``RecordWriter.open`` compares them.

    Example:
        >>> cfg = TrackerConfig(layer="conv2", method="gradcam", score="logit", head=None,
        ...     target="predicted", output=None, fingerprint="ab", n_probes=2, n_classes=3,
        ...     map_shape=(6, 6), probe_shape=(32, 32, 3), class_names=None, mask_kind="object",
        ...     mask_fingerprint=None, low_confidence=0.5, every_n_epochs=1, package_version="1")
        >>> cfg.to_json()["map_shape"]
        [6, 6]
    """

    layer: str
    method: str
    score: str
    head: str | None
    target: str | int | tuple[int, ...]
    output: int | str | None
    fingerprint: str
    n_probes: int
    n_classes: int
    map_shape: tuple[int, int]
    probe_shape: tuple[int, ...]
    class_names: tuple[str, ...] | None
    mask_kind: str
    mask_fingerprint: str | None
    low_confidence: float
    every_n_epochs: int
    package_version: str
    backend: str = "tensorflow"  # the Keras backend that computed the maps
    # Interventions' settings and flag thresholds (None: not measured); fragility's options.
    interventions: dict[str, Any] | None = None
    fragility: dict[str, Any] | None = None
    evidence: dict[str, Any] | None = None  # the evidence transplant's options (None: off)
    # A token layer's grid and prefix tokens as asked (None: found from the shapes).
    grid: tuple[int, int] | None = None
    prefix_tokens: int | None = None
    # True where head="auto" assumed softmax logits (nothing told): None where it was decided.
    head_assumed: bool | None = None

    def to_json(self) -> dict[str, Any]:
        """The config as JSON values (tuples as lists), the keys of ``record.json``."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out


def build_config(
    *,
    check: Any,
    method: str,
    score: str,
    target: Any,
    head: str = "auto",
    output: int | str | None,
    fingerprint: str,
    probe_images: np.ndarray,
    probe_labels: np.ndarray | None,
    one_hot_width: int | None,
    class_names: Sequence[str] | None,
    probe_masks: np.ndarray | None,
    mask_kind: str,
    low_confidence: float,
    every_n_epochs: int,
    interventions: dict[str, Any] | None = None,
    fragility: dict[str, Any] | None = None,
    grid: tuple[int, int] | None = None,
    prefix_tokens: int | None = None,
    evidence: dict[str, Any] | None = None,
) -> TrackerConfig:
    """Checks the tracker's arguments against the model and freezes them.

    Args:
        check: What ``cams.inspect_model`` found (layer, ``n_classes``, ``map_shape``,
            and ``score``/``head`` where the cams module reports them).
        head: The ``head=`` asked for; recorded where ``check`` reports no head.
        target: The user's ``target`` argument: ``"predicted"``, ``"label"``, or ids.
        interventions: The interventions' settings and thresholds, or ``None``.
        fragility: The fragility options, or ``None``.
        evidence: The evidence transplant's options, or ``None``.
        grid: A token layer's grid ``(h, w)`` as asked, or ``None``.
        prefix_tokens: A token layer's prefix tokens as asked, or ``None``.

    Raises:
        ValueError: Class names, labels or targets that do not fit the model's classes.
    """
    n_classes = int(check.n_classes)
    if class_names is not None and len(class_names) != n_classes:
        raise ValueError(
            f"`class_names` has {len(class_names)} names but the model has "
            f"{n_classes} classes. Received: class_names={list(class_names)}"
        )
    if one_hot_width is not None and one_hot_width != n_classes:
        raise ValueError(
            f"`probe_labels` are one-hot with {one_hot_width} columns but the model "
            f"has {n_classes} classes. Received: probe_labels of width {one_hot_width}"
        )
    if probe_labels is not None and probe_labels.max() >= n_classes:
        raise ValueError(
            f"`probe_labels` holds class {int(probe_labels.max())} but the model has "
            f"{n_classes} classes (0..{n_classes - 1}). Received: probe_labels"
        )
    if not isinstance(target, str) and np.max(target) >= n_classes:
        raise ValueError(
            f"`target` class {int(np.max(target))} is outside the model's {n_classes} "
            f"classes. Received: target={target!r}"
        )
    if isinstance(target, str):
        frozen_target: str | int | tuple[int, ...] = target
    elif np.ndim(target) == 0:
        frozen_target = int(target)
    else:
        frozen_target = tuple(int(t) for t in np.asarray(target).ravel())
    return TrackerConfig(
        layer=str(check.layer),
        method=method,
        score=str(getattr(check, "score", score)),
        head=getattr(check, "head", None) or (None if head == "auto" else head),
        target=frozen_target,
        output=output,
        fingerprint=fingerprint,
        n_probes=int(len(probe_images)),
        n_classes=n_classes,
        map_shape=(int(check.map_shape[0]), int(check.map_shape[1])),
        probe_shape=tuple(int(s) for s in probe_images.shape[1:]),
        class_names=None if class_names is None else tuple(class_names),
        mask_kind=mask_kind,
        mask_fingerprint=mask_fingerprint(probe_masks),
        low_confidence=float(low_confidence),
        every_n_epochs=int(every_n_epochs),
        package_version=__version__,
        backend=str(getattr(check, "backend", "tensorflow")),
        interventions=None if interventions is None else dict(interventions),
        fragility=None if fragility is None else dict(fragility),
        evidence=None if evidence is None else dict(evidence),
        grid=None if grid is None else (int(grid[0]), int(grid[1])),
        prefix_tokens=None if prefix_tokens is None else int(prefix_tokens),
        head_assumed=True if getattr(check, "head_assumed", False) else None,
    )
