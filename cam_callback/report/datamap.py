"""The data map of the probes, as in dataset cartography (Swayamdipta et al., 2020): per probe,
the mean true-class probability over the training epochs (confidence, y) against its standard
deviation over those epochs (variability, x), coloured by the probe's flags, each point a link
to the probe's card. One inline SVG, no script and no network, shared by the review page and
the CAM tab.

Regions (fixed thresholds, so two runs read alike): **ambiguous** when the variability is at
least ``AMBIGUOUS_STD``; otherwise **easy** when the confidence is at least ``EASY_CONFIDENCE``,
**hard** below it.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np

from cam_callback.metrics import FLAG_NAMES
from cam_callback.record import BASELINE_EPOCH, Run

AMBIGUOUS_STD = 0.2  # variability from which a probe is "ambiguous"
EASY_CONFIDENCE = 0.5  # below it, a steady probe is "hard"
MAX_STD = 0.5  # the largest standard deviation of values in [0, 1]: the x axis ends there
WIDTH, HEIGHT = 440, 280
LEFT, RIGHT, TOP, BOTTOM = 46, 12, 12, 40  # the plot's margins inside the SVG
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
NO_FLAG = "none"
# A point's colour is that of its first flag in FLAG_NAMES order; flags not listed here
# (added later) get OTHER_FLAG.
FLAG_COLOURS = {
    "misclassified": "#ff5c6c",
    "non_finite": "#ff2d20",
    "low_confidence": "#f0b429",
    "flipped": "#58a6ff",
    "unstable": "#e07bff",
    "left_mask": "#a78bfa",
    "on_cue": "#c084fc",
    "empty_map": "#9aa0a6",
    NO_FLAG: "#4cc46a",
}
OTHER_FLAG = "#2dd4bf"


@dataclass(frozen=True)
class DataPoint:
    """One probe on the data map.

    Attributes:
        index: The probe.
        confidence: Mean true-class probability over the training epochs.
        variability: Its standard deviation over those epochs (population, ``ddof=0``).
        region: ``"easy"``, ``"ambiguous"`` or ``"hard"``.
        flag: The flag that colours the point, or ``"none"``.
        x, y: Where the point is drawn in the SVG, in pixels.
    """

    index: int
    confidence: float
    variability: float
    region: str
    flag: str
    x: float
    y: float


def region(confidence: float, variability: float) -> str:
    """The cartography region of a point.

    Example:
        >>> region(0.9, 0.05), region(0.5, 0.3), region(0.1, 0.02)
        ('easy', 'ambiguous', 'hard')
    """
    if variability >= AMBIGUOUS_STD:
        return "ambiguous"
    return "easy" if confidence >= EASY_CONFIDENCE else "hard"


def to_svg_xy(confidence: float, variability: float) -> tuple[float, float]:
    """Pixel position of a point: variability 0..0.5 left to right, confidence 1..0 top down.

    Example:
        >>> to_svg_xy(1.0, 0.0) == (LEFT, TOP)
        True
    """
    x = LEFT + min(max(variability, 0.0), MAX_STD) / MAX_STD * PLOT_W
    y = TOP + (1.0 - min(max(confidence, 0.0), 1.0)) * PLOT_H
    return x, y


def flag_colour(flag: str) -> str:
    """The colour of a point whose first flag is ``flag``."""
    return FLAG_COLOURS.get(flag, OTHER_FLAG)


def datamap_points(run: Run, flags: dict[int, list[str]]) -> list[DataPoint]:
    """The data map's points, one per probe with a finite probability at every training epoch.

    The state before training (epoch -1) is left out when trained epochs exist: it tells
    how the untrained model guessed, not how the probe was learned. Without labels the
    probability of the explained class stands in for the true class's.

    Args:
        run: The record.
        flags: Probe index to its raised flags (a review row's ``"flags"``).

    Example:
        >>> pts = datamap_points(load_run("runs/a"), {0: ["misclassified"]})  # doctest: +SKIP
        >>> pts[0].region, pts[0].flag  # doctest: +SKIP
        ('hard', 'misclassified')
    """
    keep = [p for p, e in enumerate(run.epochs) if e != BASELINE_EPOCH] or list(
        range(len(run.epochs))
    )
    probs = run.probabilities[keep].astype(np.float64)
    if run.labels is not None:
        cls = np.broadcast_to(run.labels, (len(keep), run.n_probes))
    else:
        cls = run.targets[keep]
    curves = np.take_along_axis(probs, cls[..., None], axis=-1)[..., 0]  # [E, N]
    points = []
    for i in range(run.n_probes):
        curve = curves[:, i]
        if not len(curve) or not np.isfinite(curve).all():
            continue  # a diverged probe has no place on the map; the caption counts it
        mean, std = float(curve.mean()), float(curve.std())
        raised = [f for f in FLAG_NAMES if f in flags.get(i, ())]
        raised += [f for f in flags.get(i, ()) if f not in raised]
        x, y = to_svg_xy(mean, std)
        points.append(DataPoint(i, mean, std, region(mean, std), (raised or [NO_FLAG])[0], x, y))
    return points


def datamap_svg(points: list[DataPoint], names: dict[int, str]) -> str:
    """The data map as one inline ``<svg>``; each point is an ``<a href="#probe-007">`` to
    the card whose ``id`` is ``probe-007``.

    Args:
        points: From :func:`datamap_points`.
        names: Probe index to the name shown in its tooltip (its class).

    Example:
        >>> datamap_svg([], {})[:4]
        '<svg'
    """
    ax = to_svg_xy(0.0, AMBIGUOUS_STD)[0]
    mid = to_svg_xy(EASY_CONFIDENCE, 0.0)[1]
    bottom = TOP + PLOT_H
    right = LEFT + PLOT_W
    parts = [
        f'<svg class="datamap" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="data map: mean true-class probability against its variability">',
        f'<rect class="region ambiguous" x="{ax:.1f}" y="{TOP}" width="{right - ax:.1f}" '
        f'height="{PLOT_H}" fill="#2a2440"/>',
        f'<rect class="region easy" x="{LEFT}" y="{TOP}" width="{ax - LEFT:.1f}" '
        f'height="{mid - TOP:.1f}" fill="#1f3326"/>',
        f'<rect class="region hard" x="{LEFT}" y="{mid:.1f}" width="{ax - LEFT:.1f}" '
        f'height="{bottom - mid:.1f}" fill="#3a2226"/>',
        f'<text class="region-label" x="{LEFT + 6}" y="{TOP + 14}">easy</text>',
        f'<text class="region-label" x="{LEFT + 6}" y="{bottom - 6}">hard</text>',
        f'<text class="region-label" x="{ax + 6:.1f}" y="{TOP + 14}">ambiguous</text>',
        f'<line class="axis" x1="{LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}"/>',
        f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}"/>',
    ]
    for v in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5):
        x = to_svg_xy(0.0, v)[0]
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{bottom + 13}" text-anchor="middle">{v:.1f}</text>'
        )
    for c in (0.0, 0.5, 1.0):
        y = to_svg_xy(c, 0.0)[1]
        parts.append(f'<text class="tick" x="{LEFT - 26}" y="{y + 4:.1f}">{c:.1f}</text>')
    parts.append(
        f'<text class="axis-label" x="{LEFT + PLOT_W / 2:.0f}" y="{HEIGHT - 4}" '
        'text-anchor="middle">'
        "variability (std of p(true) over epochs)</text>"
        f'<text class="axis-label" transform="rotate(-90)" x="{-(TOP + PLOT_H / 2):.0f}" '
        'y="11" text-anchor="middle">confidence (mean p(true))</text>'
    )
    for p in points:
        name = html.escape(names.get(p.index, ""))
        tip = (
            f"probe {p.index:03d} {name} · confidence {p.confidence:.2f} · variability "
            f"{p.variability:.2f} · {p.region}" + ("" if p.flag == NO_FLAG else f" · {p.flag}")
        )
        parts.append(
            f'<a href="#probe-{p.index:03d}" data-probe="{p.index}">'
            f'<circle class="pt {p.flag}" cx="{p.x:.2f}" cy="{p.y:.2f}" r="5" '
            f'fill="{flag_colour(p.flag)}" data-region="{p.region}"><title>{tip}</title>'
            "</circle></a>"
        )
    parts.append("</svg>")
    return "".join(parts)


def legend_entries(points: list[DataPoint]) -> list[tuple[str, str]]:
    """``(flag, colour)`` for every colour on the map, in ``FLAG_NAMES`` order, "none" last.

    Example:
        >>> legend_entries([DataPoint(0, 0.9, 0.0, "easy", "none", 0.0, 0.0)])
        [('none', '#4cc46a')]
    """
    shown = [f for f in [*FLAG_NAMES, NO_FLAG] if any(p.flag == f for p in points)]
    shown += sorted({p.flag for p in points} - set(shown))
    return [(f, flag_colour(f)) for f in shown]


def datamap_legend(points: list[DataPoint], n_probes: int) -> str:
    """HTML under the map: the colour of each flag shown, and the probes left out.

    Example:
        >>> datamap_legend([], 2)
        '<div class="datamap-legend">2 probes with a non-finite probability are not shown.</div>'
    """
    items = "".join(
        f'<span class="key"><i style="background:{colour}"></i>'
        f"{html.escape(f.replace('_', ' ') if f != NO_FLAG else 'no flag')}</span>"
        for f, colour in legend_entries(points)
    )
    missing = n_probes - len(points)
    note = (
        f"{missing} probe{'' if missing == 1 else 's'} with a non-finite probability "
        f"{'is' if missing == 1 else 'are'} not shown."
        if missing
        else ""
    )
    return f'<div class="datamap-legend">{items}{note}</div>'


DATAMAP_HELP = (
    "Each probe at its mean p(true) over the training epochs (confidence) against how much "
    "it moved (variability), as in dataset cartography (Swayamdipta et al., 2020): easy "
    "probes were learned early and stayed learned, ambiguous ones kept changing, hard ones "
    "were never learned. Colour: the probe's first flag. Click a point to go to its card."
)


def datamap_section(run: Run, rows: list[dict]) -> str:
    """The review page's data map section: heading, one line of help, the SVG and its legend.

    Args:
        rows: The review rows (:func:`~cam_callback.report.rows.probe_rows`), for the
            flags and the class names.
    """
    points = datamap_points(run, {r["index"]: r["flags"] for r in rows})
    names = {r["index"]: r["label_name"] or r["pred_name"] for r in rows}
    return (
        '<section class="datamap-section"><h2>Data map</h2>'
        f"<p>{html.escape(DATAMAP_HELP)}</p>"
        f"{datamap_svg(points, names)}{datamap_legend(points, run.n_probes)}</section>"
    )
