"""CAMTracker inside real fits: record, TensorBoard events read back, errors, resume, crashes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from children import kill_child_at, run_child
from conftest import small_cnn
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cam_callback import CAMTracker, compute_cams, load_run
from cam_callback.record import RecordWriter
from cam_callback.tracker.session import is_chief

HERE = Path(__file__).parent
CLASSES = ["homer", "bart", "lisa"]


def data(n=48, size=32):
    rng = np.random.default_rng(0)
    return rng.random((n, size, size, 3), dtype=np.float32), rng.integers(0, 3, n)


def compiled(**kw):
    model = small_cnn(3, **kw)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def events(folder: Path) -> EventAccumulator:
    files = list(folder.glob("events.out.tfevents.*"))
    assert len(files) == 1, files
    acc = EventAccumulator(str(folder), size_guidance={"tensors": 0, "images": 0, "scalars": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    keras.utils.set_random_seed(0)
    log_dir = tmp_path_factory.mktemp("run")
    x, y = data()
    model = compiled()
    tracker = CAMTracker(
        x[:4], y[:4], log_dir=log_dir, class_names=CLASSES, animate=("gif", "mp4"), top_k=2
    )
    model.fit(
        x,
        y,
        epochs=3,
        batch_size=16,
        verbose=0,
        validation_split=0.25,
        callbacks=[tracker, keras.callbacks.TensorBoard(str(log_dir))],
    )
    return log_dir, model, tracker, x[:4]


def test_tensorboard_tags_and_steps_next_to_keras(trained):
    log_dir, *_ = trained
    # One event file per run folder, and no stray files elsewhere.
    all_events = sorted(p.parent.name for p in log_dir.rglob("events.out.tfevents.*"))
    assert all_events == ["cam", "train", "validation"]
    acc = events(log_dir / "cam")
    tags = set(acc.Tags()["tensors"])
    labels = load_run(log_dir).labels
    want_images = {f"cam/probe_{i:03d}_{CLASSES[c]}" for i, c in enumerate(labels)}
    assert want_images | {"cam/grid"} <= tags
    for tag in want_images | {
        "cam/grid",
        "cam/mean_drift",
        "cam/misclassified_fraction",
        "cam/mean_true_class_probability",
    }:
        assert [e.step for e in acc.Tensors(tag)] == [0, 1, 2], tag
    # The image decodes to the frame size the renderer draws.
    ev = acc.Tensors("cam/probe_000_" + CLASSES[labels[0]])[-1]
    w, h, png = ev.tensor_proto.string_val
    img = np.asarray(Image.open(io.BytesIO(png)))
    assert img.shape[:2] == (int(h), int(w)) == (48 + 160, 2 * 160 + 198)
    # Scalars agree with the record.
    run = load_run(log_dir)
    drift = [float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors("cam/mean_drift")]
    # The record leads with the state before training, which TensorBoard shows on its own tag.
    assert run.epochs[0] == -1 and run.metrics["drift"][0].max() == 0.0
    np.testing.assert_allclose(drift, run.metrics["drift"][1:].mean(1), rtol=1e-5)
    assert [e.step for e in acc.Tensors("cam/before_training")] == [0]
    keras_tags = events(log_dir / "train").Tags()["tensors"]
    assert "epoch_loss" in keras_tags


def test_recorded_maps_equal_compute_cams_on_trained_model(trained):
    log_dir, model, _, probes = trained
    run = load_run(log_dir)
    assert run.epochs == [-1, 0, 1, 2] and run.has_baseline
    assert run.heatmaps.shape == (4, 4, 13, 13) and run.probabilities.shape == (4, 4, 3)
    assert run.images.dtype == np.uint8 and run.images.shape == (4, 32, 32, 3)
    assert run.layer == "conv2" and run.method == "gradcam" and run.class_names == CLASSES
    fresh = compute_cams(model, probes)
    np.testing.assert_allclose(run.heatmaps[-1], fresh.heatmaps, atol=1e-5)
    np.testing.assert_allclose(run.probabilities[-1], fresh.probabilities, atol=1e-6)
    np.testing.assert_array_equal(run.targets[-1], fresh.targets)


def test_animations_have_one_frame_per_epoch(trained):
    log_dir, *_ = trained
    folder = log_dir / "cam" / "animations"
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(
        [f"probe_{i:03d}.{f}" for i in range(4) for f in ("gif", "mp4")] + ["grid.gif", "grid.mp4"]
    )
    gif = Image.open(folder / "probe_000.gif")
    assert gif.n_frames == 4 and gif.info["loop"] == 0  # before training, then 3 epochs
    import imageio.v3 as iio

    assert len(iio.imread(folder / "probe_001.mp4")) == 4


def _open_files_under(folder: Path) -> list[str]:
    fds = Path("/proc/self/fd")
    paths = []
    for fd in fds.iterdir():
        try:
            paths.append(os.readlink(fd))
        except OSError:
            pass  # closed meanwhile
    return [p for p in paths if p.startswith(str(folder))]


def test_tensorboard_probes_and_max_frames_in_a_real_fit(tmp_path):
    x, y = data(16)
    tracker = CAMTracker(
        x[:6], y[:6], log_dir=tmp_path, class_names=CLASSES, tensorboard_probes=2, max_frames=2
    )
    fit_with(tracker, epochs=3)
    acc = events(tmp_path / "cam")
    images = {t for t in acc.Tags()["tensors"] if t.startswith("cam/probe_")}
    labels = load_run(tmp_path).labels
    chosen = sorted(int(t[10:13]) for t in images)
    # Two probes, of two classes (or the first two when all six share one).
    assert len(images) == 2 and (len(set(labels[chosen])) == 2 or len(set(labels)) == 1)
    for tag in images | {"cam/grid"}:
        assert [e.step for e in acc.Tensors(tag)] == [0, 1, 2]
    gif = tmp_path / "cam" / "animations" / "probe_005.gif"
    assert Image.open(gif).n_frames == 2  # before training and epoch 2; the record keeps all
    assert load_run(tmp_path).epochs == [-1, 0, 1, 2]


def test_animations_over_budget_thin_with_one_warning_in_a_real_fit(tmp_path, monkeypatch):
    from cam_callback.tracker import pipeline

    # Any drawing is over a zero budget: from epoch 0 (measured against the state before
    # training) on, the live GIFs keep only the last epoch; the record keeps all.
    monkeypatch.setattr(pipeline.drawing, "ANIMATION_FLOOR_S", 0.0)
    monkeypatch.setattr(pipeline.drawing, "ANIMATION_BUDGET", 1e-12)
    x, y = data(16)
    with caught() as seen:
        fit_with(CAMTracker(x[:4], y[:4], log_dir=tmp_path), epochs=4)
    said = [m for m in tracker_warnings(seen) if "keep one epoch in" in m]
    assert len(said) == 1 and "cam-callback render LOG_DIR --max-frames all" in said[0]
    assert load_run(tmp_path).epochs == [-1, 0, 1, 2, 3]
    assert Image.open(tmp_path / "cam" / "animations" / "probe_000.gif").n_frames == 3  # -1, 0, 3


def test_writer_closed_after_fit(trained):
    log_dir, model, tracker, _ = trained
    # No file of the record or its event file is still open in this process.
    assert _open_files_under(log_dir / "cam") == []
    assert list((log_dir / "cam").glob("events.out.tfevents.*"))


def test_no_retracing_across_epochs_inside_fit(trained):
    from cam_callback import api

    _, model, _, _ = trained
    assert load_run(trained[0]).epochs == [-1, 0, 1, 2]
    assert api.trace_count(model) == 1  # traced at epoch 0, reused at epochs 1 and 2


# ------------------------------------------------------------------ validation


def test_init_errors_name_the_argument(tmp_path):
    x, y = data(8)
    cases = [
        (dict(probe_images=x[0]), ValueError, "`probe_images` must be a non-empty"),
        (dict(probe_images=np.zeros((0, 32, 32, 3))), ValueError, "`probe_images`"),
        (dict(probe_images=np.array([["a"]])), TypeError, "`probe_images` must be numeric"),
        (dict(probe_labels=y[:3]), ValueError, "`probe_labels` has 3 labels for 8"),
        (dict(probe_labels=np.eye(3)[[0, 1]] * [1, 1, 0] + [0, 0, 1]), ValueError,
         "`probe_labels` has 2 labels for 8"),  # multi-hot, too few rows
        (dict(probe_labels=np.full((8, 3), 0.5)), ValueError, "one-hot"),  # soft: no 0/1
        (dict(log_dir=3), TypeError, "`log_dir` must be a path"),
        (dict(class_names="abc"), TypeError, "`class_names`"),
        (dict(display_images=x), TypeError, "`display_images` must be uint8"),
        (dict(display_images=np.zeros((2, 8, 8, 3), np.uint8)), ValueError, r"\[8, H, W, 3\]"),
        (dict(probe_masks=np.zeros((8, 5, 5), bool)), ValueError, r"`probe_masks` must be \[8"),
        (dict(layer=4), TypeError, "`layer` must be"),
        (dict(method="gradcam2"), ValueError, "`method` must be one of"),
        (dict(target="top"), ValueError, "`target` must be"),
        (dict(target="label", probe_labels=None), ValueError, "needs `probe_labels`"),
        (dict(every_n_epochs=0), ValueError, "`every_n_epochs` must be a positive int"),
        (dict(top_k=1.5), ValueError, "`top_k`"),
        (dict(animate="avi"), ValueError, "`animate` must be"),
        (dict(fps=0), ValueError, "`fps`"),
        (dict(fps=0.001), ValueError, "`fps` must be between .* for a GIF"),
        (dict(fps=60), ValueError, "`fps` must be between .* for a GIF"),
        (dict(fps=float("nan")), ValueError, "`fps` must be a finite"),
        (dict(on_error="ignore"), ValueError, "`on_error` must be one of"),
        (dict(max_frames=1), ValueError, "`max_frames` must be an int >= 2"),
        (dict(tensorboard_probes=[8]), ValueError, r"`tensorboard_probes` \[8\] are not"),
        (dict(tensorboard_probes=True), TypeError, "`tensorboard_probes` must be a count"),
        (dict(output=1.5), TypeError, "`output` must be"),
        (dict(faithfulness="yes"), TypeError, "`faithfulness` must be a bool"),
        (dict(alpha=2.0), ValueError, "`alpha`"),
        (dict(tensorboard="yes"), TypeError, "`tensorboard`"),
        (dict(mask_kind="edge"), ValueError, "`mask_kind`"),
        # A frame must last what the format can hold: a GIF or MP4 delay is a uint16 of 1/100 s.
        (dict(animate="mp4", fps=1e-6), ValueError, "`fps` must be between .* for an MP4"),
        (dict(animate="mp4", fps=1000), ValueError, "`fps` must be between .* for an MP4"),
        (dict(probe_labels=np.full(8, 2**63, np.uint64)), ValueError, "holds 9223372036854775808"),
        (dict(log_dir=""), ValueError, "`log_dir` is empty"),
        (dict(every_n_epochs=np.float32(2.0)), ValueError, "`every_n_epochs` must be a positive"),
        (dict(alpha=np.float32(1.5)), ValueError, "`alpha` must be in"),
        (dict(overwrite="yes"), TypeError, "`overwrite` must be a bool"),
        (dict(class_names=(c for c in [1, 2])), TypeError, r"`class_names`.*\[1, 2\]"),
    ]
    for overrides, kind, pattern in cases:
        kwargs = dict(probe_images=x, probe_labels=y, log_dir=tmp_path)
        kwargs.update(overrides)
        with pytest.raises(kind, match=pattern):
            CAMTracker(**kwargs)
    assert not any(tmp_path.iterdir()), "__init__ must create nothing"
    CAMTracker(x, y, log_dir=tmp_path, fps=60, animate="mp4")  # an MP4 plays 60 fps


def test_numpy_scalars_generators_and_huge_batches_are_accepted(tmp_path):
    x, y = data(8)
    tracker = CAMTracker(
        x[:4],
        y[:4].astype(np.uint64),
        log_dir=tmp_path,
        class_names=(name for name in CLASSES),  # read once, before any check
        fps=np.float32(4.0),
        alpha=np.float32(0.5),
        low_confidence=np.float64(0.25),
        every_n_epochs=np.int64(2),
        top_k=np.int32(2),
        max_frames=np.int64(10),
        tensorboard=np.bool_(True),
        batch_size=10**9,
        output=None,
    )
    assert tracker.probes.class_names == CLASSES
    assert (tracker.drawing.fps, tracker.drawing.alpha) == (4.0, 0.5)
    assert tracker.analyses.low_confidence == 0.25
    assert type(tracker.drawing.fps) is float and type(tracker.every_n_epochs) is int
    assert (tracker.every_n_epochs, tracker.drawing.top_k, tracker.drawing.max_frames) == (2, 2, 10)
    assert tracker.cam.batch_size == 4  # capped at the probes: nothing padded to 10**9
    assert tracker.probes.labels.tolist() == y[:4].tolist()
    assert tracker.probes.labels.dtype == np.int64
    fit_with(tracker, epochs=2)
    run = load_run(tmp_path)
    assert run.epochs == [-1, 1] and run.class_names == CLASSES
    assert run.meta["every_n_epochs"] == 2 and run.meta["low_confidence"] == 0.25


def test_mp4_without_ffmpeg_names_the_video_extra(tmp_path, monkeypatch):
    import importlib.util

    from cam_callback.record import config

    real = importlib.util.find_spec
    monkeypatch.setattr(
        config.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "imageio_ffmpeg" else real(name, *a),
    )
    x, y = data(4)
    with pytest.raises(ValueError, match=r'pip install "cam-callback\[video\]"'):
        CAMTracker(x, y, log_dir=tmp_path, animate=("gif", "mp4"))
    CAMTracker(x, y, log_dir=tmp_path, animate="gif")


def fit_with(tracker, model=None, epochs=1, extra=()):
    x, y = data(32)
    model = model or compiled()
    model.fit(x, y, epochs=epochs, batch_size=16, verbose=0, callbacks=[tracker, *extra])
    return model


def test_train_begin_errors_before_any_epoch(tmp_path):
    x, y = data(8)
    seen = []

    class Count(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(epoch)

    cases = [
        (dict(probe_images=x[:, :28, :28]), r"`images` does not fit.*\(N, 32, 32, 3\)"),
        (dict(class_names=["a", "b"]), "`class_names` has 2 names but the model has 3"),
        (dict(probe_labels=np.full(8, 5)), "`probe_labels` holds class 5"),
        (dict(probe_labels=np.eye(4)[np.arange(8) % 4]), "one-hot with 4 columns"),
        (dict(layer="conv9"), "`layer` 'conv9' not found"),
        (dict(target=7), "`target` class 7"),
    ]
    for overrides, pattern in cases:
        kwargs = dict(probe_images=x, probe_labels=y, log_dir=tmp_path / "r")
        kwargs.update(overrides)
        model = compiled()
        with pytest.raises(ValueError, match=pattern):
            model.fit(x, y, epochs=1, verbose=0, callbacks=[CAMTracker(**kwargs), Count()])
    assert seen == []

    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="`log_dir` .* is a file"):
        fit_with(CAMTracker(x, y, log_dir=a_file), extra=[Count()])
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o500)
    try:
        if not os.access(read_only, os.W_OK):  # root may write anywhere
            with pytest.raises(ValueError, match="`log_dir` .* is not writable"):
                fit_with(CAMTracker(x, y, log_dir=read_only / "run"))
    finally:
        read_only.chmod(0o700)

    fit_with(CAMTracker(x, y, log_dir=tmp_path / "used", animate=None), extra=[Count()])
    with pytest.raises(ValueError, match="different probes.*new `log_dir`"):
        fit_with(CAMTracker(x[::-1], y[::-1], log_dir=tmp_path / "used"), extra=[Count()])
    assert seen == [0]


def test_binary_sigmoid_model_with_0_1_labels(tmp_path):
    x, _ = data(32)
    inp = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inp)
    out = keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inp, out)
    model.compile("adam", "binary_crossentropy")
    y = (x.mean(axis=(1, 2, 3)) > np.median(x.mean(axis=(1, 2, 3)))).astype(np.int64)
    tracker = CAMTracker(x[:6], y[:6], log_dir=tmp_path, class_names=["cat", "dog"])
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[tracker])
    run = load_run(tmp_path)
    assert run.meta["n_classes"] == 2 and run.meta["score"] == "logit"
    p = model.predict(x[:6], verbose=0)
    np.testing.assert_allclose(run.probabilities[-1], np.concatenate([1 - p, p], 1), atol=1e-5)
    assert run.targets[-1].tolist() == (p[:, 0] > 0.5).astype(int).tolist()
    want = compute_cams(model, x[:6])
    np.testing.assert_allclose(run.heatmaps[-1], want.heatmaps, atol=1e-5)
    # A confident "cat" (p near 0) is confident: flags read the two-class probabilities.
    top = np.maximum(p, 1 - p)[:, 0]
    np.testing.assert_array_equal(run.flags["low_confidence"], top < 0.5)
    assert len(list((tmp_path / "cam" / "animations").glob("probe_*.gif"))) == 6


def test_heads_that_are_not_classifiers_fail_before_epoch_0(tmp_path):
    x, y = data(8)
    seen = []

    class Count(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(epoch)

    inp = keras.Input((32, 32, 3))
    shared = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="shared")
    h = shared(shared(inp))
    g = keras.layers.GlobalAveragePooling2D()(h)
    regression = keras.Model(inp, keras.layers.Dense(1)(g))
    two_runs = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(g))
    for model, layer, pattern in (
        (regression, None, "one unit with no sigmoid"),
        (two_runs, "shared", "`layer` 'shared' runs 2 times"),
    ):
        model.compile("adam", "mse")
        tracker = CAMTracker(x, y, log_dir=tmp_path / "r", layer=layer)
        with pytest.raises(ValueError, match=pattern):
            model.fit(x, y, epochs=1, verbose=0, callbacks=[tracker, Count()])
    assert seen == []


def test_read_only_log_dir_is_refused_even_for_root(tmp_path, monkeypatch):
    from cam_callback.tracker import callback

    monkeypatch.setattr(callback.os, "access", lambda path, mode: False)
    x, y = data(8)
    with pytest.raises(ValueError, match="is not writable"):
        fit_with(CAMTracker(x, y, log_dir=tmp_path / "run"))


# ------------------------------------------------------------------ model shapes


def channel_model(channels):
    inp = keras.Input((32, 32, channels))
    h = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inp)
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inp, out)
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def test_any_channel_count_records_a_readable_run(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 16)
    for channels in (1, 2, 4, 13):
        x = rng.normal(size=(16, 32, 32, channels)).astype(np.float32)
        model = channel_model(channels)
        log_dir = tmp_path / f"c{channels}"
        with caught() as seen:
            model.fit(
                x,
                y,
                epochs=1,
                verbose=0,
                callbacks=[CAMTracker(x[:3], y[:3], log_dir=log_dir, animate="gif")],
            )
        assert tracker_warnings(seen) == [], (channels, tracker_warnings(seen))
        run = load_run(log_dir)
        assert run.epochs == [-1, 0] and run.meta["probe_shape"] == [32, 32, channels]
        # Drawn as: 1 channel grey, 4 RGB without the fourth, 2 or 13 the first in grey.
        shown = x[:3, ..., :3] if channels == 4 else x[:3, ..., :1]
        lo = shown.min(axis=(1, 2, 3), keepdims=True)
        hi = shown.max(axis=(1, 2, 3), keepdims=True)
        want = ((shown.astype(np.float64) - lo) / (hi - lo) * 255 + 0.5).astype(np.uint8)
        want = np.broadcast_to(want, (3, 32, 32, 3))
        assert run.images.shape == (3, 32, 32, 3)
        np.testing.assert_array_equal(run.images, want)
        np.testing.assert_allclose(run.heatmaps[-1], compute_cams(model, x[:3]).heatmaps, atol=1e-5)
        gif = Image.open(log_dir / "cam" / "animations" / "probe_000.gif")
        assert gif.n_frames == 2
    # Grey display images of the user's are drawn as RGB too.
    grey = (np.arange(3 * 32 * 32) % 256).astype(np.uint8).reshape(3, 32, 32)
    tracker = CAMTracker(x[:3], y[:3], log_dir=tmp_path / "g", display_images=grey)
    np.testing.assert_array_equal(tracker.display_images[..., 1], grey)


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv_a = keras.layers.Conv2D(8, 3, activation="relu", name="conv_a")
        self.conv_b = keras.layers.Conv2D(8, 3, activation="relu", name="conv_b")
        self.gap = keras.layers.GlobalAveragePooling2D()
        self.head = keras.layers.Dense(3, activation="softmax")

    def call(self, x):
        return self.head(self.gap(self.conv_b(self.conv_a(x))))


def test_unbuilt_subclassed_model_records_without_a_false_shared_layer(tmp_path):
    x, y = data(32)
    model = Subclassed()  # the usual idiom: never called before fit
    model.compile("adam", "sparse_categorical_crossentropy")
    assert not model.built
    model.fit(
        x,
        y,
        epochs=2,
        verbose=0,
        callbacks=[CAMTracker(x[:3], y[:3], log_dir=tmp_path, animate=None)],
    )
    run = load_run(tmp_path)
    assert run.epochs == [-1, 0, 1] and run.layer == "conv_b"
    np.testing.assert_allclose(run.heatmaps[-1], compute_cams(model, x[:3]).heatmaps, atol=1e-5)


# ------------------------------------------------------------------ resume, cadence, crashes


def test_resume_with_initial_epoch(tmp_path):
    x, y = data(32)
    model = compiled()
    model.fit(
        x,
        y,
        epochs=2,
        verbose=0,
        callbacks=[CAMTracker(x[:3], y[:3], log_dir=tmp_path, animate=None)],
    )
    baseline = (tmp_path / "cam" / "epochs" / "baseline.npz").read_bytes()
    model.fit(
        x,
        y,
        epochs=4,
        initial_epoch=2,
        verbose=0,
        callbacks=[CAMTracker(x[:3], y[:3], log_dir=tmp_path, animate="gif")],
    )
    run = load_run(tmp_path)
    assert run.epochs == [-1, 0, 1, 2, 3]  # one baseline: the resumed fit records none
    assert (tmp_path / "cam" / "epochs" / "baseline.npz").read_bytes() == baseline
    assert Image.open(tmp_path / "cam" / "animations" / "probe_000.gif").n_frames == 5
    # drift at the resumed epoch is measured against the epoch recorded before the restart.
    from cam_callback.metrics import cosine_drift

    np.testing.assert_allclose(
        run.metrics["drift"][2], cosine_drift(run.heatmaps[2], run.heatmaps[1]), atol=1e-6
    )
    np.testing.assert_allclose(  # and "first" is the state before training
        run.metrics["drift_from_first"][4],
        cosine_drift(run.heatmaps[4], run.heatmaps[0]),
        atol=1e-6,
    )


def test_every_n_epochs(tmp_path):
    x, y = data(8)
    fit_with(CAMTracker(x, y, log_dir=tmp_path, every_n_epochs=2, animate=None), epochs=5)
    assert load_run(tmp_path).epochs == [-1, 1, 3, 4]  # the last epoch always


# ------------------------------------------------------------------ one run per record


def record_bytes(log_dir):
    return {p.name: p.read_bytes() for p in (Path(log_dir) / "cam" / "epochs").glob("epoch_*")}


class Trained(keras.callbacks.Callback):
    """Counts the batches that really trained."""

    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


def test_fit_twice_on_one_tracker_continues_the_numbering(tmp_path):
    x, y = data(32)
    model = compiled()
    tracker = CAMTracker(x[:3], y[:3], log_dir=tmp_path, animate="gif")
    model.fit(x, y, epochs=3, verbose=0, callbacks=[tracker])
    first = record_bytes(tmp_path)
    history = model.fit(x, y, epochs=2, verbose=0, callbacks=[tracker])
    assert history.epoch == [0, 1]  # Keras counts again from 0 ...
    run = load_run(tmp_path)
    assert run.epochs == [-1, 0, 1, 2, 3, 4]  # ... the record goes on
    assert {k: v for k, v in record_bytes(tmp_path).items() if k in first} == first
    expected = compute_cams(model, x[:3])
    np.testing.assert_allclose(run.heatmaps[-1], expected.heatmaps, atol=1e-5)
    assert Image.open(tmp_path / "cam" / "animations" / "probe_000.gif").n_frames == 6


def test_a_new_fit_never_overwrites_recorded_epochs(tmp_path):
    x, y = data(32)
    model = compiled()
    model.fit(x, y, epochs=3, verbose=0, callbacks=[CAMTracker(x[:3], y[:3], log_dir=tmp_path)])
    before = record_bytes(tmp_path)
    trained = Trained()
    for initial_epoch in (0, 2):
        with pytest.raises(ValueError, match=r"already holds epochs up to 2.*initial_epoch=3"):
            model.fit(
                x,
                y,
                epochs=5,
                initial_epoch=initial_epoch,
                verbose=0,
                callbacks=[CAMTracker(x[:3], y[:3], log_dir=tmp_path), trained],
            )
    assert trained.batches == 0, "refused before its first epoch"
    assert record_bytes(tmp_path) == before
    # The lock was released by the refusal: the fix it names works.
    model.fit(
        x,
        y,
        epochs=4,
        initial_epoch=3,
        verbose=0,
        callbacks=[CAMTracker(x[:3], y[:3], log_dir=tmp_path, animate=None)],
    )
    assert load_run(tmp_path).epochs == [-1, 0, 1, 2, 3]


def weights_ledger(log_dir):
    data = json.loads((Path(log_dir) / "cam" / "weights.json").read_text())["weights"]
    return {int(e): f for e, f in data.items()}


def test_final_weights_epoch_is_checked_when_read(tmp_path):
    from cam_callback.record import RecordError, RecordWriter

    writer = RecordWriter(tmp_path)
    meta = {
        "layer": "conv2",
        "method": "gradcam",
        "fingerprint": "f",
        "n_probes": 1,
        "n_classes": 2,
        "map_shape": [2, 2],
    }
    writer.open(meta, images=np.zeros((1, 4, 4, 3), np.uint8))
    writer.note_final_weights(-1)
    assert load_run(tmp_path).meta["final_weights_epoch"] == -1
    writer.note_final_weights(None)
    assert load_run(tmp_path).meta["final_weights_epoch"] is None
    for bad in ("2", -2, True):
        writer.note_final_weights(bad)
        with pytest.raises(RecordError, match="`final_weights_epoch` must be null or an epoch"):
            load_run(tmp_path)
    writer.close()


def test_fresh_model_on_an_old_record_is_refused_before_any_batch(tmp_path):
    from cam_callback.core.fingerprint import weights_fingerprint

    x, y = data(32)
    model = compiled()
    tracker = CAMTracker(x[:3], y[:3], log_dir=tmp_path, animate=None)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[tracker])
    before = record_bytes(tmp_path)
    ledger = weights_ledger(tmp_path)
    assert sorted(ledger) == [-1, 0, 1] and ledger[1] == weights_fingerprint(model)
    keras.utils.set_random_seed(7)  # a freshly initialised model: other weights
    trained = Trained()
    for make, kwargs in (
        (lambda: tracker, {}),  # the same tracker fit again on another model
        (lambda: CAMTracker(x[:3], y[:3], log_dir=tmp_path), {"initial_epoch": 2}),
    ):
        with pytest.raises(ValueError, match="not those of any epoch") as refused:
            compiled().fit(x, y, epochs=4, verbose=0, callbacks=[make(), trained], **kwargs)
        assert "overwrite=True" in str(refused.value) and "new `log_dir`" in str(refused.value)
    assert trained.batches == 0 and record_bytes(tmp_path) == before
    # overwrite=True starts the record over: the old epochs, events and animations are gone.
    fresh = compiled()
    at_start = compute_cams(fresh, x[:3])
    fresh.fit(
        x,
        y,
        epochs=1,
        verbose=0,
        callbacks=[CAMTracker(x[:3], y[:3], log_dir=tmp_path, overwrite=True, animate=None)],
    )
    run = load_run(tmp_path)
    assert run.epochs == [-1, 0] and len(list((tmp_path / "cam").glob("events.*"))) == 1
    np.testing.assert_allclose(run.heatmaps[0], at_start.heatmaps, atol=1e-5)
    np.testing.assert_allclose(run.heatmaps[1], compute_cams(fresh, x[:3]).heatmaps, atol=1e-5)
    assert weights_ledger(tmp_path)[0] == weights_fingerprint(fresh)


def test_weights_of_an_earlier_epoch_set_the_later_epochs_aside(tmp_path):
    x, y = data(32)
    model = compiled()
    saved = {}

    class Keep(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            saved[epoch] = self.model.get_weights()

    tracker = CAMTracker(x[:3], y[:3], log_dir=tmp_path)
    model.fit(x, y, epochs=4, verbose=0, callbacks=[tracker, Keep()])
    before = record_bytes(tmp_path)
    ledger = weights_ledger(tmp_path)
    model.set_weights(saved[1])  # a checkpoint older than the record
    trained = Trained()
    for initial_epoch, pattern in (
        (1, r"already holds epochs up to 1 .*initial_epoch=2"),
        (3, r"claim 1 epoch\(s\) of training that did not happen.*initial_epoch=2"),
    ):
        with pytest.raises(ValueError, match=pattern):
            model.fit(
                x,
                y,
                epochs=5,
                initial_epoch=initial_epoch,
                verbose=0,
                callbacks=[CAMTracker(x[:3], y[:3], log_dir=tmp_path), trained],
            )
    assert trained.batches == 0 and record_bytes(tmp_path) == before
    with caught() as seen:
        model.fit(
            x,
            y,
            epochs=3,
            initial_epoch=2,
            verbose=0,
            callbacks=[CAMTracker(x[:3], y[:3], log_dir=tmp_path)],
        )
    (notice,) = tracker_warnings(seen)
    assert "weights of epoch 1 of the record" in notice and "Epochs 2 to 3" in notice
    run = load_run(tmp_path)
    assert run.epochs == [-1, 0, 1, 2]  # epoch 2 of the new line; its epoch 3 never mixed in
    kept = {k: v for k, v in record_bytes(tmp_path).items() if k < "epoch_000002.npz"}
    assert kept == {k: v for k, v in before.items() if k < "epoch_000002.npz"}
    (aside,) = (tmp_path / "cam" / "set_aside").iterdir()
    moved = {p.name: p.read_bytes() for p in (aside / "epochs").iterdir()}
    assert moved == {k: before[k] for k in ("epoch_000002.npz", "epoch_000003.npz")}
    old = json.loads((aside / "weights.json").read_text())["weights"]
    assert old == {"2": ledger[2], "3": ledger[3]}
    # The record's own fingerprints are its line only: the old epoch 3 cannot be resumed.
    now = weights_ledger(tmp_path)
    assert sorted(now) == [-1, 0, 1, 2] and {e: now[e] for e in (-1, 0, 1)} == {
        e: ledger[e] for e in (-1, 0, 1)
    }
    np.testing.assert_allclose(run.heatmaps[-1], compute_cams(model, x[:3]).heatmaps, atol=1e-5)
    from cam_callback.metrics import cosine_drift  # measured against epoch 1, not the old 3

    np.testing.assert_allclose(
        run.metrics["drift"][-1], cosine_drift(run.heatmaps[-1], run.heatmaps[-2]), atol=1e-6
    )
    assert Image.open(tmp_path / "cam" / "animations" / "probe_000.gif").n_frames == 4


def test_backup_and_restore_resumes_after_a_sigkill_between_tracker_and_backup(tmp_path):
    kill_child_at("backup", tmp_path, "STOP")  # epoch 2 recorded; BackupAndRestore still holds 1
    killed = record_bytes(tmp_path)
    assert load_run(tmp_path).epochs == [-1, 0, 1, 2]
    ledger = weights_ledger(tmp_path)
    stdout = run_child("backup-resume", tmp_path)
    assert "ok" in stdout
    final = stdout.split("weights ")[1].split()[0]
    run = load_run(tmp_path)
    assert run.epochs == [-1, 0, 1, 2, 3]
    (aside,) = (tmp_path / "cam" / "set_aside").iterdir()
    assert [p.name for p in (aside / "epochs").iterdir()] == ["epoch_000002.npz"]
    assert (aside / "epochs" / "epoch_000002.npz").read_bytes() == killed["epoch_000002.npz"]
    assert json.loads((aside / "weights.json").read_text())["weights"] == {"2": ledger[2]}
    now = weights_ledger(tmp_path)
    assert {e: now[e] for e in (-1, 0, 1)} == {e: ledger[e] for e in (-1, 0, 1)}
    assert now[3] == final and run.meta["final_weights_epoch"] == 3
    np.testing.assert_allclose(run.heatmaps[-1], np.load(tmp_path / "final_maps.npy"), atol=1e-5)
    assert Image.open(tmp_path / "cam" / "animations" / "probe_000.gif").n_frames == 5


class Score(keras.callbacks.Callback):
    """Puts a made-up validation score in the logs: best at epoch 2, worse after."""

    def on_epoch_end(self, epoch, logs=None):
        logs["score"] = [5.0, 4.0, 3.0, 3.5, 4.0, 4.5, 5.0][epoch]


@pytest.mark.parametrize(("stopper_first", "every"), [(True, 4), (False, 4), (False, 1)])
def test_early_stopping_epoch_is_recorded_and_its_restored_weights_noted(
    tmp_path, stopper_first, every
):
    x, y = data(32)
    model = compiled()
    stopper = keras.callbacks.EarlyStopping(
        "score", patience=2, mode="min", restore_best_weights=True
    )
    tracker = CAMTracker(x[:3], y[:3], log_dir=tmp_path, every_n_epochs=every)
    order = [stopper, tracker] if stopper_first else [tracker, stopper]
    history = model.fit(x, y, epochs=7, verbose=0, callbacks=[Score(), *order])
    assert history.epoch == [0, 1, 2, 3, 4] and stopper.best_epoch == 2
    run = load_run(tmp_path)
    # Due every 4th epoch (3), and the epoch EarlyStopping stopped at (4), whatever the order:
    # listed first it stops before the tracker's on_epoch_end, listed after, once it is done.
    assert run.epochs == ([-1, 3, 4] if every == 4 else [-1, 0, 1, 2, 3, 4])
    assert run.meta["final_weights_epoch"] == 2  # the model keeps epoch 2's weights
    if every == 1:
        np.testing.assert_allclose(run.heatmaps[3], compute_cams(model, x[:3]).heatmaps, atol=1e-5)
    # Fitting on from those weights: the record continues from epoch 2, and its epochs 3
    # and 4 (of weights the model no longer holds) are set aside.
    with caught() as seen:
        model.fit(x, y, epochs=1, verbose=0, callbacks=[tracker])
    assert any("Epochs 3 to 4" in w for w in tracker_warnings(seen)), tracker_warnings(seen)
    run = load_run(tmp_path)
    assert run.epochs == ([-1, 3] if every == 4 else [-1, 0, 1, 2, 3])
    np.testing.assert_allclose(run.heatmaps[-1], compute_cams(model, x[:3]).heatmaps, atol=1e-5)


def test_last_epoch_is_recorded_before_an_earlier_callback_restores_weights(tmp_path):
    # Listed first, EarlyStopping never stops here, but restores its best weights in its
    # on_train_end, before the tracker's: the last epoch must be recorded at its own end.
    x, y = data(32)
    model = compiled()
    stopper = keras.callbacks.EarlyStopping(
        "score", patience=10, mode="min", restore_best_weights=True
    )
    tracker = CAMTracker(x[:3], y[:3], log_dir=tmp_path, every_n_epochs=4, animate=None)
    model.fit(x, y, epochs=6, verbose=0, callbacks=[Score(), stopper, tracker])
    run = load_run(tmp_path)
    assert run.epochs == [-1, 3, 5] and run.meta["final_weights_epoch"] == 2


def fine_tune_model():
    """A classifier around a nested backbone, as in transfer learning."""
    b_in = keras.Input((32, 32, 3))
    b = keras.layers.Conv2D(8, 3, activation="relu", name="conv_a")(b_in)
    backbone = keras.Model(b_in, b, name="backbone")
    inp = keras.Input((32, 32, 3))
    h = keras.layers.GlobalAveragePooling2D()(backbone(inp))
    out = keras.layers.Dense(3, activation="softmax", name="head")(h)
    return keras.Model(inp, out), backbone


@pytest.mark.parametrize("same_tracker", [True, False])
def test_two_phase_fine_tuning_gives_one_continuous_record(tmp_path, same_tracker):
    x, y = data(32)
    model, backbone = fine_tune_model()
    backbone.trainable = False
    model.compile("adam", "sparse_categorical_crossentropy")
    make = lambda: CAMTracker(x[:3], y[:3], log_dir=tmp_path, layer="backbone/conv_a")  # noqa: E731
    tracker = make()
    history = model.fit(x, y, epochs=2, verbose=0, callbacks=[tracker])
    frozen = load_run(tmp_path).heatmaps
    backbone.trainable = True
    model.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
    model.fit(
        x,
        y,
        epochs=4,
        initial_epoch=history.epoch[-1] + 1,
        verbose=0,
        callbacks=[tracker if same_tracker else make()],
    )
    run = load_run(tmp_path)
    assert run.epochs == [-1, 0, 1, 2, 3]
    np.testing.assert_array_equal(run.heatmaps[:3], frozen)
    np.testing.assert_allclose(
        run.heatmaps[4], compute_cams(model, x[:3], layer="backbone/conv_a").heatmaps, atol=1e-5
    )
    assert Image.open(tmp_path / "cam" / "animations" / "probe_000.gif").n_frames == 5


def test_resume_with_other_settings_or_model_is_refused_before_training(tmp_path):
    x, y = data(32)
    model = compiled()
    model.fit(x, y, epochs=1, verbose=0, callbacks=[CAMTracker(x[:3], y[:3], log_dir=tmp_path)])
    stored = json.loads((tmp_path / "cam" / "record.json").read_text())
    assert stored["score"] == "logit" and stored["layer"] == "conv2"
    assert stored["n_classes"] == 3 and stored["map_shape"] == [13, 13]
    assert stored["target"] == "predicted" and stored["every_n_epochs"] == 1
    assert stored["mask_kind"] == "object" and stored["mask_fingerprint"] is None
    assert stored["probe_shape"] == [32, 32, 3] and "package_version" in stored
    trained = Trained()
    cases = [
        (dict(score="probability"), model, "`score` differs.*'logit' there, 'probability' now"),
        (dict(method="layercam"), model, "`method` differs"),
        (dict(target=1), model, "`target` differs"),
        (dict(low_confidence=0.7), model, "`low_confidence` differs"),
    ]
    other = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(4, 3, name="conv2"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(5, activation="softmax"),
        ]
    )
    other.compile("adam", "sparse_categorical_crossentropy")
    cases.append(({}, other, "`n_classes` differs.*3 there, 5 now"))
    for kwargs, m, pattern in cases:
        tracker = CAMTracker(x[:3], y[:3], log_dir=tmp_path, **kwargs)
        with pytest.raises(ValueError, match=pattern):
            m.fit(x, y, epochs=2, initial_epoch=1, verbose=0, callbacks=[tracker, trained])
    assert trained.batches == 0
    assert load_run(tmp_path).epochs == [-1, 0]


def hold_lock(log_dir):
    """A second process that holds the record's writer lock until told to stop."""
    code = (
        "import sys; from cam_callback.record import RecordWriter;"
        "w = RecordWriter(sys.argv[1]); w.lock(); print('locked', flush=True); sys.stdin.read()"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(log_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(HERE.parent)},
    )
    assert child.stdout.readline().strip() == "locked"
    return child


