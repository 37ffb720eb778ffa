"""What a review card shows, one row per probe: prediction, true-class curve, flags and the
figures behind them, and the keys the page sorts by."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from cam_callback.frames import clean_name, epoch_label
from cam_callback.metrics import FLAG_NAMES, transplant_rates
from cam_callback.record import Run, compute_flags
from cam_callback.report.gallery import evidence_badge, evidence_figures


def true_class_curve(run: Run, index: int) -> np.ndarray:
    """Per-epoch probability of the true class (of the explained class without labels)."""
    if run.labels is not None:
        cls = np.full(len(run.epochs), int(run.labels[index]))
    else:
        cls = run.targets[:, index]
    return run.probabilities[np.arange(len(run.epochs)), index, cls]


class Recorded(Protocol):
    """What :func:`weights_note` reads: a :class:`Run`, or the plugin's summary of one."""

    meta: dict[str, Any]
    epochs: list[int]


def weights_note(run: Recorded) -> str:
    """Which epoch's weights the model held when ``fit`` returned, when the record knows
    and it is not the last recorded epoch (``EarlyStopping(restore_best_weights=True)``);
    else ``""``.

    Example:
        >>> weights_note(run)  # doctest: +SKIP
        'the model holds the weights of epoch 2, not those of the last frame (epoch 4)'
    """
    final = run.meta.get("final_weights_epoch")
    if not isinstance(final, int) or isinstance(final, bool) or not run.epochs:
        return ""
    if final == run.epochs[-1]:
        return f"the model holds the weights of the last frame ({epoch_label(final)})"
    return (
        f"the model holds the weights of {epoch_label(final)}, not those of the last "
        f"frame ({epoch_label(run.epochs[-1])})"
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
    return intervention_badge(flag, figures) or evidence_badge(flag, figures) or name


# ---- interventions and fragility (issue 20): the badge text and the figures behind it ----


def intervention_badge(flag: str, figures: dict) -> str | None:
    """The figure-stating badge of ``relies_on_cue``, ``ignores_object`` or ``fragile``.

    Example:
        >>> figures = {"reliance": 0.93, "target_name": "homer", "transplant": 0.875,
        ...            "transplant_base": 0.1}
        >>> badge = intervention_badge("relies_on_cue", figures)
        >>> print(*badge.split("; "), sep="\\n")
        removing the cue drops p(homer) by 0.93
        the cue alone makes 88% of other probes homer (not counting the 10% already homer)
    """
    name, reliance = figures.get("target_name"), figures.get("reliance")
    if flag == "relies_on_cue" and reliance is not None:
        text = f"removing the cue drops p({name}) by {reliance:.2f}"
        rate, base = figures.get("transplant"), figures.get("transplant_base")
        if rate is not None and np.isfinite(rate):
            text += f"; the cue alone makes {rate:.0%} of other probes {name}"
            if base is not None and np.isfinite(base) and base > 0:
                text += f" (not counting the {base:.0%} already {name})"
        return text
    if flag == "ignores_object" and reliance is not None:
        return f"removing the object drops p({name}) by only {reliance:.2f}"
    if flag == "fragile" and figures.get("fragility") is not None:
        return f"fragile map: {figures['fragility']:.0%} of its top cells move under small noise"
    return None


def intervention_figures(run: Run, index: int) -> dict[str, Any]:
    """The last epoch's reliance, fragility, and the causal transplant rate of the class
    probe ``index`` is explained as, with its base rate (the share of recipients that were
    that class already; absent in records written before the causal rate)."""
    last = {k: run.metrics[k][-1, index] for k in ("reliance", "fragility") if k in run.metrics}
    target = int(run.targets[-1, index]) if len(run.targets) else 0
    out: dict[str, Any] = {
        "target_name": clean_name(run.class_name(target)),
        **{k: float(v) for k, v in last.items() if np.isfinite(v)},
    }
    if "transplant" in run.metrics and run.labels is not None:
        base = run.metrics.get("transplant_base")
        base = None if base is None else base[-1]
        rate = transplant_rates(run.metrics["transplant"][-1], run.labels, base).get(target)
        out["transplant"] = None if rate is None else float(rate)
        if base is not None:
            share = transplant_rates(base, run.labels).get(target)
            out["transplant_base"] = None if share is None else float(share)
    return out


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
            **intervention_figures(run, i),
            **evidence_figures(run, i),
        }
        attention_flag = f["on_cue"][i] or f["left_mask"][i]
        rows.append(
            {
                "index": i,
                "label": label,
                "label_name": "" if label is None else clean_name(run.class_name(label)),
                "pred": pred,
                "pred_name": clean_name(run.class_name(pred)),
                # The class the last epoch's map explains: not always the prediction.
                "target": int(run.targets[-1, i]),
                "target_name": clean_name(run.class_name(int(run.targets[-1, i]))),
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
