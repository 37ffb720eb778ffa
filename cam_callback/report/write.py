"""Writing the review page: one HTML file and a ``<name>_files`` folder beside it, which
together can be zipped and mailed.

What the page draws is bounded: at most ``MAX_ANIMATED`` probes (48) play an animation,
those that matter most (misclassified, then low confidence, then flagged, then the least
sure of the true class); every other card shows a still of its last epoch (a paletted
PNG, about 13 KB at 32-px probes). The animations are the tracker's own
``animations/probe_NNN.gif`` when they are up to date, shared by a hardlink (no second
copy on disk; copied only when the page sits on another file system), else drawn.
So the folder holds about ``MAX_ANIMATED`` GIFs + one still per probe: 1000 probes x 31
epochs make about 35 MB (``docs/record.md``, ``benchmarks/bench_report.py``).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from cam_callback import animate
from cam_callback.frames import FrameRenderer
from cam_callback.record import Run, atomic_write_bytes, epoch_files, load_run
from cam_callback.report.page import render_page
from cam_callback.report.rows import probe_rows

MAX_ANIMATED = 48  # probes whose card plays an animation; the others show a still
# What a page writes in its folder, by probe index.
OWN_FILE = re.compile(r"^probe_(\d{3,})(?:\.gif|_last\.png)$")


def last_frame_png(run: Run, index: int) -> bytes:
    """Probe ``index``'s frame at the last recorded epoch, as a paletted PNG (256 colours,
    as the GIF frames): the card's poster, a third of a full-colour PNG's bytes."""
    label = None if run.labels is None else int(run.labels[index])
    renderer = FrameRenderer(run.images[index], label=label, class_names=run.class_names)
    frame = renderer.draw(
        run.heatmaps[-1, index],
        run.probabilities[-1, index],
        run.epochs[-1],
        target=int(run.targets[-1, index]),
    )
    buf = io.BytesIO()
    still = Image.fromarray(frame).quantize(256, method=Image.Quantize.FASTOCTREE)
    still.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def animated_probes(rows: Sequence[dict], limit: int = MAX_ANIMATED) -> list[int]:
    """The probes whose card plays an animation: at most ``limit``, those that matter most
    first (misclassified, then low confidence, then any other flag, then the lowest
    p(true)), returned in probe order.

    Example:
        >>> rows = [{"index": 0, "priority": (0, 0.9), "flags": []},
        ...         {"index": 1, "priority": (-2, 0.1), "flags": ["misclassified"]},
        ...         {"index": 2, "priority": (0, 0.95), "flags": ["on_cue"]}]
        >>> animated_probes(rows, 2)
        [1, 2]
    """
    order = sorted(
        rows, key=lambda r: (r["priority"][0], not r["flags"], r["priority"][1], r["index"])
    )
    return sorted(r["index"] for r in order[: max(0, limit)])


# A tracker's GIF holds at most max_frames (100) frames of one probe: a few MB. A larger
# file is not the tracker's, and is not linked or copied into the page.
MAX_SHARED_GIF_BYTES = 64 * 2**20


def tracker_gif(run: Run, index: int) -> Path | None:
    """The tracker's GIF of probe ``index`` when it is a regular file, in a real (not
    linked) ``animations`` folder of the record, at most :data:`MAX_SHARED_GIF_BYTES`,
    written after the last recorded epoch (so it shows every epoch the page speaks of);
    else ``None``: no link in the record is followed out of it."""
    folder = run.path / "animations"
    gif = folder / f"probe_{index:03d}.gif"
    last = epoch_files(run.path).get(run.epochs[-1])
    try:
        if folder.is_symlink() or gif.is_symlink() or not gif.is_file() or last is None:
            return None
        info = gif.stat()
        if info.st_size > MAX_SHARED_GIF_BYTES:
            return None
        return gif if info.st_mtime_ns >= last.stat().st_mtime_ns else None
    except OSError:
        return None


def share(source: Path, target: Path) -> None:
    """Puts ``source``'s bytes at ``target``: a hardlink (no second copy on disk; the tracker
    replaces its GIFs by rename, never in place), or a copy across file systems."""
    partial = target.parent / f".{target.name}.partial"
    partial.unlink(missing_ok=True)
    try:
        os.link(source, partial)
    except OSError:
        shutil.copyfile(source, partial)
    os.replace(partial, target)


def write_report(
    run: Run | str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    threshold: float = 0.5,
    fps: float = 4.0,
    processes: bool = False,
    progress: Callable[[int, int], None] | None = None,
    max_animated: int = MAX_ANIMATED,
) -> Path:
    """Writes the review page, its stills and its (bounded) animations.

    Args:
        run: A :class:`Run` or a ``log_dir``.
        out: The HTML file; defaults to ``LOG_DIR/cam/report/index.html``. Its
            stills and animations go in a ``<name>_files`` folder beside it: zip the
            HTML file and that folder (the whole ``report/`` folder by default) to mail it.
        threshold: Top-1 probability below which a probe is flagged low-confidence.
        fps: Speed of the animations drawn here (the tracker's keep their own).
        processes: Render with worker processes (see ``render_animations``).
        progress: Called as ``progress(done, total)`` while animations render.
        max_animated: At most this many cards play an animation (see
            :func:`animated_probes`); the others show a still of the last epoch.

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
    if isinstance(max_animated, bool) or not isinstance(max_animated, int) or max_animated < 0:
        raise ValueError(f"`max_animated` must be an int >= 0. Received: {max_animated!r}")
    if not run.epochs:
        raise ValueError(f"the record at {run.path} has no complete epoch yet: nothing to report")
    page = Path(out) if out is not None else run.path / "report" / "index.html"
    assets = page.parent / f"{page.stem}_files"
    assets.mkdir(parents=True, exist_ok=True)
    rows = probe_rows(run, threshold)
    animated = animated_probes(rows, max_animated)
    shared = {i: gif for i in animated if (gif := tracker_gif(run, i)) is not None}
    for gif in shared.values():
        share(gif, assets / gif.name)
    missing = [i for i in animated if i not in shared]
    if missing:
        animate.render_animations(
            run, assets, formats="gif", fps=fps, probes=missing, grid=False,
            processes=processes, progress=progress,
        )  # fmt: skip
    written = {f"probe_{i:03d}.gif" for i in animated}

    def still(i: int) -> None:
        atomic_write_bytes(assets / f"probe_{i:03d}_last.png", last_frame_png(run, i))

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(still, range(run.n_probes)))
    written |= {f"probe_{i:03d}_last.png" for i in range(run.n_probes)}
    for old in assets.glob("probe_*"):  # an earlier page's files for probes now stills
        own = OWN_FILE.match(old.name)
        if old.name not in written and own and int(own.group(1)) < run.n_probes:
            old.unlink(missing_ok=True)
    # URL-encoded: a page named "run#1.html" has its GIFs in "run#1_files/", which a raw
    # src would cut at the "#".
    gifs = {i: urllib.parse.quote(f"{assets.name}/probe_{i:03d}.gif") for i in animated}
    posters = {
        i: urllib.parse.quote(f"{assets.name}/probe_{i:03d}_last.png") for i in range(run.n_probes)
    }
    atomic_write_bytes(page, render_page(run, rows, gifs, threshold, posters).encode())
    return page
