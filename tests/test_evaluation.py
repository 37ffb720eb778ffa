"""evaluate(): faithfulness scores on paper, on a model trained to use a known region, and
the model-randomisation sanity check."""

from __future__ import annotations

import numpy as np
import pytest

from cam_callback import evaluation as ev


def stripes_data(n: int, size: int = 32, seed: int = 0):
    """Gray noise with a 10x10 striped patch at a random place: vertical stripes are class 1,
    horizontal class 0. Same mean brightness, so only the patch tells the classes apart."""
    rng = np.random.default_rng(seed)
    x = (0.5 + 0.1 * rng.standard_normal((n, size, size, 1))).astype(np.float32)
    y = rng.integers(0, 2, n)
    masks = np.zeros((n, size, size), bool)
    for i in range(n):
        r, c = rng.integers(0, size - 10, 2)
        patch = np.zeros((10, 10), np.float32)
        if y[i]:
            patch[:, ::2] = 1.0
        else:
            patch[::2, :] = 1.0
        x[i, r : r + 10, c : c + 10, 0] = patch
        masks[i, r : r + 10, c : c + 10] = True
    return np.repeat(x, 3, -1), y, masks


@pytest.fixture(scope="module")
def trained():
    import keras

    keras.utils.set_random_seed(0)
    x, y, _ = stripes_data(512)
    inp = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inp)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(16, 3, activation="relu", name="conv2")(h)
    h = keras.layers.GlobalMaxPooling2D()(h)
    out = keras.layers.Dense(2, activation="softmax")(h)
    model = keras.Model(inp, out)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=4, batch_size=64, verbose=0)
    xt, yt, mt = stripes_data(24, seed=1)
    return model, xt, yt, mt


def _inverted(model, x, targets):
    from cam_callback import compute_cams

    return 1.0 - compute_cams(model, x, target=targets).heatmaps


def test_sane_methods_beat_random_and_inverted_maps_by_deletion_auc(trained):
    model, x, y, masks = trained
    table = ev.evaluate(
        model,
        x,
        y,
        methods=("gradcam", "gradcam++", "random", ("inverted", _inverted)),
        metrics=("deletion_auc", "insertion_auc", "pointing_game"),
        probe_masks=masks,
        steps=10,
    )
    s = table.scores
    for sane in ("gradcam", "gradcam++"):
        assert s[sane]["deletion_auc"] < s["random"]["deletion_auc"] - 0.1
        assert s[sane]["deletion_auc"] < s["inverted"]["deletion_auc"] - 0.1
        assert s[sane]["insertion_auc"] > s["inverted"]["insertion_auc"] + 0.1
        assert s[sane]["pointing_game"] > 0.8  # the patch is what the model uses
    assert table.ranking("deletion_auc")[-1] in ("random", "inverted")
    assert table.ranking("deletion_auc").index("gradcam") < table.ranking("deletion_auc").index(
        "random"
    )


def test_faithfulness_column_is_the_trackers_number(trained):
    from cam_callback import cams

    model, x, y, _ = trained
    table = ev.evaluate(model, x, y, methods=("gradcam",), metrics=("faithfulness",), seed=3)
    res = cams.compute_cams(model, x, target=y)
    want = cams.deletion_faithfulness(model, x, res.heatmaps, res.targets, seed=3)
    np.testing.assert_allclose(table.per_image["gradcam"]["faithfulness"], want, atol=1e-6)


def test_model_randomisation_flags_a_map_that_ignores_the_weights(trained):
    model, x, _, _ = trained
    checks = ev.model_randomisation_test(
        model, x[:8], methods=("gradcam", ("brightness", lambda m, xx, t: xx.mean(-1)))
    )
    by = {c.method: c for c in checks}
    assert by["brightness"].similarity == pytest.approx(1.0)
    assert by["brightness"].flagged
    assert not by["gradcam"].flagged
    assert by["gradcam"].similarity < 0.5
    # the user's model is untouched by the randomised clone
    assert model.predict(x[:2], verbose=0).argmax(1).tolist() == _predicted(model, x[:2])


