"""evaluate(): faithfulness scores on paper, on a model trained to use a known region, and
the model-randomisation sanity check."""

from __future__ import annotations

import json
from pathlib import Path

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
    from cam_callback import api
    from cam_callback.evaluation import faithfulness

    model, x, y, _ = trained
    table = ev.evaluate(model, x, y, methods=("gradcam",), metrics=("faithfulness",), seed=3)
    res = api.compute_cams(model, x, target=y)
    want = faithfulness.deletion_faithfulness(model, x, res.heatmaps, res.targets, seed=3)
    np.testing.assert_allclose(table.per_image["gradcam"]["faithfulness"], want, atol=1e-6)


def test_fragility_column_is_the_trackers_number(trained):
    from cam_callback import api, metrics

    model, x, y, _ = trained
    table = ev.evaluate(model, x, y, methods=("gradcam", "random"), metrics=("fragility",), seed=2)
    copies = metrics.perturbed_copies(x, metrics.FRAGILITY_COPIES, metrics.FRAGILITY_NOISE, 2)
    res = api.compute_cams(model, x, target=y)
    rep = api.compute_cams(model, copies, target=np.tile(y, metrics.FRAGILITY_COPIES))
    want = metrics.fragility(res.heatmaps, res.probabilities, rep.heatmaps, rep.probabilities)
    got = table.per_image["gradcam"]["fragility"]
    np.testing.assert_allclose(got, want, atol=1e-6, equal_nan=True)
    assert table.scores["gradcam"]["fragility"] == pytest.approx(np.nanmean(want))
    # Fresh random maps on the copies share about 10% of the top cells: fragility ~0.9.
    assert table.scores["random"]["fragility"] > 0.7 > table.scores["gradcam"]["fragility"]
    assert table.ranking("fragility")[0] == "gradcam"


def test_model_randomisation_flags_a_map_that_ignores_the_weights(trained):
    from scipy.stats import spearmanr

    from cam_callback import api

    model, x, _, _ = trained
    seen = []

    def channel0(m, xx, t):  # depends on the weights, and 60% of each map are tied zeros
        maps = api.layer_activations(m, xx, "conv2").mean(-1).astype(np.float64)
        maps = np.maximum(maps - np.quantile(maps, 0.6, axis=(1, 2), keepdims=True), 0)
        seen.append((m, maps))
        return maps

    checks = ev.model_randomisation_test(
        model, x[:8], methods=("gradcam", ("brightness", lambda m, xx, t: xx.mean(-1)),
                               ("channel0", channel0)),
    )  # fmt: skip
    by = {c.method: c for c in checks}
    assert by["brightness"].similarity == pytest.approx(1.0)
    assert by["brightness"].flagged
    assert not by["gradcam"].flagged
    assert by["gradcam"].similarity < 0.5
    # the similarity is SciPy's Spearman (average ranks for the ties) of the maps upsampled
    (m0, a), (m1, b) = seen
    assert m0 is model and m1 is not model
    assert np.mean(a == 0) > 0.55 and np.mean(b == 0) > 0.55  # ties matter here
    a, b = ev.upsample_maps(a, 32, 32), ev.upsample_maps(b, 32, 32)
    want = np.mean([spearmanr(a[i].ravel(), b[i].ravel())[0] for i in range(8)])
    assert by["channel0"].similarity == pytest.approx(want, abs=1e-9)
    # every weight of the clone was drawn again
    for w0, w1 in zip(model.get_weights(), m1.get_weights(), strict=True):
        assert not np.allclose(w0, w1) or np.all(w0 == w0.flat[0]), w0.shape
    # the user's model is untouched by the randomised clone
    assert model.predict(x[:2], verbose=0).argmax(1).tolist() == _predicted(model, x[:2])


