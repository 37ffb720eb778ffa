"""The CAM dashboard's backend: run discovery, JSON routes and PNG frames over the record.

Routes, under ``/data/plugin/cam/``:

- ``index.js``, ``style.css``: the frontend (no network loads, no framework).
- ``runs``: every run record under ``--logdir`` with its epochs, re-read on each call,
  so a run that is still training grows while the tab is open.
- ``probes?run=NAME``: per probe the true class, the true-class probability at
  every epoch, the prediction per epoch, and the review page's flags, badges
  and sort keys (from :func:`cam_callback.report.probe_rows`).
- ``frame?run=NAME&probe=I&epoch=E``: probe ``I`` at epoch ``E`` (-1: before
  training) as a PNG drawn by :class:`cam_callback.frames.FrameRenderer`.

Bad parameters answer 400, unknown runs, probes and epochs 404, and an
unreadable record 404 with the reason: never a traceback. ``runs`` lists an
unreadable run too, with its ``error``, so one broken record never hides the
others. Records are read by :func:`cam_callback.load_run` alone, with its rules:
only regular files, no symlink inside a record followed, every size capped.
Memory stays bounded: at most ``RENDERERS`` frame renderers and ``FRAME_CACHE_BYTES``
of PNG frames are kept, least recently used first out.
"""

from __future__ import annotations

import io
import json
import math
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tensorboard import errors
from tensorboard.backend import http_util
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

from cam_callback.frames import FrameRenderer
from cam_callback.metrics import FLAG_NAMES
from cam_callback.record import FLAGS_FILE, SUBDIR, Run, epoch_files, load_run
from cam_callback.report import probe_rows

PLUGIN_NAME = "cam"
STATIC = Path(__file__).parent / "static"
_STATIC = {"/index.js": ("index.js", "text/javascript"), "/style.css": ("style.css", "text/css")}
_DISCOVERY_TTL = 2.0  # seconds: TensorBoard asks is_active on every page load
FRAME_CACHE_BYTES = 32 * 2**20  # PNG frames kept (about 30 KB each): the old 1,024 frames
RENDERERS = 128  # FrameRenderers kept (about 0.6 MB each), over all runs
# What reading a record raises: RecordError (a ValueError), FileNotFoundError, OSError.
_UNREADABLE = (OSError, ValueError)
_SIGNED = ("record.json", "probes.npz", FLAGS_FILE)  # with the epoch files


def discover_runs(logdir: str | os.PathLike) -> dict[str, Path]:
    """Every run record under ``logdir``: run name (the log folder, relative) to record folder.

    A record is a ``cam/`` folder holding an entry named ``record.json`` (which
    :func:`cam_callback.load_run` then reads, or refuses when it is not a regular
    file). Symlinked folders are not descended into, hidden folders are skipped, and
    nothing inside a record is searched. ``logdir`` itself may be a symlink.

    Example:
        >>> discover_runs("runs")  # doctest: +SKIP
        {'inception': PosixPath('runs/inception/cam'), 'vgg19': PosixPath('runs/vgg19/cam')}
    """
    root = Path(logdir)
    found: dict[str, Path] = {}
    if not root.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here.name == SUBDIR and "record.json" in filenames:
            name = "." if here == root else here.parent.relative_to(root).as_posix() or "."
            found[name] = here
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    return dict(sorted(found.items()))


def _finite(values: np.ndarray) -> list[float]:
    """Floats for JSON: NaN and infinities (a diverged model) become 0, rounded to 5 digits."""
    return [round(float(v), 5) if math.isfinite(v) else 0.0 for v in np.ravel(values)]


class _Entry:
    """One run as last read: its signature on disk, and the Run with its rows, or why it
    could not be read (kept, so a broken run is not re-read until its files change)."""

    def __init__(self, signature: tuple, run: Run | None, error: str = "") -> None:
        self.signature = signature
        self.run = run
        self.error = error
        self.rows: list[dict] | None = None


