"""Which map to trust: faithfulness and localisation scores for several methods at once.

:func:`evaluate` explains the same images with each method and scores every map
by what the model does when the map's pixels are removed or kept:

- ``deletion_auc`` (RISE, Petsiuk et al. 2018; lower is better): the target's
  probability as the top-ranked pixels are replaced by the baseline in
  ``steps`` equal steps from 0% to 100%, its area under the curve (trapezoid,
  x in [0, 1]).
- ``insertion_auc`` (RISE; higher is better): the same curve starting from the
  baseline image and revealing the top-ranked pixels.
- ``average_drop`` and ``increase_in_confidence`` (Grad-CAM++, Chattopadhay et
  al. 2018): with ``Y`` the target's probability on the image and ``O`` on the
  image multiplied by its map (upsampled, in [0, 1]): ``100 * mean(max(0, Y - O) / Y)``
  (lower is better) and ``100 * mean(O > Y)`` (higher is better).
- ``road`` (Remove And Debias, Rong et al. 2022; lower is better): the mean
  target probability after the most-relevant 10%, 20%, ..., 90% of pixels are
  removed and filled by *noisy linear imputation*: each removed pixel is the
  weighted mean of its 8 neighbours (1/6 edge-adjacent, 1/12 diagonal, the
  paper's weights; neighbours outside the image left out), solved exactly as one
  sparse linear system per image (SciPy's SuperLU, as the authors' code), plus
  seeded Gaussian noise of standard deviation 0.01 times the image's value
  range. The fill leaks no shape of the mask, which a constant baseline does.
- ``faithfulness`` (higher is better): exactly the tracker's per-epoch number,
  :func:`~cam_callback.evaluation.faithfulness.deletion_faithfulness` (blur the top 20% minus blur
  a random 20%), so ``evaluate`` and ``CAMTracker(faithfulness=True)`` agree.
- ``pointing_game`` and ``energy`` (only with ``probe_masks``; higher is
  better): 1 when the map's maximum (upsampled) falls inside the mask, and the
  share of the map's sum inside the mask (Score-CAM's energy-based pointing game).
- ``fragility`` (Ghorbani et al. 2019; lower is better): exactly the tracker's
  per-epoch number (:func:`cam_callback.metrics.fragility`): ``1 -`` the mean share of
  the map's top 10% of cells that stays in the top 10% on 3 seeded random-sign
  copies (noise 0.02 of the image's range) that keep the prediction. A fragile map
  moves under noise the model ignores: it says more about the noise than the model.
- ``seconds_per_image``: wall time of the maps alone, after one warm-up call on
  the first image (one full batch on JAX, which compiles per batch shape), so
  the first trace and compile are not counted.

The baseline of deletion and insertion is the image blurred by the tracker's
box blur (an odd box of a quarter of the shorter side, mirrored edges): a
black baseline would itself be out of distribution. Pixels are ranked by the
map upsampled bilinearly to the image; ties keep raster order. Perturbed
copies are made one step (one fraction) of all images at a time.

Example:
    >>> table = evaluate(model, x_val[:32], y_val[:32],
    ...                  methods=("gradcam", "gradcam++", "random"))  # doctest: +SKIP
    >>> print(table)  # doctest: +SKIP
    method     deletion_auc  insertion_auc ...
    gradcam           0.121          0.642 ...

Layout: :mod:`.results` (the table, numpy only), :mod:`.curves` (deletion,
insertion, AUC), :mod:`.road`, :mod:`.ranks`, :mod:`.sanity` (model
randomisation), :mod:`.faithfulness`, :mod:`.checks` and :mod:`.scoring`
(``evaluate``: a submodule named after the function would shadow its lazy export
once imported).
The Keras-bound ones load on first use, so reading a saved table (the CLI) never
imports TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

from cam_callback.evaluation.curves import (
    auc,
    blur,
    perturbation_curve,
    rank_pixels,
    unit_maps,
    upsample_maps,
)
from cam_callback.evaluation.ranks import average_ranks, spearman
from cam_callback.evaluation.results import (
    CONTROLS,
    DIRECTION,
    FILE_NAME,
    METRICS,
    ROAD_FRACTIONS,
    ROAD_NEIGHBOURS,
    ROAD_NOISE,
    Evaluation,
    MapFn,
    load_evaluation,
)
from cam_callback.evaluation.road import impute, road

_LAZY = {
    "evaluate": "cam_callback.evaluation.scoring",
    "model_randomisation_test": "cam_callback.evaluation.sanity",
    "RandomisationCheck": "cam_callback.evaluation.sanity",
    "deletion_faithfulness": "cam_callback.evaluation.faithfulness",
}

__all__ = [
    "CONTROLS", "DIRECTION", "FILE_NAME", "METRICS", "ROAD_FRACTIONS", "ROAD_NEIGHBOURS",
    "ROAD_NOISE", "Evaluation", "MapFn", "RandomisationCheck", "auc", "average_ranks", "blur",
    "deletion_faithfulness", "evaluate", "impute", "load_evaluation",
    "model_randomisation_test", "perturbation_curve", "rank_pixels", "road", "spearman",
    "unit_maps", "upsample_maps",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cam_callback.evaluation' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
