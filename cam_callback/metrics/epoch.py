"""The per-epoch, per-probe numbers of the record (``metric_<name>``): pure numpy.

See :mod:`cam_callback.metrics` for what each number means.
"""

from __future__ import annotations

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

    NaN for an empty (all-False) mask, the way to give masks for some probes only:
    that probe is not measured. 0 for an all-zero map.

    Example:
        >>> m = np.array([[[1.0, 0.0], [0.0, 0.0]]])
        >>> mask_focus(m, np.array([[[True, False], [False, False]]])).tolist()
        [1.0]
        >>> mask_focus(m, np.zeros((1, 2, 2), bool)).tolist()
        [nan]
    """
    out = np.zeros(len(maps), np.float32)
    for i, (m, mask) in enumerate(zip(maps, masks, strict=True)):
        if not np.isfinite(m).all() or not np.any(mask):
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
        lift = np.where(area > 0, out["mask_focus"] / np.maximum(area, 1e-12), np.nan)
        out["mask_lift"] = lift.astype(np.float32)
    return out
