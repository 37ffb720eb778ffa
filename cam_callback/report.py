"""The review page: one HTML file, its animations beside it by relative path.

Zip the folder and mail it: the page uses no CDN and no server, and its
filters and sorting are plain JavaScript.
"""

from __future__ import annotations

import html
import io
import json
import os
import sys
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from cam_callback import animate, evaluation
from cam_callback.frames import FrameRenderer, clean_name, epoch_label
from cam_callback.metrics import FLAG_NAMES
from cam_callback.record import Run, atomic_write_bytes, compute_flags, load_run
from cam_callback.safe_read import UnreadableFile, read_json

GENERATOR = "cam-callback report"
FLAG_HELP = {
    "misclassified": "wrong at the last recorded epoch",
    "low_confidence": "top-1 probability below the threshold at the last epoch",
    "flipped": "the predicted class changed in the second half of training",
    "unstable": "the map kept moving late in training (high drift)",
    "left_mask": "attention on the object mask ended no higher than chance",
    "on_cue": "attention on the suspected cue ended at 1.5x chance or more",
    "non_finite": "NaN or inf in the maps or probabilities: the model diverged",
}


def true_class_curve(run: Run, index: int) -> np.ndarray:
    """Per-epoch probability of the true class (of the explained class without labels)."""
    if run.labels is not None:
        cls = np.full(len(run.epochs), int(run.labels[index]))
    else:
        cls = run.targets[:, index]
    return run.probabilities[np.arange(len(run.epochs)), index, cls]


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


def badge_text(flag: str, figures: dict) -> str:
    """A flag's badge with its figure, e.g. ``"on cue 1.9x"`` or ``"low confidence 0.41"``.

    Example:
        >>> badge_text("on_cue", {"lift": 1.93})
        'on cue 1.9x'
    """
    name = flag.replace("_", " ")
    if flag in ("on_cue", "left_mask") and figures.get("lift") is not None:
        return f"{name} {figures['lift']:.1f}x"
    if flag == "misclassified":
        return f"{name}: p(true) {figures['true_probability']:.2f}"
    if flag == "low_confidence":
        return f"{name} {figures['confidence']:.2f}"
    if flag == "unstable" and figures.get("drift") is not None:
        return f"{name}: drift {figures['drift']:.2f}"
    if flag == "flipped":
        return f"{name} {figures['flips']}x"
    return name


