"""Interventions on the masked region: reliance, sufficiency and the transplant rate.

A map says where the gradient is large; an intervention says what the model needs.
Each altered image depends only on the probes and their masks, so
:func:`build_interventions` makes them once; each epoch only runs the model on them
and :func:`intervention_metrics` turns its probabilities into numbers.

"Removed" means filled from its surroundings by ROAD's noisy linear imputation
(:func:`cam_callback.imputation.impute`), so the model sees no hole that is a cue in
itself. With ``p`` the explained target's probability as the head gives it (the
softmax of the logits for a logit head):

- ``reliance = p(x) - p(x with the mask's region removed)``; at most 1, negative
  when removing the region helps. NaN for a mask covering the whole image, and for
  an empty mask (a probe without a mask is not measured).
- ``sufficiency = p(x with everything but the mask's region removed)``. NaN for an
  empty mask (nothing is kept).
- ``transplant`` (``mask_kind="cue"``, with labels), per donor probe ``i`` of class
  ``c`` with a non-empty mask, is **causal**: of its recipients (probes of other
  classes) that the model did *not* predict as ``c`` (argmax, this epoch) before the
  paste, the share it predicts as ``c`` once the pixels under ``i``'s mask are pasted
  onto them. A recipient already predicted as ``c`` says nothing about the cue, so it
  is left out; beside it, ``transplant_base`` is the share of ``i``'s recipients
  already predicted as ``c`` (the rate a model that never reads the cue would get
  if they were counted). ``transplant`` is NaN for a probe that is no donor, or whose
  recipients all were ``c`` already. Pairing rule: the recipients of class ``c`` are
  the probes of the other classes in probe order, ``r_0 .. r_{R-1}``; the ``k``-th
  donor of ``c`` (probe order) pastes onto ``r_{(k*m + j) mod R}`` for ``j < m``,
  ``m = min(R, 8, max(1, floor(2 N / D)))`` with ``D`` the donors of every class (so
  about ``2 N`` transplant images in all). Every donor of ``c`` has ``m`` recipients,
  so the class's **transplant rate** (:func:`transplant_rates` with the base rates:
  its donors' rates weighted by their eligible share ``1 - transplant_base``) is
  exactly the share of its eligible pasted images predicted as ``c``, and its **base
  rate** (:func:`transplant_rates` of ``transplant_base``) the share of all its
  pasted images' recipients that were ``c`` already.

Forward passes per recorded epoch: ``2 N + M`` images, ``M = sum_c D_c * m`` (about
``2 N``, at most ``max(2 N, D)``), in the tracker's batches; no backward pass, and
``p(x)`` is the epoch's own forward. The altered images stay in memory: ``2 N + M``
probes' worth, built once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from cam_callback.imputation import impute
from cam_callback.metrics.epoch import finite_rows

RELIANCE_THRESHOLD = 0.5  # relies_on_cue: removing the cue drops p(target) by this or more
IGNORE_THRESHOLD = 0.1  # ignores_object: removing the object drops p(target) by less
TRANSPLANT_RECIPIENTS = 8  # recipients per donor (``m`` above, at most)
TRANSPLANT_BUDGET = 2  # transplant images per probe, about: the per-epoch cost


@dataclass(frozen=True)
class InterventionImages:
    """The altered probes, built once, in one array; see the module doc.

    Attributes:
        altered: ``[2 N + M, H, W, C]``: the removed, kept and transplant images, in
            that order (one array, so each epoch runs it as it is, with no copy).
        donor: int ``[M]`` the donor probe of each transplant image.
        recipient: int ``[M]`` its recipient probe.
        removable: bool ``[N]`` the mask is neither empty nor the whole image
            (reliance defined).
        keepable: bool ``[N]`` the mask is not empty (sufficiency defined).
    """

    altered: np.ndarray
    donor: np.ndarray
    recipient: np.ndarray
    removable: np.ndarray
    keepable: np.ndarray

    @property
    def removed(self) -> np.ndarray:
        """``[N, H, W, C]`` each probe with its mask's region filled in."""
        return self.altered[: len(self.removable)]

    @property
    def kept(self) -> np.ndarray:
        """``[N, H, W, C]`` each probe with everything but its mask's region filled in."""
        return self.altered[len(self.removable) : 2 * len(self.removable)]

    @property
    def transplant(self) -> np.ndarray:
        """``[M, H, W, C]`` recipients with a donor's region pasted on."""
        return self.altered[2 * len(self.removable) :]

    @property
    def passes(self) -> int:
        """Images the model runs on per epoch: ``2 N + M``."""
        return len(self.altered)


