"""The model-randomisation sanity check (Adebayo et al., 2018)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from cam_callback.api import CAMSettings, compute_with, inspect_with, predict_scores, prepare_images
from cam_callback.evaluation.checks import check_methods
from cam_callback.evaluation.curves import upsample_maps
from cam_callback.evaluation.ranks import spearman
from cam_callback.evaluation.results import MapFn


@dataclass(frozen=True)
class RandomisationCheck:
    """What :func:`model_randomisation_test` found for one method.

    Attributes:
        method: The method's name.
        similarity: Mean Spearman rank correlation between each image's map on
            the trained model and on the re-initialised one.
        flagged: ``similarity >= threshold``: the map barely depends on what the
            model learned, so it cannot explain it (Adebayo et al., 2018).
    """

    method: str
    similarity: float
    flagged: bool


def model_randomisation_test(
    model: Any,
    images: Any,
    *,
    methods: Sequence[str | tuple[str, MapFn]] = ("gradcam",),
    threshold: float = 0.5,
    layer: Any = None,
    score: str = "logit",
    output: int | str | None = None,
    batch_size: int = 32,
    seed: int = 0,
    head: str = "auto",
    grid: tuple[int, int] | None = None,
    prefix_tokens: int | None = None,
) -> list[RandomisationCheck]:
    """The model-randomisation sanity check (Adebayo et al., 2018).

    Re-initialises every weight (``keras.models.clone_model``, its initialisers
    seeded by ``seed``) and compares each method's maps on the trained and the
    random model by Spearman rank correlation with average ranks for ties (maps
    upsampled to the image). A method whose maps stay alike (``similarity >=
    threshold``) is flagged: it shows the input, not the model. The maps explain
    the trained model's predicted class (of ``output``) in both, for ``score``.
    ``head``, ``grid`` and ``prefix_tokens`` read the output and tile a token layer as in
    ``compute_cams``. The caller's ``random`` and ``numpy.random`` states are left as they were.

    Example:
        >>> checks = model_randomisation_test(model, x[:8], methods=("gradcam",))  # doctest: +SKIP
        >>> checks[0].flagged  # doctest: +SKIP
        False
    """
    cam = CAMSettings(
        layer=layer, score=score, output=output, batch_size=batch_size, head=head, grid=grid,
        prefix_tokens=prefix_tokens,
    )  # fmt: skip
    x = prepare_images(model, images)
    n, h, w = x.shape[:3]
    if not isinstance(threshold, (int, float)) or not -1 <= threshold <= 1:
        raise ValueError(f"`threshold` must be in [-1, 1]. Received: threshold={threshold!r}")
    entries = check_methods(methods)
    probs = predict_scores(
        model, x, score=cam.score, output=cam.output, batch_size=cam.batch_size, head=cam.head
    )
    targets = probs[0].argmax(1)
    path = layer if layer is not None else inspect_with(model, x, cam).layer
    # Keras draws an unseeded initialiser's seed from Python's `random` when the layer is
    # made: seed it for the clone only, then give the caller's state back.
    state = random.getstate()
    random.seed(seed)
    try:
        randomised = keras.models.clone_model(model)
        randomised.build(model.inputs[0].shape if getattr(model, "inputs", None) else x.shape)
    finally:
        random.setstate(state)

    def maps_of(m: Any, name: str, fn: MapFn | None) -> np.ndarray:
        if fn is not None:
            return np.asarray(fn(m, x, targets), np.float64)
        if name == "random":
            return np.random.default_rng(seed).random((n, h, w))
        lay = None if name == "saliency" else _local_layer(m, path)
        return compute_with(m, x, cam.replace(layer=lay, method=name), target=targets).heatmaps

    out = []
    for name, fn in entries:
        a = upsample_maps(maps_of(model, name, fn), h, w)
        b = upsample_maps(maps_of(randomised, name, fn), h, w)
        sim = float(np.mean(spearman(a, b)))
        out.append(RandomisationCheck(name, sim, bool(sim >= threshold and not math.isnan(sim))))
    return out


def _local_layer(model: Any, path: Any) -> Any:
    """A layer path as a string works on a clone too (clones keep layer names)."""
    return path if isinstance(path, str) or path is None else path.name
