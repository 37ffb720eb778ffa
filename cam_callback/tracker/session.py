"""What one ``fit`` of ``CAMTracker`` runs on: the chief check, its pipeline, an epoch's maps.

:class:`~cam_callback.tracker.callback.CAMTracker` decides *when* (which hook, which epoch);
this module holds *how*: whether this process writes the record, the
:class:`~cam_callback.tracker.pipeline.EpochPipeline` a fit opens over the record, and the maps
of one epoch, computed on the training thread because they need the model.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

import keras
import numpy as np

from cam_callback import api, backends, metrics
from cam_callback.evaluation.faithfulness import deletion_faithfulness
from cam_callback.imputation import ROAD_NOISE
from cam_callback.record import RecordWriter
from cam_callback.record.config import TrackerConfig, build_config
from cam_callback.tracker import pipeline


@dataclass(frozen=True)
class ProbeSet:
    """The probes as the tracker checked them: what the record's config is built from.

    Attributes:
        images: ``[N, H, W, C]`` in the model's input space.
        labels: True class ids ``[N]``, or ``None`` (none given, or multi-hot).
        one_hot_width: The width of one-hot labels as given, or ``None``.
        multi_label: The labels were multi-hot: the classes are independent.
        masks: bool ``[N, H', W']`` regions, or ``None``.
        mask_kind: ``"object"`` or ``"cue"``.
        class_names: One name per class, or ``None``.
        fingerprint: The probes' and labels' fingerprint (``record.fingerprint``).
    """

    images: np.ndarray
    labels: np.ndarray | None
    one_hot_width: int | None
    multi_label: bool
    masks: np.ndarray | None
    mask_kind: str
    class_names: list[str] | None
    fingerprint: str


@dataclass(frozen=True)
class Analyses:
    """What the tracker measures beside the maps (each off when ``False``/``None``).

    Attributes:
        interventions: Reliance, sufficiency and transplant, where there are masks.
        fragility: The fragility options, or ``None``.
        evidence: The evidence transplant's options, or ``None``.
        faithfulness: The deletion test per probe and epoch.
        low_confidence: The top probability under which a probe is flagged.
    """

    interventions: bool
    fragility: pipeline.FragilityOptions | None
    evidence: pipeline.EvidenceOptions | None
    faithfulness: bool
    low_confidence: float


def tracker_config(
    model: keras.Model,
    cam: api.CAMSettings,
    probes: ProbeSet,
    analyses: Analyses,
    *,
    target: Any,
    every_n_epochs: int,
) -> tuple[TrackerConfig, api.CAMSettings]:
    """Checks the probes against ``model`` and builds the record's frozen config.

    Args:
        model: The model in training.
        cam: The tracker's map settings.
        probes: The probes as checked.
        analyses: What is measured beside the maps.
        target: The ``target`` argument as given (``"predicted"``, ``"label"`` or ids).
        every_n_epochs: Record every n-th epoch.

    Returns:
        The config, and ``cam`` as the maps will be computed: with ``head="sigmoid"``
        where multi-hot labels decided a head the model left open.

    Example:
        >>> cfg, cam = tracker_config(model, cam, probes, analyses, target="predicted",
        ...                           every_n_epochs=1)  # doctest: +SKIP
    """
    if cam.head == "auto" and probes.multi_label:
        # Multi-hot labels decide only what the model leaves open: sigmoids, not an
        # assumed softmax (whose warning is then not the user's to act on).
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check = api.inspect_with(model, probes.images, cam)
        if check.head_assumed:
            cam = cam.replace(head="sigmoid")
            check = api.inspect_with(model, probes.images, cam)
        for w in caught:
            if not (cam.head == "sigmoid" and "ASSUMING" in str(w.message)):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    else:
        check = api.inspect_with(model, probes.images, cam)
    config = build_config(
        check=check,
        method=check.method,  # "auto" resolved
        score=cam.score,
        head=cam.head,
        target=target,
        output=cam.output,
        fingerprint=probes.fingerprint,
        probe_images=probes.images,
        probe_labels=probes.labels,
        one_hot_width=probes.one_hot_width,
        class_names=probes.class_names,
        probe_masks=probes.masks,
        mask_kind=probes.mask_kind,
        low_confidence=analyses.low_confidence,
        every_n_epochs=every_n_epochs,
        interventions=intervention_settings(probes.masks is not None and analyses.interventions),
        fragility=None if analyses.fragility is None else asdict(analyses.fragility),
        evidence=None if analyses.evidence is None else analyses.evidence.to_json(),
        grid=cam.grid,
        prefix_tokens=cam.prefix_tokens,
    )
    return config, cam


def intervention_settings(measured: bool) -> dict[str, Any] | None:
    """What ``record.json`` keeps of the interventions (``None``: not ``measured``).

    Example:
        >>> intervention_settings(True)["reliance_threshold"]
        0.5
    """
    if not measured:
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


def open_pipeline(
    writer: RecordWriter,
    probes: ProbeSet,
    analyses: Analyses,
    *,
    display: np.ndarray,
    drawing: pipeline.Drawing,
    every_n_epochs: int,
    total_epochs: int | None,
) -> pipeline.EpochPipeline:
    """The background pipeline of one ``fit`` over the opened record ``writer``.

    Args:
        writer: The record, opened and locked.
        probes: The probes as checked.
        analyses: What is measured beside the maps.
        display: uint8 ``[N, H, W, 3]`` images the frames are drawn on.
        drawing: TensorBoard and animation settings.
        every_n_epochs: The tracker's cadence.
        total_epochs: ``fit``'s ``epochs``, or ``None`` when unknown.

    Example:
        >>> session = open_pipeline(writer, probes, analyses, display=x_uint8,  # doctest: +SKIP
        ...                         drawing=Drawing(), every_n_epochs=1, total_epochs=10)
    """
    return pipeline.build_pipeline(
        writer,
        display=display,
        labels=probes.labels,
        masks=probes.masks,
        class_names=probes.class_names,
        drawing=drawing,
        every_n_epochs=every_n_epochs,
        total_epochs=total_epochs,
        mask_kind=probes.mask_kind,
        probe_images=probes.images,
        interventions=analyses.interventions,
        fragility=analyses.fragility,
        evidence=analyses.evidence,
    )


def epoch_maps(
    model: keras.Model,
    cam: api.CAMSettings,
    images: np.ndarray,
    target: Any,
    *,
    faithfulness: bool = False,
    session: pipeline.EpochPipeline | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The maps of ``model`` now: heatmaps, probabilities, targets, extra metrics.

    Runs on the training thread (it needs the model): ``faithfulness``, and the
    interventions and fragility of ``session.interventions`` (forward passes over
    altered probes built at start-up), are computed here; the rest in the background.

    Args:
        model: The model in training.
        cam: The map settings.
        images: The probes.
        target: What to explain (the tracker's checked ``target``).
        faithfulness: Also run the deletion test.
        session: The fit's pipeline, whose interventions and evidence are measured.

    Example:
        >>> maps, probs, targets, extra = epoch_maps(model, cam, x, "label")  # doctest: +SKIP
    """
    res = api.compute_with(model, images, cam, target=target)
    extra = {}
    if faithfulness:  # needs the model: on this thread
        extra["faithfulness"] = deletion_faithfulness(
            model, images, res.heatmaps, res.targets, output=cam.output,
            batch_size=cam.batch_size, head=cam.head,
        )  # fmt: skip

    def probs(batch: np.ndarray) -> np.ndarray:
        return api.probabilities_with(model, batch, cam)

    probes = None if session is None else session.interventions
    if probes is not None:

        def maps(batch: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            copies = api.compute_with(model, batch, cam, target=targets)
            return copies.heatmaps, copies.probabilities

        extra.update(probes.measure(probs, maps, res.heatmaps, res.probabilities, res.targets))
    evidence = None if session is None else session.evidence
    if evidence is not None:  # pasted probes, forward only (metrics.evidence)
        extra.update(evidence.measure(probs, res.heatmaps, res.probabilities, res.targets))
    return res.heatmaps, res.probabilities, res.targets, extra
