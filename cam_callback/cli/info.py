"""``cam-callback info``: a record summarised in a few lines."""

from __future__ import annotations

import argparse

import numpy as np

from cam_callback.frames import clean_name
from cam_callback.record import Run, load_run
from cam_callback.report import FLAG_HELP, target_rule, weights_note

SHOWN_IDS = 12  # probe ids listed per flag; more end in "..."


def flag_summary(run: Run) -> list[str]:
    """The lines summarising ``run``'s flags: per flag, how many probes raise it, which,
    and what it means.

    Example:
        >>> flag_summary(load_run("runs/a"))[1]  # doctest: +SKIP
        '  misclassified    2  probes 2, 5  (wrong at the last recorded epoch)'
    """
    flags = run.flags
    raised = sorted({i for v in flags.values() for i in np.flatnonzero(v).tolist()})
    lines = [f"flags:   {len(raised)} of {run.n_probes} probes flagged at the last frame"]
    width = max((len(name) for name in flags), default=0)
    for name, values in flags.items():
        ids = np.flatnonzero(values).tolist()
        shown = ", ".join(map(str, ids[:SHOWN_IDS])) + (", ..." if len(ids) > SHOWN_IDS else "")
        which = f"probes {shown}" if ids else "none"
        why = FLAG_HELP.get(name, "")
        lines.append(f"  {name:<{width}}  {len(ids):>3}  {which}" + (f"  ({why})" if why else ""))
    return lines


def cmd_info(args: argparse.Namespace) -> int:
    """Prints the record's epochs, probes, layer, method, score, the class each map
    explains, which epoch's weights the model holds, probe accuracy and the flags.

    Example:
        >>> cmd_info(build_parser().parse_args(["info", "runs/a"]))  # doctest: +SKIP
        0
    """
    run = load_run(args.log_dir)
    # Everything from record.json is shown clean: control, ANSI escape and bidi characters
    # in a name could rewrite the terminal line.
    names = ", ".join(map(clean_name, run.class_names)) if run.class_names else "unnamed"
    n_classes = run.meta.get("n_classes", "?")
    print(f"record:  {run.path} (format version {run.meta.get('version')})")
    trained = run.epochs[1:] if run.has_baseline else run.epochs
    before = " after the state before training" if run.has_baseline else ""
    if trained:
        print(f"epochs:  {len(trained)} recorded ({trained[0]}..{trained[-1]}){before}")
    elif run.epochs:
        print("epochs:  only the state before training recorded yet")
    else:
        print("epochs:  none recorded yet")
    print(
        f"probes:  {run.n_probes} of {run.images.shape[1]}x{run.images.shape[2]} px, "
        f"{n_classes} classes ({names})"
    )
    # The score really used (a logit that cannot be found falls back to the probability).
    score = clean_name(run.meta.get("score") or "unknown (older record)", limit=120)
    layer = clean_name(run.layer or "(input)", limit=120)
    print(f"layer:   {layer}  method: {clean_name(run.method)}  score: {score}")
    print(f"maps:    each explains {target_rule(run.meta, run.class_names)}")
    weights = weights_note(run)
    if weights:
        print(f"weights: {weights}")
    finite = np.isfinite(run.heatmaps).all(axis=(0, 2, 3)) & np.isfinite(run.probabilities).all(
        axis=(0, 2)
    )
    bad = np.flatnonzero(~finite).tolist()
    if bad:
        shown = ", ".join(map(str, bad[:20])) + (", ..." if len(bad) > 20 else "")
        print(f"non_finite: probes {shown}: NaN or inf in maps or probabilities (diverged model)")
    if run.epochs and run.labels is not None:
        last = run.probabilities[-1]  # argmax of NaN is 0: a non-finite row is never right
        right = int(((last.argmax(1) == run.labels) & np.isfinite(last).all(1)).sum())
        print(f"final accuracy on probes: {right / run.n_probes:.2f} ({right}/{run.n_probes})")
    elif run.epochs:
        print("final accuracy on probes: unknown (no labels recorded)")
    if run.epochs:
        print("\n".join(flag_summary(run)))
    return 0
