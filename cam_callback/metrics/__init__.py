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
- A probe whose mask is empty (all False: how masks are given for some probes
  only) is **not measured**: NaN for ``mask_focus``, ``mask_lift``, ``reliance``,
  ``sufficiency`` and ``transplant``, no mask flag, and left out of every mean.
- ``mask_focus`` (with masks) = ``sum(up(m) * mask) / sum(up(m))``, the map
  upsampled bilinearly to the mask's size: the share of attention inside the mask.
- ``mask_lift`` (with masks) = ``mask_focus / mean(mask)``: attention inside the
  mask relative to chance (1 = no more than the mask's share of the image).
- ``faithfulness`` (opt-in, computed by the tracker with the model) = drop of the
  target's probability when the most-attended 20% is blurred, minus the drop
  when a random 20% is blurred.

- ``reliance`` (with masks) = ``p(x) - p(x with the mask's region removed)`` and
  ``sufficiency`` = ``p(x with all but the mask's region removed)``, ``p`` the
  explained target's probability as the head gives it; "removed" = filled from the
  surroundings by ROAD's noisy linear imputation. ``transplant`` (cue masks, with
  labels, per donor probe), causal: of the other-class probes not yet predicted as the
  donor's class, the share predicted as it once the donor's masked pixels are pasted
  on; ``transplant_base``: the share that already were. Per class,
  :func:`transplant_rates`.
  See :mod:`~cam_callback.metrics.interventions` for the pairing rule and the passes.
- ``fragility`` (opt-in) = ``1 - mean_k |top10%(m) & top10%(m_k)| / |top10%(m)|``
  over slightly perturbed copies that keep the prediction (Ghorbani et al. 2019);
  see :mod:`~cam_callback.metrics.fragility`.

A map whose probabilities are not finite (a diverged model) could not be
computed: :func:`mark_not_computed` stores it as NaN, not as the all-zero map
the normalisation makes of NaN, and every map metric of a NaN map is NaN.

Flags per probe over the whole record (see :func:`flags`): ``flipped``,
``left_mask``, ``on_cue``, ``low_confidence``, ``unstable``, ``misclassified``,
``non_finite``, ``empty_map`` (zero everywhere at the last epoch; see ``EMPTY_MAP_PEAK``),
``relies_on_cue`` (cue masks: last reliance >= :data:`RELIANCE_THRESHOLD`),
``ignores_object`` (object masks: last reliance < :data:`IGNORE_THRESHOLD`) and
``fragile`` (last fragility > :data:`FRAGILITY_THRESHOLD`).

- ``evidence_transplant`` (no mask needed; on by default) = the share of a probe's
  recipients (other-class probes not predicted as its class) that its most-attended 10%
  of the image, pasted on, makes its class; ``evidence_control`` the same for a region of
  that shape from elsewhere; per class :func:`class_rates`; flag ``portable_evidence``.
  See :mod:`~cam_callback.metrics.evidence`.
- ``group_accuracy`` (cue masks, with labels) = the accuracy, among the probes, of the
  probe's group: its class crossed with whether its cue mask is empty; the worst group's
  is the figure Waterbirds results are judged by. See :mod:`~cam_callback.metrics.groups`.

Modules: ``epoch`` (the per-epoch numbers), ``interventions`` and ``fragility`` (the
numbers that need altered probes run through the model), ``evidence`` (the evidence
transplant) and ``summary`` (TensorBoard scalars and the flags). Every name is re-exported here.
"""

from cam_callback.metrics.epoch import (
    TOP_SHARE,
    concentration,
    cosine_drift,
    epoch_metrics,
    finite_rows,
    mark_not_computed,
    mask_focus,
)
from cam_callback.metrics.evidence import (
    EVIDENCE_BUDGET,
    EVIDENCE_MAX_PASTED,
    EVIDENCE_RECIPIENTS,
    EVIDENCE_SHARE,
    PORTABLE_THRESHOLD,
    class_rates,
    control_regions,
    evidence_pairs,
    evidence_regions,
    evidence_scalars,
    portable_flag,
)
from cam_callback.metrics.fragility import (
    FRAGILITY_COPIES,
    FRAGILITY_NOISE,
    FRAGILITY_THRESHOLD,
    fragile_flag,
    fragility,
    perturbed_copies,
    top_cells,
)
from cam_callback.metrics.groups import (
    cue_present,
    group_accuracies,
    group_ids,
    group_metrics,
    group_name,
    group_scalars,
    worst_group_accuracy,
)
from cam_callback.metrics.interventions import (
    IGNORE_THRESHOLD,
    RELIANCE_THRESHOLD,
    TRANSPLANT_BUDGET,
    TRANSPLANT_RECIPIENTS,
    InterventionImages,
    build_interventions,
    intervention_flags,
    intervention_metrics,
    masks_at,
    transplant_pairs,
    transplant_rates,
)
from cam_callback.metrics.summary import (
    EMPTY_MAP_PEAK,
    FLAG_NAMES,
    class_group_keys,
    empty_map_notice,
    flags,
    summary_scalars,
)

__all__ = [
    "EVIDENCE_BUDGET",
    "EVIDENCE_MAX_PASTED",
    "EVIDENCE_RECIPIENTS",
    "EVIDENCE_SHARE",
    "PORTABLE_THRESHOLD",
    "class_rates",
    "control_regions",
    "evidence_pairs",
    "evidence_regions",
    "evidence_scalars",
    "portable_flag",
    "EMPTY_MAP_PEAK",
    "FLAG_NAMES",
    "FRAGILITY_COPIES",
    "FRAGILITY_NOISE",
    "FRAGILITY_THRESHOLD",
    "IGNORE_THRESHOLD",
    "RELIANCE_THRESHOLD",
    "TRANSPLANT_BUDGET",
    "TRANSPLANT_RECIPIENTS",
    "InterventionImages",
    "build_interventions",
    "fragile_flag",
    "fragility",
    "intervention_flags",
    "intervention_metrics",
    "masks_at",
    "perturbed_copies",
    "top_cells",
    "transplant_pairs",
    "transplant_rates",
    "cue_present",
    "group_accuracies",
    "group_ids",
    "group_metrics",
    "group_name",
    "group_scalars",
    "worst_group_accuracy",
    "TOP_SHARE",
    "class_group_keys",
    "concentration",
    "cosine_drift",
    "empty_map_notice",
    "epoch_metrics",
    "finite_rows",
    "flags",
    "mark_not_computed",
    "mask_focus",
    "summary_scalars",
]
