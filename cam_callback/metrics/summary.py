"""TensorBoard scalars per group of probes, and the per-probe flags over a record.

Pure numpy; see :mod:`cam_callback.metrics` for the flags' meaning.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from cam_callback.metrics.epoch import finite_rows
from cam_callback.metrics.evidence import PORTABLE_THRESHOLD, evidence_scalars, portable_flag
from cam_callback.metrics.fragility import FRAGILITY_THRESHOLD, fragile_flag
from cam_callback.metrics.interventions import (
    IGNORE_THRESHOLD,
    RELIANCE_THRESHOLD,
    intervention_flags,
    transplant_rates,
)


def summary_scalars(
    metrics: Mapping[str, np.ndarray],
    *,
    labels: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    mask_kind: str = "object",
    cue_lift: float = 1.5,
    targets: np.ndarray | None = None,
) -> dict[str, float]:
    """Aggregates over probes for TensorBoard: means, the misclassified fraction, and
    per-group means, so the live curves tell the same story as the flags.

    Groups (each ``<group>/mean_<metric>``): every true class
    (``class_<name>/...``), and with masks the probes flagged at this epoch:
    ``on_cue/...`` (``mask_kind="cue"``: ``mask_lift >= cue_lift``) or
    ``left_mask/...`` (object masks: ``mask_lift < 1``), with their count. A probe
    without a mask (all False: NaN mask numbers) is in no mask group and in no mask
    mean. With the causal transplant (cue masks): ``class_<name>/transplant_rate``
    and ``class_<name>/transplant_base_rate`` (see :func:`transplant_rates`), and
    their means over classes. With ``targets`` (the class each map explains), the
    evidence transplant's per-class rates
    (:func:`~cam_callback.metrics.evidence.evidence_scalars`).

    Example:
        >>> s = summary_scalars({"mask_lift": np.array([2.0, 1.0]),
        ...                      "mask_focus": np.array([0.6, 0.3])}, mask_kind="cue")
        >>> s["on_cue/mean_mask_focus"], s["on_cue/count"], s["mean_mask_lift"]
        (0.6, 1.0, 1.5)
    """
    names = (
        "true_class_probability",
        "margin",
        "drift",
        "concentration",
        "mask_focus",
        "mask_lift",
        "faithfulness",
        "reliance",
        "sufficiency",
        "fragility",
    )
    out = {}
    for name in names:
        if name in metrics:
            out[f"mean_{name}"] = _mean(name, metrics[name])
    if "correct" in metrics:
        out["misclassified_fraction"] = float(1.0 - np.mean(metrics["correct"]))
    groups: dict[str, np.ndarray] = {}
    if labels is not None:
        labels = np.asarray(labels)
        keys = class_group_keys(labels, class_names)
        for cls, key in keys.items():
            groups[key] = labels == cls
    if "mask_lift" in metrics:
        lift = np.asarray(metrics["mask_lift"], np.float64)
        measured, lift = np.isfinite(lift), np.nan_to_num(lift)
        flagged, group = (
            (measured & (lift >= cue_lift), "on_cue")
            if mask_kind == "cue"
            else (measured & (lift < 1.0), "left_mask")
        )
        out[f"{group}/count"] = float(flagged.sum())
        groups[group] = flagged
    for group, members in groups.items():
        if not members.any():
            continue
        for name in ("true_class_probability", "mask_focus", "mask_lift", "reliance",
                     "sufficiency", "fragility"):  # fmt: skip
            if name in metrics:
                out[f"{group}/mean_{name}"] = _mean(name, np.asarray(metrics[name])[members])
    if "transplant" in metrics and labels is not None:
        keys = class_group_keys(labels, class_names)
        base = metrics.get("transplant_base")
        for suffix, rates in (
            ("transplant_rate", transplant_rates(metrics["transplant"], labels, base)),
            ("transplant_base_rate", {} if base is None else transplant_rates(base, labels)),
        ):
            for cls, rate in rates.items():
                out[f"{keys[cls]}/{suffix}"] = float(rate)
            finite = [float(r) for r in rates.values() if np.isfinite(r)]
            if rates:
                out[f"mean_{suffix}"] = float(np.mean(finite)) if finite else float("nan")
    if targets is not None and "evidence_transplant" in metrics:
        present = np.asarray(targets) if labels is None else np.concatenate([labels, targets])
        out.update(evidence_scalars(metrics, targets, class_group_keys(present, class_names)))
    return out


# Means over the probes where the number is defined: NaN marks a probe without a mask (mask
# numbers), a mask with nothing to remove or keep, or no copy that kept the prediction.
DEFINED_ONLY = ("mask_focus", "mask_lift", "reliance", "sufficiency", "fragility")


def _mean(name: str, values: np.ndarray) -> float:
    """The mean; for a name in :data:`DEFINED_ONLY`, of the probes where it is defined."""
    v = np.asarray(values, np.float64)
    if name not in DEFINED_ONLY:
        return float(np.mean(v))
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else float("nan")


def class_group_keys(labels: np.ndarray, class_names: Sequence[str] | None) -> dict[int, str]:
    """One TensorBoard group per true class present, ``class_<slug>``, unique.

    Names that give the same slug (``"Cat!"`` and ``"cat?"``, or duplicates)
    get their class id in it, ``class_<id>_<slug>``, so no class's scalars are lost.

    Example:
        >>> class_group_keys(np.array([0, 1, 2]), ["Cat!", "cat?", "dog"])
        {0: 'class_0_cat', 1: 'class_1_cat', 2: 'class_dog'}
    """
    present = [int(c) for c in np.unique(np.asarray(labels)[np.asarray(labels) >= 0])]
    every = range(len(class_names)) if class_names else present
    slugs = {}
    for cls in sorted(set(every) | set(present)):
        name = class_names[cls] if class_names and cls < len(class_names) else str(cls)
        slugs[cls] = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or str(cls)
    counts: dict[str, int] = {}
    for slug in slugs.values():
        counts[slug] = counts.get(slug, 0) + 1
    keys = {}
    for cls in present:
        slug = slugs[cls]
        keys[cls] = f"class_{cls}_{slug}" if counts[slug] > 1 else f"class_{slug}"
    return keys


FLAG_NAMES = (
    "misclassified",
    "low_confidence",
    "flipped",
    "unstable",
    "left_mask",
    "on_cue",
    "non_finite",
    "empty_map",
    "relies_on_cue",
    "ignores_object",
    "fragile",
    "portable_evidence",
)

# A map is empty when no cell of it rises above this at the last recorded epoch. Maps are
# divided by their own peak, so a map peaks at 1 or is zero throughout (the ReLU removed all
# of its evidence); the tolerance only absorbs float rounding and unnormalised maps.
EMPTY_MAP_PEAK = 1e-6


def flags(
    metrics: Mapping[str, np.ndarray],
    probabilities: np.ndarray,
    *,
    low_confidence: float = 0.5,
    unstable_drift: float = 0.3,
    mask_kind: str = "object",
    cue_lift: float = 1.5,
    heatmaps: np.ndarray | None = None,
    reliance_threshold: float = RELIANCE_THRESHOLD,
    ignore_threshold: float = IGNORE_THRESHOLD,
    fragility_threshold: float = FRAGILITY_THRESHOLD,
    evidence_threshold: float = PORTABLE_THRESHOLD,
) -> dict[str, np.ndarray]:
    """Per-probe bool flags over a whole record.

    Args:
        metrics: Name to ``[E, N]``, as in ``Run.metrics``.
        probabilities: ``[E, N, C]``.
        low_confidence: ``low_confidence`` when the last top-1 probability is below this.
        unstable_drift: ``unstable`` when the mean drift over the last half of the
            epochs (at least two) is above this.
        mask_kind: ``"object"``: masks cover the object, and ``left_mask`` flags a
            last ``mask_lift`` below 1 (no more attention on the object than chance).
            ``"cue"``: masks cover a suspected cue (a frame, a watermark), and
            ``on_cue`` flags a last ``mask_lift`` of ``cue_lift`` or more.
        cue_lift: See ``mask_kind``.
        heatmaps: ``[E, N, h, w]`` maps, checked for ``non_finite``.
        reliance_threshold: ``relies_on_cue`` (cue masks) when the last ``reliance``
            is at least this.
        ignore_threshold: ``ignores_object`` (object masks) when the last
            ``reliance`` is below this.
        fragility_threshold: ``fragile`` when the last ``fragility`` is above this.
        evidence_threshold: ``portable_evidence`` when the last evidence transplant rate
            minus its control is above this.

    Returns:
        Flag name to bool ``[N]``: ``misclassified`` (last epoch wrong),
        ``low_confidence``, ``flipped`` (the predicted class changed within the
        last half of the epochs), ``unstable``, ``left_mask``, ``on_cue``,
        ``non_finite`` (NaN or inf in a probability, or in a map when ``heatmaps``
        is given, at any epoch: a diverged model), and ``empty_map`` (with
        ``heatmaps``: the map at the last recorded epoch is finite and nowhere above
        ``EMPTY_MAP_PEAK``; the layer holds no positive evidence for the explained
        class, see :func:`empty_map_notice`), ``relies_on_cue``, ``ignores_object``
        ``fragile`` and ``portable_evidence`` (False where not recorded).

    Example:
        >>> f = flags({"drift": np.zeros((2, 1))}, np.array([[[0.9, 0.1]], [[0.4, 0.6]]]))
        >>> f["flipped"].tolist(), f["low_confidence"].tolist()
        ([True], [False])
    """
    probs = np.asarray(probabilities)
    e, n = probs.shape[:2]
    none = np.zeros(n, bool)
    if e == 0:
        return {name: none.copy() for name in FLAG_NAMES}
    late = slice(max(0, e - max(2, e // 2)), e)
    pred = probs.argmax(-1)
    out = {
        # A non-finite prediction is never correct, also in records written before this rule.
        "misclassified": (
            (metrics["correct"][-1] < 0.5) | ~finite_rows(probs[-1])
            if "correct" in metrics
            else none.copy()
        ),
        "low_confidence": probs[-1].max(-1) < low_confidence,
        "flipped": (pred[late] != pred[late][-1]).any(0),
        "unstable": (
            metrics["drift"][late][1:].mean(0) > unstable_drift
            if e >= 2 and "drift" in metrics
            else none.copy()
        ),
        "left_mask": none.copy(),
        "on_cue": none.copy(),
        "non_finite": ~np.isfinite(probs).reshape(e, n, -1).all(axis=(0, 2)),
        "empty_map": none.copy(),
        "relies_on_cue": none.copy(),
        "ignores_object": none.copy(),
        "fragile": none.copy(),
        "portable_evidence": none.copy(),
    }
    out.update(
        intervention_flags(
            metrics,
            mask_kind,
            reliance_threshold=reliance_threshold,
            ignore_threshold=ignore_threshold,
        )
    )
    out.update(fragile_flag(metrics, fragility_threshold))
    out.update(portable_flag(metrics, evidence_threshold))
    if heatmaps is not None and len(heatmaps):
        out["non_finite"] |= ~np.isfinite(heatmaps).reshape(e, n, -1).all(axis=(0, 2))
        last_maps = np.asarray(heatmaps[-1], np.float64).reshape(n, -1)
        # A NaN or inf map is non_finite, not empty: counted as above the threshold.
        peak = np.where(np.isfinite(last_maps), last_maps, np.inf).max(1, initial=-np.inf)
        out["empty_map"] = peak <= EMPTY_MAP_PEAK
    if "mask_lift" in metrics:
        last = np.asarray(metrics["mask_lift"][-1], np.float64)
        measured = np.isfinite(last)  # NaN: no mask for this probe, or no map
        if mask_kind == "cue":
            out["on_cue"] = measured & (np.nan_to_num(last) >= cue_lift)
        else:
            out["left_mask"] = measured & (np.nan_to_num(last) < 1.0)
    return {k: np.asarray(v, bool) for k, v in out.items()}


def empty_map_notice(empty: np.ndarray, *, layer: str, method: str, score: str) -> str | None:
    """The warning when most probes' maps are empty (``empty_map``), or ``None``.

    Example:
        >>> empty_map_notice(np.array([True, True, False]), layer="conv2",
        ...                  method="gradcam", score="logit")[:38]
        '2 of 3 probes end with an empty map at'
    """
    empty = np.asarray(empty, bool)
    if not empty.size or empty.sum() * 2 <= empty.size:
        return None
    return (
        f"{int(empty.sum())} of {empty.size} probes end with an empty map at layer "
        f"{layer!r} ({method}, score={score!r}): zero everywhere. The map keeps only "
        "positive evidence for the explained class (a ReLU), so it is empty where every "
        "position of the layer speaks against that class, or where the layer lies past the "
        "point where the decision is made (its gradient no longer depends on where things are). "
        'Try score="probability" (or "logit"), an earlier `layer=`, or another method '
        '("layercam", "gradcam++", "scorecam").'
    )
