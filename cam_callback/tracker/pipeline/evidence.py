"""The tracker's evidence transplant: each epoch, paste every probe's most-attended region
onto probes of other classes and run them forward (:mod:`cam_callback.metrics.evidence`).

Unlike the mask interventions (:mod:`~cam_callback.tracker.pipeline.interventions`), nothing can
be built once: the regions move with the maps and the recipients with the predictions,
so the pasted images are made each epoch, in chunks, and only run forward through the
same :data:`~cam_callback.tracker.pipeline.interventions.ProbsFn` the interventions use.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cam_callback import _validate
from cam_callback.metrics import evidence as E
from cam_callback.metrics import masks_at
from cam_callback.tracker.pipeline.interventions import ProbsFn
from cam_callback.tracker.pipeline.options import check_fields, is_real, is_whole

CHUNK = 128  # pasted images built and run at once: memory stays at CHUNK images


@dataclass(frozen=True)
class EvidenceOptions:
    """How the evidence transplant is measured (see :mod:`cam_callback.metrics.evidence`).

    Attributes:
        share: The region's share of the image's area.
        recipients: Recipients per donor, at most.
        budget: About ``budget * N`` pasted images (and as many controls) per epoch.
        threshold: ``portable_evidence`` when transplant minus control is above this.
        seed: Seeds the control regions' places.
    """

    share: float = E.EVIDENCE_SHARE
    recipients: int = E.EVIDENCE_RECIPIENTS
    budget: int = E.EVIDENCE_BUDGET
    threshold: float = E.PORTABLE_THRESHOLD
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        """What ``record.json`` keeps under ``evidence``."""
        rule = "top share of the map at image size; see cam_callback.metrics.evidence"
        return {**asdict(self), "max_pasted": E.EVIDENCE_MAX_PASTED, "rule": rule}


def evidence_options(value: Any) -> EvidenceOptions | None:
    """The ``evidence`` argument: ``False``/``None`` (off), ``True`` (defaults) or a dict of
    :class:`EvidenceOptions` fields.

    Raises:
        TypeError: Not a bool, ``None`` or a mapping.
        ValueError: An unknown key or a value out of range.

    Example:
        >>> evidence_options({"share": 0.2}).share
        0.2
    """
    o = _validate.options(value, EvidenceOptions, "evidence")
    if o is None:
        return None

    checks = (
        ("share", is_real(o.share) and 0 < o.share <= 1, "in (0, 1]"),
        ("recipients", is_whole(o.recipients) and o.recipients >= 1, "an int >= 1"),
        ("budget", is_whole(o.budget) and o.budget >= 1, "an int >= 1"),
        ("threshold", is_real(o.threshold) and 0 <= o.threshold <= 1, "in [0, 1]"),
        ("seed", is_whole(o.seed), "an int"),
    )
    check_fields("evidence", o, checks)
    return EvidenceOptions(
        float(o.share), int(o.recipients), int(o.budget), float(o.threshold), int(o.seed)
    )


class EvidenceTransplant:
    """The evidence transplant of one ``fit``: per epoch, pasted probes run forward.

    Args:
        images: ``[N, H, W, C]`` probes in the model's input space.
        labels: int ``[N]`` true classes, or ``None`` (the targets stand in).
        masks: bool ``[N, h, w]`` probe masks, or ``None`` (no ``evidence_on_mask``).
        options: How to measure.

    Example:
        >>> stage = EvidenceTransplant(x, y, None, EvidenceOptions())  # doctest: +SKIP
        >>> stage.measure(probs_fn, heatmaps, probabilities, targets)  # doctest: +SKIP
        {'evidence_transplant': array([...]), 'evidence_control': ..., ...}
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray | None,
        masks: np.ndarray | None,
        options: EvidenceOptions,
    ) -> None:
        self.images = np.asarray(images)
        self.labels = None if labels is None else np.asarray(labels)
        self.size = (int(self.images.shape[1]), int(self.images.shape[2]))
        self.masks = None if masks is None else masks_at(masks, self.size)
        self.options = options
        self.passes = 0  # images run forward at the last epoch

    def measure(
        self,
        probs: ProbsFn,
        heatmaps: np.ndarray,
        probabilities: np.ndarray,
        targets: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """This epoch's ``evidence_transplant``, ``evidence_control``,
        ``evidence_recipients`` (and ``evidence_on_mask``), float32 ``[N]``.

        Args:
            probs: Runs the model forward.
            heatmaps: ``[N, h, w]`` this epoch's maps.
            probabilities: ``[N, C]`` this epoch's probabilities of the probes.
            targets: int ``[N]`` the class each map explains.
        """
        o = self.options
        n = len(self.images)
        regions = E.evidence_regions(heatmaps, self.size, o.share)
        p = np.asarray(probabilities, np.float64)
        predicted = np.where(np.isfinite(p).all(1), p.argmax(1), -1)
        targets = np.asarray(targets, np.int64)
        others = targets if self.labels is None else self.labels
        finite = np.all(np.isfinite(np.asarray(heatmaps, np.float64)).reshape(n, -1), axis=1)
        filled = np.any(regions.reshape(n, -1), axis=1)
        donor, recipient = E.evidence_pairs(
            targets, finite, others, predicted, o.recipients, o.budget, pasting=filled
        )
        live = np.flatnonzero(filled[donor])  # an empty region pastes nothing: no hit, no pass
        d, r = donor[live], recipient[live]
        controls = E.control_regions(regions, o.seed)
        hits = []
        for where in (regions, controls):
            moved = [
                probs(E.paste(self.images, where, d[s : s + CHUNK], r[s : s + CHUNK]))
                for s in range(0, len(d), CHUNK)
            ]
            out = np.asarray(np.concatenate(moved) if moved else np.zeros((0, p.shape[1])))
            hit = np.zeros(len(donor), bool)
            hit[live] = (out.argmax(1) == targets[d]) & np.isfinite(out).all(1)
            hits.append(hit)
        self.passes = 2 * len(live)
        rate, count = E.donor_rates(donor, hits[0], n)
        control, _ = E.donor_rates(donor, hits[1], n)
        result = {
            "evidence_transplant": rate,
            "evidence_control": control,
            "evidence_recipients": count,
        }
        if self.masks is not None:
            result["evidence_on_mask"] = E.on_mask_share(regions, self.masks)
        return result
