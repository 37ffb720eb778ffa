"""What the CAM dashboard keeps between requests: runs as last read (re-read when their files
change), and bounded LRU caches of frame renderers and PNG frames."""

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
from cam_callback.tensorboard_plugin.runs import discover_runs, probe_table, signature

DISCOVERY_TTL = 2.0  # seconds: TensorBoard asks is_active on every page load
FRAME_CACHE_BYTES = 32 * 2**20  # PNG frames kept (about 30 KB each): the old 1,024 frames
RENDERERS = 128  # FrameRenderers kept (about 0.6 MB each), over all runs
# What reading a record raises: RecordError (a ValueError), FileNotFoundError, OSError.
UNREADABLE = (OSError, ValueError)


class RunEntry:
    """One run as last read: its signature on disk, and the Run with its rows, or why it
    could not be read (kept, so a broken run is not re-read until its files change).

    Example:
        >>> RunEntry((), None, "unreadable").error
        'unreadable'
    """

    def __init__(self, signature: tuple, run: Run | None, error: str = "") -> None:
        self.signature = signature
        self.run = run
        self.error = error
        self.rows: list[dict] | None = None


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
        self._runs: dict[str, RunEntry] = {}
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

    def forget_missing(self, records: dict[str, Path]) -> None:
        """Drops the runs no longer in ``records`` (removed from the logdir)."""
        with self._lock:
            for gone in set(self._runs) - set(records):
                del self._runs[gone]

    def entry(self, name: str) -> RunEntry:
        """The run ``name``, re-read when its files changed on disk; an unreadable run's
        entry holds the reason instead of a Run.

        Raises:
            errors.NotFoundError: No run of that name under the logdir.
        """
        path = self.records().get(name)
        if path is None:
            path = discover_runs(self.logdir).get(name) if self.logdir else None
            if path is None:
                raise errors.NotFoundError(f"no run record named {name!r} under the logdir")
        sig = signature(path)
        with self._lock:
            entry = self._runs.get(name)
        if entry is None or entry.signature != sig:
            try:  # a damaged epoch is skipped with a warning in TensorBoard's log
                entry = RunEntry(sig, load_run(path))
            except UNREADABLE as exc:
                why = " ".join(str(exc).split())
                entry = RunEntry(sig, None, f"the record of run {name!r} is unreadable: {why}")
            with self._lock:
                self._runs[name] = entry
        return entry

    def run(self, name: str) -> tuple[RunEntry, Run]:
        """The readable run ``name``, or a 404 that says why it cannot be read."""
        entry = self.entry(name)
        if entry.run is None:
            raise errors.NotFoundError(entry.error)
        return entry, entry.run

    def rows(self, entry: RunEntry) -> list[dict]:
        """The run's :func:`probe_table`, computed once per version of its files."""
        if entry.rows is None:
            entry.rows = probe_table(entry.run)
        return entry.rows

    def renderer(self, name: str, entry: RunEntry, probe: int) -> FrameRenderer:
        """Probe ``probe``'s renderer, from an LRU of at most ``RENDERERS``."""
        key = (name, entry.signature, probe)
        with self._lock:
            renderer = self._renderers.get(key)
            if renderer is not None:
                self._renderers.move_to_end(key)
                return renderer
        run = entry.run
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
        run = entry.run
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