def test_model_randomisation_is_seeded_and_leaves_the_global_generators_alone(trained):
    import random

    model, x, _, _ = trained
    clones = []

    def spy(m, xx, t):
        clones.append(m)
        return xx.mean(-1)

    np.random.seed(123)
    random.seed(456)
    np_state, py_state = np.random.get_state(), random.getstate()
    for seed in (0, 0, 1):
        ev.model_randomisation_test(model, x[:2], methods=(("spy", spy),), seed=seed)
    after = np.random.get_state()
    np.testing.assert_array_equal(after[1], np_state[1])
    assert after[2:] == np_state[2:]
    assert random.getstate() == py_state
    first, again, other = clones[1], clones[3], clones[5]  # each call: (model, clone)
    assert first is not again
    for u, v in zip(first.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(u, v)  # seed 0 twice: the same clone
    assert any(
        not np.array_equal(u, v)
        for u, v in zip(first.get_weights(), other.get_weights(), strict=True)
    )


def test_model_randomisation_honours_output_and_score(monkeypatch):
    import keras

    from cam_callback import api
    from cam_callback.evaluation import sanity

    inp = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    g = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, {"a": keras.layers.Dense(2, activation="softmax", name="a")(g),
                              "b": keras.layers.Dense(3, activation="softmax",
                                                      name="b")(g)})  # fmt: skip
    x = np.random.default_rng(0).random((4, 16, 16, 3), dtype=np.float32)
    calls, targets = [], []
    real = api.compute_with

    def spy(model, images, settings, **kwargs):
        calls.append({"output": settings.output, "score": settings.score, **kwargs})
        return real(model, images, settings, **kwargs)

    monkeypatch.setattr(sanity, "compute_with", spy)  # where the check looks it up
    ev.model_randomisation_test(
        model, x, methods=("gradcam", ("t", lambda m, xx, t: targets.append(t) or xx[..., 0])),
        output="b", score="probability",
    )  # fmt: skip
    assert [(c["output"], c["score"]) for c in calls] == [("b", "probability")] * 2
    want = model.predict(x, verbose=0)["b"].argmax(1)
    np.testing.assert_array_equal(targets[0], want)
    np.testing.assert_array_equal(calls[0]["target"], want)


def test_spearman_ranks_ties_fairly():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    a = np.maximum(rng.normal(size=(6, 20, 20)) - 0.5, 0)  # independent, about 69% zeros
    b = np.maximum(rng.normal(size=(6, 20, 20)) - 0.5, 0)
    assert 0.6 < np.mean(a == 0) < 0.75
    got = ev.spearman(a, b)
    want = [spearmanr(a[i].ravel(), b[i].ravel())[0] for i in range(6)]
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert abs(got.mean()) < 0.05  # raster-order tie-breaking gave about +0.27
    np.testing.assert_allclose(ev.spearman(a, a), 1.0)
    assert ev.spearman(np.zeros((1, 4, 4)), a[:1, :4, :4])[0] == 0.0  # a constant map
    np.testing.assert_array_equal(
        ev.average_ranks(np.array([[3.0, 0.0, 0.0, 1.0, 3.0]])), [[4.5, 1.5, 1.5, 3.0, 4.5]]
    )


def _predicted(model, x):
    from cam_callback import api

    return api.predict_probabilities(model, x).argmax(1).tolist()


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


def test_an_image_without_a_mask_is_not_measured_by_the_mask_metrics():
    model = _gap_model(1.0)
    x = np.ones((3, 4, 4, 1), np.float32)
    maps = np.zeros((3, 4, 4))
    maps[:, 0, 0] = 3.0  # every map peaks in the top-left cell
    maps[:, 3, 3] = 1.0
    masks = np.zeros((3, 4, 4), bool)
    masks[0, :2, :2] = True  # image 0: hit, energy 0.75
    masks[1, 2:, 2:] = True  # image 1: miss, energy 0.25; image 2: no mask at all
    table = ev.evaluate(
        model,
        x,
        methods=(("m", lambda m, xx, t: maps),),
        metrics=("pointing_game", "energy"),
        probe_masks=masks,
    )
    np.testing.assert_allclose(table.per_image["m"]["pointing_game"], [1.0, 0.0, np.nan])
    np.testing.assert_allclose(table.per_image["m"]["energy"], [0.75, 0.25, np.nan])
    assert table.scores["m"]["pointing_game"] == pytest.approx(0.5)  # not 1/3
    assert table.scores["m"]["energy"] == pytest.approx(0.5)


def test_road_fills_a_ramp_hole_with_the_ramp():
    """A linear ramp solves the paper's equations exactly (symmetric weights): the fill of a
    112x112 hole at 224 px is the ramp. 100 Jacobi sweeps from the mean were off by 0.18."""
    i, j = np.mgrid[0:224, 0:224]
    x = (0.002 * i + 0.003 * j)[None, ..., None] * np.array([1.0, -0.5])  # two channels
    hole = np.zeros((1, 224, 224), bool)
    hole[0, 56:168, 56:168] = True
    out = ev.impute(x, hole, noise=0.0)
    assert np.abs(out - x).max() < 1e-5
    np.testing.assert_array_equal(out[~hole], x[~hole])  # kept pixels untouched


