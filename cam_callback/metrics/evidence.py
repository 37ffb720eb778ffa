"""Evidence transplant: does the most-attended part of a probe, alone, make other probes its class?

No mask is needed: the map itself says where to cut. At every recorded epoch, for
each probe ``i`` (the *donor*) whose map explains class ``c`` (its target):

- its **evidence region** (:func:`evidence_regions`): the map upsampled bilinearly to
  the image's size, and its top ``ceil(share * H * W)`` pixels (``share`` =
  :data:`EVIDENCE_SHARE`, 10% of the area; ties in raster order; pixels at the map's
  minimum left out, so an empty map has an empty region);
- its **recipients** (:func:`evidence_pairs`): probes of another class (their label;
  their target without labels) that the model does **not** predict as ``c`` this
  epoch, ``e_0 .. e_{R-1}`` in probe order. The ``k``-th donor of ``c`` (probe order)
  pastes onto ``e_{(k*m + j) mod R}`` for ``j < m``, ``m = min(R, 8, max(1, floor(min(2 N,
  512) / D)))`` with ``D`` the donors with a non-empty region, of every class: about
  ``2 N`` pasted images in all, and no more than 512 (:data:`EVIDENCE_MAX_PASTED`) unless
  there are more donors (one recipient each);
- its **evidence transplant rate** ``evidence_transplant``: the share of its recipients
  predicted (argmax) as ``c`` once the region's pixels are pasted onto them, at the same
  place. Causal by construction: every recipient was *not* ``c`` before the paste, so
  the base rate is 0 and only flips count;
- its **control** ``evidence_control``: the same with a region of the same size and
  shape from a random place of the donor (:func:`control_regions`: the region shifted
  cyclically by a seeded random offset of a quarter to three quarters of the image on
  each axis), pasted at that place onto the same recipients. "Any paste breaks the
  recipient" shows up here as well, so it cannot pass for evidence.

An empty region pastes nothing and moves no recipient: its rate and its control's are 0,
with no forward pass (an empty map points at nothing portable). NaN for a probe that is
no donor this epoch (a non-finite map, or no eligible recipient); ``evidence_recipients``
counts its recipients (0 then). With ``probe_masks``,
``evidence_on_mask`` is the share of the region's pixels on the probe's mask (NaN for
an empty mask or region), to read beside ``mask_focus``.

Per class (:func:`class_rates`): the mean over its donors, every epoch.
``portable_evidence`` (:func:`portable_flag`): at the last epoch the region moves more
than ``threshold`` (:data:`PORTABLE_THRESHOLD`, 0.5: most) of its recipients beyond what
its control moves: ``evidence_transplant - evidence_control > threshold``.

Cost per recorded epoch: forward passes over about ``2 N`` pasted and ``2 N`` control
images (``2 M``, ``M <= max(min(2 N, 512), D)``), built each epoch (the regions move with the
maps) and run in chunks; no backward pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from cam_callback._imageops import resize_bilinear
from cam_callback.metrics.interventions import pairs_in_turn

EVIDENCE_SHARE = 0.1  # the region: this share of the image's area, most attended first
EVIDENCE_RECIPIENTS = 8  # recipients per donor, at most
EVIDENCE_BUDGET = 2  # pasted images per probe, about (as many again for the control)
EVIDENCE_MAX_PASTED = 512  # pasted images per epoch at most, where donors allow
PORTABLE_THRESHOLD = 0.5  # portable_evidence: transplant - control above this
PORTABLE_MIN_RECIPIENTS = 2  # ...over at least this many pasted images: never one flip
RISE = 0.25  # the gallery's "rose": a class's rate this much above its first recorded rate


def evidence_regions(
    heatmaps: np.ndarray, size: tuple[int, int], share: float = EVIDENCE_SHARE
) -> np.ndarray:
    """bool ``[N, H, W]``: each map's evidence region at image size ``size`` (module doc).

    Example:
        >>> m = np.zeros((1, 2, 2)); m[0, 0, 0] = 1.0
        >>> evidence_regions(m, (4, 4), 0.25)[0].astype(int).tolist()
        [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    """
    maps = np.asarray(heatmaps, np.float64)
    h, w = size
    up = resize_bilinear(maps, h, w).reshape(len(maps), -1)
    k = max(1, int(np.ceil(share * h * w)))
    out = np.zeros(up.shape, bool)
    finite = np.isfinite(up).all(1)
    safe = np.where(finite[:, None], up, 0.0)
    np.put_along_axis(out, np.argsort(-safe, axis=1, kind="stable")[:, :k], True, axis=1)
    out &= safe > safe.min(1, keepdims=True)
    out[~finite] = False
    return out.reshape(len(maps), h, w)


def control_regions(regions: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each region shifted cyclically by a random ``(dy, dx)``, ``dy`` in ``[H/4, 3H/4]``
    and ``dx`` in ``[W/4, 3W/4]``, seeded by ``(seed, probe)``: the same size and shape,
    from another place of the image.

    Example:
        >>> r = np.zeros((1, 4, 4), bool); r[0, 0, 0] = True
        >>> int(control_regions(r).sum()), bool(control_regions(r)[0, 0, 0])
        (1, False)
    """
    regions = np.asarray(regions, bool)
    h, w = regions.shape[1:3]
    out = np.empty_like(regions)
    for i, region in enumerate(regions):
        rng = np.random.default_rng([seed, i])
        dy = int(rng.integers(h // 4, h - h // 4 + 1)) if h > 1 else 0
        dx = int(rng.integers(w // 4, w - w // 4 + 1)) if w > 1 else 0
        out[i] = np.roll(region, (dy, dx), axis=(0, 1))
    return out


def evidence_pairs(
    classes: np.ndarray,
    donors: np.ndarray,
    others: np.ndarray,
    predicted: np.ndarray,
    recipients: int = EVIDENCE_RECIPIENTS,
    budget: int | None = EVIDENCE_BUDGET,
    pasting: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(donor, recipient)`` probe ids by the rule of the module doc.

    Args:
        classes: int ``[N]`` the class each donor's map explains (its target).
        donors: bool ``[N]`` the donors (probes with a finite map).
        others: int ``[N]`` each probe's own class (labels, else targets).
        predicted: int ``[N]`` this epoch's prediction, -1 where not finite.
        recipients: Recipients per donor, at most.
        budget: About ``budget * N`` pasted images in all, at most ``EVIDENCE_MAX_PASTED``
            where the donors allow (``None``: no limit).
        pasting: bool ``[N]`` donors with a non-empty region (the budget's ``D``);
            default ``donors``.

    Example:
        >>> d, r = evidence_pairs(np.array([0, 1, 2]), np.ones(3, bool),
        ...                       np.array([0, 1, 2]), np.array([0, 0, 2]))
        >>> d.tolist(), r.tolist()  # probe 1 is called 0: no recipient of class 0's evidence
        ([0, 1, 1, 2, 2], [2, 0, 2, 0, 1])
    """
    classes, others = np.asarray(classes), np.asarray(others)
    predicted, donors = np.asarray(predicted), np.asarray(donors, bool)
    n = len(classes)
    paid = int((donors if pasting is None else np.asarray(pasting, bool) & donors).sum())
    if budget is not None:
        recipients = min(recipients, max(1, min(budget * n, EVIDENCE_MAX_PASTED) // max(1, paid)))
    pairs_d: list[int] = []
    pairs_r: list[int] = []
    for c in np.unique(classes[donors]):
        eligible = np.flatnonzero((others != c) & (predicted != c) & (predicted >= 0))
        d, r = pairs_in_turn(np.flatnonzero(donors & (classes == c)), eligible, recipients)
        pairs_d += d
        pairs_r += r
    return np.array(pairs_d, np.int64), np.array(pairs_r, np.int64)


def paste(
    images: np.ndarray, regions: np.ndarray, donor: np.ndarray, recipient: np.ndarray
) -> np.ndarray:
    """``[M, H, W, C]``: each recipient with its donor's pixels under the donor's region.

    Example:
        >>> x = np.stack([np.ones((2, 2, 1)), np.zeros((2, 2, 1))])
        >>> r = np.array([[[True, False], [False, False]]] * 2)
        >>> paste(x, r, np.array([0]), np.array([1]))[0, ..., 0].tolist()
        [[1.0, 0.0], [0.0, 0.0]]
    """
    x = np.asarray(images)
    return np.where(np.asarray(regions)[donor][..., None], x[donor], x[recipient])


def donor_rates(donor: np.ndarray, hit: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per probe: the share of its pasted images that hit (NaN for no donor), and their count.

    Example:
        >>> rate, count = donor_rates(np.array([0, 0, 2]), np.array([True, False, True]), 3)
        >>> rate.tolist(), count.tolist()
        ([0.5, nan, 1.0], [2.0, 0.0, 1.0])
    """
    count = np.bincount(donor, minlength=n).astype(np.float64)
    hits = np.bincount(donor, weights=np.asarray(hit, np.float64), minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(count > 0, hits / np.maximum(count, 1), np.nan)
    return rate.astype(np.float32), count.astype(np.float32)


def on_mask_share(regions: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """float32 ``[N]``: the share of each region's pixels on its mask; NaN for an empty
    region or an empty mask (not measured).

    Example:
        >>> r = np.array([[[True, True], [False, False]]])
        >>> on_mask_share(r, np.array([[[True, False], [False, False]]])).tolist()
        [0.5]
    """
    r = np.asarray(regions, bool).reshape(len(regions), -1)
    m = np.asarray(masks, bool).reshape(len(masks), -1)
    size = r.sum(1)
    ok = (size > 0) & m.any(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(ok, (r & m).sum(1) / np.maximum(size, 1), np.nan)
    return share.astype(np.float32)


def class_rates(values: np.ndarray, classes: np.ndarray) -> dict[int, np.ndarray]:
    """Class to the mean of its donors' values per epoch (``[E]``, NaN at an epoch without
    a donor), a donor's class being its target at that epoch. ``values`` and ``classes``
    are ``[E, N]`` (or ``[N]``: one epoch, each result then a 0-d array).

    Example:
        >>> rates = class_rates(np.array([[1.0, 0.5, np.nan]]), np.array([[0, 0, 1]]))
        >>> {c: r.tolist() for c, r in rates.items()}
        {0: [0.75], 1: [nan]}
    """
    v = np.asarray(values, np.float64)
    c = np.asarray(classes)
    squeeze = v.ndim == 1
    v, c = np.atleast_2d(v), np.atleast_2d(c)
    out = {}
    for cls in np.unique(c):
        members = (c == cls) & np.isfinite(v)
        count = members.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(
                count > 0, np.where(members, v, 0).sum(1) / np.maximum(count, 1), np.nan
            )
        out[int(cls)] = mean[0] if squeeze else mean
    return out


def portable_flag(
    metrics: Mapping[str, np.ndarray], threshold: float = PORTABLE_THRESHOLD
) -> dict[str, np.ndarray]:
    """``portable_evidence`` (bool ``[N]``): at the last epoch ``evidence_transplant -
    evidence_control > threshold``, over at least :data:`PORTABLE_MIN_RECIPIENTS`
    recipients (``evidence_recipients``, where recorded): one flipped image is no verdict;
    ``{}`` when not recorded.

    Example:
        >>> portable_flag({"evidence_transplant": np.array([[1.0, 1.0, np.nan, 1.0]]),
        ...                "evidence_control": np.array([[0.0, 0.5, np.nan, 0.0]]),
        ...                "evidence_recipients": np.array([[2, 2, 0, 1]])})
        {'portable_evidence': array([ True, False, False, False])}
    """
    if "evidence_transplant" not in metrics or not len(metrics["evidence_transplant"]):
        return {}
    rate = np.asarray(metrics["evidence_transplant"][-1], np.float64)
    control = np.asarray(metrics.get("evidence_control", np.zeros_like(rate[None]))[-1])
    net = rate - np.where(np.isfinite(control), control, 0.0)
    flag = np.isfinite(net) & (np.nan_to_num(net, nan=-1.0) > threshold)
    if "evidence_recipients" in metrics:
        recipients = np.asarray(metrics["evidence_recipients"][-1], np.float64)
        flag &= np.nan_to_num(recipients) >= PORTABLE_MIN_RECIPIENTS
    return {"portable_evidence": flag}


def evidence_scalars(
    metrics: Mapping[str, np.ndarray],
    targets: np.ndarray,
    keys: Mapping[int, str],
) -> dict[str, float]:
    """TensorBoard scalars of one epoch: ``<key>/evidence_transplant_rate``,
    ``<key>/evidence_control_rate`` (and ``<key>/mean_evidence_on_mask``) per class with a
    donor, keyed by ``keys`` (class to group name), and their means over the classes.

    Example:
        >>> s = evidence_scalars({"evidence_transplant": np.array([1.0, 0.0]),
        ...                       "evidence_control": np.array([0.0, 0.0])},
        ...                      np.array([0, 1]), {0: "class_a", 1: "class_b"})
        >>> s["class_a/evidence_transplant_rate"], s["mean_evidence_transplant_rate"]
        (1.0, 0.5)
    """
    out: dict[str, float] = {}
    names = (("evidence_transplant", "evidence_transplant_rate"),
             ("evidence_control", "evidence_control_rate"),
             ("evidence_on_mask", "mean_evidence_on_mask"))  # fmt: skip
    for metric, scalar in names:
        if metric not in metrics:
            continue
        rates = {
            c: float(r)
            for c, r in class_rates(metrics[metric], targets).items()
            if np.isfinite(r) and c in keys
        }
        for c, r in rates.items():
            out[f"{keys[c]}/{scalar}"] = r
        if rates:
            mean = scalar if scalar.startswith("mean_") else f"mean_{scalar}"
            out[mean] = float(np.mean(list(rates.values())))
    return out


def rose_at(rates: np.ndarray, epochs: Sequence[int], rise: float = RISE) -> int | None:
    """The first recorded epoch whose rate is at least ``rise`` above the first finite one
    (above 0 when that is the first), or ``None``.

    Example:
        >>> rose_at(np.array([0.0, 0.1, 0.5, 1.0]), [-1, 0, 1, 2])
        1
    """
    r = np.asarray(rates, np.float64)
    finite = np.flatnonzero(np.isfinite(r))
    if not len(finite):
        return None
    base = r[finite[0]]
    for pos in finite[1:]:
        if r[pos] >= base + rise:
            return int(epochs[pos])
    return None
