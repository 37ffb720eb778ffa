"""Rendering a record's animations: one file per probe and format, plus a grid, in parallel
threads or spawned processes."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from cam_callback.animate.layout import sample_positions
from cam_callback.animate.sequences import grid_frames, probe_frames, probe_ids
from cam_callback.animate.video import normalize_formats, write_animation
from cam_callback.record import Run, load_run

PROCESS_MIN_JOBS = 16  # below this, starting processes costs more than it saves


def render_animations(
    run: Run | str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    formats: str | Sequence[str] = "gif",
    fps: float = 4.0,
    probes: Iterable[int] | None = None,
    grid: bool = True,
    top_k: int = 3,
    alpha: float = 0.5,
    workers: int | None = None,
    processes: bool = False,
    progress: Callable[[int, int], None] | None = None,
    max_frames: int | None = None,
) -> list[Path]:
    """Renders animations from a record: one file per probe and format, plus a grid.

    Args:
        run: A :class:`Run` or a ``log_dir``.
        out_dir: Where to write; defaults to ``LOG_DIR/cam/animations``.
        formats: ``"gif"``, ``"mp4"`` or both.
        fps: Frames (epochs) per second.
        probes: Probe indices; all by default.
        grid: Also write ``grid.<fmt>`` of the chosen probes.
        top_k: Classes in the bar chart.
        alpha: Weight of the heatmap in the overlay.
        workers: Parallel workers; defaults to the number of CPU cores.
        processes: Use worker processes, which scale with cores where threads do not
            (drawing holds the GIL). They are spawned and import the caller's main
            module, so only pass ``True`` from code under ``if __name__ == "__main__"``;
            the CLI does.
        progress: Called as ``progress(done, total)`` after each file.
        max_frames: At most this many frames per file: recorded epochs sampled
            evenly, the first and last always kept. ``None``: every epoch.

    Returns:
        The paths written, probes first, in probe order.

    Raises:
        ValueError: No recorded epoch, or unknown probe indices or formats.

    Example:
        >>> render_animations("runs/a", formats=("gif", "mp4"), fps=2)  # doctest: +SKIP
        [PosixPath('runs/a/cam/animations/probe_000.gif'), ...]
    """
    if not isinstance(run, Run):
        run = load_run(run)
    fmts = normalize_formats(formats)
    if not fmts:
        raise ValueError("`formats` is empty. Received: formats=()")
    if not fps or fps <= 0:
        raise ValueError(f"`fps` must be positive. Received: fps={fps}")
    if not run.epochs:
        raise ValueError(f"the record at {run.path} has no complete epoch yet: nothing to render")
    if max_frames is not None and (
        isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 2
    ):
        raise ValueError(f"`max_frames` must be an int >= 2 or None. Received: {max_frames!r}")
    chosen = probe_ids(probes, run.n_probes)
    out = Path(out_dir) if out_dir is not None else run.path / "animations"
    out.mkdir(parents=True, exist_ok=True)

    jobs: list[tuple[str, int | None, str]] = [
        (str(out / f"probe_{i:03d}.{fmt}"), i, fmt) for i in chosen for fmt in fmts
    ]
    if grid:
        jobs += [(str(out / f"grid.{fmt}"), None, fmt) for fmt in fmts]
    options = {
        "fps": fps,
        "top_k": top_k,
        "alpha": alpha,
        "grid_probes": chosen,
        "positions": sample_positions(len(run.epochs), max_frames),
    }
    workers = workers or os.cpu_count() or 1
    results: list[Path] = []
    if processes and workers > 1 and len(jobs) >= PROCESS_MIN_JOBS:
        # Drawing and encoding hold the GIL: only processes use every core. Spawned, not
        # forked, so a parent that has TensorFlow loaded stays safe. Each worker gets this
        # very Run once (not a reload from disk, which may hold other epochs).
        chunks = [jobs[i :: workers * 4] for i in range(workers * 4)]
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_set_worker_run, initargs=(run,)
        ) as pool:
            futures = [
                pool.submit(_render_jobs, None, len(run.epochs), chunk, options)
                for chunk in chunks
                if chunk
            ]
            for fut in futures:
                results.extend(Path(p) for p in fut.result())
                if progress is not None:
                    progress(len(results), len(jobs))
        order = {path: k for k, (path, _, _) in enumerate(jobs)}
        return sorted(results, key=lambda p: order[str(p)])
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_render_jobs, run, len(run.epochs), [job], options) for job in jobs]
        for k, fut in enumerate(futures, 1):
            results.extend(Path(p) for p in fut.result())
            if progress is not None:
                progress(k, len(jobs))
    return results


_WORKER_RUN: Run | None = None  # in a worker process: the Run the parent renders


def _set_worker_run(run: Run) -> None:
    global _WORKER_RUN
    _WORKER_RUN = run


def _render_jobs(
    run: Run | None, n_epochs: int, jobs: Sequence[tuple[str, int | None, str]], options: dict
) -> list[str]:
    """Writes ``jobs`` (path, probe or None for the grid, format); runs in a worker process."""
    run = _WORKER_RUN if run is None else run
    if run is None:
        raise RuntimeError("a render worker started without the run it renders")
    written = []
    for path, probe, fmt in jobs:
        positions = options["positions"]
        if probe is None:
            frames = grid_frames(run, options["grid_probes"], options["alpha"], positions)
        else:
            frames = probe_frames(
                run, probe, top_k=options["top_k"], alpha=options["alpha"], positions=positions
            )
        write_animation(path, frames, fmt, options["fps"])
        written.append(path)
    return written
