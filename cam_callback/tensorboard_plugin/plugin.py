"""The CAM dashboard's backend: run discovery, JSON routes and PNG frames over the record.

Routes, under ``/data/plugin/cam/``:

- ``index.js``, ``style.css``: the frontend (no network loads, no framework).
- ``runs``: every run record under ``--logdir`` with its epochs, re-read on each call,
  so a run that is still training grows while the tab is open. It reads each record's
  ``record.json`` and lists its files, and opens no ``.npz``: 500 runs list in well under
  a second (``benchmarks/bench_logdir.py``).
- ``runs`` and ``probes`` give class names cleaned as the review page shows them
  (no control or bidi characters).
- ``probes?run=NAME``: per probe the true class, the true-class probability at
  every epoch, the prediction per epoch, and the review page's flags, badges
  and sort keys (from :func:`cam_callback.report.probe_rows`).
- ``frame?run=NAME&probe=I&epoch=E``: probe ``I`` at epoch ``E`` (-1: before
  training) as a PNG drawn by :class:`cam_callback.frames.FrameRenderer`, without its
  caption strip: the tab writes the caption as text, from ``probes``.
- ``datamap?run=NAME``: the data map of the probes (:mod:`cam_callback.report.datamap`),
  the same SVG as the review page's, with its legend as data.
- ``gallery?run=NAME``: what each class looks for (:mod:`cam_callback.report.gallery`),
  the review page's gallery as data, its images inline (PNG data URIs).

Bad parameters answer 400, unknown runs, probes and epochs 404, and an
unreadable record 404 with the reason: never a traceback. ``runs`` lists an
unreadable run too, with its ``error``, so one broken record never hides the
others. Records are read by :func:`cam_callback.load_run` alone, with its rules:
only regular files, no symlink inside a record followed, every size capped.
Memory stays bounded whatever the logdir holds: a run's arrays are read when a request
needs them, and at most ``RUN_CACHE_BYTES`` (96 MiB) of runs read in full,
``FRAME_CACHE_BYTES`` (32 MiB) of PNG frames and ``RENDERERS`` (128) frame renderers
are kept, least recently used first out: about 210 MB in all for small probes, more for
large ones (:mod:`~cam_callback.tensorboard_plugin.store`); runs are found by
:mod:`~cam_callback.tensorboard_plugin.runs`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tensorboard import errors
from tensorboard.backend import http_util
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

from cam_callback.frames import clean_name
from cam_callback.metrics import FLAG_NAMES
from cam_callback.report import (
    FLAG_HELP,
    datamap_points,
    datamap_svg,
    flag_label,
    gallery_data,
    legend_entries,
    target_rule,
    weights_note,
    worst_group_note,
)
from cam_callback.tensorboard_plugin.store import RunStore

PLUGIN_NAME = "cam"
STATIC = Path(__file__).parent / "static"
_STATIC = {"/index.js": ("index.js", "text/javascript"), "/style.css": ("style.css", "text/css")}
_Handler = Callable[[Any, wrappers.Request], wrappers.Response]


def _route(handler: _Handler) -> Callable[..., Any]:
    """A plugin method as a WSGI app (werkzeug's ``Request.application``, which takes the
    request as the last argument, so works on methods too)."""
    # werkzeug's stub types only a plain function of the request, not a method.
    return wrappers.Request.application(handler)  # type: ignore[arg-type]


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
        self._store = RunStore(getattr(context, "logdir", "") or "")

    # ------------------------------------------------------------------ TensorBoard API

    def get_plugin_apps(self) -> dict[str, Any]:
        """The plugin's WSGI routes, relative to ``/data/plugin/cam``."""
        return {
            "/index.js": self._serve_static,
            "/style.css": self._serve_static,
            "/runs": self._serve_runs,
            "/probes": self._serve_probes,
            "/frame": self._serve_frame,
            "/datamap": self._serve_datamap,
            "/gallery": self._serve_gallery,
        }

    def is_active(self) -> bool:
        """Whether any run record sits under ``--logdir``."""
        return bool(self._store.records())

    def frontend_metadata(self) -> base_plugin.FrontendMetadata:
        """An ES module frontend in an iframe, under the tab name "CAM"."""
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="CAM")

    # ------------------------------------------------------------------ routes

    @_route
    def _serve_static(self, request: wrappers.Request) -> wrappers.Response:
        name, mime = _STATIC[request.path[request.path.rfind("/") :]]
        return http_util.Respond(request, (STATIC / name).read_bytes(), mime)

    @_route
    def _serve_runs(self, request: wrappers.Request) -> wrappers.Response:
        records = self._store.records()
        self._store.forget_missing(records)
        runs: list[dict[str, Any]] = []
        for name in records:  # from each record's small files: no .npz is opened here
            try:
                run, error = self._store.summary(name)
            except errors.NotFoundError as exc:  # gone since it was discovered
                run, error = None, str(exc)
            if run is None:  # listed, with why it cannot be shown
                runs.append({"name": name, "error": error, "epochs": []})
                continue
            runs.append(
                {
                    "name": name,
                    "epochs": run.epochs,
                    "has_baseline": run.has_baseline,
                    "n_probes": run.n_probes,
                    "fingerprint": run.meta.get("fingerprint", ""),
                    "layer": run.meta.get("layer", ""),
                    "method": run.meta.get("method", ""),
                    "class_names": clean_names(run.class_names),
                    "mask_kind": run.meta.get("mask_kind"),
                    "final_weights_epoch": run.meta.get("final_weights_epoch"),
                    "explains": target_rule(run.meta, run.class_names),
                    "weights_note": weights_note(run),
                }
            )
        return _json(
            request,
            {
                "runs": runs,
                "flags": list(FLAG_NAMES),
                "flag_help": {n: FLAG_HELP.get(n, "") for n in FLAG_NAMES},
                "flag_labels": {n: flag_label(n) for n in FLAG_NAMES},
            },
        )

    @_route
    def _serve_probes(self, request: wrappers.Request) -> wrappers.Response:
        entry, run = self._store.run(_text_arg(request, "run"))
        rows = self._store.rows(entry) if run.epochs else []
        names = clean_names(run.class_names) or [
            str(c) for c in range(int(run.meta.get("n_classes") or 0))
        ]
        return _json(
            request,
            {
                "epochs": run.epochs,
                "class_names": names,
                "fingerprint": run.fingerprint,
                "probes": rows,
                # Needs the metrics, masks and labels: served with the run read in full,
                # never in the run list (built from record.json alone).
                "worst_group": worst_group_note(run) if run.epochs else None,
            },
        )

    @_route
    def _serve_datamap(self, request: wrappers.Request) -> wrappers.Response:
        entry, run = self._store.run(_text_arg(request, "run"))
        rows = self._store.rows(entry) if run.epochs else []
        points = datamap_points(run, {r["index"]: r["flags"] for r in rows})
        svg = datamap_svg(points, {r["index"]: r["class"] for r in rows})
        legend = [[flag, colour] for flag, colour in legend_entries(points)]
        missing = run.n_probes - len(points) if run.epochs else 0
        return _json(request, {"svg": svg, "legend": legend, "missing": missing})

    @_route
    def _serve_gallery(self, request: wrappers.Request) -> wrappers.Response:
        _, run = self._store.run(_text_arg(request, "run"))
        return _json(request, {"classes": gallery_data(run)})

    @_route
    def _serve_frame(self, request: wrappers.Request) -> wrappers.Response:
        name = _text_arg(request, "run")
        probe = _int_arg(request, "probe")
        epoch = _int_arg(request, "epoch")
        entry, run = self._store.run(name)
        if not 0 <= probe < run.n_probes:
            raise errors.NotFoundError(
                f"run {name!r} has probes 0..{run.n_probes - 1}; there is no probe {probe}"
            )
        if epoch not in run.epochs:
            raise errors.NotFoundError(f"run {name!r} has no recorded epoch {epoch}")
        png = self._store.frame_png(name, entry, probe, epoch)
        return http_util.Respond(request, png, "image/png")


def clean_names(names: list[str] | None) -> list[str] | None:
    r"""Class names as the review page shows them: no control or bidi characters (U+202E,
    newlines), each cut to a caption's length.

    Example:
        >>> clean_names(["cat\u202e", "a\nb"]), clean_names(None)
        (['cat', 'ab'], None)
    """
    return None if names is None else [clean_name(n) for n in names]


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
