"""Per-epoch numbers and per-probe flags from maps and probabilities: pure numpy.

Per epoch, per probe (float32 ``[N]``; stored in the record as ``metric_<name>``):

- ``true_class_probability`` = ``p[label]`` (only with labels).
- ``predicted_class`` = ``argmax p``; NaN where ``p`` is not finite (no prediction).
- ``margin`` = top-1 minus top-2 probability (``|2p - 1|`` for a single output);
  NaN where ``p`` is not finite.
- ``correct`` = 1 where ``predicted_class == label``, else 0 (only with labels). A
  non-finite ``p`` is never correct (``argmax`` of NaN is 0, which is no prediction).
- ``drift`` = ``1 - cos(m_t, m_prev)``, the maps flattened, against the previous
  recorded epoch; 0 at the first. Two all-zero maps have drift 0, one all-zero map 1.
- ``drift_from_first`` = ``1 - cos(m_t, m_first)``.
- ``concentration`` = share of the map's energy (sum) in its top 10% of cells;
  0.1 for a flat map, 1 when one cell in ten or fewer holds everything.
- ``mask_focus`` (with masks) = ``sum(up(m) * mask) / sum(up(m))``, the map
  upsampled bilinearly to the mask's size: the share of attention inside the mask.
- ``mask_lift`` (with masks) = ``mask_focus / mean(mask)``: attention inside the
  mask relative to chance (1 = no more than the mask's share of the image).
- ``faithfulness`` (opt-in, computed by the tracker with the model) = drop of the
  target's probability when the most-attended 20% is blurred, minus the drop
  when a random 20% is blurred.

A map whose probabilities are not finite (a diverged model) could not be
computed: :func:`mark_not_computed` stores it as NaN, not as the all-zero map
the normalisation makes of NaN, and every map metric of a NaN map is NaN.

Flags per probe over the whole record (see :func:`flags`): ``flipped``,
``left_mask``, ``on_cue``, ``low_confidence``, ``unstable``, ``misclassified``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from cam_callback.frames import upsample

TOP_SHARE = 0.10


def finite_rows(values: np.ndarray) -> np.ndarray:
    """bool ``[N]``: whether row ``i`` of ``values`` (any shape ``[N, ...]``) is all finite.

    Example:
        >>> finite_rows(np.array([[0.5, 0.5], [np.nan, 1.0]])).tolist()
        [True, False]
    """
    v = np.asarray(values)
    return np.isfinite(v.reshape(len(v), -1)).all(axis=1)


def mark_not_computed(heatmaps: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """The maps, with NaN for each probe whose probabilities are not finite.

    The score of such a probe is NaN, so its gradient and its map are too; the
    normalisation would turn them into an all-zero map that looks computed.

    Example:
        >>> m = mark_not_computed(np.zeros((2, 1, 1)), np.array([[1.0, 0.0], [np.nan, 0.0]]))
        >>> m[:, 0, 0].tolist()
        [0.0, nan]
    """
    maps = np.array(heatmaps, np.float32)
    maps[~finite_rows(probabilities)] = np.nan
    return maps


def cosine_drift(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``1 - cos`` between paired maps ``[N, h, w]``; see the module doc for zero maps.
    NaN where either map is not finite.

    Example:
        >>> cosine_drift(np.ones((1, 2, 2)), np.ones((1, 2, 2))).tolist()
        [0.0]
    """
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both = (na > 0) & (nb > 0)
    cos = np.where(both, (a * b).sum(1) / np.where(both, na * nb, 1.0), 0.0)
    drift = 1.0 - cos
    drift[(na == 0) & (nb == 0)] = 0.0
    drift[~(finite_rows(a) & finite_rows(b))] = np.nan
    return np.clip(drift, 0.0, 2.0).astype(np.float32)


def concentration(maps: np.ndarray) -> np.ndarray:
    """Share of each map's energy in its top 10% of cells (at least one cell).

    Example:
        >>> concentration(np.array([[[1.0] + [0.0] * 9]])).tolist()
        [1.0]
    """
    flat = maps.reshape(len(maps), -1).astype(np.float64)
    k = max(1, int(np.ceil(TOP_SHARE * flat.shape[1])))
    top = -np.sort(-flat, axis=1)[:, :k].sum(1)
    total = flat.sum(1)
    out = np.where(total > 0, top / np.where(total > 0, total, 1.0), 0.0)
    out[~finite_rows(flat)] = np.nan
    return out.astype(np.float32)


