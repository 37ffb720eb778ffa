"""Side-by-side animations of the same probes from two runs."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from cam_callback import frames as F
from cam_callback.animate.sequences import probe_frames, probe_ids
from cam_callback.animate.video import normalize_formats, write_animation
from cam_callback.record import Run, load_run


def side_by_side(frames_by_run: Sequence[np.ndarray], labels: Sequence[str]) -> np.ndarray:
    """Frames of several runs next to each other, each under a label strip."""
    strip = 22
    h = max(f.shape[0] for f in frames_by_run) + strip
    w = sum(f.shape[1] for f in frames_by_run) + 6 * (len(frames_by_run) - 1)
    out = np.empty((h, w, 3), np.uint8)
    out[:] = F.BACKGROUND
    x = 0
    for frame, label in zip(frames_by_run, labels, strict=True):
        F.put_text(out, x + 6, 4, label, F.TEXT, 14)
        out[strip : strip + frame.shape[0], x : x + frame.shape[1]] = frame
        x += frame.shape[1] + 6
    return out


def compare_animations(
    run_a: Run | str | os.PathLike,
    run_b: Run | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    labels: Sequence[str] = ("A", "B"),
    formats: str | Sequence[str] = "gif",
    fps: float = 4.0,
    probes: Iterable[int] | None = None,
    top_k: int = 3,
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Side-by-side animations of the same probes from two runs, epochs aligned by index.

    Raises:
        ValueError: The runs recorded different probes, or one has no epoch.

    Example:
        >>> compare_animations("runs/inception", "runs/vgg19", "cmp",  # doctest: +SKIP
        ...                    labels=("Inception", "VGG-19"))
    """
    a = run_a if isinstance(run_a, Run) else load_run(run_a)
    b = run_b if isinstance(run_b, Run) else load_run(run_b)
    if a.fingerprint != b.fingerprint:
        raise ValueError(
            f"the runs recorded different probes ({a.path}: {a.fingerprint}, {b.path}: "
            f"{b.fingerprint}); compare needs the same probe set in both"
        )
    if len(labels) != 2:
        raise ValueError(f"`labels` needs two names. Received: labels={list(labels)}")
    n_epochs = min(len(a.epochs), len(b.epochs))
    if n_epochs == 0:
        raise ValueError("one of the runs has no complete epoch yet: nothing to compare")
    fmts = normalize_formats(formats)
    chosen = probe_ids(probes, a.n_probes)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def frames_of(i: int) -> list[np.ndarray]:
        fa = probe_frames(a, i, top_k=top_k, limit=n_epochs)
        fb = probe_frames(b, i, top_k=top_k, limit=n_epochs)
        return [
            side_by_side(
                [x, y],
                [
                    f"{labels[0]} · {F.epoch_label(a.epochs[e])}",
                    f"{labels[1]} · {F.epoch_label(b.epochs[e])}",
                ],
            )
            for e, (x, y) in enumerate(zip(fa, fb, strict=True))
        ]

    def write(i: int, fmt: str) -> Path:  # in a worker thread, frames drawn there too
        return write_animation(out / f"probe_{i:03d}.{fmt}", frames_of(i), fmt, fps)

    jobs = [(i, fmt) for i in chosen for fmt in fmts]
    results = []
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        futures = [pool.submit(write, i, fmt) for i, fmt in jobs]
        for done, fut in enumerate(futures, 1):
            results.append(fut.result())
            if progress is not None:
                progress(done, len(jobs))
    return results
