"""What the CAM dashboard keeps between requests, and the bound on it.

The run list reads each record's small files only (:func:`summarize`: ``record.json`` and
``lstat`` of the others), so listing 500 runs opens no ``.npz``. A run's arrays are read
when a request needs them (``probes``, ``frame``, ``datamap``) and kept in an LRU bounded
by bytes. What the plugin holds is at most, least recently used first out:

- ``RUN_CACHE_BYTES`` (96 MiB) of fully read runs: their arrays and their probe rows
  (a run larger than that on its own is kept only while it is the last one asked for);
- ``FRAME_CACHE_BYTES`` (32 MiB) of PNG frames;
- ``RENDERERS`` (128) frame renderers, about 0.6 MB each (about 77 MB);
- one summary per run under the logdir (its ``record.json``, a few KB).

About 210 MB in all beside TensorBoard's own for probes up to about 64 px, whatever
the size of the logdir (see ``docs/benchmarks.md``). A renderer grows with its probe (about
3.4 MB at 256 x 1024 px: up to about 430 MB then), and a single run larger than
``RUN_CACHE_BYTES`` is still held while it is served.
"""

from __future__ import annotations

import io
import math
import threading
import time
from collections import OrderedDict
from pathlib import Path

from PIL import Image
from tensorboard import errors

from cam_callback.frames import FrameRenderer
from cam_callback.record import Run, load_run
from cam_callback.tensorboard_plugin.runs import (
    RunSummary,
    discover_runs,
    probe_table,
    signature,
    summarize,
)

DISCOVERY_TTL = 2.0  # seconds: TensorBoard asks is_active on every page load
RUN_CACHE_BYTES = 96 * 2**20  # fully read runs kept: arrays and probe rows
FRAME_CACHE_BYTES = 32 * 2**20  # PNG frames kept (about 30 KB each): the old 1,024 frames
RENDERERS = 128  # FrameRenderers kept (about 0.6 MB each), over all runs
ROW_BYTES = 2048  # a probe row's Python objects besides its per-epoch lists
EPOCH_VALUE_BYTES = 4 * 32  # a row's four per-epoch lists: a float or int and its pointer
# What reading a record raises: RecordError (a ValueError), FileNotFoundError, OSError.
UNREADABLE = (OSError, ValueError)


def run_nbytes(run: Run) -> int:
    """The bytes of ``run``'s arrays, what the run cache counts before its rows.

    Example:
        >>> run_nbytes(load_run("runs/a"))  # doctest: +SKIP
        3801088
    """
    arrays = [run.heatmaps, run.probabilities, run.targets, run.images, run.labels, run.masks]
    arrays += list(run.metrics.values())
    return sum(a.nbytes for a in arrays if a is not None)


def rows_nbytes(run: Run) -> int:
    """An estimate of the bytes of ``run``'s :func:`probe_table` rows (Python lists).

    Example:
        >>> rows_nbytes(load_run("runs/a"))  # doctest: +SKIP
        59392
    """
    return run.n_probes * (ROW_BYTES + EPOCH_VALUE_BYTES * len(run.epochs))


class RunEntry:
    """One run as last read in full: its signature on disk, and the Run with its rows, or
    why it could not be read (kept, so a broken run is not re-read until its files change).

    Example:
        >>> RunEntry((), None, "unreadable").error
        'unreadable'
    """

    def __init__(self, signature: tuple, run: Run | None, error: str = "") -> None:
        self.signature = signature
        self.run = run
        self.error = error
        self.rows: list[dict] | None = None
        self.nbytes = 0 if run is None else run_nbytes(run)


def unreadable(name: str, exc: Exception) -> str:
    """The reason a run cannot be shown, on one line.

    Example:
        >>> unreadable("a", ValueError("bad\\nfile"))
        "the record of run 'a' is unreadable: bad file"
    """
    why = " ".join(str(exc).split())
    return f"the record of run {name!r} is unreadable: {why}"


def readable(entry: RunEntry) -> Run:
    """The entry's Run, or a 404 that says why it cannot be read.

    Example:
        >>> readable(RunEntry((), None, "unreadable"))
        Traceback (most recent call last):
        tensorboard.errors.NotFoundError: Not found: unreadable
    """
    if entry.run is None:
        raise errors.NotFoundError(entry.error)
    return entry.run