def test_road_fill_solves_the_papers_equations_and_adds_seeded_noise():
    """Any mask, also one touching the border: each removed pixel is the weighted mean of its
    in-image neighbours, 1/6 edge-adjacent and 1/12 diagonal (Rong et al. 2022)."""
    rng = np.random.default_rng(1)
    x = rng.random((2, 12, 10, 2))
    hole = rng.random((2, 12, 10)) < 0.7
    out = ev.impute(x, hole, noise=0.0)
    np.testing.assert_array_equal(out[~hole], x[~hole])
    for n, r, c in zip(*np.nonzero(hole), strict=True):
        total, weight = np.zeros(2), 0.0
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                rr, cc = r + dr, c + dc
                if (dr or dc) and 0 <= rr < 12 and 0 <= cc < 10:
                    wgt = 1 / 12 if dr and dc else 1 / 6
                    total += wgt * out[n, rr, cc]
                    weight += wgt
        np.testing.assert_allclose(out[n, r, c], total / weight, atol=1e-10)
    noisy = ev.impute(x, hole, seed=3)
    np.testing.assert_array_equal(noisy, ev.impute(x, hole, seed=3))  # seeded
    jitter = (noisy - out)[hole[..., None].repeat(2, -1)]
    assert 0.008 < jitter.std() < 0.012  # 1% of the value range (about 1 here)
    np.testing.assert_array_equal(noisy[~hole], x[~hole])
    with pytest.raises(ValueError, match="`removed` removes every pixel of image 0"):
        ev.impute(x, np.ones((2, 12, 10), bool))


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
    with pytest.raises(ValueError, match="`road_noise_scale`.*Received: road_noise_scale='std'"):
        ev.evaluate(model, images32, road_noise_scale="std")
    with pytest.raises(ValueError, match="`probe_masks`"):
        ev.evaluate(model, images32, probe_masks=np.zeros((6, 8, 8), bool))
    with pytest.raises(ValueError, match="`labels` holds class 9"):
        ev.evaluate(model, images32, labels=np.full(6, 9))
    with pytest.raises(ValueError, match="unique"):
        ev.evaluate(model, images32, methods=("gradcam", "gradcam"))
    with pytest.raises(ValueError, match="`metric`"):
        ev.Evaluation({}).ranking("speed")


def test_console_table_has_directions_units_and_aligned_columns():
    table = ev.Evaluation(
        {
            "gradcam++": {
                "deletion_auc": 0.21234,
                "insertion_auc": 0.8,
                "average_drop": 7.5,
                "fragility": float("nan"),
                "seconds_per_image": 0.01234,
            },
            "random": {"deletion_auc": 0.5, "average_drop": 112.25},
        }
    )
    assert str(table).splitlines() == [
        "method     deletion_auc ↓  insertion_auc ↑  average_drop ↓  fragility ↓  "
        "seconds_per_image ↓",
        "                    [0-1]            [0-1]             [%]        [0-1]  "
        "                [s]",
        "gradcam++           0.212            0.800             7.5          nan  "
        "             0.0123",
        "random              0.500                -           112.2            -  "
        "                  -",
        "↑ higher is better, ↓ lower is better",
    ]
    # Every column's right edge lines up: the table rows are one width.
    assert len({len(line) for line in str(table).splitlines()[:-1]}) == 1
    for metric, sign in ev.DIRECTION.items():
        row = str(ev.Evaluation({"m": {metric: 1.0}})).splitlines()[0]
        assert row.endswith(f"{metric} {'↑' if sign > 0 else '↓'}"), row


