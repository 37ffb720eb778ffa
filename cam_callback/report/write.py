"""Writing the review page: its animations and posters in a ``<name>_files`` folder beside
one HTML file, so the folder can be zipped and mailed."""

from __future__ import annotations

import io
import os
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from cam_callback import animate
from cam_callback.frames import FrameRenderer
from cam_callback.record import Run, atomic_write_bytes, load_run
from cam_callback.report.page import render_page
from cam_callback.report.rows import probe_rows


def last_frame_png(run: Run, index: int) -> bytes:
    """Probe ``index``'s frame at the last recorded epoch, as PNG: the card's poster."""
    label = None if run.labels is None else int(run.labels[index])
    renderer = FrameRenderer(run.images[index], label=label, class_names=run.class_names)
    frame = renderer.draw(
        run.heatmaps[-1, index],
        run.probabilities[-1, index],
        run.epochs[-1],
        target=int(run.targets[-1, index]),
    )
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def write_report(
    run: Run | str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    threshold: float = 0.5,
    fps: float = 4.0,
    processes: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Writes the review page and its animations.

    Args:
        run: A :class:`Run` or a ``log_dir``.
        out: The HTML file; defaults to ``LOG_DIR/cam/report/index.html``. Its
            animations go in a ``<name>_files`` folder beside it.
        threshold: Top-1 probability below which a probe is flagged low-confidence.
        fps: Animation speed.
        processes: Render with worker processes (see ``render_animations``).
        progress: Called as ``progress(done, total)`` while animations render.

    Returns:
        The path of the HTML file.

    Example:
        >>> write_report("runs/a")  # doctest: +SKIP
        PosixPath('runs/a/cam/report/index.html')
    """
    if not isinstance(run, Run):
        run = load_run(run)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"`threshold` must be in [0, 1]. Received: threshold={threshold}")
    if not run.epochs:
        raise ValueError(f"the record at {run.path} has no complete epoch yet: nothing to report")
    page = Path(out) if out is not None else run.path / "report" / "index.html"
    assets = page.parent / f"{page.stem}_files"
    paths = animate.render_animations(
        run, assets, formats="gif", fps=fps, grid=False, processes=processes, progress=progress
    )
    # URL-encoded: a page named "run#1.html" has its GIFs in "run#1_files/", which a raw
    # src would cut at the "#".
    gifs = {i: urllib.parse.quote(f"{assets.name}/{p.name}") for i, p in enumerate(paths)}
    posters = {}
    for i in range(run.n_probes):
        poster = assets / f"probe_{i:03d}_last.png"
        atomic_write_bytes(poster, last_frame_png(run, i))
        posters[i] = urllib.parse.quote(f"{assets.name}/{poster.name}")
    rows = probe_rows(run, threshold)
    atomic_write_bytes(page, render_page(run, rows, gifs, threshold, posters).encode())
    return page
