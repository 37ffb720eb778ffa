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
unreadable record 404 with the reason: never a traceback.
"""

from __future__ import annotations

import io
import json
import math
import os
import threading
import time
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tensorboard import errors
from tensorboard.backend import http_util
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

from cam_callback.record import SUBDIR, Run, epoch_files, load_run

PLUGIN_NAME = "cam"
STATIC = Path(__file__).parent / "static"
_STATIC = {"/index.js": ("index.js", "text/javascript"), "/style.css": ("style.css", "text/css")}
_DISCOVERY_TTL = 2.0  # seconds: TensorBoard asks is_active on every page load
_FRAME_CACHE = 1024  # PNG frames kept, about 30 KB each
# What a damaged or half-copied record can raise while it is read.
_UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


def discover_runs(logdir: str | os.PathLike) -> dict[str, Path]:
    """Every run record under ``logdir``: run name (the log folder, relative) to record folder.

    A record is a ``cam/`` folder holding ``record.json``. Symlinks are not
    followed, hidden folders are skipped, and nothing inside a record is searched.

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
    """One loaded run: its signature on disk, the Run, rows and frame renderers."""

    def __init__(self, signature: tuple, run: Run) -> None:
        self.signature = signature
        self.run = run
        self.rows: list[dict] | None = None
        self.renderers: dict[int, Any] = {}


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
        """The run ``name``, re-read when its files changed on disk."""
        path = self._records().get(name)
        if path is None:
            path = discover_runs(self._logdir).get(name) if self._logdir else None
            if path is None:
                raise errors.NotFoundError(f"no run record named {name!r} under the logdir")
        try:
            signature = self._signature(path)
            with self._lock:
                entry = self._runs.get(name)
                if entry is not None and entry.signature == signature:
                    return entry
            run = load_run(path)
        except _UNREADABLE as exc:
            raise errors.NotFoundError(f"the record of run {name!r} is unreadable: {exc}") from exc
        entry = _Entry(signature, run)
        with self._lock:
            self._runs[name] = entry
        return entry

    @staticmethod
    def _signature(path: Path) -> tuple:
        """What changes on disk when an epoch is added or rewritten, or flags are stored."""
        stats = [(e, f.stat().st_mtime_ns) for e, f in epoch_files(path).items()]
        extra = [
            (p.name, p.stat().st_mtime_ns)
            for p in (path / "record.json", path / "flags.json")
            if p.exists()
        ]
        return tuple(stats), tuple(extra)

    def _rows(self, entry: _Entry) -> list[dict]:
        from cam_callback.report import probe_rows

        if entry.rows is None:
            run = entry.run
            rows = probe_rows(run, float(run.meta.get("low_confidence", 0.5)))
            preds = run.probabilities.argmax(-1)
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
        runs = []
        for name in self._records():
            try:
                run = self._entry(name).run
            except errors.NotFoundError as exc:  # listed, with why it cannot be shown
                runs.append({"name": name, "error": str(exc), "epochs": []})
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
        from cam_callback.metrics import FLAG_NAMES

        return _json(request, {"runs": runs, "flags": list(FLAG_NAMES)})

    @wrappers.Request.application
    def _serve_probes(self, request: wrappers.Request) -> wrappers.Response:
        entry = self._entry(_text_arg(request, "run"))
        run = entry.run
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
        from cam_callback.frames import FrameRenderer

        name = _text_arg(request, "run")
        probe = _int_arg(request, "probe")
        epoch = _int_arg(request, "epoch")
        entry = self._entry(name)
        run = entry.run
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
            renderer = entry.renderers.get(probe)
            if renderer is None:
                label = None if run.labels is None else int(run.labels[probe])
                renderer = FrameRenderer(
                    run.images[probe], label=label, class_names=run.class_names
                )
                entry.renderers[probe] = renderer
            pos = run.epochs.index(epoch)
            frame = renderer.draw(run.heatmaps[pos, probe], run.probabilities[pos, probe], epoch)
            buf = io.BytesIO()
            Image.fromarray(frame).save(buf, format="PNG", compress_level=1)
            png = buf.getvalue()
            with self._lock:
                self._frames[key] = png
                while len(self._frames) > _FRAME_CACHE:
                    self._frames.popitem(last=False)
        return http_util.Respond(request, png, "image/png")


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
