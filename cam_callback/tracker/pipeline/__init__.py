"""The tracker's work off the training thread: the record, then frames drawn once.

``CAMTracker.on_epoch_end`` computes the maps (that needs the model) and hands
them to an :class:`EpochPipeline` (built by :func:`build_pipeline`), which composes two
stages, each an object handed what it works on, each run on its own thread:

- the record stage (:class:`RecordStage`, handed the opened record) computes the
  epoch's metrics and appends it to the run record, then returns the
  :class:`RecordedEpoch`. The training thread hands over epoch ``k`` only once epoch
  ``k - 1`` is on disk, so a run killed at any instant loses at most the epoch in flight.
- the frame stage (:class:`FrameStage`, handed the probes, the TensorBoard writer and the
  animation files), on a thread at nice 19 so it only takes CPU that training leaves idle,
  draws each probe's frame of a recorded epoch once and uses it twice: the TensorBoard
  image (for the chosen ``tensorboard_probes``) and the probe's animation, which grows
  on disk by one encoded GIF block per kept epoch (:class:`~cam_callback.animate.GifStream`).
  Which epochs the animations keep (at most ``max_frames``, evenly spread, first
  and last kept) is planned at the first epoch from ``fit``'s epoch count. When
  drawing an animated epoch costs more than :data:`ANIMATION_BUDGET` of an
  epoch (hundreds of probes on short epochs), the rest of the plan is thinned
  evenly so that it fits, once, with a notice: the record keeps every epoch,
  and ``cam-callback render`` draws them all after training.

:meth:`EpochPipeline.finish` then only completes the files: one trailer byte per
GIF, plus the last epoch's frames when ``fit`` stopped early.

Modules: ``plan`` (defaults, the probes, TensorBoard probe choice, the animation plan),
``recording`` (the record stage), ``drawing`` (the frame stage and its budget),
``animations`` (the growing GIF files, finished to GIF and MP4), ``core``
(:class:`EpochPipeline`: the two threads, hand-over, stopping, errors), ``build`` (what a
fit's pipeline is made of), ``interventions`` (the altered probes, built once at start-up,
run through the model each epoch), ``evidence`` (each epoch's most-attended regions
pasted onto other probes, run forward) and ``options`` (the checks of their option dicts).
"""

from cam_callback.tracker.pipeline.animations import AnimationFiles
from cam_callback.tracker.pipeline.build import build_pipeline
from cam_callback.tracker.pipeline.core import EpochPipeline
from cam_callback.tracker.pipeline.drawing import ANIMATION_BUDGET, ANIMATION_FLOOR_S, FrameStage
from cam_callback.tracker.pipeline.evidence import (
    EvidenceOptions,
    EvidenceTransplant,
    evidence_options,
)
from cam_callback.tracker.pipeline.interventions import (
    FragilityOptions,
    MapsFn,
    ProbeInterventions,
    ProbsFn,
    fragility_options,
)
from cam_callback.tracker.pipeline.plan import (
    DEFAULT_MAX_FRAMES,
    DEFAULT_TENSORBOARD_PROBES,
    FRAME_QUEUE,
    AnimationPlan,
    Drawing,
    Probes,
    check_tensorboard_probes,
    choose_tensorboard_probes,
    planned_epochs,
)
from cam_callback.tracker.pipeline.recording import (
    EpochMaps,
    RecordedEpoch,
    RecordPresence,
    RecordStage,
)

__all__ = [
    "ANIMATION_BUDGET",
    "AnimationFiles",
    "AnimationPlan",
    "EpochMaps",
    "Probes",
    "RecordPresence",
    "RecordedEpoch",
    "build_pipeline",
    "ANIMATION_FLOOR_S",
    "DEFAULT_MAX_FRAMES",
    "DEFAULT_TENSORBOARD_PROBES",
    "Drawing",
    "FRAME_QUEUE",
    "EpochPipeline",
    "EvidenceOptions",
    "EvidenceTransplant",
    "evidence_options",
    "FragilityOptions",
    "MapsFn",
    "ProbeInterventions",
    "ProbsFn",
    "FrameStage",
    "RecordStage",
    "check_tensorboard_probes",
    "choose_tensorboard_probes",
    "fragility_options",
    "planned_epochs",
]