def test_second_writer_is_refused(tmp_path):
    x, y = data(32)
    trained = Trained()
    child = hold_lock(tmp_path)
    try:
        busy = rf"being written by another tracker \(process {child.pid}\)"
        with pytest.raises(ValueError, match=busy):
            fit_with(CAMTracker(x[:3], y[:3], log_dir=tmp_path), extra=[trained])
    finally:
        child.communicate("", timeout=30)
    assert trained.batches == 0
    # Two trackers on one log_dir in one fit: the second is refused before any epoch.
    a = CAMTracker(x[:3], y[:3], log_dir=tmp_path / "two", animate=None)
    b = CAMTracker(x[:3], y[:3], log_dir=tmp_path / "two", animate=None)
    with pytest.raises(ValueError, match="being written by another tracker") as refused:
        fit_with(a, extra=[b, trained])
    assert trained.batches == 0
    # It says the holder is this process, and which tracker it is.
    assert f"another tracker in this process (pid {os.getpid()})" in str(refused.value)
    assert f"CAMTracker at 0x{id(a):x} with log_dir={str(tmp_path / 'two')!r}" in str(refused.value)
    a.close()
    fit_with(b)  # the lock went with a's session
    assert load_run(tmp_path / "two").epochs == [-1, 0]


# ------------------------------------------------------------------ failures stay inside


