"""evaluate(): explain the same images with each method and score every map."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cam_callback import _validate, backends
from cam_callback.api import (
    CAMSettings,
    compute_with,
    predict_scores,
    prepare_images,
    probabilities_with,
)
from cam_callback.core.fingerprint import weights_fingerprint
from cam_callback.evaluation.checks import check_methods, check_metrics, check_options
from cam_callback.evaluation.curves import (
    auc,
    blur,
    perturbation_curve,
    rank_pixels,
    unit_maps,
    upsample_maps,
)
from cam_callback.evaluation.faithfulness import deletion_faithfulness
from cam_callback.evaluation.results import METRICS, ROAD_FRACTIONS, ROAD_NOISE, Evaluation, MapFn
from cam_callback.evaluation.road import road
from cam_callback.imputation import NOISE_SCALES, ROAD_NOISE_SCALE
from cam_callback.methods import explained_score
from cam_callback.metrics import FRAGILITY_COPIES, FRAGILITY_NOISE, fragility, perturbed_copies
from cam_callback.record.paths import fingerprint

# Mask-derived metrics: an image with an all-False mask is not measured (NaN), not a miss.
MASKED = ("pointing_game", "energy")


def _mean(values: np.ndarray) -> float:
    """The mean over measured (finite) values; NaN when none was measured."""
    kept = values[np.isfinite(values)]
    return float(kept.mean()) if len(kept) else float("nan")


def evaluate(
    model: Any,
    images: Any,
    labels: Any = None,
    *,
    methods: Sequence[str | tuple[str, MapFn]] = ("gradcam", "random"),
    metrics: Sequence[str] = METRICS,
    probe_masks: Any = None,
    layer: Any = None,
    score: str = "logit",
    output: int | str | None = None,
    steps: int = 20,
    batch_size: int = 32,
    seed: int = 0,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    road_noise_scale: str = ROAD_NOISE_SCALE,
    head: str = "auto",
    grid: tuple[int, int] | None = None,
    prefix_tokens: int | None = None,
) -> Evaluation:
    """Explains ``images`` with each method and scores how faithful each map is.

    Args:
        model: A Keras classifier.
        images: ``[N, H, W, C]`` in the model's input space.
        labels: Class ids ``[N]`` to explain; ``None`` explains the predicted class.
        methods: Names known to :func:`cam_callback.compute_cams`, the control
            ``"random"`` (seeded uniform maps), or ``(name, fn)`` pairs where
            ``fn(model, images, targets)`` returns maps ``[N, h, w]``.
        metrics: Which of :data:`METRICS` to compute (``pointing_game`` and
            ``energy`` need ``probe_masks``).
        probe_masks: bool ``[N, H, W]`` object masks, or ``None``. An image whose mask
            is all False is not measured: its ``pointing_game`` and ``energy`` are NaN
            and left out of the means.
        layer: The explained layer, as in ``compute_cams``.
        score: ``"logit"`` or ``"probability"``, as in ``compute_cams``.
        output: The head of a multi-output model.
        steps: Steps of the deletion and insertion curves (``steps + 1`` points).
        batch_size: Images per forward pass.
        seed: Seeds the ``"random"`` control, ROAD's noise and the tracker's
            random deletion.
        method_options: Options per method name, each passed as
            ``compute_cams(method_options=...)``: ``{"scorecam": {"max_channels": 64}}``.
        road_noise_scale: ROAD's imputation noise, ``"range"`` (0.01 of each image's
            value range, the default) or ``"absolute"`` (N(0, 0.01) as ROAD's own code,
            for standardised inputs); see :func:`cam_callback.imputation.impute`.
        head, grid, prefix_tokens: How the output is read and a token layer tiled, as in
            ``compute_cams``.

    Returns:
        An :class:`Evaluation`; ``print`` it for the table. Its ``fingerprints`` say
        which weights and images were scored, so that a table saved beside a run
        (``table.save(log_dir)``) is shown on the review page with the recorded epoch
        whose weights it scored, or as another model's.

    Raises:
        TypeError: An argument of the wrong type.
        ValueError: Unknown methods or metrics, masks without the images' size, ...

    Example:
        >>> table = evaluate(model, x[:16], methods=("gradcam", "random"))  # doctest: +SKIP
        >>> table.ranking("deletion_auc")  # doctest: +SKIP
        ['gradcam', 'random']
    """
    cam = CAMSettings(
        layer=layer, score=score, output=output, head=head, grid=grid,
        prefix_tokens=prefix_tokens, batch_size=batch_size,
    )  # fmt: skip
    x = prepare_images(model, images)
    n, h, w = x.shape[:3]
    metrics = check_metrics(metrics, probe_masks is not None)
    if road_noise_scale not in NOISE_SCALES:
        raise ValueError(
            f"`road_noise_scale` must be one of {NOISE_SCALES}. "
            f"Received: road_noise_scale={road_noise_scale!r}"
        )
    entries = check_methods(methods)
    options = check_options(method_options, entries)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"`steps` must be an int >= 2. Received: steps={steps!r}")
    masks = None
    if probe_masks is not None:
        masks = np.asarray(probe_masks)
        if masks.shape != (n, h, w):
            raise ValueError(
                f"`probe_masks` must be bool [N, H, W] = {(n, h, w)}. "
                f"Received: probe_masks.shape={masks.shape}"
            )
        masks = masks.astype(bool)
        measured = masks.reshape(n, -1).any(1)  # an all-False mask: nothing to point at

    base, _, used = predict_scores(
        model, x, score=cam.score, output=cam.output, batch_size=cam.batch_size, head=cam.head
    )
    given = None
    if labels is None:
        targets = base.argmax(1).astype(np.int64)
    else:
        targets, _ = _validate.class_ids(labels, n, "labels")
        targets = given = np.asarray(targets, np.int64)
        if targets.max() >= base.shape[1]:
            raise ValueError(
                f"`labels` holds class {int(targets.max())} but the model has "
                f"{base.shape[1]} classes. Received: labels={labels!r}"
            )
    y = base[np.arange(n), targets].astype(np.float64)
    # What was scored, as a run's record hashes them: its per-epoch weights and its probes.
    # Without labels the images alone are hashed ("images"): a record's probes fingerprint
    # covers its labels too, so such a table can be neither matched nor told apart.
    scored = {"weights": weights_fingerprint(model)}
    key = "probes" if given is not None else "images"
    scored[key] = fingerprint(_validate.image_batch(images, "images"), given)

    def probs(batch: np.ndarray) -> np.ndarray:
        return probabilities_with(model, batch, cam).astype(np.float64)

    def explain(
        name: str, fn: MapFn | None, xs: np.ndarray, ts: np.ndarray, draw: int = 0
    ) -> np.ndarray:
        if fn is not None:
            return np.asarray(fn(model, xs, ts), np.float64)
        if name == "random":  # the copies' control maps are a fresh draw (``draw``)
            return np.random.default_rng(seed + draw).random((len(xs), h, w))
        res = compute_with(model, xs, cam.replace(method=name, method_options=options.get(name)),
                           target=ts)  # fmt: skip
        return res.heatmaps.astype(np.float64)

    blurred = blur(x)
    if "fragility" in metrics:  # the tracker's copies and formula (metrics.fragility)
        copies = perturbed_copies(x, FRAGILITY_COPIES, FRAGILITY_NOISE, seed)
        copy_probs = probs(copies)
    scores: dict[str, dict[str, float]] = {}
    per_image: dict[str, dict[str, np.ndarray]] = {}
    explains: dict[str, str] = {}
    # Warm-up input: one image, or one full batch where programs are per batch shape (JAX).
    warm = min(n, cam.batch_size) if backends.get().PAD_BATCH else 1
    for name, fn in entries:
        if "seconds_per_image" in metrics and name != "random":
            explain(name, fn, x[:warm], targets[:warm])  # traces and compiles, not timed
        start = time.perf_counter()
        maps = explain(name, fn, x, targets)
        seconds = time.perf_counter() - start
        if fn is None:
            explains[name] = "none" if name == "random" else explained_score(name, used)
        if maps.ndim != 3 or len(maps) != n:
            raise ValueError(
                f"method {name!r} returned maps of shape {maps.shape}; expected [N, h, w] with "
                f"N={n}. Received: methods entry {name!r}"
            )
        up = upsample_maps(maps, h, w)
        per: dict[str, np.ndarray] = {}
        if "deletion_auc" in metrics or "insertion_auc" in metrics:
            order = rank_pixels(up)
            if "deletion_auc" in metrics:
                curve = perturbation_curve(x, blurred, order, targets, probs, steps, "deletion")
                per["deletion_auc"] = auc(curve)
            if "insertion_auc" in metrics:
                curve = perturbation_curve(x, blurred, order, targets, probs, steps, "insertion")
                per["insertion_auc"] = auc(curve)
        if "average_drop" in metrics or "increase_in_confidence" in metrics:
            o = probs((x * unit_maps(up)[..., None]).astype(x.dtype))[np.arange(n), targets]
            if "average_drop" in metrics:
                per["average_drop"] = 100.0 * np.maximum(0.0, y - o) / np.maximum(y, 1e-12)
            if "increase_in_confidence" in metrics:
                per["increase_in_confidence"] = 100.0 * (o > y)
        if "road" in metrics:
            per["road"] = road(x, up, targets, probs, seed=seed, noise_scale=road_noise_scale)
        if "faithfulness" in metrics:
            per["faithfulness"] = deletion_faithfulness(
                model,
                x,
                maps.astype(np.float32),
                targets,
                output=cam.output,
                batch_size=cam.batch_size,
                seed=seed,
                head=cam.head,
            ).astype(np.float64)
        if "fragility" in metrics:
            copy_maps = explain(name, fn, copies, np.tile(targets, FRAGILITY_COPIES), draw=1)
            per["fragility"] = fragility(maps, base, copy_maps, copy_probs).astype(np.float64)
        if masks is not None and "pointing_game" in metrics:
            peak = up.reshape(n, -1).argmax(1)
            hit = masks.reshape(n, -1)[np.arange(n), peak].astype(np.float64)
            per["pointing_game"] = np.where(measured, hit, np.nan)
        if masks is not None and "energy" in metrics:
            pos = np.maximum(up, 0.0)
            total = pos.reshape(n, -1).sum(1)
            inside = (pos * masks).reshape(n, -1).sum(1)
            share = np.where(total > 0, inside / np.where(total > 0, total, 1.0), 0.0)
            per["energy"] = np.where(measured, share, np.nan)
        row = {k: _mean(v) if k in MASKED else float(np.mean(v)) for k, v in per.items()}
        if "fragility" in per:  # NaN: every copy changed the prediction, or the map is empty
            kept = per["fragility"][np.isfinite(per["fragility"])]
            row["fragility"] = float(kept.mean()) if len(kept) else float("nan")
        if "seconds_per_image" in metrics:
            row["seconds_per_image"] = seconds / n
        scores[name] = {k: row[k] for k in METRICS if k in row}
        per_image[name] = per
    settings = {
        "n_images": n,
        "steps": steps,
        "baseline": "box blur (tracker's)",
        "road_fractions": list(ROAD_FRACTIONS),
        "road_imputation": (
            f"noisy linear (8 neighbours, exact sparse solve, noise {ROAD_NOISE}"
            f"{' of each image range' if road_noise_scale == 'range' else ', absolute'})"
        ),
        "targets": "labels" if labels is not None else "predicted",
        "score": used,
        "head": cam.head,
        "grid": None if cam.grid is None else list(cam.grid),
        "prefix_tokens": cam.prefix_tokens,
        "explains": explains,
        "method_options": {k: dict(v) for k, v in options.items()},
        "seed": seed,
        "fragility": f"{FRAGILITY_COPIES} random-sign copies, noise {FRAGILITY_NOISE} of the range",
    }
    return Evaluation(scores, per_image, settings, scored)
