"""From the run record to GIF/MP4 animations: one per probe, and a grid of all.

A GIF is built from self-contained frame blocks (delay, own 256-colour
palette, LZW data), so the tracker can encode each frame as its epoch arrives
and append it to a file on disk (:class:`GifStream`); finishing the file is
writing one byte. Palettes come from Pillow's fast octree: quantizing with
imageio's default GIF writer is 30x slower than drawing.
"""

from __future__ import annotations

import io
import math
import multiprocessing
import os
import struct
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from cam_callback import frames as F
from cam_callback.record import Run, atomic_write_bytes, load_run

FORMATS = ("gif", "mp4")
GRID_SIDE = 96  # largest grid tile; tiles shrink so a grid of many probes stays bounded
GRID_MAX = 1024  # a grid is at most this wide and high (up to ~900 probes, then 16-px tiles)
MIN_GRID_SIDE = 16
PARTIAL = ".partial"  # animations being built during training, inside the animations folder


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


def grid_side(n_probes: int) -> int:
    """Tile side for a grid of ``n_probes`` that keeps it within ``GRID_MAX`` pixels.

    Example:
        >>> grid_side(32), grid_side(512)
        (96, 36)
    """
    cols = math.ceil(math.sqrt(max(1, n_probes)))
    # A tile is side + 4 px of frame, and tiles are 4 px apart.
    return max(MIN_GRID_SIDE, min(GRID_SIDE, (GRID_MAX + 4) // cols - 8))


CAPTION_MIN_SIDE = 64  # smaller tiles carry no caption: it would not be legible


def grid_layout(n_probes: int) -> tuple[int, bool]:
    """Tile side and whether tiles carry captions, for a grid of ``n_probes`` under an epoch
    title that stays within ``GRID_MAX`` pixels both ways.

    Example:
        >>> grid_layout(12), grid_layout(512)
        ((96, True), (36, False))
    """
    side = grid_side(n_probes)  # bounded by the width
    cols = math.ceil(math.sqrt(max(1, n_probes)))
    rows = math.ceil(max(1, n_probes) / cols)
    budget = GRID_MAX + 4 - F.GRID_TITLE_H
    captioned = min(side, budget // rows - 8 - F.TILE_CAPTION_H)
    if captioned >= CAPTION_MIN_SIDE:
        return captioned, True
    return max(MIN_GRID_SIDE, min(side, budget // rows - 8)), False


def sample_positions(n: int, max_frames: int | None) -> list[int]:
    """Positions of at most ``max_frames`` of ``n`` frames, evenly spread, first and last kept.

    Example:
        >>> sample_positions(10, 4)
        [0, 3, 6, 9]
        >>> sample_positions(3, 100)
        [0, 1, 2]
    """
    if max_frames is None or n <= max_frames:
        return list(range(n))
    if max_frames < 2:
        raise ValueError(f"`max_frames` must be >= 2 or None. Received: max_frames={max_frames}")
    # Spacing is > 1 when n > max_frames, so rounding never repeats a position.
    return [int(round(k * (n - 1) / (max_frames - 1))) for k in range(max_frames)]


GIF_TRAILER = b";"


def gif_header(width: int, height: int) -> bytes:
    """A GIF89a header for ``width x height`` frames that loops forever; no global palette.

    Example:
        >>> gif_header(4, 3)[:6]
        b'GIF89a'
    """
    screen = struct.pack("<HHBBB", width, height, 0, 0, 0)
    loop = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    return b"GIF89a" + screen + loop


def gif_frame(frame: np.ndarray, delay_ms: int, previous: np.ndarray | None = None) -> bytes:
    """One uint8 ``[H, W, 3]`` frame as a self-contained GIF block with its own palette.

    The block (graphic control, image descriptor, local palette, LZW data) can
    follow :func:`gif_header` or any other block of the same size, so frames
    are encoded one at a time as epochs arrive. Given the ``previous`` frame,
    pixels that did not change are left transparent, over it: the probe, the
    panel and most text stay put, and the GIF is about a third smaller.

    Example:
        >>> block = gif_frame(np.zeros((2, 2, 3), np.uint8), 250)
        >>> block[:3]
        b'!\xf9\x04'
    """
    h, w = frame.shape[:2]
    # 255 colours: index 255 is free to mean "unchanged".
    pal = Image.fromarray(frame).quantize(255, method=Image.Quantize.FASTOCTREE)
    transparent = previous is not None and previous.shape == frame.shape
    if transparent:
        idx = np.asarray(pal).copy()
        same = frame == previous
        idx[same[..., 0] & same[..., 1] & same[..., 2]] = 255  # 7x faster than .all(-1)
        palette = pal.getpalette() or []
        pal = Image.fromarray(idx, "P")
        pal.putpalette(palette[:765] + [0] * (768 - len(palette[:765])))
    buf = io.BytesIO()
    pal.save(buf, format="GIF", interlace=False, optimize=False)
    data = buf.getvalue()
    # Pillow writes header, screen, global palette, [extensions], descriptor, LZW, trailer:
    # keep the palette and the LZW data, and move the palette into the frame's descriptor.
    packed, pos, table, bits = data[10], 13, b"", 0
    if packed & 0x80:
        bits = packed & 7
        size = 3 << (bits + 1)
        table, pos = data[pos : pos + size], pos + size
    while data[pos] == 0x21:  # skip extensions: label, then sub-blocks up to a 0 length
        pos += 2
        while data[pos]:
            pos += data[pos] + 1
        pos += 1
    if data[pos] != 0x2C:
        raise RuntimeError(f"unexpected GIF block 0x{data[pos]:02x} from Pillow")
    local = data[pos + 9]
    interlaced = local & 0x40
    pos += 10
    if local & 0x80:
        bits = local & 7
        size = 3 << (bits + 1)
        table, pos = data[pos : pos + size], pos + size
    if transparent and len(table) < 768:
        raise RuntimeError("Pillow shrank the palette: index 255 would not be transparent")
    lzw = data[pos : data.rindex(GIF_TRAILER)]
    delay = max(1, int(round(delay_ms / 10)))  # GIF delays are in centiseconds
    # Disposal 1 (keep the frame under the next one), and the transparency flag when set.
    flags = 0x04 | (0x01 if transparent else 0x00)
    control = b"\x21\xf9\x04" + struct.pack("<BHBB", flags, delay, 255 if transparent else 0, 0)
    descriptor = b"\x2c" + struct.pack("<HHHHB", 0, 0, w, h, 0x80 | interlaced | bits)
    return control + descriptor + table + lzw


def _delay_ms(fps: float) -> int:
    return int(round(1000 / fps))


def gif_bytes(frames: Sequence[np.ndarray], fps: float = 4.0) -> bytes:
    """Encodes uint8 ``[H, W, 3]`` frames as a looping GIF, one palette per frame.

    Example:
        >>> gif_bytes([np.zeros((2, 2, 3), np.uint8)])[-1:]
        b';'
    """
    if not frames:
        raise ValueError("`frames` is empty: nothing to animate. Received: frames=[]")
    h, w = frames[0].shape[:2]
    delay = _delay_ms(fps)
    blocks = [gif_frame(f, delay, frames[i - 1] if i else None) for i, f in enumerate(frames)]
    return gif_header(w, h) + b"".join(blocks) + GIF_TRAILER


def read_gif(source: str | os.PathLike | io.BytesIO) -> list[np.ndarray]:
    """Every frame of a GIF as uint8 RGB ``[H, W, 3]``, composited as a viewer shows it.

    Example:
        >>> len(read_gif(io.BytesIO(gif_bytes([np.zeros((2, 2, 3), np.uint8)] * 3))))
        3
    """
    with Image.open(source) as img:
        out = []
        for i in range(getattr(img, "n_frames", 1)):
            img.seek(i)
            out.append(np.asarray(img.convert("RGB")))
    return out


class GifStream:
    """A GIF built on disk one frame at a time; memory does not grow with frames.

    Frames are appended to ``animations/.partial/<name>.part`` as encoded
    blocks; :meth:`finish` writes the trailer and renames the file into place,
    so it costs the same after 10 epochs as after 1,000. A run killed before
    that leaves the partial file, and the final name untouched.

    Args:
        path: The finished file, e.g. ``LOG_DIR/cam/animations/probe_000.gif``.
        fps: Frames per second.
        make_dirs: Create the missing folders at the first frame. ``False``: only
            the ``.partial`` folder, inside an existing ``path.parent`` (a run record
            deleted during training is never recreated in part).

    Example:
        >>> s = GifStream("out/probe_000.gif", fps=4)  # doctest: +SKIP
        >>> s.append(0, frame0); s.append(1, frame1)  # doctest: +SKIP
        >>> s.finish()  # doctest: +SKIP
        PosixPath('out/probe_000.gif')
    """

    def __init__(self, path: str | os.PathLike, fps: float = 4.0, make_dirs: bool = True) -> None:
        self.path = Path(path)
        self.make_dirs = make_dirs
        self.part = self.path.parent / PARTIAL / f"{self.path.name}.part"
        self.delay = _delay_ms(fps)
        self.index: list[tuple[int, int, int]] = []  # (key, offset, length) of each block
        self._size = 0
        self._previous: np.ndarray | None = None  # the last frame: blocks only hold changes

    @property
    def keys(self) -> list[int]:
        """The keys (epochs) of the frames appended so far, in order."""
        return [k for k, _, _ in self.index]

    def append(self, key: int, frame: np.ndarray) -> None:
        """Encodes ``frame`` and appends it; ``key`` names it (its epoch)."""
        block = gif_frame(frame, self.delay, self._previous if self.index else None)
        if not self.index:
            self.part.parent.mkdir(parents=self.make_dirs, exist_ok=True)
            head = gif_header(frame.shape[1], frame.shape[0])
            with open(self.part, "wb") as f:
                f.write(head)
            self._size = len(head)
        with open(self.part, "ab") as f:  # open per frame: 512 probes would exhaust fds
            f.write(block)
        self.index.append((key, self._size, len(block)))
        self._size += len(block)
        self._previous = frame

    def frames(self) -> list[np.ndarray]:
        """The appended frames decoded back to RGB (for the MP4 made at the end)."""
        return read_gif(io.BytesIO(self.part.read_bytes()[: self._size] + GIF_TRAILER))

    def finish(self, max_frames: int | None = None) -> Path:
        """Completes the GIF at ``path``, keeping at most ``max_frames`` frames (evenly).

        Raises:
            ValueError: No frame was appended.
        """
        if not self.index:
            raise ValueError(f"no frame was appended to {self.path}: nothing to finish")
        keep = sample_positions(len(self.index), max_frames)
        if len(keep) < len(self.index):
            # Only when the epochs to keep were not known in advance. Blocks hold changes
            # against the frame before, so the kept frames are decoded and encoded again.
            decoded = self.frames()
            kept = [decoded[p] for p in keep]
            keys = [self.index[p][0] for p in keep]
            self.index, self._size, self._previous = [], 0, None
            for key, frame in zip(keys, kept, strict=True):
                self.append(key, frame)
        with open(self.part, "r+b") as f:
            f.seek(self._size)
            f.write(GIF_TRAILER)
            f.truncate()
        # No fsync: the record is the durable truth, and render rebuilds this from it.
        os.replace(self.part, self.path)
        self.index, self._previous = [], None
        return self.path

    def discard(self) -> None:
        """Deletes the partial file."""
        self.index, self._previous = [], None
        if self.part.exists():
            self.part.unlink()


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
    run: Run,
    index: int,
    *,
    top_k: int = 3,
    alpha: float = 0.5,
    limit: int | None = None,
    positions: Sequence[int] | None = None,
) -> list[np.ndarray]:
    """One frame per recorded epoch for probe ``index``, in epoch order.

    ``limit`` keeps the first epochs only; ``positions`` picks recorded epochs by
    position (see :func:`sample_positions`).
    """
    label = None if run.labels is None else int(run.labels[index])
    renderer = F.FrameRenderer(
        run.images[index], label=label, class_names=run.class_names, top_k=top_k, alpha=alpha
    )
    chosen = range(len(run.epochs[:limit])) if positions is None else positions
    return [
        renderer.draw(run.heatmaps[e, index], run.probabilities[e, index], run.epochs[e])
        for e in chosen
    ]


def grid_tile(
    run: Run,
    epoch_pos: int,
    index: int,
    alpha: float = 0.5,
    side: int = GRID_SIDE,
    caption: bool = True,
) -> np.ndarray:
    """Probe ``index`` at the ``epoch_pos``-th recorded epoch as a grid tile, captioned
    with its id and true class."""
    label = None if run.labels is None else int(run.labels[index])
    return F.tile(
        run.images[index],
        run.heatmaps[epoch_pos, index],
        run.probabilities[epoch_pos, index],
        label,
        alpha,
        side,
        caption=tile_caption(index, None if label is None else run.class_name(label))
        if caption
        else None,
    )


def tile_caption(index: int, true_name: str | None) -> str:
    """A grid tile's caption: ``"003 · homer"`` (the id alone without labels).

    Example:
        >>> tile_caption(3, "homer")
        '003 · homer'
    """
    return f"{index:03d}" + (f" · {true_name}" if true_name is not None else "")


def grid_frames(
    run: Run,
    probes: Sequence[int],
    alpha: float = 0.5,
    positions: Sequence[int] | None = None,
) -> list[np.ndarray]:
    """One grid image of the given probes per recorded epoch (or per chosen position),
    titled with the epoch."""
    side, captioned = grid_layout(len(probes))
    chosen = range(len(run.epochs)) if positions is None else positions
    return [
        F.grid(
            [grid_tile(run, e, i, alpha, side, captioned) for i in probes],
            title=F.epoch_label(run.epochs[e]),
        )
        for e in chosen
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
    chosen = _probe_ids(probes, run.n_probes)
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