def probe_rows(run: Run, threshold: float) -> list[dict]:
    """Everything a card shows, one dict per probe, in probe order.

    Besides the flags, each row carries the figures behind them, a ``priority``
    (doubt: misclassified, then low confidence, then the least sure) and an
    ``attention`` key (``on_cue``/``left_mask`` first, then the strongest pull
    towards a cue or away from the object).
    """
    f = compute_flags(run, low_confidence=threshold)
    rows = []
    last = run.probabilities[-1]
    lifts = run.metrics.get("mask_lift")
    cue = run.meta.get("mask_kind", "object") == "cue"
    late = slice(max(0, len(run.epochs) - max(2, len(run.epochs) // 2)), len(run.epochs))
    preds = run.probabilities.argmax(-1)
    for i in range(run.n_probes):
        pred = int(last[i].argmax())
        label = None if run.labels is None else int(run.labels[i])
        curve = true_class_curve(run, i)
        raised = [name for name in FLAG_NAMES if f[name][i]]
        lift = None if lifts is None else float(lifts[-1, i])
        drift = run.metrics.get("drift")
        late_drift = None if drift is None or len(run.epochs) < 2 else drift[late][1:, i].mean()
        figures = {
            "lift": lift,
            "true_probability": float(curve[-1]),
            "confidence": float(last[i, pred]),
            "drift": None if late_drift is None else float(late_drift),
            "flips": int((np.diff(preds[late, i]) != 0).sum()),
        }
        attention_flag = f["on_cue"][i] or f["left_mask"][i]
        rows.append(
            {
                "index": i,
                "label": label,
                "label_name": "" if label is None else clean_name(run.class_name(label)),
                "pred": pred,
                "pred_name": clean_name(run.class_name(pred)),
                # argmax of NaN is 0: a non-finite prediction is never counted right.
                "finite": bool(np.isfinite(last[i]).all()),
                "confidence": float(last[i, pred]),
                "true_probability": float(curve[-1]),
                "curve": curve,
                "flags": raised,
                "badges": {name: badge_text(name, figures) for name in raised},
                "lift": lift,
                "attention": (
                    0 if attention_flag else 1,
                    0.0 if lift is None else (-lift if cue else lift),
                ),
                # Doubt first: misclassified, then low confidence, then the least sure.
                "priority": (
                    -int(f["misclassified"][i]) * 2 - int(f["low_confidence"][i]),
                    float(curve[-1]),
                ),
            }
        )
    return rows


def last_frame_png(run: Run, index: int) -> bytes:
    """Probe ``index``'s frame at the last recorded epoch, as PNG: the card's poster."""
    label = None if run.labels is None else int(run.labels[index])
    renderer = FrameRenderer(run.images[index], label=label, class_names=run.class_names)
    frame = renderer.draw(run.heatmaps[-1, index], run.probabilities[-1, index], run.epochs[-1])
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def _sortable(p: float) -> str:
    """A probability for the page's sorting: NaN and inf sort first, as the most doubtful."""
    return f"{p:.6f}" if np.isfinite(p) else "-1"


def _card(row: dict, gif: str, poster: str) -> str:
    badges = "".join(
        f'<span class="badge {n}" title="{html.escape(FLAG_HELP[n])}">'
        f"{html.escape(row['badges'][n])}</span>"
        for n in row["flags"]
    )
    cls = row["label_name"] or row["pred_name"]
    right = row["label"] is None or (row["finite"] and row["label"] == row["pred"])
    verdict = "right" if right else "wrong"
    truth = f"true: <b>{html.escape(row['label_name'])}</b> · " if row["label"] is not None else ""
    return f"""
<article class="card {verdict}" data-index="{row["index"]}" data-class="{html.escape(cls)}"
  data-flags="{" ".join(row["flags"])}" data-priority="{row["priority"][0]}"
  data-truep="{_sortable(row["true_probability"])}" data-attention="{row["attention"][0]}"
  data-lift="{_sortable(row["attention"][1])}">
  <img src="{html.escape(poster)}" data-poster="{html.escape(poster)}" data-gif="{html.escape(gif)}"
    alt="probe {row["index"]} at the last epoch; hover or click to play every epoch"
    title="hover or click to play every epoch" loading="eager">
  <div class="meta">
    <div class="title">probe {row["index"]:03d}</div>
    <div>{truth}pred: <b class="{verdict}">{html.escape(row["pred_name"])}</b>
      {row["confidence"]:.2f}</div>
    <div class="curve-row">{sparkline(row["curve"])}
      <span class="p">p(true) {row["true_probability"]:.2f}</span></div>
    <div class="badges">{badges}</div>
  </div>
</article>"""


_CSS = """
body{font-family:system-ui,sans-serif;background:#18181c;color:#e8e8ea;margin:0}
header{padding:16px 24px;background:#222228;position:sticky;top:0;z-index:1}
h1{font-size:20px;margin:0 0 6px} .sub{color:#a0a0aa;font-size:13px}
.controls{margin-top:10px;display:flex;gap:14px;flex-wrap:wrap;font-size:14px}
select,label{color:#e8e8ea;background:#2c2c34;border:1px solid #44444c;border-radius:4px;
padding:3px 6px}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:14px;
padding:18px 24px}
.card{background:#222228;border-radius:8px;overflow:hidden;border-left:4px solid #2e9f43}
.card.wrong{border-left-color:#d73a49} .card img{width:100%;display:block;image-rendering:auto}
.meta{padding:8px 12px;font-size:13px;line-height:1.5} .title{font-weight:600}
b.right{color:#4cc46a} b.wrong{color:#ff6b7a}
.curve polyline{fill:none;stroke:#f0b429;stroke-width:1.5} .curve circle{fill:#f0b429}
.curve .mid{stroke:#44444c;stroke-dasharray:2 3} .curve-row{display:flex;align-items:center;gap:8px}
.p{color:#a0a0aa} .badge{display:inline-block;border-radius:10px;padding:0 8px;margin:2px 4px 0 0;
font-size:12px;background:#44444c} .badge.misclassified{background:#8b2230}
.badge.low_confidence{background:#8a6d12} .badge.non_finite{background:#b3261e}
.badge.on_cue,.badge.left_mask{background:#5b3a8c}
.hidden{display:none} #count{color:#a0a0aa}
.methods{padding:12px 24px 0} .methods h2{font-size:16px;margin:0 0 4px}
.methods p{color:#a0a0aa;font-size:13px;margin:0 0 6px}
.methods table{border-collapse:collapse;font-size:13px}
.methods td,.methods th{padding:3px 10px;border-bottom:1px solid #33333b;text-align:right}
"""

_JS = """
const main = document.querySelector('main');
const cards = Array.from(main.querySelectorAll('.card'));
const byClass = document.getElementById('class-filter');
const byFlag = document.getElementById('flag-filter');
const sortBy = document.getElementById('sort');
function apply() {
  const cls = byClass.value, flag = byFlag.value;
  let shown = 0;
  for (const card of cards) {
    const flags = card.dataset.flags.split(' ').filter(Boolean);
    const ok = (cls === '' || card.dataset.class === cls) &&
      (flag === '' || (flag === 'any' ? flags.length > 0 : flags.includes(flag)));
    card.classList.toggle('hidden', !ok);
    if (ok) shown += 1;
  }
  const key = sortBy.value;
  const sorted = cards.slice().sort((a, b) => {
    if (key === 'index') return a.dataset.index - b.dataset.index;
    if (key === 'attention') {
      return (a.dataset.attention - b.dataset.attention) || (a.dataset.lift - b.dataset.lift) ||
        (a.dataset.index - b.dataset.index);
    }
    if (key === 'doubt') {
      return (a.dataset.priority - b.dataset.priority) ||
        (a.dataset.truep - b.dataset.truep) || (a.dataset.index - b.dataset.index);
    }
    return (a.dataset.truep - b.dataset.truep) || (a.dataset.index - b.dataset.index);
  });
  for (const card of sorted) main.appendChild(card);
  document.getElementById('count').textContent = shown + ' of ' + cards.length + ' probes';
}
for (const el of [byClass, byFlag, sortBy]) el.addEventListener('change', apply);
// The poster is the last epoch, as the card's text; the GIF plays every epoch on demand.
for (const img of main.querySelectorAll('.card img')) {
  const play = () => { img.src = img.dataset.gif; };
  const stop = () => { img.src = img.dataset.poster; };
  img.addEventListener('mouseenter', play);
  img.addEventListener('mouseleave', stop);
  img.addEventListener('click', () => (img.src.endsWith(img.dataset.gif) ? stop() : play()));
}
apply();
"""


def read_evaluation_table(file: str | os.PathLike) -> evaluation.Evaluation:
    """The scores and settings of an ``evaluation.json``, read as hostile input.

    Only what the page shows is read: ``scores`` (method to metric to a finite-size
    number) and ``settings``; the per-image lists are left out. The file must be a
    regular file of at most ``safe_read.MAX_JSON_BYTES``.

    Raises:
        FileNotFoundError: No such file.
        UnreadableFile: Not a regular file, too large, not JSON, or not a table of numbers.

    Example:
        >>> read_evaluation_table("runs/a/evaluation.json").methods  # doctest: +SKIP
        ['gradcam', 'random']
    """
    data = read_json(file)
    scores = data.get("scores") if isinstance(data, dict) else None
    if not isinstance(scores, dict):
        raise UnreadableFile("no `scores` object")
    table: dict[str, dict[str, float]] = {}
    for method, row in scores.items():
        if not isinstance(row, dict):
            raise UnreadableFile(f"the scores of {method!r:.60} are not an object")
        for metric, value in row.items():
            # bool is an int to Python; 10**400 is an int no float holds.
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UnreadableFile(f"{method!r:.60}: {metric!r:.60} is not a number")
            if isinstance(value, int) and abs(value) > sys.float_info.max:
                raise UnreadableFile(f"{method!r:.60}: {metric!r:.60} is out of float range")
        table[method] = {metric: float(value) for metric, value in row.items()}
    settings = data.get("settings")
    return evaluation.Evaluation(table, {}, settings if isinstance(settings, dict) else {})


def methods_section(run: Run) -> str:
    """A table ranking methods when ``evaluate`` results are saved beside the run, else ``""``.

    Looks for ``evaluation.json`` in the run's ``log_dir`` and its ``cam`` folder
    (``Evaluation.save(log_dir)``). Ranked by deletion AUC (lower is better), the
    RISE test the tracker's faithfulness shares; the best value of each column is bold.
    """
    for folder in (run.path.parent, run.path):
        file = folder / evaluation.FILE_NAME
        if os.path.lexists(file):  # a FIFO or symlink there is damage to report, not skip
            try:
                table = read_evaluation_table(file)
            except (OSError, UnreadableFile) as exc:
                why = html.escape(clean_name(" ".join(str(exc).split()), limit=200))
                return (
                    f'<section class="methods"><p>evaluation.json is damaged: {why}</p></section>'
                )
            break
    else:
        return ""
    cols = [m for m in evaluation.METRICS if any(m in r for r in table.scores.values())]
    key = "deletion_auc" if "deletion_auc" in cols else (cols[0] if cols else None)
    order = table.ranking(key) if key else table.methods
    order += [m for m in table.methods if m not in order]
    best = {c: table.ranking(c)[0] for c in cols if table.ranking(c)}
    arrow = {1: "↑", -1: "↓"}
    head = "".join(
        f"<th>{html.escape(c.replace('_', ' '))} {arrow[evaluation.DIRECTION[c]]}</th>"
        for c in cols
    )
    body = ""
    for rank, name in enumerate(order, 1):
        cells = ""
        for c in cols:
            v = table.scores[name].get(c)
            text = "–" if v is None else f"{v:.4g}"
            cells += f"<td><b>{text}</b></td>" if best.get(c) == name else f"<td>{text}</td>"
        label = html.escape(clean_name(name, limit=60))
        body += f"<tr><td>{rank}</td><td><code>{label}</code></td>{cells}</tr>"
    n = clean_name(str(table.settings.get("n_images", "?"))[:40], limit=20)
    return (
        '<section class="methods"><h2>Which map to trust</h2>'
        f"<p>{len(order)} methods scored by <code>cam_callback.evaluate</code> on "
        f"{html.escape(str(n))} images, ranked by deletion AUC (↓ lower is better, "
        "↑ higher is better).</p>"
        f'<table id="methods"><tr><th>#</th><th>method</th>{head}</tr>{body}</table></section>'
    )


def render_page(
    run: Run,
    rows: list[dict],
    gifs: dict[int, str],
    threshold: float,
    posters: dict[int, str] | None = None,
) -> str:
    """The page's HTML for ``rows``: each card shows ``posters[index]`` (its last epoch)
    and plays ``gifs[index]`` on hover or click."""
    posters = posters or gifs
    classes = sorted({r["label_name"] or r["pred_name"] for r in rows})
    options = "".join(
        f'<option value="{html.escape(c)}">{html.escape(c)}</option>' for c in classes
    )
    flag_options = "".join(
        f'<option value="{n}">{n.replace("_", " ")}</option>' for n in FLAG_NAMES
    )
    ordered = sorted(rows, key=lambda r: (r["priority"], r["index"]))
    cards = "".join(_card(r, gifs[r["index"]], posters[r["index"]]) for r in ordered)
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
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="generator" content="{GENERATOR}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cam-callback review: {html.escape(name)}</title>
<style>{_CSS}</style></head>
<body>
<header>
  <h1>What the model looked at: {html.escape(name)}</h1>
  <div class="sub">{len(rows)} probes · {len(run.epochs)} frames
    ({epoch_label(run.epochs[0])} to {epoch_label(run.epochs[-1])}) ·
    layer <code>{html.escape(layer)}</code> · {html.escape(method)} of the {html.escape(score)} ·
    {n_wrong} misclassified · low confidence below {threshold:.2f}</div>
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
{methods_section(run)}<main>{cards}</main>
<script type="application/json" id="summary">{summary_json}</script>
<script>{_JS}</script>
</body></html>
"""


def write_report(
    run: Run | str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    threshold: float = 0.5,
    fps: float = 4.0,
    processes: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Writes the review page and its animations.

    Args:
        run: A :class:`Run` or a ``log_dir``.
        out: The HTML file; defaults to ``LOG_DIR/cam/report/index.html``. Its
            animations go in a ``<name>_files`` folder beside it.
        threshold: Top-1 probability below which a probe is flagged low-confidence.
        fps: Animation speed.
        processes: Render with worker processes (see ``render_animations``).
        progress: Called as ``progress(done, total)`` while animations render.

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
    if not run.epochs:
        raise ValueError(f"the record at {run.path} has no complete epoch yet: nothing to report")
    page = Path(out) if out is not None else run.path / "report" / "index.html"
    assets = page.parent / f"{page.stem}_files"
    paths = animate.render_animations(
        run, assets, formats="gif", fps=fps, grid=False, processes=processes, progress=progress
    )
    # URL-encoded: a page named "run#1.html" has its GIFs in "run#1_files/", which a raw
    # src would cut at the "#".
    gifs = {i: urllib.parse.quote(f"{assets.name}/{p.name}") for i, p in enumerate(paths)}
    posters = {}
    for i in range(run.n_probes):
        poster = assets / f"probe_{i:03d}_last.png"
        atomic_write_bytes(poster, last_frame_png(run, i))
        posters[i] = urllib.parse.quote(f"{assets.name}/{poster.name}")
    rows = probe_rows(run, threshold)
    atomic_write_bytes(page, render_page(run, rows, gifs, threshold, posters).encode())
    return page