def test_method_options_reach_the_method(images32):
    from conftest import small_cnn

    from cam_callback import compute_cams

    model = small_cnn(3)  # untrained: probabilities near 1/3 react to every map

    def scorecam(channels):
        return lambda m, xx, t: (
            compute_cams(
                m, xx, target=t, method="scorecam", method_options={"max_channels": channels}
            ).heatmaps
        )

    metrics = ("deletion_auc", "average_drop")
    table = ev.evaluate(
        model, images32, methods=("scorecam", ("sc4", scorecam(4)), ("sc12", scorecam(12))),
        metrics=metrics, steps=4, method_options={"scorecam": {"max_channels": 4}},
    )  # fmt: skip
    for metric in metrics:
        np.testing.assert_allclose(
            table.per_image["scorecam"][metric], table.per_image["sc4"][metric], atol=1e-9
        )
    drop = table.per_image["scorecam"]["average_drop"]
    assert np.abs(drop - table.per_image["sc12"]["average_drop"]).max() > 0.05  # it had effect
    assert table.settings["method_options"] == {"scorecam": {"max_channels": 4}}
    with pytest.raises(ValueError, match="`method_options` names 'gradcam'"):
        ev.evaluate(model, images32, methods=("scorecam",), method_options={"gradcam": {}})
    with pytest.raises(TypeError, match="`method_options` must map method names"):
        ev.evaluate(model, images32, methods=("scorecam",), method_options={"scorecam": 4})
    with pytest.raises(ValueError, match="takes \\['max_channels'\\].*'channels'"):
        ev.evaluate(model, images32, methods=("scorecam",), metrics=("average_drop",),
                    method_options={"scorecam": {"channels": 4}})  # fmt: skip


def test_seconds_per_image_comes_after_a_warm_up_call(trained):
    model, x, y, _ = trained
    sizes = []

    def spy(m, xx, t):
        sizes.append(len(xx))
        return xx.mean(-1)

    table = ev.evaluate(model, x[:5], methods=(("spy", spy),), metrics=("seconds_per_image",))
    assert sizes == [1, 5]  # the first image once (traces, compiles), then the timed call
    assert table.scores["spy"]["seconds_per_image"] > 0
    sizes.clear()
    ev.evaluate(model, x[:5], methods=(("spy", spy),), metrics=("average_drop",))
    assert sizes == [5]  # nothing to time: no warm-up


def test_settings_say_what_each_method_explains(images32):
    from conftest import small_cnn

    model = small_cnn(3, head="layer")  # GAP -> Dense -> softmax: CAM's head
    table = ev.evaluate(model, images32, methods=("gradcam", "eigencam", "cam", "random"),
                        metrics=("average_drop",), score="probability")  # fmt: skip
    assert table.settings["score"] == "probability"
    assert table.settings["explains"] == {
        "gradcam": "probability", "eigencam": "none", "random": "none", "cam": "logit"
    }  # fmt: skip
    assert "exact sparse solve" in table.settings["road_imputation"]


def _linear_twins():
    """A Dense(3) logits head (from_logits=True training) and the same layers plus a softmax."""
    import keras

    keras.utils.set_random_seed(2)
    inp = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    z = keras.layers.Dense(3, name="dense")(h)
    model = keras.Model(inp, z)
    w, b = model.get_layer("dense").get_weights()
    model.get_layer("dense").set_weights([w * 8, b + np.array([2.0, -1.0, 0.5])])  # not ~1/3
    twin = keras.Model(inp, keras.layers.Activation("softmax")(z))
    x = np.random.default_rng(4).random((6, 32, 32, 3), dtype=np.float32)
    return model, twin, x


def test_a_logits_head_is_scored_by_its_probabilities():
    """Needs lane-heads' head_scores: a linear head's probabilities are its softmax, so every
    number here equals the explicit-softmax twin's, and all of them are probabilities."""
    model, twin, x = _linear_twins()
    metrics = ("deletion_auc", "insertion_auc", "average_drop", "increase_in_confidence", "road")
    kw = dict(methods=("gradcam", "scorecam", "occlusion", "random"), metrics=metrics, steps=4,
              method_options={"occlusion": {"patch": 8, "stride": 8}})  # fmt: skip
    got = ev.evaluate(model, x, **kw)
    want = ev.evaluate(twin, x, **kw)
    for name in kw["methods"]:
        for metric in metrics:
            np.testing.assert_allclose(got.per_image[name][metric], want.per_image[name][metric],
                                       atol=1e-5, err_msg=f"{name} {metric}")  # fmt: skip
        row = got.per_image[name]
        for metric in ("deletion_auc", "insertion_auc", "road"):
            assert np.all((row[metric] >= 0) & (row[metric] <= 1)), (name, metric)
        assert np.all((row["average_drop"] >= 0) & (row["average_drop"] <= 100)), name