def caught():
    """Records every warning, however often it was shown before."""
    ctx = warnings.catch_warnings(record=True)

    class Ctx:
        def __enter__(self):
            seen = ctx.__enter__()
            warnings.simplefilter("always")
            return seen

        def __exit__(self, *exc):
            return ctx.__exit__(*exc)

    return Ctx()


def tracker_warnings(record):
    from cam_callback.tracker.callback import TrackerWarning

    return [str(w.message) for w in record if issubclass(w.category, TrackerWarning)]


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "cam_callback", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(HERE.parent), "PYTHONWARNINGS": "ignore"},
    )


def test_nan_diverging_model_trains_to_the_end_and_is_recorded_as_is(tmp_path):
    x, y = data(32)
    model = small_cnn(3)
    model.compile(keras.optimizers.SGD(1e10), "mse")  # diverges to NaN in the first epoch
    probes = np.r_[np.flatnonzero(y == 0)[:2], np.flatnonzero(y != 0)[:2]]  # class 0: argmax(NaN)
    tracker = CAMTracker(x[probes], y[probes], log_dir=tmp_path, class_names=CLASSES)
    with caught() as seen:
        history = model.fit(
            x, np.eye(3)[y] * 1e6, epochs=3, batch_size=8, verbose=0, callbacks=[tracker]
        )
    assert tracker_warnings(seen) == []  # NaN is data, not a failure
    assert len(history.epoch) == 3 and not np.isfinite(history.history["loss"][-1])
    run = load_run(tmp_path)
    assert run.epochs == [-1, 0, 1, 2]
    assert not np.isfinite(run.probabilities[-1]).any()
    assert run.flags["non_finite"].all()
    # A NaN score has no map: stored as NaN ("not computed"), not as an all-zero finite map.
    assert np.isfinite(run.heatmaps[0]).all()  # before training the model was finite
    assert np.isnan(run.heatmaps[1:]).all()
    for name in ("concentration", "drift", "margin", "predicted_class"):
        assert np.isnan(run.metrics[name][1:]).all(), name
    # argmax(NaN) is 0, but a non-finite prediction is never correct.
    assert (run.labels == 0).any()
    assert run.metrics["correct"][1:].max() == 0.0
    assert run.flags["misclassified"].all()
    flags = json.loads((tmp_path / "cam" / "flags.json").read_text())["flags"]
    assert flags["misclassified"] == [True] * 4
    gif = Image.open(tmp_path / "cam" / "animations" / "probe_000.gif")
    assert gif.n_frames == 4
    acc = events(tmp_path / "cam")
    assert [e.step for e in acc.Tensors("cam/grid")] == [0, 1, 2]
    info = cli("info", tmp_path)
    assert info.returncode == 0, info.stderr
    assert "non_finite: probes 0, 1, 2, 3" in info.stdout
    report = cli("report", tmp_path)
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "cam" / "report" / "index.html").read_text()
    assert page.count('class="badge non_finite"') == 4
    assert page.count('class="p">p(true) nan') == 4


