"""The run record: the single source of truth on disk. numpy only, no TensorFlow.

Layout (format version 1), under ``LOG_DIR/cam/`` beside Keras's ``train/``::

    flags.json               per-probe flags (see ``metrics.flags``) as of the end of
                             training, with the number of epochs they cover
    record.json              format, version, layer, method, fingerprint, class names,
                             probe count, image shape; written last, so its presence
                             means the probes are complete. ``final_weights_epoch``
                             (optional): the epoch whose weights the model held when
                             ``fit`` returned (null: none the record knows)
    probes.npz               images (uint8 [N, H, W, 3] display images, whatever the
                             model's channel count), labels (int64 [N], -1 where
                             unknown), masks (bool [N, H, W], optional)
    weights.json             the writer's: a fingerprint of the model's weights at
                             every epoch the tracker saw (see ``cam_callback.tracker.lineage``)
    set_aside/               epochs of another line of weights, moved out of the
                             record when a fit continued it from an earlier epoch
    epochs/epoch_000012.npz  one recorded epoch: heatmaps (float32 [N, h, w] at the
                             layer's native resolution), probabilities (float32 [N, C]),
                             targets (int64 [N]), and metric_<name> (float32 [N]) arrays
    epochs/baseline.npz      the same arrays for the untrained model, recorded in
                             ``on_train_begin`` (not when resuming); read back as epoch
                             ``BASELINE_EPOCH`` (-1), first in ``Run.epochs``
    events.out.tfevents.*    the live TensorBoard summaries (not part of the record)
    animations/              GIF/MP4 files rendered from the record

Every file is written to a temporary name in the same folder, flushed, fsynced
and renamed over its final name, so a process killed at any instant leaves
either the old file or the new one, never a torn one. A reader sees only
complete epochs, also while training is still writing.

The package is split by job: ``paths`` (constants, errors, atomic writes), ``reader``
(``record.json``, probes and epoch files as untrusted input), ``run`` (:class:`Run`,
:func:`load_run`, flags), ``lock`` (one writer per record) and ``writer``
(:class:`RecordWriter`). Every name is re-exported here.

Reading treats the record as untrusted (see :mod:`cam_callback.safe_read`): only
regular files are read, no symlink inside the record is followed (the log folder
and its ``cam`` folder may be links), a FIFO is never opened, every file's size is
capped, each ``.npy`` header is parsed strictly and checked against ``record.json``
before anything is allocated, and an image or map holds at most
``MAX_IMAGE_PIXELS`` pixels.
"""

from cam_callback.record.lock import WriterLock
from cam_callback.record.paths import (
    BASELINE_EPOCH,
    BASELINE_FILE,
    FLAGS_FILE,
    FORMAT,
    LOCK_FILE,
    MAX_IMAGE_PIXELS,
    SET_ASIDE,
    SUBDIR,
    VERSION,
    WEIGHTS_FILE,
    RecordBusy,
    RecordDeleted,
    RecordError,
    atomic_write_bytes,
    fingerprint,
    record_dir,
)
from cam_callback.record.reader import epoch_files, find_record, read_epoch_file, read_meta
from cam_callback.record.run import Run, compute_flags, load_run, write_flags
from cam_callback.record.writer import RecordWriter

__all__ = [
    "BASELINE_EPOCH",
    "BASELINE_FILE",
    "FLAGS_FILE",
    "FORMAT",
    "LOCK_FILE",
    "MAX_IMAGE_PIXELS",
    "SET_ASIDE",
    "SUBDIR",
    "VERSION",
    "WEIGHTS_FILE",
    "RecordBusy",
    "RecordDeleted",
    "RecordError",
    "RecordWriter",
    "Run",
    "WriterLock",
    "atomic_write_bytes",
    "compute_flags",
    "epoch_files",
    "find_record",
    "fingerprint",
    "load_run",
    "read_epoch_file",
    "read_meta",
    "record_dir",
    "write_flags",
]