def test_a_saved_table_is_tied_to_the_recorded_epoch_it_scored(tmp_path):
    import keras
    from conftest import small_cnn

    from cam_callback import CAMTracker, load_run
    from cam_callback.report import methods_section

    keras.utils.set_random_seed(0)
    x, y, _ = stripes_data(16)
    model = small_cnn(2)
    model.compile("adam", "sparse_categorical_crossentropy")
    tracker = CAMTracker(x[:4], y[:4], log_dir=tmp_path, animate=None, tensorboard=False,
                         report=False)  # fmt: skip
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[tracker])
    quick = {"methods": ("gradcam",), "metrics": ("deletion_auc",), "steps": 2}

    def scored(m, images, labels):
        table = ev.evaluate(m, images, labels, **quick)
        table.save(tmp_path)
        assert ev.load_evaluation(tmp_path).fingerprints == table.fingerprints
        section = methods_section(load_run(tmp_path))
        return section[section.index('<p id="scored"') :].split("</p>")[0]

    this_run = scored(model, x[:4], y[:4])  # the model now: epoch 1's weights, the probes
    assert "Scored: the weights of epoch 1 of this run, on this run's probes." in this_run
    assert "color" not in this_run  # no warning
    assert "other images" in scored(model, x[4:8], y[4:8])
    # The probes scored without labels: not matched, and not called other images either.
    unlabelled = scored(model, x[:4], None)
    assert "scored without labels" in unlabelled and "other images" not in unlabelled
    assert "color" not in unlabelled
    other = small_cnn(2)  # another run's weights: say so, loudly
    stranger = scored(other, x[:4], y[:4])
    assert "These are not this run's weights" in stranger and "color" in stranger
    # A checkpoint of the state before training (here: those weights set back) is named.
    ledger = json.loads((tmp_path / "cam" / "weights.json").read_text())["weights"]
    assert set(ledger) == {"-1", "0", "1"}
    table = ev.evaluate(model, x[:4], y[:4], **quick)
    saved = json.loads(Path(table.save(tmp_path)).read_text())
    saved["fingerprints"]["weights"] = ledger["-1"]
    Path(tmp_path / ev.FILE_NAME).write_text(json.dumps(saved))
    assert "the weights of the state before training of this run" in methods_section(
        load_run(tmp_path)
    )
    del saved["fingerprints"]  # saved by an older cam-callback: cannot be told
    Path(tmp_path / ev.FILE_NAME).write_text(json.dumps(saved))
    assert "does not say which weights it scored" in methods_section(load_run(tmp_path))


def test_road_noise_scale_reaches_road_and_the_settings(monkeypatch):
    import cam_callback.evaluation.scoring as scoring

    seen = []
    real = scoring.road

    def spy(*args, **kwargs):
        seen.append(kwargs.get("noise_scale"))
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "road", spy)
    model = _gap_model(1.0)
    x = np.random.default_rng(0).random((2, 4, 4, 1)).astype(np.float32)
    maps = np.random.default_rng(1).random((2, 4, 4))
    for scale, words in (("range", "of each image range"), ("absolute", "absolute")):
        table = ev.evaluate(
            model, x, methods=(("m", lambda m, xx, t: maps),), metrics=("road",),
            road_noise_scale=scale,
        )  # fmt: skip
        assert seen[-1] == scale
        assert words in table.settings["road_imputation"]


def test_head_is_read_as_asked_and_recorded(images32, monkeypatch):
    """A linear 3-unit output read as sigmoids, not as an assumed softmax: every forward pass
    reads it so, and the table says which head it used."""
    import keras

    from cam_callback.evaluation import scoring

    heads, real = [], scoring.probabilities_with

    def spy(model, images, settings):
        heads.append(settings.head)
        return real(model, images, settings)

    monkeypatch.setattr(scoring, "probabilities_with", spy)

    keras.utils.set_random_seed(0)
    inp = keras.Input(images32.shape[1:])
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    model = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Flatten()(h)))
    run = dict(methods=("gradcam",), metrics=("average_drop",), labels=np.zeros(len(images32)))
    sig = ev.evaluate(model, images32, head="sigmoid", **run)
    soft = ev.evaluate(model, images32, head="softmax", **run)
    assert (sig.settings["head"], soft.settings["head"]) == ("sigmoid", "softmax")
    assert heads == ["sigmoid", "softmax"]  # average_drop's one forward pass, each as asked
    assert sig.settings["grid"] is None and sig.settings["prefix_tokens"] is None
    a, b = sig.per_image["gradcam"]["average_drop"], soft.per_image["gradcam"]["average_drop"]
    assert not np.allclose(a, b)
