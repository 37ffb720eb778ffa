"""Worst-group accuracy on the page and in the CAM tab: each group's accuracy (class x cue
carried or not, see :mod:`cam_callback.metrics.groups`) before training and at the end."""

from __future__ import annotations

import html

import numpy as np

from cam_callback.frames import clean_name, epoch_label
from cam_callback.metrics import cue_present, group_accuracies, group_name
from cam_callback.record import Run


def group_rows(run: Run) -> list[dict]:
    """One row per group, worst last epoch first: name, probes, accuracy per epoch.

    Empty unless the run has cue masks, labels and ``correct``.

    Example:
        >>> group_rows(run)[0]["name"]  # doctest: +SKIP
        'homer without the cue'
    """
    correct = run.metrics.get("correct")
    if run.meta.get("mask_kind") != "cue" or run.labels is None or run.masks is None:
        return []
    if correct is None or not len(correct):
        return []
    present = cue_present(run.masks)
    labels = np.asarray(run.labels)
    names = [clean_name(str(n)) for n in run.class_names] if run.class_names else None
    rows = [
        {
            "name": group_name(group, names),
            "probes": int(((labels == group[0]) & (present == group[1])).sum()),
            "accuracy": np.asarray(acc, np.float64),
        }
        for group, acc in group_accuracies(correct, labels, present).items()
    ]
    return sorted(rows, key=lambda r: (r["accuracy"][-1], r["name"]))


def worst_group_note(run: Run) -> str | None:
    """One line for the CAM tab's status: the worst group at the last epoch, or ``None``.

    Example:
        >>> worst_group_note(run)  # doctest: +SKIP
        'worst group: homer without the cue, 0.00 right (1.00 before training)'
    """
    rows = group_rows(run)
    if len(rows) < 2:
        return None
    worst = rows[0]
    start = epoch_label(run.epochs[0])  # "before training", or "epoch 3" when resumed
    start = start if run.epochs[0] < 0 else f"at {start}"
    return (
        f"worst group: {worst['name']}, {worst['accuracy'][-1]:.2f} right "
        f"({worst['accuracy'][0]:.2f} {start})"
    )


def groups_section(run: Run) -> str:
    """The page's table of group accuracies (empty string without groups).

    Example:
        >>> groups_section(run)[:20]  # doctest: +SKIP
        '<section id="groups"'
    """
    rows = group_rows(run)
    if len(rows) < 2:
        return ""
    worst = np.min(np.stack([r["accuracy"] for r in rows]), axis=0)
    cells = "".join(
        f"<tr><td>{html.escape(r['name'])}</td><td>{r['probes']}</td>"
        f"<td>{r['accuracy'][0]:.2f}</td><td>{r['accuracy'][-1]:.2f}</td></tr>"
        for r in rows
    )
    first, last = epoch_label(run.epochs[0]), epoch_label(run.epochs[-1])
    trail = " → ".join(f"{w:.2f}" for w in worst)
    return f"""<section class="methods" id="groups"><h2>Worst-group accuracy</h2>
<p>Probes grouped by true class and by whether they carry the cue (a non-empty cue
mask), as Waterbirds results are reported: a shortcut is right where the cue goes with the class
and wrong where it does not. Worst group, per epoch: <b id="worst-group">{trail}</b></p>
<table><tr><th>group</th><th>probes</th><th>{html.escape(first)}</th>
<th>{html.escape(last)}</th></tr>{cells}</table></section>
"""
