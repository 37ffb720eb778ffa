"""What one ``fit`` of ``CAMTracker`` runs on: the chief check, its pipeline, an epoch's maps.

:class:`~cam_callback.tracker.callback.CAMTracker` decides *when* (which hook, which epoch);
this module holds *how*: whether this process writes the record, the
:class:`~cam_callback.tracker.pipeline.EpochPipeline` a fit opens over the record, and the maps
of one epoch, computed on the training thread because they need the model.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict
from typing import Any

import keras
import numpy as np

from cam_callback import api, backends, metrics
from cam_callback.evaluation import faithfulness
from cam_callback.imputation import ROAD_NOISE
from cam_callback.record import RecordWriter
from cam_callback.record.config import TrackerConfig, build_config
from cam_callback.tracker import pipeline


def check_layer(layer: Any) -> str | keras.layers.Layer | None:
    """The ``layer`` argument: ``None``, a layer name, an ``'outer/inner'`` path or a Layer.

    Example:
        >>> check_layer("conv2")
        'conv2'
    """
    if layer is not None and not isinstance(layer, (str, keras.layers.Layer)):
        raise TypeError(
            "`layer` must be None, a layer name, an 'outer/inner' path or a keras Layer. "
            f"Received: layer={layer!r}"
        )
    return layer


def check_method(method: Any) -> str:
    """The ``method`` argument, one of :func:`cam_callback.available_methods`.

    Example:
        >>> check_method("gradcam")
        'gradcam'
    """
    if not isinstance(method, str) or method not in api.available_methods():
        raise ValueError(
            f"`method` must be one of {api.available_methods()}. Received: method={method!r}"
        )
    return method


def tracker_config(tracker: Any, *, target: Any, one_hot_width: int | None) -> TrackerConfig:
    """Checks the probes against ``tracker.model`` and builds the record's frozen config.

    Args:
        tracker: The ``CAMTracker``; its public settings are read.
        target: The ``target`` argument as given (``"predicted"``, ``"label"`` or ids).
        one_hot_width: The width of one-hot probe labels, or ``None``.

    Example:
        >>> cfg = tracker_config(tracker, target="predicted", one_hot_width=None)  # doctest: +SKIP
    """

    def inspect(head: str) -> Any:
        return api.inspect_model(
            tracker.model,
            tracker.probe_images,
            layer=tracker.layer,
            method=tracker.method,
            output=tracker.output,
            score=tracker.score,
            head=head,
            grid=tracker.grid,
            prefix_tokens=tracker.prefix_tokens,
        )

    if tracker.head == "auto" and tracker.multi_label:
        # Multi-hot labels decide only what the model leaves open: sigmoids, not an
        # assumed softmax (whose warning is then not the user's to act on).
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check = inspect("auto")
        if check.head_assumed:
            tracker.head = "sigmoid"
            check = inspect("sigmoid")
        for w in caught:
            if not (tracker.head == "sigmoid" and "ASSUMING" in str(w.message)):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    else:
        check = inspect(tracker.head)
    return build_config(
        check=check,
        method=check.method,  # "auto" resolved
        score=tracker.score,
        head=tracker.head,
        target=target,
        output=tracker.output,
        fingerprint=tracker.fingerprint,
        probe_images=tracker.probe_images,
        probe_labels=tracker.probe_labels,
        one_hot_width=one_hot_width,
        class_names=tracker.class_names,
        probe_masks=tracker.probe_masks,
        mask_kind=tracker.mask_kind,
        low_confidence=tracker.low_confidence,
        every_n_epochs=tracker.every_n_epochs,
        interventions=intervention_settings(tracker),
        fragility=None if tracker.fragility is None else asdict(tracker.fragility),
        evidence=None if tracker.evidence is None else tracker.evidence.to_json(),
        grid=tracker.grid,
        prefix_tokens=tracker.prefix_tokens,
    )


def intervention_settings(tracker: Any) -> dict[str, Any] | None:
    """What ``record.json`` keeps of the interventions (``None``: not measured).

    Example:
        >>> intervention_settings(tracker)["reliance_threshold"]  # doctest: +SKIP
        0.5
    """
    if tracker.probe_masks is None or not tracker.interventions:
        return None
    return {
        "reliance_threshold": metrics.RELIANCE_THRESHOLD,
        "ignore_threshold": metrics.IGNORE_THRESHOLD,
        "transplant_recipients": metrics.TRANSPLANT_RECIPIENTS,
        "transplant_budget": metrics.TRANSPLANT_BUDGET,
        "imputation": (
            f"ROAD noisy linear (noise {ROAD_NOISE} of each image's range; "
            "seed 0 removed, 1 kept)"
        ),
        "score": "the explained target's probability, as the head gives it",
    }


def is_chief(model: keras.Model) -> bool:
    """Whether this process writes the record: under a multi-worker strategy only the
    chief (or worker 0 without one) does; a single process always does.

    Example:
        >>> is_chief(model)  # doctest: +SKIP
        True
    """
    index, count = backends.process()  # keras.distribution over several JAX processes
    if count > 1:
        return index == 0
    strategy = getattr(model, "distribute_strategy", None)
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type in (None, "chief"):
        return True
    if task_type == "worker":
        return task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()
    return False


def set_aside_notice(set_aside: tuple[int, ...], after: int, folder: Any) -> str:
    """The warning when a fit continues the record from an earlier epoch's weights.

    Example:
        >>> set_aside_notice((3, 4), 2, "runs/a/cam/set_aside/x")[:44]
        'the model holds the weights of epoch 2 of th'
    """
    held = "the state before training" if after < 0 else f"epoch {after}"
    if len(set_aside) == 1:
        epochs = f"Epoch {set_aside[0]}"
    else:
        epochs = f"Epochs {set_aside[0]} to {set_aside[-1]}"
    return (
        f"the model holds the weights of {held} of the record, not of its last "
        f"epoch ({set_aside[-1]}): a checkpoint older than the record "
        f"(BackupAndRestore after a crash, for one), or a seeded script run again. "
        f"{epochs} of that other line of weights were set aside "
        f"in {folder} (never mixed in), and the record continues from {held}."
    )


def open_pipeline(tracker: Any, writer: RecordWriter) -> pipeline.EpochPipeline:
    """The background pipeline of one ``fit`` over the opened record ``writer``.

    Args:
        tracker: The ``CAMTracker``; its public settings (probes, labels, animation
            and TensorBoard options, ``params``) are read.
        writer: The record, opened and locked.

    Example:
        >>> session = open_pipeline(tracker, writer)  # doctest: +SKIP
    """
    return pipeline.build_pipeline(
        writer,
        display=tracker.display_images,
        labels=tracker.probe_labels,
        masks=tracker.probe_masks,
        class_names=tracker.class_names,
        top_k=tracker.top_k,
        alpha=tracker.alpha,
        tensorboard=tracker.tensorboard,
        # Chosen once per fit from the probes alone: the same tags at every epoch.
        tensorboard_probes=pipeline.choose_tensorboard_probes(
            tracker.tensorboard_probes, len(tracker.probe_images), tracker.probe_labels
        ),
        formats=tracker.formats,
        fps=tracker.fps,
        max_frames=tracker.max_frames,
        every_n_epochs=tracker.every_n_epochs,
        total_epochs=(tracker.params or {}).get("epochs"),
        mask_kind=tracker.mask_kind,
        probe_images=tracker.probe_images,
        interventions=tracker.interventions,
        fragility=tracker.fragility,
        evidence=tracker.evidence,
    )


def _maps(tracker: Any, images: np.ndarray, target: Any) -> api.CAMResult:
    """``compute_cams`` with the tracker's settings: the probes' maps and their copies'."""
    return api.compute_cams(
        tracker.model,
        images,
        layer=tracker.layer,
        method=tracker.method,
        target=target,
        score=tracker.score,
        output=tracker.output,
        batch_size=tracker.batch_size,
        head=tracker.head,
        grid=tracker.grid,
        prefix_tokens=tracker.prefix_tokens,
    )