class RunStore:
    """The runs under ``logdir`` and the caches built from them; safe across threads.

    Args:
        logdir: TensorBoard's ``--logdir``; ``""`` holds no runs.

    Example:
        >>> store = RunStore("runs")  # doctest: +SKIP
        >>> store.frame_png("a", probe=0, epoch=3)[:4]  # doctest: +SKIP
        b'\\x89PNG'
    """

    def __init__(self, logdir: str) -> None:
        self.logdir = logdir
        self._lock = threading.Lock()
        self._runs: OrderedDict[str, RunEntry] = OrderedDict()  # LRU, RUN_CACHE_BYTES
        self._run_bytes = 0
        self._summaries: dict[str, tuple[tuple, RunSummary | None, str]] = {}
        self._frames: OrderedDict[tuple, bytes] = OrderedDict()
        self._frame_bytes = 0
        self._renderers: OrderedDict[tuple, FrameRenderer] = OrderedDict()
        self._discovered: tuple[float, dict[str, Path]] = (-math.inf, {})

    def records(self) -> dict[str, Path]:
        """Run name to record folder, found again at most every ``DISCOVERY_TTL`` seconds."""
        stamp, found = self._discovered
        if time.monotonic() - stamp > DISCOVERY_TTL:
            found = discover_runs(self.logdir) if self.logdir else {}
            self._discovered = (time.monotonic(), found)
        return found

    @property
    def cached_bytes(self) -> int:
        """What the fully read runs kept now count, at most ``RUN_CACHE_BYTES`` (or one run)."""
        return self._run_bytes

    def forget_missing(self, records: dict[str, Path]) -> None:
        """Drops the runs no longer in ``records`` (removed from the logdir)."""
        with self._lock:
            for gone in set(self._runs) - set(records):
                self._run_bytes -= self._runs.pop(gone).nbytes
            for gone in set(self._summaries) - set(records):
                del self._summaries[gone]

    def path(self, name: str) -> Path:
        """The record folder of the run ``name``.

        Raises:
            errors.NotFoundError: No run of that name under the logdir.
        """
        path = self.records().get(name)
        if path is None:
            path = discover_runs(self.logdir).get(name) if self.logdir else None
            if path is None:
                raise errors.NotFoundError(f"no run record named {name!r} under the logdir")
        return path

    def summary(self, name: str) -> tuple[RunSummary | None, str]:
        """The run list's view of ``name`` (no ``.npz`` opened), re-read when its files
        changed on disk, or ``None`` and why it cannot be shown."""
        path = self.path(name)
        sig = signature(path)
        kept = self._summaries.get(name)
        if kept is not None and kept[0] == sig:
            return kept[1], kept[2]
        try:
            found: tuple[tuple, RunSummary | None, str] = (sig, summarize(path), "")
        except UNREADABLE as exc:
            found = (sig, None, unreadable(name, exc))
        with self._lock:
            self._summaries[name] = found
        return found[1], found[2]

    def entry(self, name: str) -> RunEntry:
        """The run ``name`` read in full, re-read when its files changed on disk; an
        unreadable run's entry holds the reason instead of a Run. Kept in an LRU of at
        most ``RUN_CACHE_BYTES``.

        Raises:
            errors.NotFoundError: No run of that name under the logdir.
        """
        path = self.path(name)
        sig = signature(path)
        with self._lock:
            entry = self._runs.get(name)
            if entry is not None and entry.signature == sig:
                self._runs.move_to_end(name)
                return entry
        try:  # a damaged epoch is skipped with a warning in TensorBoard's log
            entry = RunEntry(sig, load_run(path))
        except UNREADABLE as exc:
            entry = RunEntry(sig, None, unreadable(name, exc))
        with self._lock:
            old = self._runs.pop(name, None)
            self._run_bytes -= 0 if old is None else old.nbytes
            self._runs[name] = entry
            self._run_bytes += entry.nbytes
            self._evict()
        return entry

    def _evict(self) -> None:
        """Drops least recently used runs past ``RUN_CACHE_BYTES``, never the last one."""
        while self._run_bytes > RUN_CACHE_BYTES and len(self._runs) > 1:
            self._run_bytes -= self._runs.popitem(last=False)[1].nbytes

    def run(self, name: str) -> tuple[RunEntry, Run]:
        """The readable run ``name``, or a 404 that says why it cannot be read."""
        entry = self.entry(name)
        return entry, readable(entry)

    def rows(self, entry: RunEntry) -> list[dict]:
        """The run's :func:`probe_table`, computed once per version of its files."""
        rows, run = entry.rows, readable(entry)
        if rows is None:
            rows = entry.rows = probe_table(run)
            extra = rows_nbytes(run)
            with self._lock:
                entry.nbytes += extra
                if any(kept is entry for kept in self._runs.values()):
                    self._run_bytes += extra
                    self._evict()
        return rows

    def renderer(self, name: str, entry: RunEntry, probe: int) -> FrameRenderer:
        """Probe ``probe``'s renderer, from an LRU of at most ``RENDERERS``."""
        key = (name, entry.signature, probe)
        with self._lock:
            renderer = self._renderers.get(key)
            if renderer is not None:
                self._renderers.move_to_end(key)
                return renderer
        run = readable(entry)
        label = None if run.labels is None else int(run.labels[probe])
        # The tab writes the caption as HTML text, crisp at any scale: no caption strip.
        renderer = FrameRenderer(
            run.images[probe], label=label, class_names=run.class_names, caption=False
        )
        with self._lock:
            self._renderers[key] = renderer
            while len(self._renderers) > RENDERERS:
                self._renderers.popitem(last=False)
        return renderer

    def frame_png(self, name: str, entry: RunEntry, probe: int, epoch: int) -> bytes:
        """Probe ``probe`` at recorded ``epoch`` as PNG, from an LRU of at most
        ``FRAME_CACHE_BYTES``; the caller checked that both exist."""
        key = (name, entry.signature, probe, epoch)
        with self._lock:
            png = self._frames.get(key)
            if png is not None:
                self._frames.move_to_end(key)
                return png
        run = readable(entry)
        renderer = self.renderer(name, entry, probe)
        pos = run.epochs.index(epoch)
        frame = renderer.draw(
            run.heatmaps[pos, probe],
            run.probabilities[pos, probe],
            epoch,
            target=int(run.targets[pos, probe]),
        )
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="PNG", compress_level=1)
        png = buf.getvalue()
        with self._lock:
            if key not in self._frames:
                self._frames[key] = png
                self._frame_bytes += len(png)
            while self._frame_bytes > FRAME_CACHE_BYTES:
                self._frame_bytes -= len(self._frames.popitem(last=False)[1])
        return png
