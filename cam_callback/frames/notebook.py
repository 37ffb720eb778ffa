"""A run as HTML for Jupyter and Colab (``Run._repr_html_``): the grid animation as an inline
GIF, the flags, and the p(true) curves as an inline SVG. Everything is inside the HTML (data
URIs, no script, no network), so it also shows in a saved notebook, offline.

The run is read through its public attributes only (``epochs``, ``heatmaps``,
``probabilities``, ``targets``, ``images``, ``labels``, ``flags``, ...), so this module needs
nothing from :mod:`cam_callback.record`.
"""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any

import numpy as np
from PIL import Image

from cam_callback.frames.draw import RIGHT, WRONG, epoch_label
from cam_callback.frames.grids import TILE_LEGEND, grid, tile
from cam_callback.frames.text import clean_name, target_rule

MAX_GIF_FRAMES = 24  # epochs shown in the inline animation, evenly spread, first and last kept
GIF_SIDE = 480  # the animation is at most about this wide (a notebook cell, kept light)
SHOWN_IDS = 12  # probe ids listed per flag
CURVE_W, CURVE_H = 420, 160


def frame_positions(n: int, limit: int = MAX_GIF_FRAMES) -> list[int]:
    """At most ``limit`` of ``n`` positions, evenly spread, first and last kept.

    Example:
        >>> frame_positions(5), frame_positions(100, 4)
        ([0, 1, 2, 3, 4], [0, 33, 66, 99])
    """
    if n <= limit:
        return list(range(n))
    return [int(round(k * (n - 1) / (limit - 1))) for k in range(limit)]


def grid_gif(run: Any, fps: float = 4.0) -> bytes:
    """The run's grid animation (one titled grid of every probe per epoch) as GIF bytes.

    Example:
        >>> grid_gif(load_run("runs/a"))[:6]  # doctest: +SKIP
        b'GIF89a'
    """
    n = run.n_probes
    cols = math.ceil(math.sqrt(n))
    side = max(32, min(72, GIF_SIDE // cols - 8))
    legend = TILE_LEGEND if run.labels is not None else None
    frames = []
    for pos in frame_positions(len(run.epochs)):
        tiles = [
            tile(
                run.images[i],
                run.heatmaps[pos, i],
                run.probabilities[pos, i],
                None if run.labels is None else int(run.labels[i]),
                side=side,
            )
            for i in range(n)
        ]
        frames.append(grid(tiles, cols=cols, title=epoch_label(run.epochs[pos]), legend=legend))
    images = [Image.fromarray(f).quantize(255, method=Image.Quantize.FASTOCTREE) for f in frames]
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


def true_class_curves(run: Any) -> np.ndarray:
    """float64 ``[E, N]``: each probe's probability of its true class per epoch (of the
    class its map explains when labels are unknown)."""
    probs = np.asarray(run.probabilities, np.float64)
    if run.labels is not None:
        cls = np.broadcast_to(np.asarray(run.labels), probs.shape[:2])
    else:
        cls = np.asarray(run.targets)
    return np.take_along_axis(probs, cls[..., None], axis=-1)[..., 0]


def curves_svg(run: Any) -> str:
    """Every probe's p(true) per epoch, one polyline each, green when right at the last
    epoch, red when wrong; a point that is not finite is left out of its line.

    Example:
        >>> curves_svg(load_run("runs/a"))[:4]  # doctest: +SKIP
        '<svg'
    """
    curves = true_class_curves(run)
    n_epochs = curves.shape[0]
    left, top, w, h = 30, 8, CURVE_W - 40, CURVE_H - 30
    xs = [left + (k * w / (n_epochs - 1) if n_epochs > 1 else w / 2) for k in range(n_epochs)]
    parts = [
        f'<svg class="ptrue" width="{CURVE_W}" '
        f'height="{CURVE_H}" viewBox="0 0 {CURVE_W} {CURVE_H}" role="img" '
        'aria-label="p(true) per epoch, one line per probe">',
        f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#888"/>',
        f'<text x="2" y="{top + 8}" font-size="10">1</text>',
        f'<text x="2" y="{top + h}" font-size="10">0</text>',
        f'<text x="{left}" y="{CURVE_H - 6}" font-size="11">p(true) per epoch, '
        f"{html.escape(epoch_label(run.epochs[0]))} to "
        f"{html.escape(epoch_label(run.epochs[-1]))}</text>",
    ]
    last = np.asarray(run.probabilities)[-1]
    for i in range(curves.shape[1]):
        right = run.labels is None or (
            bool(np.isfinite(last[i]).all()) and int(np.argmax(last[i])) == int(run.labels[i])
        )
        colour = "#%02x%02x%02x" % (RIGHT if right else WRONG)
        points = " ".join(
            f"{xs[k]:.1f},{top + (1 - min(max(v, 0.0), 1.0)) * h:.1f}"
            for k, v in enumerate(curves[:, i])
            if math.isfinite(v)
        )
        parts.append(
            f'<polyline data-probe="{i}" points="{points}" fill="none" stroke="{colour}" '
            f'stroke-width="1.5" opacity="0.8"><title>probe {i:03d}</title></polyline>'
        )
    parts.append("</svg>")
    return "".join(parts)


def flags_table(run: Any) -> str:
    """The flags as an HTML table: per flag, how many probes raise it and which."""
    rows = ""
    for name, values in run.flags.items():
        ids = np.flatnonzero(values).tolist()
        shown = ", ".join(map(str, ids[:SHOWN_IDS])) + (", …" if len(ids) > SHOWN_IDS else "")
        rows += (
            f'<tr data-flag="{html.escape(name)}"><td>{html.escape(name.replace("_", " "))}</td>'
            f"<td>{len(ids)}</td><td>{shown or '–'}</td></tr>"
        )
    return (
        '<table class="flags"><tr><th>flag (at the last frame)</th><th>probes</th>'
        f"<th>which</th></tr>{rows}</table>"
    )


def run_html(run: Any) -> str:
    """The whole notebook view of ``run``: a header line, the inline grid GIF, the flags
    and the p(true) curves. Self-contained: no ``http://`` or ``https://`` resource.

    Example:
        >>> run_html(load_run("runs/a"))[:4]  # doctest: +SKIP
        '<div'
    """
    name = clean_name(str(run.path.parent.name), limit=120)
    if not run.epochs:
        return f"<div><b>cam-callback run {html.escape(name)}</b>: no complete epoch yet.</div>"
    gif = base64.b64encode(grid_gif(run)).decode("ascii")
    shown = len(frame_positions(len(run.epochs)))
    sampled = "" if shown == len(run.epochs) else f" ({shown} of them animated)"
    layer = clean_name(run.layer or "input", limit=120)
    explains = target_rule(run.meta, run.class_names)
    return (
        '<div class="cam-callback-run">'
        f"<div><b>cam-callback run {html.escape(name)}</b>: {run.n_probes} probes · "
        f"{len(run.epochs)} frames{sampled} ({html.escape(epoch_label(run.epochs[0]))} to "
        f"{html.escape(epoch_label(run.epochs[-1]))}) · {html.escape(clean_name(run.method))} "
        f"on <code>{html.escape(layer)}</code> · each map explains {html.escape(explains)}</div>"
        '<div style="display:flex;gap:16px;flex-wrap:wrap;align-items:flex-start">'
        f'<img alt="every probe, epoch by epoch" src="data:image/gif;base64,{gif}">'
        f"<div>{flags_table(run)}{curves_svg(run)}</div></div></div>"
    )
