"""The ranking of CAM methods on the page, from an ``evaluation.json`` saved beside the run,
read as hostile input."""

from __future__ import annotations

import html
import os
import re
import sys

from cam_callback import evaluation
from cam_callback.evaluation.results import read_fingerprints
from cam_callback.frames import clean_name
from cam_callback.record import WEIGHTS_FILE, Run
from cam_callback.safe_read import UnreadableFile, read_json


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
    return evaluation.Evaluation(
        table,
        {},
        settings if isinstance(settings, dict) else {},
        read_fingerprints(data.get("fingerprints")),
    )


def recorded_weights(run: Run) -> dict[int, str]:
    """Recorded epoch to the fingerprint of its weights, from ``cam/weights.json`` read as
    hostile input (a regular file only); ``{}`` when it is missing or damaged.

    Example:
        >>> recorded_weights(load_run("runs/a"))[-1]  # doctest: +SKIP
        '0123456789abcdef'
    """
    try:
        data = read_json(run.path / WEIGHTS_FILE)
    except (OSError, UnreadableFile):
        return {}
    weights = data.get("weights") if isinstance(data, dict) else None
    if not isinstance(weights, dict):
        return {}
    ledger = {}
    for epoch, value in weights.items():
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,9}", epoch):
            ledger[int(epoch)] = value
    return ledger


def scored_weights(run: Run, table: evaluation.Evaluation) -> tuple[str, bool]:
    """Which of ``run``'s recorded epochs' weights ``table`` scored, as one sentence, and
    whether it warns (the weights or images are not this run's, or cannot be told).

    The table's weights fingerprint is matched against the record's per-epoch
    fingerprints (``cam/weights.json``), and its probes fingerprint against the record's.

    Example:
        >>> scored_weights(run, load_evaluation("runs/a"))  # doctest: +SKIP
        ("Scored: the weights of epoch 4 of this run, on this run's probes.", False)
    """
    weights = table.fingerprints.get("weights")
    probes = table.fingerprints.get("probes")
    on = ""
    if probes is not None:
        same = probes == run.meta.get("fingerprint")
        on = ", on this run's probes" if same else ", on other images than this run's probes"
    elif table.fingerprints.get("images") is not None:
        on = ", on images scored without labels (not matched against this run's probes)"
    if weights is None:
        return (
            "evaluation.json does not say which weights it scored (saved by an older "
            "cam-callback): it may describe another model than this run's. Run "
            "<code>evaluate</code> again and save it to tie it to an epoch.",
            True,
        )
    ledger = recorded_weights(run)
    if not ledger:
        return (
            "This record keeps no weights fingerprints (an older cam-callback): which "
            f"weights the table scored cannot be checked{on}.",
            True,
        )
    epochs = sorted(e for e, f in ledger.items() if f == weights)
    if not epochs:
        return (
            f"These are not this run's weights: the weights scored (fingerprint "
            f"{html.escape(weights[:16])}) are those of none of its recorded epochs "
            f"({min(ledger)} to {max(ledger)}), so the table describes another model or "
            f"checkpoint, not the maps on this page{on}.",
            True,
        )
    held = [("the state before training" if e < 0 else f"epoch {e}") for e in epochs]
    what = held[0] if len(held) == 1 else f"{', '.join(held)} (the same weights)"
    return f"Scored: the weights of {what} of this run{on}.", "other images" in on


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
    scored, warns = scored_weights(run, table)
    style = ' style="color:#f0b04a"' if warns else ""
    return (
        '<section class="methods"><h2>Which map to trust</h2>'
        f"<p>{len(order)} methods scored by <code>cam_callback.evaluate</code> on "
        f"{html.escape(str(n))} images, ranked by deletion AUC (↓ lower is better, "
        "↑ higher is better).</p>"
        f'<p id="scored"{style}>{scored}</p>'
        f'<table id="methods"><tr><th>#</th><th>method</th>{head}</tr>{body}</table></section>'
    )