class CAMPlugin(base_plugin.TBPlugin):
    """TensorBoard's CAM tab: an epoch slider over every probe of every run record.

    Args:
        context: TensorBoard's ``TBContext``; only its ``logdir`` is used.

    Example:
        >>> from tensorboard import default, program  # doctest: +SKIP
        >>> tb = program.TensorBoard(plugins=default.get_plugins() + [CAMPlugin])  # doctest: +SKIP
    """

    plugin_name = PLUGIN_NAME

    def __init__(self, context: base_plugin.TBContext) -> None:
        self._logdir = getattr(context, "logdir", "") or ""
        self._lock = threading.Lock()
        self._runs: dict[str, _Entry] = {}
        self._frames: OrderedDict[tuple, bytes] = OrderedDict()
        self._frame_bytes = 0
        self._renderers: OrderedDict[tuple, FrameRenderer] = OrderedDict()
        self._discovered: tuple[float, dict[str, Path]] = (-math.inf, {})

    # ------------------------------------------------------------------ TensorBoard API

    def get_plugin_apps(self) -> dict[str, Any]:
        """The plugin's WSGI routes, relative to ``/data/plugin/cam``."""
        return {
            "/index.js": self._serve_static,
            "/style.css": self._serve_static,
            "/runs": self._serve_runs,
            "/probes": self._serve_probes,
            "/frame": self._serve_frame,
        }

    def is_active(self) -> bool:
        """Whether any run record sits under ``--logdir``."""
        return bool(self._records())

    def frontend_metadata(self) -> base_plugin.FrontendMetadata:
        """An ES module frontend in an iframe, under the tab name "CAM"."""
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="CAM")

    # ------------------------------------------------------------------ data

    def _records(self) -> dict[str, Path]:
        stamp, found = self._discovered
        if time.monotonic() - stamp > _DISCOVERY_TTL:
            found = discover_runs(self._logdir) if self._logdir else {}
            self._discovered = (time.monotonic(), found)
        return found

    def _entry(self, name: str) -> _Entry:
        """The run ``name``, re-read when its files changed on disk; an unreadable run's
        entry holds the reason instead of a Run."""
        path = self._records().get(name)
        if path is None:
            path = discover_runs(self._logdir).get(name) if self._logdir else None
            if path is None:
                raise errors.NotFoundError(f"no run record named {name!r} under the logdir")
        signature = _signature(path)
        with self._lock:
            entry = self._runs.get(name)
        if entry is None or entry.signature != signature:
            try:  # a damaged epoch is skipped with a warning in TensorBoard's log
                entry = _Entry(signature, load_run(path))
            except _UNREADABLE as exc:
                why = " ".join(str(exc).split())
                entry = _Entry(signature, None, f"the record of run {name!r} is unreadable: {why}")
            with self._lock:
                self._runs[name] = entry
        return entry

    def _run(self, name: str) -> tuple[_Entry, Run]:
        """The readable run ``name``, or a 404 that says why it cannot be read."""
        entry = self._entry(name)
        if entry.run is None:
            raise errors.NotFoundError(entry.error)
        return entry, entry.run

    def _renderer(self, name: str, entry: _Entry, probe: int) -> FrameRenderer:
        """Probe ``probe``'s renderer, from an LRU of at most ``RENDERERS``."""
        key = (name, entry.signature, probe)
        with self._lock:
            renderer = self._renderers.get(key)
            if renderer is not None:
                self._renderers.move_to_end(key)
                return renderer
        run = entry.run
        label = None if run.labels is None else int(run.labels[probe])
        renderer = FrameRenderer(run.images[probe], label=label, class_names=run.class_names)
        with self._lock:
            self._renderers[key] = renderer
            while len(self._renderers) > RENDERERS:
                self._renderers.popitem(last=False)
        return renderer

    def _rows(self, entry: _Entry) -> list[dict]:
        if entry.rows is None:
            run = entry.run
            rows = probe_rows(run, float(run.meta.get("low_confidence", 0.5)))
            # argmax of NaN is 0: a non-finite prediction is -1, never the true class.
            finite = np.isfinite(run.probabilities).all(-1)
            preds = np.where(finite, run.probabilities.argmax(-1), -1)
            out = []
            for r in rows:
                i = r["index"]
                out.append(
                    {
                        "index": i,
                        "label": r["label"],
                        "label_name": r["label_name"],
                        "class": r["label_name"] or r["pred_name"],
                        "pred": [int(p) for p in preds[:, i]],
                        "curve": _finite(r["curve"]),
                        "flags": r["flags"],
                        "badges": r["badges"],
                        "priority": [r["priority"][0], _finite([r["priority"][1]])[0]],
                        "attention": [r["attention"][0], _finite([r["attention"][1]])[0]],
                        "true_probability": _finite([r["true_probability"]])[0],
                    }
                )
            entry.rows = out
        return entry.rows

    # ------------------------------------------------------------------ routes

    @wrappers.Request.application
    def _serve_static(self, request: wrappers.Request) -> wrappers.Response:
        name, mime = _STATIC[request.path[request.path.rfind("/") :]]
        return http_util.Respond(request, (STATIC / name).read_bytes(), mime)

    @wrappers.Request.application
    def _serve_runs(self, request: wrappers.Request) -> wrappers.Response:
        records = self._records()
        with self._lock:  # runs removed from the logdir are forgotten
            for gone in set(self._runs) - set(records):
                del self._runs[gone]
        runs = []
        for name in records:
            try:
                entry = self._entry(name)
            except errors.NotFoundError as exc:  # gone since it was discovered
                entry = _Entry((), None, str(exc))
            run = entry.run
            if run is None:  # listed, with why it cannot be shown
                runs.append({"name": name, "error": entry.error, "epochs": []})
                continue
            runs.append(
                {
                    "name": name,
                    "epochs": run.epochs,
                    "has_baseline": run.has_baseline,
                    "n_probes": run.n_probes,
                    "fingerprint": run.fingerprint,
                    "layer": run.layer,
                    "method": run.method,
                    "class_names": run.class_names,
                    "mask_kind": run.meta.get("mask_kind"),
                }
            )
        return _json(request, {"runs": runs, "flags": list(FLAG_NAMES)})

    @wrappers.Request.application
    def _serve_probes(self, request: wrappers.Request) -> wrappers.Response:
        entry, run = self._run(_text_arg(request, "run"))
        rows = self._rows(entry) if run.epochs else []
        names = run.class_names or [str(c) for c in range(int(run.meta.get("n_classes") or 0))]
        return _json(
            request,
            {
                "epochs": run.epochs,
                "class_names": names,
                "fingerprint": run.fingerprint,
                "probes": rows,
            },
        )

    @wrappers.Request.application
    def _serve_frame(self, request: wrappers.Request) -> wrappers.Response:
        name = _text_arg(request, "run")
        probe = _int_arg(request, "probe")
        epoch = _int_arg(request, "epoch")
        entry, run = self._run(name)
        if not 0 <= probe < run.n_probes:
            raise errors.NotFoundError(
                f"run {name!r} has probes 0..{run.n_probes - 1}; there is no probe {probe}"
            )
        if epoch not in run.epochs:
            raise errors.NotFoundError(f"run {name!r} has no recorded epoch {epoch}")
        key = (name, entry.signature, probe, epoch)
        with self._lock:
            png = self._frames.get(key)
            if png is not None:
                self._frames.move_to_end(key)
        if png is None:
            renderer = self._renderer(name, entry, probe)
            pos = run.epochs.index(epoch)
            frame = renderer.draw(run.heatmaps[pos, probe], run.probabilities[pos, probe], epoch)
            buf = io.BytesIO()
            Image.fromarray(frame).save(buf, format="PNG", compress_level=1)
            png = buf.getvalue()
            with self._lock:
                if key not in self._frames:
                    self._frames[key] = png
                    self._frame_bytes += len(png)
                while self._frame_bytes > FRAME_CACHE_BYTES:
                    self._frame_bytes -= len(self._frames.popitem(last=False)[1])
        return http_util.Respond(request, png, "image/png")


