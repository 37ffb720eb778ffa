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
from cam_callback.tracker.pipeline.plan import DEFAULT_MAX_FRAMES, AnimationPlan, Probes
from cam_callback.tracker.pipeline.recording import RecordPresence, RecordStage


def build_pipeline(
    record: RecordWriter,
    *,
    display: np.ndarray,
    labels: np.ndarray | None,
    masks: np.ndarray | None,
    class_names: Sequence[str] | None,
    top_k: int = 3,
    alpha: float = 0.5,
    tensorboard: bool = True,
    tensorboard_probes: Sequence[int] = (),
    formats: Sequence[str] = ("gif",),
    fps: float = 4.0,
    max_frames: int | None = DEFAULT_MAX_FRAMES,
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
        top_k: Classes in the probability bars.
        alpha: Weight of the heatmap in the overlay.
        tensorboard: Write summaries into the record folder.
        tensorboard_probes: Probe ids with their own image tag (see
            :func:`~.plan.choose_tensorboard_probes`); the grid and the scalars cover all.
        formats: Animation formats, e.g. ``("gif",)``; empty for none.
        fps: Frames per second of the animations.
        max_frames: Most frames per animation, ``None`` for every epoch.
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
        ...                       class_names=None, tensorboard_probes=[0, 1])
    """
    probes = Probes(display, labels, masks, class_names, mask_kind)
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
    summaries = SummaryWriter(record.path, make_dirs=False) if tensorboard else None
    # Made here, while the record exists: a record deleted during training is not
    # recreated by its animations.
    files = None
    if formats:
        files = AnimationFiles(record.path / "animations", probes.n, formats, fps, max_frames)
    present = RecordPresence(record.path)
    frames = FrameStage(
        probes,
        summaries,
        tensorboard_probes,
        files,
        AnimationPlan(max_frames, every_n_epochs),
        present=present,
        top_k=top_k,
        alpha=alpha,
    )
    return EpochPipeline(
        RecordStage(record, probes),
        frames,
        present=present,
        total_epochs=total_epochs,
        interventions=altered,
        evidence=transplant,
    )
