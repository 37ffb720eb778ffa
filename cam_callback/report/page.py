"""The page's HTML: a card per probe (poster, verdict, sparkline, badges) under a header of
filters and the methods table."""

from __future__ import annotations

import html
import json

import numpy as np

from cam_callback.frames import clean_name, epoch_label, target_rule
from cam_callback.metrics import FLAG_NAMES
from cam_callback.record import Run
from cam_callback.report.assets import CSS, JS
from cam_callback.report.datamap import datamap_section
from cam_callback.report.gallery import gallery_section
from cam_callback.report.groups import groups_section
from cam_callback.report.methods import methods_section
from cam_callback.report.rows import weights_note

GENERATOR = "cam-callback report"
FLAG_HELP = {
    "misclassified": "wrong at the last recorded epoch",
    "low_confidence": "top-1 probability below the threshold at the last epoch",
    "flipped": "the predicted class changed in the second half of training",
    "unstable": "the map kept moving late in training (high drift)",
    "left_mask": "attention on the object mask ended no higher than chance",
    "on_cue": "attention on the suspected cue ended at 1.5x chance or more",
    "non_finite": "NaN or inf in the maps or probabilities: the model diverged",
    "empty_map": "the map is all zero: nothing in this layer raised the explained score "
    "(ReLU of negative evidence, or a layer past the decision); try another score, "
    "layer or method",
    # Interventions and fragility (issue 20): what the model needs, and whether the map holds.
    "relies_on_cue": "filling the suspected cue in from its surroundings drops the explained "
    "class's probability by the record's reliance threshold or more: the model uses the cue",
    "ignores_object": "filling the object in from its surroundings barely changes the "
    "explained class's probability: the model decides without the object",
    "fragile": "a fragile map: noise too small to change the prediction moves most of its "
    "top cells, so the picture shows the noise more than what the model uses",
    "portable_evidence": "the most-attended part of this image, pasted alone onto probes of "
    "other classes, makes most of them this class (by the record's threshold more than a "
    "region of the same shape from elsewhere): a candidate shortcut, found without a mask",
}


# What the flag filters say: "on cue" beside "relies on cue" read as one test twice.
FLAG_LABELS = {
    "on_cue": "attention on the cue",
    "left_mask": "attention left the mask",
    "relies_on_cue": "relies on the cue (removal test)",
    "ignores_object": "ignores the object (removal test)",
    "non_finite": "non-finite (diverged)",
    "fragile": "fragile map",
}


def flag_label(name: str) -> str:
    """A flag's name in the filters of the page and the CAM tab.

    Example:
        >>> flag_label("relies_on_cue"), flag_label("on_cue"), flag_label("low_confidence")
        ('relies on the cue (removal test)', 'attention on the cue', 'low confidence')
    """
    return FLAG_LABELS.get(name, name.replace("_", " "))


def sparkline(values: np.ndarray, width: int = 160, height: int = 36) -> str:
    """An inline SVG polyline of values in [0, 1].

    Example:
        >>> sparkline(np.array([0.0, 1.0]))[:4]
        '<svg'
    """
    n = len(values)
    xs = np.linspace(2, width - 2, n) if n > 1 else np.array([width / 2])
    values = np.nan_to_num(np.asarray(values, np.float64), nan=0.0, posinf=1.0, neginf=0.0)
    ys = height - 2 - np.clip(values, 0, 1) * (height - 4)
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
    dot = f'<circle cx="{xs[-1]:.1f}" cy="{ys[-1]:.1f}" r="2.5"/>'
    return (
        f'<svg class="curve" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="true-class probability per epoch">'
        f'<line x1="0" x2="{width}" y1="{height / 2}" y2="{height / 2}" class="mid"/>'
        f'<polyline points="{points}"/>{dot}</svg>'
    )


def sortable(p: float) -> str:
    """A probability for the page's sorting: NaN and inf sort first, as the most doubtful.

    Example:
        >>> sortable(0.25), sortable(float("nan"))
        ('0.250000', '-1')
    """
    return f"{p:.6f}" if np.isfinite(p) else "-1"


