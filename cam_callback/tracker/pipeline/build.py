"""What one ``fit``'s pipeline is made of: the probes, the altered probes of the
interventions and the evidence transplant (built once, before any file is opened), the
TensorBoard writer, the animation files, and the two stages over them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cam_callback.record import RecordWriter
from cam_callback.record.tensorboard import SummaryWriter
from cam_callback.tracker.pipeline.animations import AnimationFiles
from cam_callback.tracker.pipeline.core import EpochPipeline
from cam_callback.tracker.pipeline.drawing import FrameStage
from cam_callback.tracker.pipeline.evidence import EvidenceOptions, EvidenceTransplant
from cam_callback.tracker.pipeline.interventions import FragilityOptions, ProbeInterventions
from cam_callback.tracker.pipeline.plan import (
    AnimationPlan,
    Drawing,
    Probes,
    choose_tensorboard_probes,
)
from cam_callback.tracker.pipeline.recording import RecordPresence, RecordStage


def build_pipeline(
    record: RecordWriter,
    *,
    display: np.ndarray,
    labels: np.ndarray | None,
    masks: np.ndarray | None,
    class_names: Sequence[str] | None,
    drawing: Drawing | None = None,
    every_n_epochs: int = 1,
    total_epochs: int | None = None,
    mask_kind: str = "object",
    probe_images: np.ndarray | None = None,
    interventions: bool = True,
    fragility: FragilityOptions | None = None,
    evidence: EvidenceOptions | None = None,
) -> EpochPipeline:
    """Builds the stages over the opened ``record`` and starts their :class:`EpochPipeline`.

    Args:
        record: An opened :class:`~cam_callback.record.RecordWriter`.
        display: uint8 ``[N, H, W, 3]`` display images.
        labels: int ``[N]`` true classes, or ``None``.
        masks: bool ``[N, H, W]`` probe masks, or ``None``.
        class_names: Names of the classes, or ``None``.
        drawing: TensorBoard and animation settings (``None``: the defaults); its
            ``tensorboard_probes`` are chosen here, once per fit, from the probes alone
            (the same tags at every epoch).
        every_n_epochs: The tracker's cadence, to plan which epochs to keep.
        total_epochs: ``fit``'s ``epochs``, or ``None`` when unknown.
        mask_kind: ``"object"`` or ``"cue"``: which flagged group gets its own scalars.
        probe_images: ``[N, H, W, C]`` probes in the model's input space: with ``masks``
            (and ``interventions``) or ``fragility``, the altered probes are built here,
            once, as the pipeline's ``interventions``.
        interventions: Measure reliance, sufficiency and the transplant rate (needs masks).
        fragility: Fragility options, or ``None``.
        evidence: Evidence transplant options (with ``probe_images``), or ``None``: built
            as the pipeline's ``evidence``.

    Example:
        >>> pipe = build_pipeline(writer, display=images, labels=y, masks=None,  # doctest: +SKIP
        ...                       class_names=None, drawing=Drawing(tensorboard_probes=[0, 1]))
    """
    probes = Probes(display, labels, masks, class_names, mask_kind)
    d = drawing or Drawing()
    tensorboard_probes = choose_tensorboard_probes(d.tensorboard_probes, probes.n, labels)
    # Built once, before the first epoch and before any file is opened: each epoch then
    # only runs the model on them.
    altered = None
    if probe_images is not None and ((masks is not None and interventions) or fragility):
        altered = ProbeInterventions(
            probe_images, masks if interventions else None, labels, mask_kind, fragility
        )
    transplant = None
    if probe_images is not None and evidence is not None:
        transplant = EvidenceTransplant(probe_images, labels, masks, evidence)
    summaries = SummaryWriter(record.path, make_dirs=False) if d.tensorboard else None
    # Made here, while the record exists: a record deleted during training is not
    # recreated by its animations.
    files = None
    if d.formats:
        files = AnimationFiles(record.path / "animations", probes.n, d.formats, d.fps, d.max_frames)
    present = RecordPresence(record.path)
    frames = FrameStage(
        probes,
        summaries,
        tensorboard_probes,
        files,
        AnimationPlan(d.max_frames, every_n_epochs),
        present=present,
        top_k=d.top_k,
        alpha=d.alpha,
    )
    return EpochPipeline(
        RecordStage(record, probes),
        frames,
        present=present,
        total_epochs=total_epochs,
        interventions=altered,
        evidence=transplant,
    )
