"""``CAMTracker``: thin orchestration of maps, record, TensorBoard and animations in ``fit``."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from cam_callback import api
from cam_callback.api.probes import take_probes
from cam_callback.core.fingerprint import weights_fingerprint
from cam_callback.record import RecordWriter, fingerprint, record_dir
from cam_callback.record import config as _config
from cam_callback.tracker import arguments as A
from cam_callback.tracker import lineage, pipeline
from cam_callback.tracker.failures import ON_ERROR, Failures, TrackerWarning
from cam_callback.tracker.interrupts import FitGuard, RecordLine
from cam_callback.tracker.session import (
    Analyses,
    ProbeSet,
    epoch_maps,
    is_chief,
    open_pipeline,
    tracker_config,
)
from cam_callback.tracker.steps import FitState, FitSteps, open_record, start_pipeline

__all__ = ["CAMTracker", "TrackerWarning"]


class CAMTracker(keras.callbacks.Callback):
    """Records a Grad-CAM and the class probabilities of fixed probes at every epoch.

    Each recorded epoch is appended atomically to a run record in
    ``log_dir/cam/`` (read it with :func:`cam_callback.load_run`), shown live in
    TensorBoard beside ``keras.callbacks.TensorBoard(log_dir)``, and added to
    one animation per probe under ``log_dir/cam/animations/``, finished at the
    end of training. ``on_epoch_end`` only computes the maps; the record, the
    metrics, drawing and encoding run in the background
    (:mod:`cam_callback.tracker.pipeline`).

    Args:
        probe_images: ``[N, H, W, C]`` in the model's input space; or a
            ``tf.data.Dataset`` (or any iterable of batches, of ``(x, y)`` tuples or
            of single images), whose first ``num_probes`` examples are taken once,
            with their labels (see :func:`cam_callback.api.probes.take_probes`).
        probe_labels: True classes as int ids ``[N]`` or one-hot ``[N, C]``; taken
            from a dataset's ``(x, y)`` elements when not given. Multi-hot ``[N, C]``
            (rows with zero or several ones) say the classes are independent:
            ``head="auto"`` then reads sigmoids, and no single true class is recorded.
        log_dir: The run's log folder (the same as Keras's TensorBoard callback).
        class_names: One name per class.
        display_images: uint8 RGB ``[N, H', W', 3]`` (or grey ``[N, H', W']``) to
            draw instead of a min-max rescale of the probes. Without it, probes
            of 1 channel are drawn grey, 3 as RGB, 4 as RGB without the fourth,
            and 2 or 5+ (multispectral) as their first channel in grey.
        probe_masks: bool ``[N, H', W']`` regions (the object, or a suspected cue),
            at the display images' size; see ``mask_kind``.
        layer: The explained layer, as in :func:`cam_callback.compute_cams`.
        method: ``"auto"`` (gradient rollout at a Vision Transformer's default layer,
            Grad-CAM elsewhere; the record names the one run), or a name of
            :func:`cam_callback.available_methods` (``"gradcam"``, ``"layercam"``, ...).
        target: The class each map explains. ``"predicted"`` (the default): the
            class the model predicts for the probe at that epoch, so the explained
            class can change while it trains; ``"label"``: the true class (needs
            labels), "why is this a cat, for the model?"; one class id, or one per
            probe.
        every_n_epochs: Record every n-th epoch (epochs ``n-1, 2n-1, ...``), and
            always the last epoch of a ``fit`` (its ``epochs``, or the epoch
            ``EarlyStopping`` stops at).
        top_k: Classes in the probability bars.
        tensorboard: Write image and scalar summaries to ``log_dir/cam``.
        tensorboard_probes: How many probes get their own TensorBoard image
            (chosen once per ``fit``, class by class; see
            :func:`cam_callback.tracker.pipeline.choose_tensorboard_probes`), or a list
            of probe ids. The grid and the scalars always cover every probe.
        animate: ``"gif"``, ``"mp4"``, ``("gif", "mp4")`` or ``None``.
        max_frames: Most frames per animation: recorded epochs sampled evenly,
            the first and last always kept. ``None``: every epoch. The record
            keeps every epoch either way.
        fps: Frames per second of the animations.
        alpha: Weight of the heatmap in the overlay.
        score: ``"logit"`` or ``"probability"``.
        output: The head of a multi-output model.
        head: How the output becomes probabilities, as in
            :func:`cam_callback.compute_cams`: ``"auto"`` (layers and compiled
            loss), ``"softmax"``, ``"sigmoid"``, ``"logits"`` or ``"probabilities"``.
            ``record.json`` keeps the head read and the score explained.
        mask_kind: ``"object"`` (flag probes whose attention leaves the mask) or
            ``"cue"`` (flag probes whose attention lands on it).
        low_confidence: Top-1 probability under which a probe is flagged.
        faithfulness: Also record the deletion-test number each epoch (one
            extra forward pass over ``2 N`` images).
        interventions: With ``probe_masks``, record ``reliance``, ``sufficiency`` and
            (cue masks) ``transplant`` each epoch: forward passes over altered probes
            built once (:mod:`cam_callback.metrics.interventions`), no backward.
        fragility: ``True`` or options ``{"copies", "noise", "seed", "threshold"}``:
            record each map's ``fragility`` (Ghorbani et al. 2019) each epoch, at the
            cost of the maps of ``copies * N`` perturbed probes.
        evidence: ``True``, ``False`` or options: record each epoch, with no mask, whether
            each probe's most-attended 10% alone makes other probes its class (forward
            passes over about ``4 N`` pasted probes; :mod:`cam_callback.metrics.evidence`).
        batch_size: Probes per compiled call (at most the number of probes).
        on_error: What a failure inside the tracker during ``fit`` does (a full
            disk, a write, render or TensorBoard error). ``"warn"``: warn once
            with the cause, stop the part that failed and let training go on;
            what was recorded stays readable. ``"raise"``: raise it out of
            ``fit``. Bad arguments always raise, in ``__init__`` or before the
            first epoch.
        overwrite: Start over a record already in ``log_dir`` (what the tracker
            wrote there is removed at the first ``fit``), instead of continuing it.
        report: Write the review page (``log_dir/cam/report/index.html``, see
            :func:`cam_callback.write_report`) in ``on_train_end``; its path is
            printed once and kept in ``report_page``. A failure there only warns.
        num_probes: How many examples to take when ``probe_images`` is a dataset
            (default 32); arrays are used whole.
        grid: A token layer's patch grid ``(h, w)`` (a ViT's ``[batch, tokens, dim]``
            layer), where it cannot be told from the image and the token count, as in
            :func:`cam_callback.compute_cams`; recorded in ``record.json``.
        prefix_tokens: Tokens before a token layer's patches (1 for a class token, 1 +
            registers for DINOv2), as in :func:`cam_callback.compute_cams`; recorded.

    The arguments are checked here and held as four values: ``cam``
    (:class:`~cam_callback.api.CAMSettings`), ``probes`` (``ProbeSet``), ``drawing`` and
    ``analyses``. One record describes one line of weights: a ``fit`` continues it only
    from the weights of one of its epochs (:mod:`cam_callback.tracker.lineage`); a new
    tracker continues it with ``initial_epoch=history.epoch[-1] + 1``, Keras's idiom.

    Example:
        >>> tracker = CAMTracker(x_probe, y_probe, log_dir="runs/a",  # doctest: +SKIP
        ...                      class_names=["cat", "dog"])
        >>> model.fit(x, y, epochs=30, callbacks=[tracker,  # doctest: +SKIP
        ...           keras.callbacks.TensorBoard("runs/a")])
    """

    def __init__(
        self,
        probe_images: Any,
        probe_labels: Any = None,
        *,
        log_dir: str | os.PathLike,
        class_names: Sequence[str] | None = None,
        display_images: Any = None,
        probe_masks: Any = None,
        layer: str | keras.layers.Layer | None = None,
        method: str = "auto",
        target: str | int | Sequence[int] | np.ndarray = "predicted",
        every_n_epochs: int = 1,
        top_k: int = 3,
        tensorboard: bool = True,
        tensorboard_probes: int | Sequence[int] = pipeline.DEFAULT_TENSORBOARD_PROBES,
        animate: str | Sequence[str] | None = "gif",
        max_frames: int | None = pipeline.DEFAULT_MAX_FRAMES,
        fps: float = 4.0,
        alpha: float = 0.5,
        score: str = "logit",
        output: int | str | None = None,
        mask_kind: str = "object",
        low_confidence: float = 0.5,
        faithfulness: bool = False,
        batch_size: int = 32,
        on_error: str = "warn",
        head: str = "auto",
        overwrite: bool = False,
        report: bool = True,
        num_probes: int | None = None,
        interventions: bool = True,
        fragility: bool | dict = False,
        evidence: bool | dict = True,
        grid: tuple[int, int] | None = None,
        prefix_tokens: int | None = None,
    ) -> None:
        super().__init__()
        taken, data_labels = take_probes(probe_images, num_probes)
        images = A.probes(taken)
        n = len(images)
        if probe_labels is None:
            probe_labels = data_labels
        labels, one_hot_width = A.labels(probe_labels, n)
        self.log_dir = A.log_dir(log_dir)
        self.display_images = A.display(display_images, n, images)
        self.probes = ProbeSet(
            images=images,
            labels=labels,
            one_hot_width=one_hot_width,
            multi_label=A.is_multi_label(probe_labels),  # sigmoids where the model is silent
            masks=A.masks(probe_masks, n, self.display_images.shape[1:3]),
            mask_kind=A.choice(mask_kind, ("object", "cue"), "mask_kind", '"object" or "cue"'),
            class_names=A.class_names(class_names),
            fingerprint=fingerprint(images, labels),
        )
        self.cam = api.CAMSettings(
            layer=layer,
            method=method,
            score=score,
            output=output,
            head=head,
            grid=grid,
            prefix_tokens=prefix_tokens,
            # More than the probes would only allocate padding.
            batch_size=min(A.positive_int(batch_size, "batch_size"), n),
        )
        self.target = A.target(target, n, labels)
        self.every_n_epochs = A.positive_int(every_n_epochs, "every_n_epochs")
        formats = A.formats(animate)
        _config.check_video(formats)
        self.drawing = pipeline.Drawing(
            top_k=A.positive_int(top_k, "top_k"),
            alpha=A.unit_float(alpha, "alpha"),
            tensorboard=A.flag(tensorboard, "tensorboard"),
            tensorboard_probes=pipeline.check_tensorboard_probes(tensorboard_probes, n),
            formats=tuple(formats),
            fps=_config.check_fps(fps, formats),
            max_frames=A.max_frames(max_frames),
        )
        self.analyses = Analyses(
            interventions=A.flag(interventions, "interventions"),
            fragility=pipeline.fragility_options(fragility),
            evidence=pipeline.evidence_options(evidence),
            faithfulness=A.flag(faithfulness, "faithfulness"),
            low_confidence=A.unit_float(low_confidence, "low_confidence"),
        )
        self.on_error = A.choice(on_error, ON_ERROR, "on_error")
        self.overwrite = A.flag(overwrite, "overwrite")
        self.report = A.flag(report, "report")
        self.report_page: os.PathLike | None = None  # the page written, once it is
        self._target_arg = target
        self.config: _config.TrackerConfig | None = None
        self._line = RecordLine()  # what this tracker's fits hand on to the next
        self._fit = FitState()  # what the running (or last) fit has seen
        self._guard = FitGuard(self._line)  # the fit while it records, and its end
        self._failures = Failures(self.on_error, self.record_path, self.drawing.formats, self.close)

    def _open_pipeline(self, writer: RecordWriter) -> pipeline.EpochPipeline:
        return open_pipeline(
            writer, self.probes, self.analyses, display=self.display_images,
            drawing=self.drawing, every_n_epochs=self.every_n_epochs,
            total_epochs=(self.params or {}).get("epochs"),
        )  # fmt: skip

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Checks the probes against the model and opens the record, before epoch 0."""
        self._guard.end_abandoned()  # the previous fit was interrupted: end it as a finished one
        self._fit = fit = FitState(chief=is_chief(self.model))
        if not fit.chief:
            return
        fit.later = lineage.later_callbacks(self)
        cfg, self.cam = tracker_config(
            self.model, self.cam, self.probes, self.analyses, target=self._target_arg,
            every_n_epochs=self.every_n_epochs,
        )  # fmt: skip
        A.writable_log_dir(self.log_dir)
        line, failures = self._line, self._failures
        if line.next_epoch is not None and self.config != cfg:
            line.next_epoch = line.own = None  # another model or setting: not a continuation
        FitGuard.end_abandoned_writer(self.log_dir)  # another tracker's interrupted fit
        owner = f"CAMTracker at 0x{id(self):x} with log_dir={str(self.log_dir)!r}"
        probes = self.probes
        arrays = dict(images=self.display_images, labels=probes.labels, masks=probes.masks)
        overwrite = self.overwrite and not line.wrote
        writer = open_record(self.log_dir, owner, cfg.to_json(), arrays, overwrite, failures)
        if writer is None:
            return
        line.wrote = True
        self.config = cfg
        session = start_pipeline(writer, self._open_pipeline, failures)
        if session is None:
            return
        maps = functools.partial(
            epoch_maps, self.model, self.cam, self.probes.images, self.target,
            faithfulness=self.analyses.faithfulness, session=session,
        )  # fmt: skip
        steps = FitSteps(
            session, fit, failures, maps, report=self.report, fps=self.drawing.fps,
            low_confidence=self.analyses.low_confidence, on_page=self._page_written,
        )  # fmt: skip
        self._guard.hold(self, steps, self.model)  # ends this fit even without on_train_end

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """At a fit's first epoch (every ``on_train_begin`` has run: ``BackupAndRestore``
        restored its weights), decides how this fit continues the record, before any batch."""
        steps, fit = self._guard.steps, self._fit
        if steps is None or fit.started:
            return
        fit.started = True
        weights = weights_fingerprint(self.model)
        plan = self._line.decide(steps, self.model, weights, epoch, str(self.log_dir))
        if plan.kind == "refuse":
            self.close()
            raise ValueError(plan.message)
        steps.begin(plan, weights, epoch)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Stores the weights' fingerprint; computes the maps when the epoch is due (every
        ``every_n_epochs``, the fit's last, or stopping) and hands them to the background."""
        fit, keras_epoch = self._fit, epoch
        epoch += fit.offset  # the record's numbering (see on_epoch_begin)
        self._line.next_epoch = epoch + 1  # counted also after recording stopped, for a next fit
        if not fit.chief:
            return
        weights = weights_fingerprint(self.model)
        fit.seen[epoch] = weights
        steps = self._guard.steps
        if steps is None or not steps.keep(epoch, weights, "recording"):
            return
        total = (self.params or {}).get("epochs")
        last = total is not None and keras_epoch == total - 1
        if (epoch + 1) % self.every_n_epochs and not last and not self.model.stop_training:
            return
        if steps.check_background():  # else recording failed earlier, and stopped
            steps.record(epoch, "recording")

    def on_train_end(self, logs: dict | None = None) -> None:
        """Records the last epoch if it was not due, notes which epoch's weights the model
        holds, waits for the background work, writes the flags and finishes the animations."""
        if self._fit.chief:
            self._guard.end(self._fit, self.model)

    def close(self) -> None:
        """Stops the background threads and closes the TensorBoard writer; safe to repeat.

        A ``fit`` that raises (Ctrl-C, or an error) calls no callback: the tracker notices
        it within a fraction of a second and ends it as a finished one (flags, animations
        and page written, one line printed); leaving a ``with`` block around ``fit`` does
        so at once. This only stops and closes, as garbage collection and exiting do.
        """
        self._guard.close()

    def __enter__(self) -> CAMTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self._guard.end_abandoned()  # fit raised inside the block: end it as a finished one
        self.close()

    @property
    def record_path(self) -> Path:
        """The record folder, ``log_dir/cam``."""
        return record_dir(self.log_dir)

    def _page_written(self, page: Path) -> None:
        if self.report_page is None:  # once per tracker: the path stays the same
            print(f"CAMTracker: review page {page}")
        self.report_page = page