def card(row: dict, gif: str | None, poster: str) -> str:
    """One probe's ``<article>``: ``poster`` shown, ``gif`` played on hover or click.

    Args:
        row: One of :func:`~cam_callback.report.rows.probe_rows`'s rows.
        gif: URL of the probe's animation, relative to the page; ``None``: a still only.
        poster: URL of its last frame.

    Example:
        >>> card(probe_rows(run, 0.5)[0], "a.gif", "a.png")[:9]  # doctest: +SKIP
        '\\n<article'
    """
    badges = "".join(
        f'<span class="badge {n}" title="{html.escape(FLAG_HELP.get(n, n))}">'
        f"{html.escape(row['badges'][n])}</span>"
        for n in row["flags"]
    )
    cls = row["label_name"] or row["pred_name"]
    right = row["label"] is None or (row["finite"] and row["label"] == row["pred"])
    verdict = "right" if right else "wrong"
    truth = f"true: <b>{html.escape(row['label_name'])}</b> · " if row["label"] is not None else ""
    if gif is None:
        play = 'class="still"'
        alt = "a still: only the probes that matter most play every epoch"
    else:
        play = f'data-gif="{html.escape(gif)}"'
        alt = "hover or click to play every epoch"
    return f"""
<article class="card {verdict}" id="probe-{row["index"]:03d}" data-index="{row["index"]}"
  data-class="{html.escape(cls)}"
  data-flags="{" ".join(row["flags"])}" data-priority="{row["priority"][0]}"
  data-truep="{sortable(row["true_probability"])}" data-attention="{row["attention"][0]}"
  data-lift="{sortable(row["attention"][1])}">
  <img src="{html.escape(poster)}" data-poster="{html.escape(poster)}" {play}
    alt="probe {row["index"]} at the last epoch; {alt}" title="{alt}" loading="eager">
  <div class="meta">
    <div class="title">probe {row["index"]:03d}</div>
    <div>{truth}pred: <b class="{verdict}">{html.escape(row["pred_name"])}</b>
      {row["confidence"]:.2f} · map: <b class="map">{html.escape(row["target_name"])}</b></div>
    <div class="curve-row">{sparkline(row["curve"])}
      <span class="p">p(true) {row["true_probability"]:.2f}</span></div>
    <div class="badges">{badges}</div>
  </div>
</article>"""


def render_page(
    run: Run,
    rows: list[dict],
    gifs: dict[int, str],
    threshold: float,
    posters: dict[int, str] | None = None,
) -> str:
    """The page's HTML for ``rows``: each card shows ``posters[index]`` (its last epoch)
    and plays ``gifs[index]`` on hover or click; a probe not in ``gifs`` shows a still."""
    posters = posters or gifs
    classes = sorted({r["label_name"] or r["pred_name"] for r in rows})
    options = "".join(
        f'<option value="{html.escape(c)}">{html.escape(c)}</option>' for c in classes
    )
    flag_options = "".join(
        f'<option value="{n}">{html.escape(flag_label(n))}</option>' for n in FLAG_NAMES
    )
    ordered = sorted(rows, key=lambda r: (r["priority"], r["index"]))
    cards = "".join(card(r, gifs.get(r["index"]), posters[r["index"]]) for r in ordered)
    n_still = sum(r["index"] not in gifs for r in rows)
    bound = (
        f' · <span id="stills">{len(rows) - n_still} probes animated (the most doubtful and '
        f"flagged), {n_still} shown as stills of the last frame</span>"
        if n_still
        else ""
    )
    n_wrong = sum("misclassified" in r["flags"] for r in rows)
    summary = {
        "epochs": run.epochs,
        "layer": run.layer,
        "method": run.method,
        "score": run.meta.get("score"),
        "threshold": threshold,
    }
    # Valid JSON inside <script>: only "<" could end the element early (</script>, <!--).
    summary_json = json.dumps(summary).replace("<", "\\u003c")
    name = clean_name(run.path.parent.name, limit=120)
    layer = clean_name(run.layer or "input", limit=120)
    method = clean_name(run.method)
    score = clean_name(run.meta.get("score") or "unknown score")
    explains = target_rule(run.meta, run.class_names)
    weights = weights_note(run)
    weights_html = f' · <span id="final-weights">{html.escape(weights)}</span>' if weights else ""
    sections = methods_section(run) + groups_section(run)
    sections += datamap_section(run, rows) + gallery_section(run)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="generator" content="{GENERATOR}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cam-callback review: {html.escape(name)}</title>
<style>{CSS}</style></head>
<body>
<header>
  <h1>What the model looked at: {html.escape(name)}</h1>
  <div class="sub">{len(rows)} probes · {len(run.epochs)} frames
    ({epoch_label(run.epochs[0])} to {epoch_label(run.epochs[-1])}) ·
    layer <code>{html.escape(layer)}</code> · {html.escape(method)} of the {html.escape(score)} ·
    <span id="target-rule">each map explains {html.escape(explains)}</span> ·
    {n_wrong} misclassified · low confidence below {threshold:.2f}{weights_html} ·
    flags describe the last frame{bound}</div>
  <div class="controls">
    <span>class <select id="class-filter"><option value="">all</option>{options}</select></span>
    <span>flag <select id="flag-filter"><option value="">all</option>
      <option value="any">any flag</option>{flag_options}</select></span>
    <span>sort <select id="sort"><option value="doubt">most doubtful first</option>
      <option value="attention">attention: on cue / left mask first</option>
      <option value="truep">lowest p(true) first</option>
      <option value="index">probe order</option></select></span>
    <span id="count"></span>
  </div>
</header>
{sections}<main>{cards}</main>
<script type="application/json" id="summary">{summary_json}</script>
<script>{JS}</script>
</body></html>
"""
