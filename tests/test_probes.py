"""Finding what to look at, activations, faithfulness, and saliency through the tracker."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from conftest import nested_cnn, small_cnn
from PIL import Image

from cam_callback import (
    CAMTracker,
    activation_grid,
    find_misclassified,
    layer_activations,
    load_run,
    select_probes,
    write_report,
)
from cam_callback.evaluation.faithfulness import deletion_faithfulness


def test_find_misclassified_against_numpy(images32):
    rng = np.random.default_rng(3)
    x = rng.random((40, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 4, 40)
    model = small_cnn()
    probs = model.predict(x, verbose=0)
    idx, got_probs = find_misclassified(model, x, y, threshold=0.3, return_probabilities=True)
    np.testing.assert_allclose(got_probs, probs, atol=1e-6)
    doubtful = (probs.argmax(1) != y) | (probs.max(1) < 0.3)
    assert sorted(idx.tolist()) == np.flatnonzero(doubtful).tolist()
    true_p = probs[np.arange(40), y]
    assert list(true_p[idx]) == sorted(true_p[idx])  # most doubtful first
    one_hot = np.eye(4)[y]
    np.testing.assert_array_equal(find_misclassified(model, x, one_hot, threshold=0.3), idx)
    assert len(find_misclassified(model, x, y, threshold=0.0)) == int((probs.argmax(1) != y).sum())
    with pytest.raises(ValueError, match="`threshold`"):
        find_misclassified(model, x, y, threshold=2)
    with pytest.raises(ValueError, match="`labels` has 5 labels for 40 images"):
        find_misclassified(model, x, y[:5])
    with pytest.raises(ValueError, match="`labels` holds class 9"):
        find_misclassified(model, x, np.full(40, 9))


def test_select_probes_stratified_and_hard():
    y = np.array([0] * 10 + [1] * 3 + [2] * 7)
    x = np.zeros((20, 32, 32, 3), np.float32)
    idx = select_probes(x, y, per_class=4, seed=1)
    assert [int((y[idx] == c).sum()) for c in range(3)] == [4, 3, 4]
    assert len(set(idx.tolist())) == 11
    assert y[idx].tolist() == sorted(y[idx].tolist())  # class order
    np.testing.assert_array_equal(idx, select_probes(x, y, per_class=4, seed=1))
    assert not np.array_equal(idx, select_probes(x, y, per_class=4, seed=2))

    rng = np.random.default_rng(0)
    x = rng.random((20, 32, 32, 3), dtype=np.float32)
    model = small_cnn(3)
    with_hard = select_probes(x, y, per_class=2, model=model, hard=3, seed=1)
    base = select_probes(x, y, per_class=2, seed=1)
    np.testing.assert_array_equal(with_hard[: len(base)], base)
    extra = with_hard[len(base) :]
    doubtful = [i for i in find_misclassified(model, x, y) if i not in set(base.tolist())]
    assert extra.tolist() == doubtful[:3]
    with pytest.raises(ValueError, match="`hard`=3 needs a `model`"):
        select_probes(x, y, hard=3)


def test_layer_activations_nested_and_grid(images32):
    model = nested_cnn()
    acts = layer_activations(model, images32, "backbone/conv_a")
    inner = model.get_layer("backbone")
    want = keras.Model(inner.input, inner.get_layer("conv_a").output)(images32)
    want = keras.ops.convert_to_numpy(want)
    np.testing.assert_allclose(acts, want, atol=1e-5)
    assert acts.shape == (6, 30, 30, 8)
    tiles = activation_grid(acts[0], top=4, side=20)
    assert tiles.shape == (44, 44, 3)
    strongest = int(np.argmax(acts[0].reshape(-1, 8).mean(0)))
    ch = np.maximum(acts[0, ..., strongest], 0)
    from cam_callback.frames import colorize

    np.testing.assert_array_equal(tiles[:20, :20], colorize(ch / ch.max(), (20, 20)))
    with pytest.raises(ValueError, match="`layer` 'nope' not found"):
        layer_activations(model, images32, "nope")


def test_faithfulness_on_a_model_that_reads_one_corner():
    # The model's logit is the peak brightness of the top-left quarter: a map on that quarter
    # is faithful (blurring it lowers the peak), a map elsewhere is not.
    inp = keras.Input((16, 16, 1))
    corner = keras.layers.Cropping2D(((0, 10), (0, 10)))(inp)  # the top-left 6x6
    score = keras.layers.GlobalMaxPooling2D()(corner)
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.Concatenate()([score, -score]))
    model = keras.Model(inp, out)
    model.layers[-1].set_weights([np.array([[0.5, 0.0], [0.0, 0.5]]), np.zeros(2)])  # unsaturated
    x = np.zeros((4, 16, 16, 1), np.float32)
    x[:, :6, :6] = 2.0 * ((np.add.outer(np.arange(6), np.arange(6)) % 2)[..., None])
    x[1:] *= np.array([0.5, 1.5, 1.0]).reshape(3, 1, 1, 1)  # a checkerboard blurring flattens
    # A 4x4 map peaking on its top-left 2x2 upsamples to exactly that 6x6 corner.
    on_corner = np.zeros((4, 4, 4), np.float32)
    on_corner[:, :2, :2] = 1.0
    elsewhere = np.zeros((4, 4, 4), np.float32)
    elsewhere[:, 2:, 2:] = 1.0
    targets = np.zeros(4, np.int64)
    good = deletion_faithfulness(model, x, on_corner, targets)
    bad = deletion_faithfulness(model, x, elsewhere, targets)
    assert (good > bad).all()
    assert np.all(np.abs(bad) < np.abs(good))


def test_saliency_gets_frames_animations_and_page(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((32, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 3, 32)
    model = small_cnn(3)
    model.compile("adam", "sparse_categorical_crossentropy")
    tracker = CAMTracker(x[:3], y[:3], log_dir=tmp_path, method="saliency", faithfulness=True)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[tracker])
    run = load_run(tmp_path)
    assert run.method == "saliency" and run.layer == ""
    # before training, then 2 epochs
    assert run.heatmaps.shape == (3, 3, 32, 32)  # input resolution
    assert run.metrics["faithfulness"].shape == (3, 3)
    assert Image.open(tmp_path / "cam" / "animations" / "probe_000.gif").n_frames == 3
    page = write_report(run)
    assert "saliency" in page.read_text()
    stored = json.loads((tmp_path / "cam" / "flags.json").read_text())
    assert stored["n_epochs"] == 3
    assert {k: np.asarray(v).tolist() for k, v in run.flags.items()} == stored["flags"]


def test_find_misclassified_on_a_binary_sigmoid_model():
    rng = np.random.default_rng(4)
    x = rng.random((20, 32, 32, 3), dtype=np.float32)
    inp = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    out = keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inp, out)
    p = model.predict(x, verbose=0)[:, 0]
    y = (p > np.median(p)).astype(np.int64)  # half the images are labelled 1
    idx, probs = find_misclassified(model, x, y, threshold=0.0, return_probabilities=True)
    np.testing.assert_allclose(probs, np.stack([1 - p, p], 1), atol=1e-6)
    assert sorted(idx.tolist()) == np.flatnonzero((p > 0.5).astype(int) != y).tolist()
    with pytest.raises(ValueError, match="`labels` holds class 2 but the model has 2 classes"):
        find_misclassified(model, x, np.full(20, 2))


def test_select_probes_warns_that_an_untrained_model_picks_arbitrary_hard_probes():
    import warnings

    rng = np.random.default_rng(0)
    x = rng.random((16, 32, 32, 3), dtype=np.float32)
    y = np.arange(16) % 3
    model = small_cnn(3)
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.warns(UserWarning, match="has not been trained yet") as caught:
        untrained = select_probes(x, y, per_class=2, model=model, hard=2)
    notices = [w for w in caught if "has not been trained" in str(w.message)]
    assert len(notices) == 1 and "arbitrary" in str(notices[0].message)
    assert len(untrained) == 8  # still picked, as asked
    with warnings.catch_warnings(record=True) as later:
        warnings.simplefilter("always")
        select_probes(x, y, per_class=2)  # no model, no hard: nothing to say
        select_probes(x, y, per_class=2, model=small_cnn(3), hard=2)  # not compiled: unknown
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)  # one step taken
        select_probes(x, y, per_class=2, model=model, hard=2)
    assert not [w for w in later if "has not been trained" in str(w.message)]


def _dataset_cases(x, y):
    import tensorflow as tf

    def generator():
        for start in range(0, len(x), 5):
            yield x[start : start + 5], y[start : start + 5]

    return {
        "batched (x, y)": tf.data.Dataset.from_tensor_slices((x, y)).batch(4),
        "unbatched (x, y, w)": tf.data.Dataset.from_tensor_slices((x, y, np.ones(len(x)))),
        "generator of (x, y)": generator(),
        "repeated forever": tf.data.Dataset.from_tensor_slices((x, y)).batch(3).repeat(),
    }


def test_datasets_give_the_probes_the_arrays_give(tmp_path):
    import tensorflow as tf

    from cam_callback.api.probes import DEFAULT_NUM_PROBES, take_probes

    rng = np.random.default_rng(0)
    x = rng.random((40, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 3, 40)
    for name, ds in _dataset_cases(x, y).items():
        images, labels = take_probes(ds, 11)
        np.testing.assert_array_equal(images, x[:11], err_msg=name)
        np.testing.assert_array_equal(labels, y[:11], err_msg=name)
    images, labels = take_probes(tf.data.Dataset.from_tensor_slices(x).batch(8))
    assert len(images) == DEFAULT_NUM_PROBES == 32 and labels is None
    np.testing.assert_array_equal(images, x[:32])
    arrays = CAMTracker(x[:12], y[:12], log_dir=tmp_path / "a")
    shuffled = tf.data.Dataset.from_tensor_slices((x, y))
    shuffled = shuffled.shuffle(40, seed=1, reshuffle_each_iteration=False)
    ds = shuffled.batch(5)
    first = next(iter(ds.unbatch().batch(12)))  # the order the tracker reads, once
    tracker = CAMTracker(ds, log_dir=tmp_path / "d", num_probes=12)
    np.testing.assert_array_equal(tracker.probes.images, first[0].numpy())
    np.testing.assert_array_equal(tracker.probes.labels, first[1].numpy())
    plain = tf.data.Dataset.from_tensor_slices((x, y)).batch(5)
    tracker = CAMTracker(plain, log_dir=tmp_path / "p", num_probes=12)
    np.testing.assert_array_equal(tracker.probes.images, arrays.probes.images)
    np.testing.assert_array_equal(tracker.probes.labels, arrays.probes.labels)
    assert tracker.probes.fingerprint == arrays.probes.fingerprint  # the same probes, same record
    # Labels passed explicitly win over the dataset's.
    tracker = CAMTracker(plain, (y[:12] + 1) % 3, log_dir=tmp_path / "l", num_probes=12)
    np.testing.assert_array_equal(tracker.probes.labels, (y[:12] + 1) % 3)


def test_dataset_probes_errors_say_what_to_pass(tmp_path):
    import tensorflow as tf

    x = np.zeros((6, 32, 32, 3), np.float32)
    y = np.zeros(6, np.int64)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    with pytest.raises(ValueError, match=r"`num_probes`=8 .* holds only 6 examples"):
        CAMTracker(ds, log_dir=tmp_path, num_probes=8)
    with pytest.raises(ValueError, match=r"`num_probes` must be a positive int"):
        CAMTracker(ds, log_dir=tmp_path, num_probes=0)
    with pytest.raises(ValueError, match=r"with arrays, pass the probes you want"):
        CAMTracker(x, y, log_dir=tmp_path, num_probes=4)
    with pytest.raises(TypeError, match=r"yielded a dict .* Pass arrays"):
        CAMTracker(tf.data.Dataset.from_tensor_slices({"image": x}), log_dir=tmp_path)
    with pytest.raises(ValueError, match=r"yielded no examples"):
        CAMTracker(tf.data.Dataset.from_tensor_slices(x).take(0), log_dir=tmp_path)
