"""``CAMTracker``: thin orchestration of maps, record, TensorBoard and animations in ``fit``."""

from __future__ import annotations

import os
import warnings
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from cam_callback import _validate, animate, backends, cams, frames, pipeline
from cam_callback import config as _config
from cam_callback.record import (
    BASELINE_EPOCH,
    RecordWriter,
    fingerprint,
    load_run,
    record_dir,
    write_flags,
)

ON_ERROR = ("warn", "raise")


class TrackerWarning(UserWarning):
    """A part of the tracker failed and stopped; training went on."""


class CAMTracker(keras.callbacks.Callback):
    """Records a Grad-CAM and the class probabilities of fixed probes at every epoch.

    Each recorded epoch is appended atomically to a run record in
    ``log_dir/cam/`` (read it with :func:`cam_callback.load_run`), shown live in
    TensorBoard beside ``keras.callbacks.TensorBoard(log_dir)``, and added to
    one animation per probe under ``log_dir/cam/animations/``, finished at the
    end of training. ``on_epoch_end`` only computes the maps; the record, the
    metrics, drawing and encoding run in the background
    (:mod:`cam_callback.pipeline`).

    Args:
        probe_images: ``[N, H, W, C]`` in the model's input space.
        probe_labels: True classes as int ids ``[N]`` or one-hot ``[N, C]``.
        log_dir: The run's log folder (the same as Keras's TensorBoard callback).
        class_names: One name per class.
        display_images: uint8 RGB ``[N, H', W', 3]`` to draw instead of a min-max
            rescale of the probes.
        probe_masks: bool ``[N, H', W']`` regions (the object, or a suspected cue),
            at the display images' size; see ``mask_kind``.
        layer: The explained layer, as in :func:`cam_callback.compute_cams`.
        method: ``"gradcam"``, ``"gradcam++"``, ``"layercam"``, ``"hirescam"`` or
            ``"saliency"``.
        target: ``"predicted"``, ``"label"`` (the true class; needs labels), one
            class id, or one per probe.
        every_n_epochs: Record every n-th epoch (epochs ``n-1, 2n-1, ...``).
        top_k: Classes in the probability bars.
        tensorboard: Write image and scalar summaries to ``log_dir/cam``.
        tensorboard_probes: How many probes get their own TensorBoard image
            (chosen once per ``fit``, class by class; see
            :func:`cam_callback.pipeline.choose_tensorboard_probes`), or a list
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
        batch_size: Probes per compiled call.
        on_error: What a failure inside the tracker during ``fit`` does (a full
            disk, a write, render or TensorBoard error). ``"warn"``: warn once
            with the cause, stop the part that failed and let training go on;
            what was recorded stays readable. ``"raise"``: raise it out of
            ``fit``. Bad arguments always raise, in ``__init__`` or before the
            first epoch.

    Calling ``fit`` again with the same tracker continues the record's epoch
    numbering; a new tracker on a record that already holds the epochs a
    ``fit`` would write is refused before that ``fit``'s first epoch (use
    ``initial_epoch=history.epoch[-1] + 1``, Keras's fine-tuning idiom).

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
        method: str = "gradcam",
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
    ) -> None:
        super().__init__()
        self.probe_images = _check_probes(probe_images)
        n = len(self.probe_images)
        self.probe_labels, self._one_hot_width = _check_labels(probe_labels, n)
        if not isinstance(log_dir, (str, os.PathLike)):
            raise TypeError(
                f"`log_dir` must be a path. Received: log_dir={log_dir!r} of type "
                f"{type(log_dir).__name__}"
            )
        self.log_dir = Path(log_dir)
        self.class_names = _check_class_names(class_names)
        self.display_images = _check_display(display_images, n, self.probe_images)
        self.probe_masks = _check_masks(probe_masks, n, self.display_images.shape[1:3])
        if layer is not None and not isinstance(layer, (str, keras.layers.Layer)):
            raise TypeError(
                "`layer` must be None, a layer name, an 'outer/inner' path or a keras Layer. "
                f"Received: layer={layer!r}"
            )
        cams._check_method(method)
        if score not in cams.SCORES:
            raise ValueError(f"`score` must be one of {cams.SCORES}. Received: score={score!r}")
        self.head = cams.check_head(head)
        self.target = _check_target(target, n, self.probe_labels)
        for name, value in (
            ("every_n_epochs", every_n_epochs),
            ("top_k", top_k),
            ("batch_size", batch_size),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")
        if not isinstance(tensorboard, bool):
            raise TypeError(f"`tensorboard` must be a bool. Received: tensorboard={tensorboard!r}")
        self.tensorboard_probes = pipeline.check_tensorboard_probes(tensorboard_probes, n)
        self.formats = _check_formats(animate)
        if max_frames is not None and (
            isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 2
        ):
            raise ValueError(
                f"`max_frames` must be an int >= 2 (first and last epoch) or None. "
                f"Received: max_frames={max_frames!r}"
            )
        self.max_frames = max_frames
        fps = _config.check_fps(fps, self.formats)
        _config.check_video(self.formats)
        if not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"`alpha` must be in [0, 1]. Received: alpha={alpha!r}")
        if mask_kind not in ("object", "cue"):
            raise ValueError(
                f'`mask_kind` must be "object" or "cue". Received: mask_kind={mask_kind!r}'
            )
        if not isinstance(low_confidence, (int, float)) or not 0.0 <= low_confidence <= 1.0:
            raise ValueError(
                f"`low_confidence` must be in [0, 1]. Received: low_confidence={low_confidence!r}"
            )
        if output is not None and (isinstance(output, bool) or not isinstance(output, (int, str))):
            raise TypeError(
                f"`output` must be None, an output index or name. Received: output={output!r}"
            )
        if not isinstance(faithfulness, bool):
            raise TypeError(
                f"`faithfulness` must be a bool. Received: faithfulness={faithfulness!r}"
            )
        if on_error not in ON_ERROR:
            raise ValueError(
                f"`on_error` must be one of {ON_ERROR}. Received: on_error={on_error!r}"
            )
        self.layer = layer
        self.method = method
        self.every_n_epochs = every_n_epochs
        self.top_k = top_k
        self.tensorboard = tensorboard
        self.fps = float(fps)
        self.alpha = float(alpha)
        self.score = score
        self.output = output
        self.mask_kind = mask_kind
        self.low_confidence = float(low_confidence)
        self.faithfulness = bool(faithfulness)
        self.batch_size = batch_size
        self.on_error = on_error
        self.fingerprint = fingerprint(self.probe_images, self.probe_labels)
        self._target_arg = target
        self.config: _config.TrackerConfig | None = None
        self._session: pipeline.EpochPipeline | None = None
        self._finalizer: weakref.finalize | None = None
        self._next_epoch: int | None = None  # after the last epoch an earlier fit trained
        self._offset = 0  # added to Keras's epochs in this fit (see on_epoch_begin)

    # ------------------------------------------------------------------ Keras hooks

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Checks the probes against the model and opens the record, before epoch 0."""
        self.close()
        if not _is_chief(self.model):
            return
        check = cams.inspect_model(
            self.model,
            self.probe_images,
            layer=self.layer,
            method=self.method,
            output=self.output,
            score=self.score,
            head=self.head,
        )
        cfg = _config.build_config(
            check=check,
            method=self.method,
            score=self.score,
            head=self.head,
            target=self._target_arg,
            output=self.output,
            fingerprint=self.fingerprint,
            probe_images=self.probe_images,
            probe_labels=self.probe_labels,
            one_hot_width=self._one_hot_width,
            class_names=self.class_names,
            probe_masks=self.probe_masks,
            mask_kind=self.mask_kind,
            low_confidence=self.low_confidence,
            every_n_epochs=self.every_n_epochs,
        )
        _check_log_dir(self.log_dir)
        self._offset = 0
        if self._next_epoch is not None and self.config != cfg:
            self._next_epoch = None  # another model or setting: not a continuation
        writer = RecordWriter(self.log_dir)
        try:
            resumed = writer.open(
                cfg.to_json(),
                images=self.display_images,
                labels=self.probe_labels,
                masks=self.probe_masks,
            )
        except OSError as exc:  # a full or failing disk; checks above raise ValueError
            self._fail("opening the record", None, exc, "Nothing is recorded in this fit")
            return
        self.config = cfg
        self._session = session = pipeline.EpochPipeline(
            writer,
            display=self.display_images,
            labels=self.probe_labels,
            masks=self.probe_masks,
            class_names=self.class_names,
            top_k=self.top_k,
            alpha=self.alpha,
            tensorboard=self.tensorboard,
            # Chosen once per fit from the probes alone: the same tags at every epoch.
            tensorboard_probes=pipeline.choose_tensorboard_probes(
                self.tensorboard_probes, len(self.probe_images), self.probe_labels
            ),
            formats=self.formats,
            fps=self.fps,
            max_frames=self.max_frames,
            every_n_epochs=self.every_n_epochs,
            total_epochs=(self.params or {}).get("epochs"),
            mask_kind=self.mask_kind,
        )
        # Closes the writer and stops the threads even if fit raises and the tracker is dropped.
        self._finalizer = weakref.finalize(self, session.close)
        if not resumed:  # where attention was before any learning: every animation starts here
            try:
                self._record_epoch(session, BASELINE_EPOCH)
            except Exception as exc:
                self._fail(
                    "recording the state before training", None, exc, "Recording stopped", stop=True
                )

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """At a fit's first epoch, refuses to overwrite epochs an earlier fit recorded."""
        session = self._session
        if session is None or session.started:
            return
        session.started = True
        if self._next_epoch is not None and epoch < self._next_epoch:
            # The same tracker fit again from epoch 0: its epochs follow the earlier ones.
            session.offset = self._offset = self._next_epoch - epoch
            return
        last = session.record.last_epoch()
        if last is not None and epoch <= last:
            self.close()
            where = str(self.log_dir)
            raise ValueError(
                f"`log_dir` {where} already holds epochs up to {last} from an earlier fit, and "
                f"this fit starts at epoch {epoch}: recording it would overwrite them. Continue "
                f"the numbering with model.fit(..., initial_epoch={last + 1}) (to fine-tune: "
                f"initial_epoch=history.epoch[-1] + 1), or use a new `log_dir`. "
                f"Received: initial_epoch={epoch}, log_dir={where!r}"
            )

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Computes the maps when the epoch is due and hands them to the background."""
        epoch += self._offset  # the record's numbering (see on_epoch_begin)
        self._next_epoch = epoch + 1  # counted also after recording stopped, for a next fit
        session = self._session
        if session is None:
            return
        if (epoch + 1) % self.every_n_epochs:
            return
        self._check_background(session)
        if self._session is None:  # recording failed earlier, and stopped
            return
        try:
            self._record_epoch(session, epoch)
        except Exception as exc:
            self._fail("recording", epoch, exc, "Recording stopped", stop=True)

    def _record_epoch(self, session: pipeline.EpochPipeline, epoch: int) -> None:
        res = cams.compute_cams(
            self.model,
            self.probe_images,
            layer=self.layer,
            method=self.method,
            target=self.target,
            score=self.score,
            output=self.output,
            batch_size=self.batch_size,
            head=self.head,
        )
        extra = {}
        if self.faithfulness:  # needs the model: on this thread
            extra["faithfulness"] = cams.deletion_faithfulness(
                self.model,
                self.probe_images,
                res.heatmaps,
                res.targets,
                output=self.output,
                batch_size=self.batch_size,
                head=self.head,
            )
        # Metrics, the record, TensorBoard and the animations run in the background.
        session.submit(epoch, res.heatmaps, res.probabilities, res.targets, extra)

    def _check_background(self, session: pipeline.EpochPipeline) -> None:
        """Raises (``on_error="raise"``) or warns once about each failed background stage."""
        while session.notices:
            warnings.warn(f"CAMTracker: {session.notices.pop(0)}", TrackerWarning, stacklevel=3)
        while (failure := session.take_error()) is not None:
            stage, what, epoch, exc = failure
            if self.on_error == "raise" and stage == "frames":
                at = f"of epoch {epoch}" if epoch is None or epoch >= 0 else "before training"
                raise RuntimeError(f"{what} {at} failed: {exc}") from exc
            if stage == "record":
                self._fail("recording", epoch, exc, "Recording stopped", stop=True)
                return
            consequence = "TensorBoard frames stopped"
            if self.formats:
                consequence = (
                    "TensorBoard frames and animations stopped (cam-callback render "
                    "LOG_DIR draws the animations from the record)"
                )
            self._fail(what, epoch, exc, consequence)

    def _fail(
        self, what: str, epoch: int | None, exc: BaseException, consequence: str, stop: bool = False
    ) -> None:
        """One failure inside the tracker: re-raised, or warned about and contained.

        ``stop`` ends all recording for this fit (and releases the record's lock).
        """
        if self.on_error == "raise":
            raise exc
        if stop:
            self.close()
        at = "" if epoch is None else f" at epoch {epoch}" if epoch >= 0 else " before training"
        warnings.warn(
            f"CAMTracker: {what}{at} failed: {type(exc).__name__}: {exc}. {consequence}; "
            f"training goes on, and the record in {self.record_path} keeps what was written. "
            f'Pass on_error="raise" to stop training instead.',
            TrackerWarning,
            stacklevel=3,
        )

    def on_train_end(self, logs: dict | None = None) -> None:
        """Waits for the background work, writes the flags and finishes the animations."""
        session = self._session
        if session is None:
            return
        try:  # the writer lock is held until the animations are written
            session.drain()
            self._check_background(session)
            if self._session is None:  # recording failed and stopped
                return
            try:
                run = load_run(self.log_dir)
            except Exception as exc:
                self._fail("reading back the record", None, exc, "No flags or animations")
                return
            if run.epochs:
                try:
                    write_flags(run)
                except Exception as exc:  # the flags are recomputed from the metrics on read
                    self._fail("writing flags.json", None, exc, "flags.json is not updated")
            if self.formats and run.epochs:
                try:
                    session.finish_animations()  # O(probes): the frames are on disk already
                except Exception as exc:
                    self._fail("writing the animations", None, exc, "Animations stopped")
        finally:
            self.close()

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Stops the background threads and closes the TensorBoard writer; safe to repeat.

        ``fit`` calls no callback when it raises, so use the tracker as a
        context manager (or call this) to close at once; otherwise it closes
        when the tracker is garbage-collected or the interpreter exits.
        """
        session, self._session = self._session, None
        finalizer, self._finalizer = self._finalizer, None
        if finalizer is not None:
            finalizer.detach()  # the tracker's session is closed here, not again when collected
        if session is not None:
            session.close()

    def __enter__(self) -> CAMTracker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def record_path(self) -> Path:
        """The record folder, ``log_dir/cam``."""
        return record_dir(self.log_dir)


# ---------------------------------------------------------------------- validation


def _is_chief(model: keras.Model) -> bool:
    """Under a multi-worker strategy only the chief (or worker 0 without one) writes."""
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


def _check_probes(images: Any) -> np.ndarray:
    x = _validate.image_batch(images, "probe_images")
    if x.ndim != 4:
        raise ValueError(
            f"`probe_images` must be a non-empty [N, H, W, C] batch. Received: shape {x.shape}"
        )
    return x


def _check_labels(labels: Any, n: int) -> tuple[np.ndarray | None, int | None]:
    if labels is None:
        return None, None
    return _validate.class_ids(labels, n, "probe_labels")


def _check_class_names(names: Any) -> list[str] | None:
    if names is None:
        return None
    if isinstance(names, str) or not all(isinstance(c, str) for c in names):
        raise TypeError(f"`class_names` must be a sequence of str. Received: class_names={names!r}")
    return list(names)


def _check_display(display: Any, n: int, probes: np.ndarray) -> np.ndarray:
    if display is None:
        return frames.to_display(probes)
    d = np.asarray(display)
    if d.dtype != np.uint8:
        raise TypeError(
            f"`display_images` must be uint8 RGB [N, H, W, 3]. Received: dtype {d.dtype}"
        )
    if d.ndim != 4 or d.shape[-1] != 3 or len(d) != n:
        raise ValueError(
            f"`display_images` must be [{n}, H, W, 3], one per probe. Received: shape {d.shape}"
        )
    return d


def _check_masks(masks: Any, n: int, size: tuple[int, int]) -> np.ndarray | None:
    if masks is None:
        return None
    m = np.asarray(masks)
    if m.dtype != bool and not (np.issubdtype(m.dtype, np.integer) and np.isin(m, (0, 1)).all()):
        raise TypeError(f"`probe_masks` must be boolean [N, H, W]. Received: dtype {m.dtype}")
    if m.shape != (n, *size):
        raise ValueError(
            f"`probe_masks` must be [{n}, {size[0]}, {size[1]}], the display images' size. "
            f"Received: shape {m.shape}"
        )
    return m.astype(bool)


def _check_target(target: Any, n: int, labels: np.ndarray | None) -> Any:
    if isinstance(target, str):
        if target == "label":
            if labels is None:
                raise ValueError('`target="label"` needs `probe_labels`. Received: none')
            return labels
        if target != "predicted":
            raise ValueError(
                '`target` must be "predicted", "label", a class id or one per probe. '
                f"Received: target={target!r}"
            )
        return target
    arr = np.asarray(target)
    if isinstance(target, bool) or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"`target` must be integer class ids. Received: target={target!r}")
    if arr.ndim not in (0, 1) or (arr.ndim == 1 and len(arr) != n) or (arr < 0).any():
        raise ValueError(
            f"`target` must be one class id >= 0 or one per probe ({n}). Received: {target!r}"
        )
    return int(arr) if arr.ndim == 0 else arr


def _check_formats(value: Any) -> tuple[str, ...]:
    try:
        return animate.normalize_formats(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f'`animate` must be "gif", "mp4", ("gif", "mp4") or None. Received: animate={value!r}'
        ) from exc


def _check_log_dir(log_dir: Path) -> None:
    if log_dir.exists() and not log_dir.is_dir():
        raise ValueError(
            f"`log_dir` {str(log_dir)!r} exists and is a file; a folder is needed. "
            f"Received: log_dir={str(log_dir)!r}"
        )
    probe = log_dir
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(
            f"`log_dir` {str(log_dir)!r} is not writable ({probe} is read-only). "
            f"Received: log_dir={str(log_dir)!r}"
        )