def test_full_disk_while_recording_warns_once_and_training_goes_on(tmp_path, monkeypatch):
    import errno

    from cam_callback import record

    real = record.writer.atomic_write_bytes  # epoch files are written there

    def full_from_epoch_2(path, data, *args):
        if path.name >= "epoch_000002.npz" and path.name.startswith("epoch_"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data, *args)

    monkeypatch.setattr(record.writer, "atomic_write_bytes", full_from_epoch_2)
    x, y = data(32)
    tracker = CAMTracker(x[:3], y[:3], log_dir=tmp_path)
    stopped = []

    class Peek(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            time.sleep(0.2)  # room for the background writer to meet the full disk
            stopped.append(tracker._guard.steps is None)

    with caught() as seen:
        model = compiled()
        history = model.fit(x, y, epochs=6, verbose=0, callbacks=[tracker, Peek()])
    found = tracker_warnings(seen)
    assert len(found) == 1 and "recording at epoch 2 failed: OSError" in found[0], found
    assert "No space left on device" in found[0]
    assert history.epoch == [0, 1, 2, 3, 4, 5]
    # Recording stopped during the fit (no more maps computed), not only at its end.
    assert stopped[:2] == [False, False] and stopped[-1] is True, stopped
    assert load_run(tmp_path).epochs == [-1, 0, 1]
    assert tracker._guard.steps is None
    record.RecordWriter(tmp_path).lock()  # released
    assert cli("info", tmp_path).returncode == 0
    monkeypatch.undo()
    # Room again: fitting the same tracker again goes on after the 6 epochs trained, not
    # after the 2 recorded.
    model.fit(x, y, epochs=2, verbose=0, callbacks=[tracker])
    assert load_run(tmp_path).epochs == [-1, 0, 1, 6, 7]
    with pytest.raises(OSError, match="No space left"):
        monkeypatch.setattr(record.writer, "atomic_write_bytes", full_from_epoch_2)
        compiled().fit(
            x,
            y,
            epochs=3,
            verbose=0,
            callbacks=[CAMTracker(x[:3], y[:3], log_dir=tmp_path / "r", on_error="raise")],
        )


def test_deleted_log_dir_stops_recording_and_is_not_recreated(tmp_path):
    import shutil

    x, y = data(32)
    log_dir = tmp_path / "run"
    tracker = CAMTracker(x[:3], y[:3], log_dir=log_dir, animate=("gif", "mp4"))

    class Delete(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            while epoch == 1 and log_dir.exists():  # while epoch 1 is handed to the background
                shutil.rmtree(log_dir, ignore_errors=True)  # files may come and go meanwhile

    with caught() as seen:
        history = compiled().fit(x, y, epochs=5, verbose=0, callbacks=[tracker, Delete()])
    assert history.epoch == [0, 1, 2, 3, 4]
    found = tracker_warnings(seen)
    assert len(found) == 1, found
    assert "was deleted during training" in found[0] and "not recreated" in found[0]
    assert "keeps what was written" not in found[0]
    assert not log_dir.exists(), [str(p) for p in log_dir.rglob("*")]  # no orphan cam/epochs/
    assert tracker._guard.steps is None


def test_colliding_class_names_keep_every_class_scalars(tmp_path):
    x, y = data(32)
    names = ["Cat!", "cat?", "dog"]
    probes = np.r_[
        np.flatnonzero(y == 0)[:2], np.flatnonzero(y == 1)[:1], np.flatnonzero(y == 2)[:1]
    ]
    fit_with(CAMTracker(x[probes], y[probes], log_dir=tmp_path, class_names=names), epochs=2)
    run = load_run(tmp_path)
    acc = events(tmp_path / "cam")
    tags = set(acc.Tags()["tensors"])
    want = {0: "cam/class_0_cat", 1: "cam/class_1_cat", 2: "cam/class_dog"}
    for cls, group in want.items():
        tag = f"{group}/mean_true_class_probability"
        assert tag in tags, sorted(t for t in tags if "class" in t)
        values = [float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)]
        members = run.labels == cls
        expected = run.metrics["true_class_probability"][1:, members].mean(1)
        np.testing.assert_allclose(values, expected, rtol=1e-5)
    assert not any(t.startswith("cam/class_cat/") for t in tags)


def test_full_disk_while_writing_gifs_still_returns_history(tmp_path, monkeypatch):
    import errno

    from cam_callback import animate

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    # GIFs grow on disk as epochs arrive; the disk fills when they are finished.
    monkeypatch.setattr(animate.GifStream, "finish", full)
    x, y = data(32)
    after_fit = []
    with caught() as seen:
        history = compiled().fit(
            x, y, epochs=2, verbose=0, callbacks=[CAMTracker(x[:3], y[:3], log_dir=tmp_path)]
        )
        after_fit.append("model saved")
    found = tracker_warnings(seen)
    assert len(found) == 1 and "writing the animations failed" in found[0], found
    assert history.epoch == [0, 1] and after_fit == ["model saved"]
    assert load_run(tmp_path).epochs == [-1, 0, 1]
    assert json.loads((tmp_path / "cam" / "flags.json").read_text())["n_epochs"] == 3

    # The disk full for flags.json too: each part warns once, and fit still returns.
    from cam_callback import record

    real = record.run.atomic_write_bytes  # flags.json is written there
    monkeypatch.setattr(
        record.run,
        "atomic_write_bytes",
        lambda path, data, *a: (
            full(path, data) if path.name == "flags.json" else real(path, data, *a)
        ),
    )
    with caught() as seen:
        history = compiled().fit(
            x, y, epochs=1, verbose=0, callbacks=[CAMTracker(x[:3], y[:3], log_dir=tmp_path / "b")]
        )
    found = tracker_warnings(seen)
    assert len(found) == 2 and "writing flags.json failed" in found[0], found
    assert "writing the animations failed" in found[1] and history.epoch == [0]
    assert load_run(tmp_path / "b").flags["misclassified"].shape == (3,)


def test_render_errors_warn_once_and_stop_only_tensorboard(tmp_path, monkeypatch):
    from cam_callback.tracker import pipeline

    calls = []

    def broken(self, recorded, *args, **kwargs):
        calls.append(recorded.epoch)
        raise RuntimeError("TensorBoard is gone")

    monkeypatch.setattr(pipeline.FrameStage, "draw", broken)
    x, y = data(8)
    with caught() as seen:
        fit_with(CAMTracker(x, y, log_dir=tmp_path, animate=None), epochs=4)
    found = tracker_warnings(seen)
    assert len(found) == 1 and "TensorBoard frames before training failed" in found[0], found
    assert calls[0] == -1 and len(calls) <= 2  # not fed again once it failed
    assert load_run(tmp_path).epochs == [-1, 0, 1, 2, 3]  # recording went on


def test_full_tmpfs_returns_history_and_leaves_a_readable_record(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here; the injected ENOSPC tests cover this")
    try:
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        (disk / "filler").write_bytes(b"\0" * (free - 96 * 1024))
        x, y = data(32)
        with caught() as seen:
            history = compiled().fit(
                x,
                y,
                epochs=6,
                verbose=0,
                callbacks=[CAMTracker(x[:4], y[:4], log_dir=disk / "run")],
            )
        assert history.epoch == [0, 1, 2, 3, 4, 5]
        assert len(tracker_warnings(seen)) >= 1
        run = load_run(disk / "run")
        assert run.epochs == list(range(-1, len(run.epochs) - 1))
        info = cli("info", disk / "run")
        assert info.returncode == 0 and info.stderr == "", info.stderr
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_close_detaches_the_finalizer_and_it_is_safe_on_the_render_thread(tmp_path, monkeypatch):
    from cam_callback import record
    from cam_callback.tracker import pipeline, watch

    # No watch: under load it could end the abandoned fit itself while this test runs.
    monkeypatch.setattr(watch, "fit_frame", lambda model: None)
    x, y = data(8)
    tracker = CAMTracker(x, y, log_dir=tmp_path)

    class Boom(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        fit_with(tracker, epochs=3, extra=[Boom()])
    finalizer, session = tracker._guard.finalizer, tracker._guard.steps.pipeline
    assert finalizer.alive
    # The garbage collector may run the finalizer on a background thread itself.
    monkeypatch.setattr(pipeline.FrameStage, "draw", lambda self, *a, **k: finalizer())
    threads = [session._record_thread, session._frame_thread]
    session._frames.put(pipeline.RecordedEpoch(1, None, None, None))  # drawn by the patch
    for thread in threads:
        thread.join(timeout=30)
    assert not any(t.is_alive() for t in threads) and not session.frames.summaries.is_open
    record.RecordWriter(tmp_path).lock()  # the record's lock went with it
    tracker.close()
    assert tracker._guard.finalizer is None and not finalizer.alive
    # close() detaches: a closed tracker's finalizer never runs again.
    second = CAMTracker(x, y, log_dir=tmp_path / "b", animate=None)
    during = []

    class Peek(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            during.append(second._guard.finalizer)

    fit_with(second, extra=[Peek()])
    assert during[0].alive is False and second._guard.finalizer is None


def test_exception_inside_fit_keeps_record_and_closes_writer(tmp_path):
    x, y = data(8)

    class Boom(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("user callback failed")

    with CAMTracker(x, y, log_dir=tmp_path) as tracker:
        with pytest.raises(RuntimeError, match="user callback failed"):
            fit_with(tracker, epochs=5, extra=[Boom()])
    assert tracker._guard.steps is None  # fit calls no hook when it raises: ended here or earlier
    assert load_run(tmp_path).epochs == [-1, 0, 1]
    assert (tmp_path / "cam" / "flags.json").is_file()
    acc = events(tmp_path / "cam")
    assert [e.step for e in acc.Tensors("cam/grid")] == [0, 1]


class CtrlC(keras.callbacks.Callback):
    """Raises KeyboardInterrupt after the first batch of Keras's epoch 1, as Ctrl-C does."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == 1 and batch == 0:
            raise KeyboardInterrupt


def ended_like_a_finished_fit(log_dir):
    """Nothing running or locked, flags, GIFs and page written, nothing left in .partial."""
    for thread in threading.enumerate():
        if thread.name.startswith("cam-tracker"):
            thread.join(timeout=60)
    assert [t.name for t in threading.enumerate() if t.name.startswith("cam-tracker")] == []
    probe = RecordWriter(log_dir)
    probe.lock()  # the writer lock is free
    probe.close()
    record = log_dir / "cam"
    assert (record / "flags.json").is_file() and (record / "animations" / "grid.gif").is_file()
    assert (record / "report" / "index.html").is_file()
    assert list((record / "animations").glob(".partial/*")) == []


def test_ctrl_c_mid_epoch_then_fit_again_continues_the_record(tmp_path, capsys, monkeypatch):
    from cam_callback.tracker import watch

    x, y = data(32)
    model = compiled()
    tracker = CAMTracker(x[:3], y[:3], log_dir=tmp_path, tensorboard=False)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[tracker, CtrlC()])
    deadline = time.monotonic() + 60  # the tracker notices within a moment, on its own
    while "fit was interrupted" not in capsys.readouterr().out and time.monotonic() < deadline:
        time.sleep(0.05)
    assert time.monotonic() < deadline
    ended_like_a_finished_fit(tmp_path)
    run = load_run(tmp_path)
    assert run.epochs == [-1, 0] and run.meta["final_weights_epoch"] is None
    assert [(h["event"], h["after_epoch"]) for h in run.meta["history"]] == [("interrupted", 0)]
    # Another model object with those weights is not the model this process trained.
    clone = compiled()
    clone.set_weights(model.get_weights())
    with pytest.raises(ValueError, match="not those of any epoch"):
        fit_with(CAMTracker(x[:3], y[:3], log_dir=tmp_path, tensorboard=False), model=clone)
    # fit again, same tracker: the interrupted epoch 1 is trained and recorded as epoch 1.
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[tracker])
    # Before the watch looks (here: never), the next fit ends the interrupted one itself:
    # the same tracker's, and a new tracker's on the same model object.
    monkeypatch.setattr(watch, "INTERVAL", 3600.0)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[tracker, CtrlC()])
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[tracker])
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[tracker, CtrlC()])
    fit_with(CAMTracker(x[:3], y[:3], log_dir=tmp_path, tensorboard=False), model=model)
    out = capsys.readouterr().out
    assert [out.count(f"fit was interrupted during epoch {e} (Ctrl-C") for e in (4, 6)] == [1, 1]
    ended_like_a_finished_fit(tmp_path)
    run = load_run(tmp_path)
    assert run.epochs == [-1, 0, 1, 2, 3, 4, 5, 6]  # one record, no gap and nothing doubled
    events = [(h["event"], h["after_epoch"]) for h in run.meta["history"]]
    assert events == [
        (event, after)
        for after in (0, 3, 5)
        for event in ("interrupted", "continued after the interruption")
    ]
    assert run.meta["final_weights_epoch"] == 6
    np.testing.assert_allclose(run.heatmaps[-1], compute_cams(model, x[:3]).heatmaps, atol=1e-5)
    # A fresh model is refused, as before.
    with pytest.raises(ValueError, match="not those of any epoch"):
        fit_with(CAMTracker(x[:3], y[:3], log_dir=tmp_path, tensorboard=False))


def test_dropped_tracker_is_closed_by_finalizer(tmp_path, monkeypatch):
    import gc

    from cam_callback.tracker import watch

    monkeypatch.setattr(watch, "fit_frame", lambda model: None)  # fit not found: no watch
    x, y = data(8)
    tracker = CAMTracker(x, y, log_dir=tmp_path)

    class Boom(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        fit_with(tracker, epochs=3, extra=[Boom()])
    session = tracker._guard.steps.pipeline
    threads = [session._record_thread, session._frame_thread]
    writer = session.frames.summaries
    del tracker
    gc.collect()
    assert writer.is_open is False and not any(t.is_alive() for t in threads)


def test_render_thread_errors_are_raised_back(tmp_path, monkeypatch):
    from cam_callback.tracker import pipeline

    x, y = data(8)

    def broken(self, *args, **kwargs):
        raise OSError("no space for frames")

    monkeypatch.setattr(pipeline.FrameStage, "draw", broken)
    with pytest.raises(RuntimeError, match="before training failed: no space for frames"):
        fit_with(CAMTracker(x, y, log_dir=tmp_path, on_error="raise"), epochs=3)
    assert load_run(tmp_path).epochs == [-1]  # the record is kept


def test_sigkill_mid_training_leaves_readable_record(tmp_path):
    kill_child_at("slow", tmp_path, "STOP")  # inside epoch 2's record write, before the rename
    run = load_run(tmp_path)
    assert run.epochs == [-1, 0, 1]
    assert np.isfinite(run.heatmaps).all() and run.heatmaps.shape[1] == 5
    leftovers = [
        p.name
        for p in (tmp_path / "cam" / "epochs").iterdir()
        if not p.name.startswith("epoch_") and p.name != "baseline.npz"
    ]
    # A temporary may survive a kill mid-write; the reader skips it and it never tears an epoch.
    assert all(p.endswith(".tmp") for p in leftovers)
    # The killed writer's lock file is still there; the OS released its flock, so the run
    # resumes in the same log_dir.
    assert (tmp_path / "cam" / ".writer.lock").is_file()
    rng = np.random.default_rng(0)  # the child's data and probes
    x, y = rng.random((64, 32, 32, 3), dtype=np.float32), rng.integers(0, 3, 64)
    # Other weights (another seed) than any epoch of the record: refused before any batch.
    keras.utils.set_random_seed(1)
    trained = Trained()
    with pytest.raises(ValueError, match="not those of any epoch.*overwrite=True"):
        compiled().fit(
            x,
            y,
            epochs=4,
            initial_epoch=2,
            verbose=0,
            callbacks=[CAMTracker(x[:5], y[:5], log_dir=tmp_path, animate=None), trained],
        )
    assert trained.batches == 0 and load_run(tmp_path).epochs == [-1, 0, 1]
    # The child's seed gives the child's initial weights: the record's state before training.
    # The fit continues from there; the killed run's epochs are set aside, not mixed in.
    keras.utils.set_random_seed(0)
    model = compiled()
    with caught() as seen:
        model.fit(
            x,
            y,
            epochs=1,
            verbose=0,
            callbacks=[CAMTracker(x[:5], y[:5], log_dir=tmp_path, animate=None)],
        )
    (notice,) = tracker_warnings(seen)
    assert "weights of the state before training of the record" in notice
    assert "Epochs 0 to 1" in notice and "set_aside" in notice
    assert load_run(tmp_path).epochs == [-1, 0]
    (aside,) = (tmp_path / "cam" / "set_aside").iterdir()
    assert sorted(p.name for p in (aside / "epochs").iterdir()) == [
        "epoch_000000.npz",
        "epoch_000001.npz",
    ]


def test_mirrored_strategy_two_logical_cpus(tmp_path):
    stdout = run_child("mirrored", tmp_path)
    assert "replicas 2" in stdout and "ok" in stdout
    run = load_run(tmp_path)
    assert run.epochs == [-1, 0, 1]
    # Two replicas explain the same network as one device: the maps and probabilities of
    # the untrained and the trained weights match single-device compute_cams (float32 noise).
    single = np.load(tmp_path / "single_device.npz")
    for epoch, name in ((0, "first"), (-1, "last")):
        np.testing.assert_allclose(run.heatmaps[epoch], single[f"{name}_maps"], atol=1e-5)
        np.testing.assert_allclose(run.probabilities[epoch], single[f"{name}_probs"], atol=1e-6)
        assert run.targets[epoch].tolist() == single[f"{name}_probs"].argmax(1).tolist()
    assert (run.heatmaps.reshape(3, 5, -1).max(-1) == 1.0).all()  # no empty map compared
    assert not np.allclose(run.heatmaps[0], run.heatmaps[-1], atol=1e-2)  # training moved them


def test_mixed_float16(tmp_path):
    stdout = run_child("mixed", tmp_path)
    assert "compute dtype float16" in stdout
    run = load_run(tmp_path)
    assert run.heatmaps.dtype == np.float32 and np.isfinite(run.heatmaps).all()
    # The last epoch's float16 maps against float32 maps of the same weights.
    full = np.load(tmp_path / "float32_maps.npy")
    for half, single in zip(run.heatmaps[-1], full, strict=True):
        assert np.corrcoef(half.ravel(), single.ravel())[0, 1] > 0.99


class _Resolver:
    def __init__(self, task_type, task_id, cluster):
        self.task_type, self.task_id, self._cluster = task_type, task_id, cluster

    def cluster_spec(self):
        cluster = self._cluster

        class Spec:
            def as_dict(self):
                return cluster

        return Spec()


def test_only_the_chief_writes_under_multi_worker():
    class Model:
        def __init__(self, resolver):
            self.distribute_strategy = type("S", (), {"cluster_resolver": resolver})()

    with_chief = {"chief": ["a"], "worker": ["b", "c"]}
    workers = {"worker": ["b", "c"]}
    assert is_chief(Model(None))
    assert is_chief(Model(_Resolver("chief", 0, with_chief)))
    assert not is_chief(Model(_Resolver("worker", 0, with_chief)))
    assert is_chief(Model(_Resolver("worker", 0, workers)))
    assert not is_chief(Model(_Resolver("worker", 1, workers)))
    assert not is_chief(Model(_Resolver("evaluator", 0, workers)))


def test_non_chief_writes_nothing(tmp_path, monkeypatch):
    from cam_callback.tracker import callback

    monkeypatch.setattr(callback, "is_chief", lambda model: False)
    x, y = data(8)
    fit_with(CAMTracker(x, y, log_dir=tmp_path / "w1"), epochs=2)
    assert not (tmp_path / "w1").exists()


def test_real_tensorboard_server_shows_train_validation_and_cam(trained):
    """A real `tensorboard --logdir` on loopback lists the runs and our image tags."""
    import json
    import socket
    import urllib.request

    log_dir, *_ = trained
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(log_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--reload_interval",
            "1",
            "--load_fast",
            "false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def get(path):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return json.loads(r.read())

    try:
        runs, images = [], {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                runs = get("/data/runs")
                images = get("/data/plugin/images/tags")
                if {"cam", "train", "validation"} <= set(runs) and images.get("cam"):
                    break
            except OSError:
                pass
            time.sleep(1)
        assert {"cam", "train", "validation"} <= set(runs), runs
        labels = load_run(log_dir).labels
        assert f"cam/probe_000_{CLASSES[labels[0]]}" in images["cam"]
        assert "cam/grid" in images["cam"]
        scalars = get("/data/plugin/scalars/tags")
        assert "cam/mean_drift" in scalars["cam"] and "epoch_loss" in scalars["train"]
        steps = get("/data/plugin/images/images?run=cam&tag=cam/grid&sample=0")
        assert [s["step"] for s in steps] == [0, 1, 2]
    finally:
        server.terminate()
        server.wait(timeout=30)


# ------------------------------------------------------------------ what a new user meets


def test_fit_writes_the_review_page_of_the_record(trained, tmp_path):
    from cam_callback import write_report

    log_dir, _, tracker, _ = trained
    page = log_dir / "cam" / "report" / "index.html"
    assert tracker.report_page == page and page.is_file()
    # The page is the record rendered: the same bytes as write_report over the record.
    again = write_report(log_dir, out=tmp_path / "index.html")
    assert page.read_bytes() == again.read_bytes()
    assert page.read_text().count("<article") == 4
    for i in range(4):
        name = f"probe_{i:03d}.gif"
        with Image.open(log_dir / "cam" / "report" / "index_files" / name) as gif:
            assert gif.n_frames == 4  # before training and epochs 0 to 2
        # The tracker's own GIF (top_k=2), shared by hardlink, never drawn again (issue 31).
        ours = log_dir / "cam" / "report" / "index_files" / name
        assert ours.stat().st_ino == (log_dir / "cam" / "animations" / name).stat().st_ino
        assert ours.read_bytes() == (tmp_path / "index_files" / name).read_bytes()


def _negative_head_model():
    """Every class's Dense weights negative and frozen (lr 0): Grad-CAM at conv2 weighs its
    ReLU activations with negative gradients only, so every map is ReLU(< 0) = 0."""
    model = small_cnn(3)
    conv = model.get_layer("conv2")
    kernel, _ = conv.get_weights()
    conv.set_weights([np.abs(kernel), np.full(12, 0.1, np.float32)])  # activations > 0
    dense = model.get_layer("dense")
    dense.set_weights([-np.ones((12, 3), np.float32), np.zeros(3, np.float32)])
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    return model


def test_empty_maps_are_flagged_and_warned_about_once_per_fit(tmp_path, capsys):
    x, y = data(8)
    model = _negative_head_model()
    tracker = CAMTracker(x[:4], y[:4], log_dir=tmp_path, animate=None, tensorboard=False)
    with pytest.warns(UserWarning, match="empty map") as caught:
        model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[tracker])
    notices = [w for w in caught if "empty map" in str(w.message)]
    assert len(notices) == 1
    message = str(notices[0].message)
    assert "4 of 4 probes" in message and "'conv2'" in message
    for advice in ("ReLU", "past the point", 'score="probability"', "`layer=`", "method"):
        assert advice in message
    run = load_run(tmp_path)
    assert np.all(run.heatmaps == 0)
    assert run.flags["empty_map"].tolist() == [True] * 4
    stored = json.loads((tmp_path / "cam" / "flags.json").read_text())["flags"]
    assert stored["empty_map"] == [True] * 4
    assert "empty map" in (tmp_path / "cam" / "report" / "index.html").read_text()
    assert capsys.readouterr().out.count("review page") == 1
    # A second fit of the same tracker warns again (once), and prints the path no more.
    with pytest.warns(UserWarning, match="empty map") as caught:
        model.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[tracker])
    assert len([w for w in caught if "empty map" in str(w.message)]) == 1
    assert "review page" not in capsys.readouterr().out


def test_a_failing_review_page_warns_and_never_stops_fit(tmp_path, monkeypatch):
    from cam_callback.tracker import steps

    def broken(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(steps, "write_report", broken)
    x, y = data(8)
    model = compiled()
    tracker = CAMTracker(x[:2], y[:2], log_dir=tmp_path, animate=None, on_error="raise")
    with pytest.warns(UserWarning, match="review page failed") as caught:
        history = model.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[tracker])
    notices = [w for w in caught if "review page" in str(w.message)]
    assert len(notices) == 1 and "cam-callback report" in str(notices[0].message)
    assert history.epoch == [0] and tracker.report_page is None
    assert load_run(tmp_path).epochs == [-1, 0]
    off = CAMTracker(x[:2], y[:2], log_dir=tmp_path / "off", animate=None, report=False)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[off])
    assert not (tmp_path / "off" / "cam" / "report").exists()


def test_several_models_log_no_tensorflow_retracing(tmp_path):
    import logging

    from cam_callback import api

    seen: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    handler = Catch()
    tf.get_logger().addHandler(handler)
    try:
        x, y = data(8)
        models = [compiled() for _ in range(6)]  # TensorFlow warns from 5 traces in 10 calls
        for model in models:
            for _ in range(2):
                compute_cams(model, x[:4])
        model = models[0]
        trackers = [
            CAMTracker(x[:4], y[:4], log_dir=tmp_path / name, layer=name, animate=None)
            for name in ("conv1", "conv2")
        ]
        model.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=trackers)
    finally:
        tf.get_logger().removeHandler(handler)
    assert not [m for m in seen if "retracing" in m]
    assert [api.trace_count(m) for m in models[1:]] == [1] * 5
    assert api.trace_count(models[0]) == 2  # one function per layer, each traced once


def test_overlay_is_public():
    import cam_callback
    from cam_callback import frames

    assert "overlay" in cam_callback.__all__ and cam_callback.overlay is frames.overlay
    # By hand: the image's luma (200*77 + 100*150 + 128) >> 8 = 119 and the colormap's bottom
    # (35, 23, 27), half and half in integers: (35*128 + 119*128 + 128) >> 8 = 77, ...
    image = np.full((4, 4, 3), (200, 100, 0), np.uint8)
    out = cam_callback.overlay(image, np.zeros((2, 2)), 0.5)
    assert out.shape == (4, 4, 3) and out[0, 0].tolist() == [77, 71, 73]
