"""From the run record to GIF/MP4 animations: one per probe, and a grid of all.

GIFs use one palette per animation, built once from a few of its frames and
shared by all of them; quantizing every frame on its own is what makes
imageio's default GIF writer 30x slower than drawing.
"""

from __future__ import annotations

import io
import multiprocessing
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from cam_callback import frames as F
from cam_callback.record import Run, atomic_write_bytes, load_run

FORMATS = ("gif", "mp4")
GRID_SIDE = 96  # grid tiles stay small: 64 probes still fit a screen


class MissingVideoExtra(ImportError):
    """MP4 needs imageio-ffmpeg, installed by ``pip install "cam-callback[video]"``."""


def normalize_formats(formats: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"gif"``, ``"mp4"``, a sequence of them, or ``None`` as a tuple; checks each.

    Example:
        >>> normalize_formats(("gif", "mp4"))
        ('gif', 'mp4')
    """
    if formats is None:
        return ()
    items = (formats,) if isinstance(formats, str) else tuple(formats)
    for item in items:
        if item not in FORMATS:
            raise ValueError(f"`animate` formats must be among {FORMATS}. Received: {formats!r}")
    return tuple(dict.fromkeys(items))


def gif_bytes(frames: Sequence[np.ndarray], fps: float = 4.0) -> bytes:
    """Encodes uint8 ``[H, W, 3]`` frames as a looping GIF with one shared palette."""
    if not frames:
        raise ValueError("`frames` is empty: nothing to animate. Received: frames=[]")
    picks = sorted({0, len(frames) // 2, len(frames) - 1})
    # Octree on first, middle and last frames: 2 ms, where median cut takes 130.
    mosaic = np.concatenate([frames[i] for i in picks], axis=0)
    palette = Image.fromarray(mosaic).quantize(256, method=Image.Quantize.FASTOCTREE)
    images = [
        Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in frames
    ]
    buf = io.BytesIO()
    images[0].save(
        buf,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=int(round(1000 / fps)),
        loop=0,
    )
    return buf.getvalue()


def write_gif(path: str | os.PathLike, frames: Sequence[np.ndarray], fps: float = 4.0) -> Path:
    """Writes a looping GIF atomically.

    Example:
        >>> write_gif("probe.gif", [frame0, frame1], fps=2)  # doctest: +SKIP
    """
    path = Path(path)
    atomic_write_bytes(path, gif_bytes(frames, fps))
    return path


def write_mp4(path: str | os.PathLike, frames: Sequence[np.ndarray], fps: float = 4.0) -> Path:
    """Writes an H.264 MP4 (needs the ``[video]`` extra), atomically.

    Raises:
        MissingVideoExtra: imageio-ffmpeg is not installed.
    """
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError as exc:
        raise MissingVideoExtra(
            'MP4 output needs imageio-ffmpeg: pip install "cam-callback[video]"'
        ) from exc
    import imageio.v2 as imageio

    if not frames:
        raise ValueError("`frames` is empty: nothing to animate. Received: frames=[]")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    ph, pw = -h % 16, -w % 16  # H.264 wants multiples of 16: pad, never rescale
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.mp4")
    try:
        with imageio.get_writer(
            tmp, format="FFMPEG", fps=fps, codec="libx264", quality=8, macro_block_size=16
        ) as writer:
            for f in frames:
                writer.append_data(np.pad(f, ((0, ph), (0, pw), (0, 0)), mode="edge"))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_animation(
    path: str | os.PathLike, frames: Sequence[np.ndarray], fmt: str, fps: float
) -> Path:
    """Writes ``frames`` as ``fmt`` (``"gif"`` or ``"mp4"``)."""
    return (write_gif if fmt == "gif" else write_mp4)(path, frames, fps)


def _probe_ids(probes: Iterable[int] | None, n: int) -> list[int]:
    """The chosen probe indices (all when ``None``), each checked to exist."""
    chosen = list(range(n)) if probes is None else [int(p) for p in probes]
    unknown = [p for p in chosen if not 0 <= p < n]
    if unknown:
        raise ValueError(
            f"`probes` {unknown} do not exist: the record has probes 0..{n - 1}. "
            f"Received: probes={chosen}"
        )
    return chosen


def probe_frames(
    run: Run, index: int, *, top_k: int = 3, alpha: float = 0.5, limit: int | None = None
) -> list[np.ndarray]:
    """One frame per recorded epoch for probe ``index``, in epoch order (the first ``limit``)."""
    label = None if run.labels is None else int(run.labels[index])
    renderer = F.FrameRenderer(
        run.images[index], label=label, class_names=run.class_names, top_k=top_k, alpha=alpha
    )
    return [
        renderer.draw(run.heatmaps[e, index], run.probabilities[e, index], epoch)
        for e, epoch in enumerate(run.epochs[:limit])
    ]


def grid_tile(run: Run, epoch_pos: int, index: int, alpha: float = 0.5) -> np.ndarray:
    """Probe ``index`` at the ``epoch_pos``-th recorded epoch as a grid tile, captioned
    with its id and true class."""
    label = None if run.labels is None else int(run.labels[index])
    return F.tile(
        run.images[index],
        run.heatmaps[epoch_pos, index],
        run.probabilities[epoch_pos, index],
        label,
        alpha,
        GRID_SIDE,
        caption=tile_caption(index, None if label is None else run.class_name(label)),
    )


def tile_caption(index: int, true_name: str | None) -> str:
    """A grid tile's caption: ``"003 · homer"`` (the id alone without labels).

    Example:
        >>> tile_caption(3, "homer")
        '003 · homer'
    """
    return f"{index:03d}" + (f" · {true_name}" if true_name is not None else "")


def grid_frames(run: Run, probes: Sequence[int], alpha: float = 0.5) -> list[np.ndarray]:
    """One grid image of the given probes per recorded epoch, titled with the epoch."""
    return [
        F.grid([grid_tile(run, e, i, alpha) for i in probes], title=F.epoch_label(epoch))
        for e, epoch in enumerate(run.epochs)
    ]


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
    chosen = _probe_ids(probes, run.n_probes)
    out = Path(out_dir) if out_dir is not None else run.path / "animations"
    out.mkdir(parents=True, exist_ok=True)

    jobs: list[tuple[str, int | None, str]] = [
        (str(out / f"probe_{i:03d}.{fmt}"), i, fmt) for i in chosen for fmt in fmts
    ]
    if grid:
        jobs += [(str(out / f"grid.{fmt}"), None, fmt) for fmt in fmts]
    options = {"fps": fps, "top_k": top_k, "alpha": alpha, "grid_probes": chosen}
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


PROCESS_MIN_JOBS = 16  # below this, starting processes costs more than it saves


_WORKER_RUN: Run | None = None  # in a worker process: the Run the parent renders


def _set_worker_run(run: Run) -> None:
    global _WORKER_RUN
    _WORKER_RUN = run


def _render_jobs(
    run: Run | None, n_epochs: int, jobs: Sequence[tuple[str, int | None, str]], options: dict
) -> list[str]:
    """Writes ``jobs`` (path, probe or None for the grid, format); runs in a worker process."""
    if run is None:
        run = _WORKER_RUN
    written = []
    for path, probe, fmt in jobs:
        if probe is None:
            frames = grid_frames(run, options["grid_probes"], options["alpha"])
        else:
            frames = probe_frames(run, probe, top_k=options["top_k"], alpha=options["alpha"])
        write_animation(path, frames, fmt, options["fps"])
        written.append(path)
    return written


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
    chosen = _probe_ids(probes, a.n_probes)
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

    jobs = [(i, fmt) for i in chosen for fmt in fmts]
    results = []
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        futures = [
            pool.submit(
                lambda i=i, fmt=fmt: write_animation(
                    out / f"probe_{i:03d}.{fmt}", frames_of(i), fmt, fps
                )
            )
            for i, fmt in jobs
        ]
        for done, fut in enumerate(futures, 1):
            results.append(fut.result())
            if progress is not None:
                progress(done, len(jobs))
    return results