def _predicted(model, x):
    from cam_callback import cams

    return cams.predict_probabilities(model, x).argmax(1).tolist()


def _mean_probs(batch):
    """A stand-in model: class 0's probability is the batch's mean pixel."""
    p = batch.reshape(len(batch), -1).mean(1).astype(np.float64)
    return np.stack([p, 1 - p], 1)


def test_deletion_and_insertion_curves_on_paper():
    x = np.zeros((1, 2, 2, 1), np.float32)
    x[0, 0, :, 0] = 1.0  # the top row is what "the model" sees
    base = np.zeros_like(x)
    good = np.array([[[1.0, 0.9], [0.1, 0.0]]])  # ranks the top row first
    order = ev.rank_pixels(good)
    t = np.array([0])
    dele = ev.perturbation_curve(x, base, order, t, _mean_probs, 4, "deletion")
    np.testing.assert_allclose(dele, [[0.5, 0.25, 0.0, 0.0, 0.0]])
    ins = ev.perturbation_curve(x, base, order, t, _mean_probs, 4, "insertion")
    np.testing.assert_allclose(ins, [[0.0, 0.25, 0.5, 0.5, 0.5]])
    # trapezoids with dx = 1/4
    np.testing.assert_allclose(ev.auc(dele), [(0.75 + 0.25) / 8])
    np.testing.assert_allclose(ev.auc(ins), [(0.25 + 0.75 + 1.0 + 1.0) / 8])
    bad = ev.rank_pixels(1 - good)
    assert ev.auc(ev.perturbation_curve(x, base, bad, t, _mean_probs, 4, "deletion"))[0] > 0.3


def _gap_model(w: float):
    """p = softmax([w * mean(x), 0]): Average Drop and Increase in Confidence on paper."""
    import keras

    inp = keras.Input((4, 4, 1))
    h = keras.layers.GlobalAveragePooling2D()(inp)
    out = keras.layers.Dense(2, activation="softmax", name="dense")(h)
    model = keras.Model(inp, out)
    model.get_layer("dense").set_weights(
        [np.array([[w, 0.0]], np.float32), np.zeros(2, np.float32)]
    )
    return model


def test_average_drop_and_increase_in_confidence_on_paper():
    model = _gap_model(4.0)
    x = np.ones((2, 4, 4, 1), np.float32)
    x[1] *= -1.0  # p(class 0) is low here and rises when the map halves the mean
    half = np.zeros((2, 4, 4))
    half[:, :2] = 1.0  # keeps the top half: mean halves

    def sig(z):
        return 1 / (1 + np.exp(-z))

    table = ev.evaluate(
        model,
        x,
        np.array([0, 0]),
        methods=(("half", lambda m, xx, t: half),),
        metrics=("average_drop", "increase_in_confidence"),
    )
    y = np.array([sig(4.0), sig(-4.0)])  # p(class 0) on each image
    o = np.array([sig(2.0), sig(-2.0)])  # after x * map: the mean halves
    want_drop = 100 * np.maximum(0, y - o) / y
    np.testing.assert_allclose(table.per_image["half"]["average_drop"], want_drop, rtol=1e-5)
    np.testing.assert_allclose(table.per_image["half"]["increase_in_confidence"], [0.0, 100.0])
    assert table.scores["half"]["average_drop"] == pytest.approx(want_drop.mean(), rel=1e-5)


def test_pointing_game_and_energy_on_paper():
    model = _gap_model(1.0)
    x = np.ones((2, 4, 4, 1), np.float32)
    maps = np.zeros((2, 4, 4))
    maps[0, 0, 0] = 3.0
    maps[0, 3, 3] = 1.0
    maps[1, 3, 3] = 1.0
    masks = np.zeros((2, 4, 4), bool)
    masks[:, :2, :2] = True
    table = ev.evaluate(
        model,
        x,
        methods=(("m", lambda m, xx, t: maps),),
        metrics=("pointing_game", "energy"),
        probe_masks=masks,
    )
    np.testing.assert_allclose(table.per_image["m"]["pointing_game"], [1.0, 0.0])
    np.testing.assert_allclose(table.per_image["m"]["energy"], [0.75, 0.0])