def epoch_maps(
    tracker: Any,
    session: pipeline.EpochPipeline | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The maps of ``tracker.model`` now: heatmaps, probabilities, targets, extra metrics.

    Runs on the training thread (it needs the model): ``faithfulness``, and the
    interventions and fragility of ``session.interventions`` (forward passes over
    altered probes built at start-up), are computed here; the rest in the background.

    Example:
        >>> heatmaps, probabilities, targets, extra = epoch_maps(tracker)  # doctest: +SKIP
    """
    res = _maps(tracker, tracker.probe_images, tracker.target)
    extra = {}
    if tracker.faithfulness:  # needs the model: on this thread
        extra["faithfulness"] = faithfulness.deletion_faithfulness(
            tracker.model,
            tracker.probe_images,
            res.heatmaps,
            res.targets,
            output=tracker.output,
            batch_size=tracker.batch_size,
            head=tracker.head,
        )

    def probs(images: np.ndarray) -> np.ndarray:
        return api.predict_probabilities(
            tracker.model,
            images,
            output=tracker.output,
            batch_size=tracker.batch_size,
            head=tracker.head,
        )

    probes = None if session is None else session.interventions
    if probes is not None:

        def maps(images: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            copies = _maps(tracker, images, targets)
            return copies.heatmaps, copies.probabilities

        extra.update(probes.measure(probs, maps, res.heatmaps, res.probabilities, res.targets))
    evidence = None if session is None else session.evidence
    if evidence is not None:  # pasted probes, forward only (metrics.evidence)
        extra.update(evidence.measure(probs, res.heatmaps, res.probabilities, res.targets))
    return res.heatmaps, res.probabilities, res.targets, extra