def _signature(path: Path) -> tuple:
    """What changes on disk when an epoch is added, rewritten or removed, or when flags
    or any record file are replaced. ``lstat`` only: a symlink (dangling or not) or a
    FIFO is signed as it is, never followed or opened, and never raises."""

    def sign(file: Path) -> tuple | None:
        try:
            st = os.lstat(file)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode)

    epochs = tuple((e, sign(f)) for e, f in epoch_files(path).items())
    return epochs, tuple(sign(path / name) for name in _SIGNED)


def _json(request: wrappers.Request, data: Any) -> wrappers.Response:
    body = json.dumps(data, allow_nan=False)
    return http_util.Respond(request, body, "application/json")


def _text_arg(request: wrappers.Request, name: str) -> str:
    value = request.args.get(name)
    if value is None or value == "":
        raise errors.InvalidArgumentError(f"the `{name}` parameter is required")
    if len(value) > 4096 or "\x00" in value:
        raise errors.InvalidArgumentError(f"the `{name}` parameter is not a run name")
    return value


def _int_arg(request: wrappers.Request, name: str) -> int:
    text = _text_arg(request, name)
    try:
        if len(text) > 12:
            raise ValueError(text)
        return int(text)
    except ValueError:
        raise errors.InvalidArgumentError(
            f"the `{name}` parameter must be an integer; received {text[:40]!r}"
        ) from None
