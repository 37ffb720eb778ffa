"""The tracker's altered probes: built once at start-up, run through the model every epoch.

Interventions (:mod:`cam_callback.metrics.interventions`) and fragility
(:mod:`cam_callback.metrics.fragility`) need the model, so they run on the training
thread; their images depend only on the probes and masks, so they are made here once,
when a ``fit``'s pipeline opens, and each epoch only calls the model on them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cam_callback import _validate, metrics
from cam_callback.tracker.pipeline.options import check_fields, is_real, is_whole

ProbsFn = Callable[[np.ndarray], np.ndarray]
"""``images [M, H, W, C] -> probabilities [M, C]``: one batched forward, no gradient."""
MapsFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""``(images, targets) -> (heatmaps, probabilities)``: the tracker's own maps."""


@dataclass(frozen=True)
class FragilityOptions:
    """How fragility is measured (see :mod:`cam_callback.metrics.fragility`).

    Attributes:
        copies: Perturbed copies per probe.
        noise: Random-sign noise, as a share of each image's value range.
        seed: Seeds the signs.
        threshold: ``fragile`` above this.
    """

    copies: int = metrics.FRAGILITY_COPIES
    noise: float = metrics.FRAGILITY_NOISE
    seed: int = 0
    threshold: float = metrics.FRAGILITY_THRESHOLD


def fragility_options(value: Any) -> FragilityOptions | None:
    """The ``fragility`` argument: ``False``/``None`` (off), ``True`` (defaults) or a dict of
    :class:`FragilityOptions` fields.

    Raises:
        TypeError: Not a bool, ``None`` or a mapping.
        ValueError: An unknown key or a value out of range.

    Example:
        >>> fragility_options({"copies": 2}).copies
        2
    """
    opts = _validate.options(value, FragilityOptions, "fragility")
    if opts is None:
        return None
    checks = (
        ("copies", is_whole(opts.copies) and opts.copies >= 1, "an int >= 1"),
        ("noise", is_real(opts.noise) and 0 < opts.noise < 1, "in (0, 1)"),
        ("threshold", is_real(opts.threshold) and 0 <= opts.threshold <= 1, "in [0, 1]"),
        ("seed", is_whole(opts.seed), "an int"),
    )
    check_fields("fragility", opts, checks)
    # Plain Python numbers: they go into record.json (numpy ints do not serialise).
    return FragilityOptions(
        int(opts.copies), float(opts.noise), int(opts.seed), float(opts.threshold)
    )


class ProbeInterventions:
    """The altered probes of one ``fit``, and the per-epoch numbers made from them.

    Args:
        images: ``[N, H, W, C]`` probes in the model's input space.
        masks: bool ``[N, h, w]`` probe masks, or ``None`` (no interventions).
        labels: int ``[N]`` true classes, or ``None`` (no transplant).
        mask_kind: ``"cue"`` adds the transplant images.
        fragility: Fragility options, or ``None`` (off).

    Per recorded epoch it costs one forward over ``passes`` images (``2 N + M``,
    see :mod:`cam_callback.metrics.interventions`) and, with fragility, the tracker's
    maps of ``copies * N`` images (their forward and backward).

    Example:
        >>> extra = ProbeInterventions(x, masks, y, "cue").measure(  # doctest: +SKIP
        ...     probs_fn, probabilities, targets)
    """

    def __init__(
        self,
        images: np.ndarray,
        masks: np.ndarray | None,
        labels: np.ndarray | None,
        mask_kind: str,
        fragility: FragilityOptions | None = None,
    ) -> None:
        self.labels = labels
        self.images = (
            None
            if masks is None
            else metrics.build_interventions(images, masks, labels=labels, mask_kind=mask_kind)
        )
        self.fragility = fragility
        self.copies = (
            None
            if fragility is None
            else metrics.perturbed_copies(images, fragility.copies, fragility.noise, fragility.seed)
        )

    @property
    def passes(self) -> int:
        """Images run forward per epoch for the interventions (``2 N + M``)."""
        return 0 if self.images is None else self.images.passes

    def measure(
        self,
        probs: ProbsFn,
        maps: MapsFn,
        heatmaps: np.ndarray,
        probabilities: np.ndarray,
        targets: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """This epoch's ``reliance``, ``sufficiency``, ``transplant`` (causal), ``transplant_base``
        and ``fragility``.

        Args:
            probs: Runs the model forward (see :data:`ProbsFn`).
            maps: The tracker's maps (see :data:`MapsFn`), for fragility.
            heatmaps: ``[N, h, w]`` this epoch's maps of the probes.
            probabilities: ``[N, C]`` this epoch's probabilities of the probes.
            targets: int ``[N]`` the explained classes.

        Returns:
            Name to float32 ``[N]``; empty when there is nothing to measure.
        """
        out: dict[str, np.ndarray] = {}
        if self.images is not None:
            altered = probs(self.images.altered)
            out.update(
                metrics.intervention_metrics(
                    self.images, probabilities, altered, targets, self.labels
                )
            )
        if self.copies is not None and self.fragility is not None:
            reps = np.tile(np.asarray(targets), self.fragility.copies)
            copy_maps, copy_probs = maps(self.copies, reps)
            out["fragility"] = metrics.fragility(heatmaps, probabilities, copy_maps, copy_probs)
        return out