def masks_at(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """bool masks ``[N, h, w]`` resampled to ``size`` by nearest neighbour (pixel centres).

    Example:
        >>> masks_at(np.array([[[True, False]]]), (1, 4)).astype(int).tolist()
        [[[1, 1, 0, 0]]]
    """
    m = np.asarray(masks, bool)
    rows = ((np.arange(size[0]) + 0.5) * m.shape[1] / size[0]).astype(int)
    cols = ((np.arange(size[1]) + 0.5) * m.shape[2] / size[1]).astype(int)
    return m[:, rows][:, :, cols]


def transplant_pairs(
    labels: np.ndarray,
    donors: np.ndarray,
    recipients: int = TRANSPLANT_RECIPIENTS,
    budget: int | None = TRANSPLANT_BUDGET,
) -> tuple[np.ndarray, np.ndarray]:
    """``(donor, recipient)`` probe ids by the pairing rule of the module doc.

    Args:
        labels: int ``[N]`` true classes.
        donors: bool ``[N]`` probes whose region may be pasted (a non-empty mask).
        recipients: Recipients per donor, at most.
        budget: About ``budget * N`` transplant images in all (``None``: no limit).

    Example:
        >>> d, r = transplant_pairs(np.array([0, 0, 1]), np.ones(3, bool), 1)
        >>> d.tolist(), r.tolist()
        ([0, 1, 2], [2, 2, 0])
    """
    labels = np.asarray(labels)
    if budget is not None and donors.any():
        recipients = min(recipients, max(1, budget * len(labels) // int(donors.sum())))
    pairs_d: list[int] = []
    pairs_r: list[int] = []
    for c in np.unique(labels[donors]):
        d, r = pairs_in_turn(
            np.flatnonzero(donors & (labels == c)), np.flatnonzero(labels != c), recipients
        )
        pairs_d += d
        pairs_r += r
    return np.array(pairs_d, np.int64), np.array(pairs_r, np.int64)


def pairs_in_turn(
    donors: np.ndarray, eligible: np.ndarray, recipients: int
) -> tuple[list[int], list[int]]:
    """``(donor, recipient)`` ids of one class: the ``k``-th donor pastes onto
    ``eligible[(k*m + j) mod R]`` for ``j < m = min(recipients, R)``, so its donors
    share the ``R`` eligible recipients evenly (none when ``R`` is 0).

    Example:
        >>> pairs_in_turn(np.array([0, 1]), np.array([5, 6, 7]), 2)
        ([0, 0, 1, 1], [5, 6, 7, 5])
    """
    m = min(recipients, len(eligible))
    turns = [(int(d), k * m + j) for k, d in enumerate(donors) for j in range(m)]
    return [d for d, _ in turns], [int(eligible[t % len(eligible)]) for _, t in turns]


def build_interventions(
    images: np.ndarray,
    masks: np.ndarray,
    *,
    labels: np.ndarray | None = None,
    mask_kind: str = "object",
    recipients: int = TRANSPLANT_RECIPIENTS,
    seed: int = 0,
) -> InterventionImages:
    """Makes every altered probe of the module doc, once.

    Args:
        images: ``[N, H, W, C]`` probes in the model's input space.
        masks: bool ``[N, h, w]`` (resampled to ``H x W`` by nearest neighbour).
        labels: int ``[N]`` true classes; the transplant needs them.
        mask_kind: ``"cue"`` also builds the transplant images.
        recipients: Recipients per donor.
        seed: Seeds the imputation's noise (``seed`` removed, ``seed + 1`` kept).

    Example:
        >>> imgs = build_interventions(np.ones((2, 4, 4, 1)), np.eye(4, dtype=bool)[None]
        ...                            .repeat(2, 0), labels=np.array([0, 1]), mask_kind="cue")
        >>> imgs.passes, imgs.recipient.tolist()
        (6, [1, 0])
    """
    x = np.asarray(images)
    n = len(x)
    m = masks_at(masks, x.shape[1:3])
    area = m.reshape(n, -1).sum(1)
    removable, keepable = (area < m[0].size) & (area > 0), area > 0
    donor = recipient = np.zeros(0, np.int64)
    if mask_kind == "cue" and labels is not None:
        donor, recipient = transplant_pairs(np.asarray(labels), keepable, recipients)
    altered = np.empty((2 * n + len(donor), *x.shape[1:]), x.dtype)
    removed, kept, transplant = altered[:n], altered[n : 2 * n], altered[2 * n :]
    removed[:], kept[:] = x, x
    if removable.any():
        removed[removable] = impute(x[removable], m[removable], seed=seed)
    if keepable.any():
        kept[keepable] = impute(x[keepable], ~m[keepable], seed=seed + 1)
    transplant[:] = np.where(m[donor][..., None], x[donor], x[recipient])
    return InterventionImages(altered, donor, recipient, removable, keepable)


def intervention_metrics(
    images: InterventionImages,
    probabilities: np.ndarray,
    altered: np.ndarray,
    targets: np.ndarray,
    labels: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Reliance, sufficiency (and, with transplant images, the causal ``transplant`` and
    its ``transplant_base``) per probe; see the module doc.

    Args:
        images: What :func:`build_interventions` made.
        probabilities: ``[N, C]`` on the probes themselves (the epoch's forward): also
            each recipient's prediction before the paste.
        altered: ``[2 N + M, C]`` on ``images.altered``.
        targets: int ``[N]`` the explained class of each probe this epoch.
        labels: int ``[N]`` true classes (the donors' classes).

    Returns:
        Name to float32 ``[N]``.

    Example:
        >>> imgs = build_interventions(np.ones((1, 2, 2, 1)), np.eye(2, dtype=bool)[None])
        >>> out = intervention_metrics(imgs, np.array([[0.1, 0.9]]),
        ...                            np.array([[0.8, 0.2], [0.4, 0.6]]), np.array([1]))
        >>> round(float(out["reliance"][0]), 2), round(float(out["sufficiency"][0]), 2)
        (0.7, 0.6)
    """
    n = len(probabilities)
    rows, t = np.arange(n), np.asarray(targets, np.int64)
    p = np.asarray(probabilities, np.float64)[rows, t]
    alt = np.asarray(altered, np.float64)
    reliance = np.where(images.removable, p - alt[:n][rows, t], np.nan)
    sufficiency = np.where(images.keepable, alt[n : 2 * n][rows, t], np.nan)
    out = {"reliance": reliance.astype(np.float32), "sufficiency": sufficiency.astype(np.float32)}
    if len(images.donor) and labels is not None:
        wanted = np.asarray(labels)[images.donor]
        before = np.asarray(probabilities, np.float64)[images.recipient]
        already = finite_rows(before) & (before.argmax(1) == wanted)
        eligible = finite_rows(before) & ~already
        moved = alt[2 * n :]
        hit = eligible & finite_rows(moved) & (moved.argmax(1) == wanted)
        share, base = np.full(n, np.nan), np.full(n, np.nan)
        for d in np.unique(images.donor):
            mine = images.donor == d
            base[d] = already[mine].mean()
            if eligible[mine].any():
                share[d] = hit[mine].sum() / eligible[mine].sum()
        out["transplant"] = share.astype(np.float32)
        out["transplant_base"] = base.astype(np.float32)
    return out


def transplant_rates(
    transplant: np.ndarray, labels: np.ndarray, base: np.ndarray | None = None
) -> dict[int, np.ndarray]:
    """Class to its transplant rate over its donors (``[..., N]`` in, ``[...]`` per class).

    With ``base`` (``transplant_base``), each donor's rate is weighted by its eligible
    share ``1 - base``: the class's rate is then exactly the share of its eligible pasted
    images that the paste made ``c`` (the causal rate). Without it, the plain mean over
    donors: ``transplant_rates(transplant_base, labels)`` is the class's base rate. NaN
    at an epoch where no donor of the class has a finite value (or an eligible recipient);
    a class none of whose probes is ever a donor is left out.

    Example:
        >>> t, b = np.array([1.0, 0.0, np.nan]), np.array([0.5, 0.0, np.nan])
        >>> {c: float(r) for c, r in transplant_rates(t, np.array([0, 0, 1]), b).items()}
        {0: 0.3333333333333333}
        >>> {c: float(r) for c, r in transplant_rates(b, np.array([0, 0, 1])).items()}
        {0: 0.25}
    """
    values = np.asarray(transplant, np.float64)
    labels = np.asarray(labels)
    out = {}
    for c in np.unique(labels):
        v = values[..., labels == c]
        finite = np.isfinite(v)
        weight = finite.astype(np.float64)
        if base is not None:
            b = np.asarray(base, np.float64)[..., labels == c]
            weight = np.where(finite & np.isfinite(b), 1.0 - np.nan_to_num(b), 0.0)
            if not (np.isfinite(b) | finite).any():
                continue
        elif not finite.any():
            continue
        total = weight.sum(-1)
        rate = (np.where(finite, v, 0.0) * weight).sum(-1) / np.where(total > 0, total, 1.0)
        out[int(c)] = np.where(total > 0, rate, np.nan)
    return out


def intervention_flags(
    metrics: Mapping[str, np.ndarray],
    mask_kind: str,
    *,
    reliance_threshold: float = RELIANCE_THRESHOLD,
    ignore_threshold: float = IGNORE_THRESHOLD,
) -> dict[str, np.ndarray]:
    """``relies_on_cue`` (cue masks: last reliance >= ``reliance_threshold``) and
    ``ignores_object`` (object masks: last reliance < ``ignore_threshold``), bool ``[N]``.

    Example:
        >>> intervention_flags({"reliance": np.array([[0.9, 0.1]])}, "cue")["relies_on_cue"]
        array([ True, False])
    """
    if "reliance" not in metrics or not len(metrics["reliance"]):
        return {}
    last = np.asarray(metrics["reliance"][-1], np.float64)
    finite = np.isfinite(last)
    safe = np.where(finite, last, 0.0)
    if mask_kind == "cue":
        return {"relies_on_cue": finite & (safe >= reliance_threshold)}
    return {"ignores_object": finite & (safe < ignore_threshold)}