def mask_focus(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of each map's energy inside its mask, the map upsampled to the mask.

    Example:
        >>> m = np.array([[[1.0, 0.0], [0.0, 0.0]]])
        >>> mask_focus(m, np.array([[[True, False], [False, False]]])).tolist()
        [1.0]
    """
    out = np.zeros(len(maps), np.float32)
    for i, (m, mask) in enumerate(zip(maps, masks, strict=True)):
        if not np.isfinite(m).all():
            out[i] = np.nan
            continue
        up = upsample(m, mask.shape).astype(np.float64)
        total = up.sum()
        out[i] = up[mask].sum() / total if total > 0 else 0.0
    return out


def epoch_metrics(
    heatmaps: np.ndarray,
    probabilities: np.ndarray,
    *,
    labels: np.ndarray | None = None,
    previous: np.ndarray | None = None,
    first: np.ndarray | None = None,
    masks: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """All per-probe numbers of one recorded epoch.

    Args:
        heatmaps: ``[N, h, w]`` maps of this epoch.
        probabilities: ``[N, C]``.
        labels: True classes ``[N]`` or ``None``.
        previous: Maps of the previous recorded epoch, ``None`` at the first.
        first: Maps of the first recorded epoch, ``None`` at the first.
        masks: bool ``[N, H, W]`` probe masks, or ``None``.

    Returns:
        Name to float32 ``[N]``.

    Example:
        >>> out = epoch_metrics(np.ones((1, 2, 2)), np.array([[0.2, 0.8]]), labels=np.array([1]))
        >>> float(out["margin"][0]), float(out["correct"][0])
        (0.6000000238418579, 1.0)
    """
    p = np.asarray(probabilities, np.float64)
    finite = finite_rows(p)
    pred = p.argmax(1)
    if p.shape[1] >= 2:
        top2 = -np.sort(-p, axis=1)[:, :2]
        margin = top2[:, 0] - top2[:, 1]
    else:
        margin = np.abs(2 * p[:, 0] - 1)
    margin[~finite] = np.nan
    out = {
        "predicted_class": np.where(finite, pred, np.nan).astype(np.float32),
        "margin": margin.astype(np.float32),
        "drift": np.zeros(len(p), np.float32)
        if previous is None
        else cosine_drift(heatmaps, previous),
        "drift_from_first": np.zeros(len(p), np.float32)
        if first is None
        else cosine_drift(heatmaps, first),
        "concentration": concentration(heatmaps),
    }
    if labels is not None:
        labels = np.asarray(labels)
        out["true_class_probability"] = p[np.arange(len(p)), labels].astype(np.float32)
        out["correct"] = ((pred == labels) & finite).astype(np.float32)
    if masks is not None:
        out["mask_focus"] = mask_focus(heatmaps, masks)
        area = np.asarray(masks, bool).reshape(len(masks), -1).mean(1)
        out["mask_lift"] = np.where(area > 0, out["mask_focus"] / np.maximum(area, 1e-12), 0.0)
        out["mask_lift"] = out["mask_lift"].astype(np.float32)
    return out


def summary_scalars(
    metrics: Mapping[str, np.ndarray],
    *,
    labels: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    mask_kind: str = "object",
    cue_lift: float = 1.5,
) -> dict[str, float]:
    """Aggregates over probes for TensorBoard: means, the misclassified fraction, and
    per-group means, so the live curves tell the same story as the flags.

    Groups (each ``<group>/mean_<metric>``): every true class
    (``class_<name>/...``), and with masks the probes flagged at this epoch:
    ``on_cue/...`` (``mask_kind="cue"``: ``mask_lift >= cue_lift``) or
    ``left_mask/...`` (object masks: ``mask_lift < 1``), with their count.

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
    )
    out = {}
    for name in names:
        if name in metrics:
            out[f"mean_{name}"] = float(np.mean(metrics[name]))
    if "correct" in metrics:
        out["misclassified_fraction"] = float(1.0 - np.mean(metrics["correct"]))
    groups: dict[str, np.ndarray] = {}
    if labels is not None:
        labels = np.asarray(labels)
        keys = class_group_keys(labels, class_names)
        for cls, key in keys.items():
            groups[key] = labels == cls
    if "mask_lift" in metrics:
        lift = np.asarray(metrics["mask_lift"])
        flagged, group = (
            (lift >= cue_lift, "on_cue") if mask_kind == "cue" else (lift < 1.0, "left_mask")
        )
        out[f"{group}/count"] = float(flagged.sum())
        groups[group] = flagged
    for group, members in groups.items():
        if not members.any():
            continue
        for name in ("true_class_probability", "mask_focus", "mask_lift"):
            if name in metrics:
                out[f"{group}/mean_{name}"] = float(np.mean(np.asarray(metrics[name])[members]))
    return out


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
)


def flags(
    metrics: Mapping[str, np.ndarray],
    probabilities: np.ndarray,
    *,
    low_confidence: float = 0.5,
    unstable_drift: float = 0.3,
    mask_kind: str = "object",
    cue_lift: float = 1.5,
    heatmaps: np.ndarray | None = None,
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

    Returns:
        Flag name to bool ``[N]``: ``misclassified`` (last epoch wrong),
        ``low_confidence``, ``flipped`` (the predicted class changed within the
        last half of the epochs), ``unstable``, ``left_mask``, ``on_cue``, and
        ``non_finite`` (NaN or inf in a probability, or in a map when ``heatmaps``
        is given, at any epoch: a diverged model).

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
    }
    if heatmaps is not None and len(heatmaps):
        out["non_finite"] |= ~np.isfinite(heatmaps).reshape(e, n, -1).all(axis=(0, 2))
    if "mask_lift" in metrics:
        last = metrics["mask_lift"][-1]
        if mask_kind == "cue":
            out["on_cue"] = last >= cue_lift
        else:
            out["left_mask"] = last < 1.0
    return {k: np.asarray(v, bool) for k, v in out.items()}