def test_road_imputation_fills_a_smooth_image_smoothly():
    ramp = np.linspace(0, 1, 16, dtype=np.float64)
    x = np.broadcast_to(ramp[None, :], (16, 16))[None, ..., None].copy()
    hole = np.zeros((1, 16, 16), bool)
    hole[0, 4:12, 5:11] = True
    out = ev.impute(x, hole, seed=0)
    np.testing.assert_array_equal(out[~hole], x[~hole])  # kept pixels untouched
    # the harmonic fill of a linear ramp is the ramp; the noise is 1% of the range
    assert np.abs(out[hole] - x[hole]).max() < 0.06
    assert 0.002 < np.std(out[hole] - x[hole]) < 0.02
    np.testing.assert_array_equal(out, ev.impute(x, hole, seed=0))  # seeded


def test_road_ranks_a_map_of_the_used_pixels_lower():
    x = np.zeros((1, 8, 8, 1))
    x[0, :, :4] = 1.0
    good = np.zeros((1, 8, 8))
    good[0, :, :4] = 1.0
    good += np.linspace(0, 0.1, 64).reshape(1, 8, 8)
    t = np.array([0])
    assert ev.road(x, good, t, _mean_probs)[0] < ev.road(x, 1 - good, t, _mean_probs)[0] - 0.2


def test_table_saves_and_loads_without_tensorflow(tmp_path):
    table = ev.Evaluation(
        {"gradcam": {"deletion_auc": 0.2, "insertion_auc": 0.8}, "random": {"deletion_auc": 0.5}},
        {"gradcam": {"deletion_auc": np.array([0.1, 0.3])}},
        {"steps": 20},
    )
    path = table.save(tmp_path)
    assert path.endswith(ev.FILE_NAME)
    back = ev.load_evaluation(tmp_path)
    assert back.scores == table.scores
    assert back.settings == {"steps": 20}
    np.testing.assert_allclose(back.per_image["gradcam"]["deletion_auc"], [0.1, 0.3])
    assert back.ranking("deletion_auc") == ["gradcam", "random"]
    assert back.ranking("insertion_auc") == ["gradcam"]
    assert "gradcam" in str(back) and "deletion_auc" in str(back)
    (tmp_path / "bad.json").write_text('{"scores": 3}')
    with pytest.raises(ValueError, match="not an evaluation table"):
        ev.load_evaluation(tmp_path / "bad.json")


def test_bad_arguments_name_themselves(images32):
    from conftest import small_cnn

    model = small_cnn()
    with pytest.raises(ValueError, match="`methods` entries.*Received: 'nope'"):
        ev.evaluate(model, images32, methods=("nope",))
    with pytest.raises(TypeError, match="`methods`"):
        ev.evaluate(model, images32, methods="gradcam")
    with pytest.raises(ValueError, match="`metrics`.*'auc'"):
        ev.evaluate(model, images32, metrics=("auc",))
    with pytest.raises(ValueError, match="`steps`"):
        ev.evaluate(model, images32, steps=1)
    with pytest.raises(ValueError, match="`probe_masks`"):
        ev.evaluate(model, images32, probe_masks=np.zeros((6, 8, 8), bool))
    with pytest.raises(ValueError, match="`labels` holds class 9"):
        ev.evaluate(model, images32, labels=np.full(6, 9))
    with pytest.raises(ValueError, match="unique"):
        ev.evaluate(model, images32, methods=("gradcam", "gradcam"))
    with pytest.raises(ValueError, match="`metric`"):
        ev.Evaluation({}).ranking("speed")
