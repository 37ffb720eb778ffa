"""Interventions and fragility against hand-computed values, through a real ``fit``.

The model reads one region ``R`` of an 8x8 grey image and nothing else:
``p(class 1) = sigmoid(A * (sum_R x - B))``. So removing any region outside ``R``
changes nothing (reliance exactly 0), keeping only ``R`` changes nothing
(sufficiency exactly ``p(x)``), and pasting ``R`` decides the prediction (the causal
transplant rate is the share of donors whose ``R`` is bright). It is fitted with a
learning rate of 0, so every epoch has the same numbers.
"""

from __future__ import annotations

import json
from dataclasses import replace

import keras
import numpy as np
import pytest

import cam_callback
from cam_callback import metrics as M
from cam_callback.evaluation import road
from cam_callback.imputation import impute
from cam_callback.record import compute_flags
from cam_callback.tracker.pipeline import ProbeInterventions, fragility_options
from cam_callback.tracker.pipeline import build as pipeline_build

SIDE, A, B = 8, 4.0, 2.0
R = np.zeros((SIDE, SIDE), bool)
R[2:4, 2:5] = True  # six pixels


def region_model() -> keras.Model:
    inp = keras.Input((SIDE, SIDE, 1))
    x = keras.layers.Conv2D(1, 1, use_bias=False, name="conv")(inp)  # identity: a spatial layer
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(2, activation="softmax", name="dense")(x)
    model = keras.Model(inp, out)
    model.get_layer("conv").set_weights([np.ones((1, 1, 1, 1), np.float32)])
    w = np.zeros((SIDE * SIDE, 2), np.float32)
    w[R.ravel(), 1] = A
    model.get_layer("dense").set_weights([w, np.array([0.0, -A * B], np.float32)])
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    return model


def p1(x: np.ndarray) -> np.ndarray:
    """float64 reference: p(class 1) of the region model."""
    s = x.reshape(len(x), SIDE, SIDE)[:, R].sum(1).astype(np.float64)
    return 1.0 / (1.0 + np.exp(-A * (s - B)))


def probes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class 0: R dark; class 1: R bright (1.0), except probe 5 whose R is dim (0.2).

    Masks: R for probes 0-5 (the cue); probe 6's mask lies outside R; probe 7's is empty.
    """
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 0.3, (8, SIDE, SIDE, 1)).astype(np.float32)
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    x[:3, R] = 0.0
    x[3:5, R] = 1.0
    x[5, R] = 0.2
    x[6, R] = 1.0
    masks = np.repeat(R[None], 8, axis=0)
    masks[6] = False
    masks[6, 5:, 5:] = True  # outside R
    masks[7] = False
    return x, labels, masks


@pytest.fixture(scope="module")
def cue_run(tmp_path_factory):
    """One fit of 2 epochs (lr 0) with cue masks and fragility, shared by the checks."""
    keras.utils.set_random_seed(0)
    x, labels, masks = probes()
    log = tmp_path_factory.mktemp("interv")
    model = region_model()
    tracker = cam_callback.CAMTracker(
        x, labels, log_dir=log, probe_masks=masks, mask_kind="cue", layer="conv",
        target="label", animate=None, tensorboard=True, fragility={"copies": 2, "noise": 0.01},
        class_names=["plain", "homer"], score="probability",
    )  # fmt: skip
    model.fit(x, labels, epochs=2, batch_size=8, verbose=0, callbacks=[tracker])
    return model, x, labels, masks, cam_callback.load_run(log)


def test_reliance_and_sufficiency_are_exact_on_a_one_region_model(cue_run):
    _, x, labels, masks, run = cue_run
    assert run.epochs == [-1, 0, 1]
    p = np.where(labels == 1, p1(x), 1 - p1(x))  # the explained target is the label
    removed = x.copy()
    removed[:7] = impute(x[:7], masks[:7], seed=0)  # probe 7's empty mask removes nothing
    p_removed = np.where(labels == 1, p1(removed), 1 - p1(removed))
    for e in range(3):
        rel, suf = run.metrics["reliance"][e], run.metrics["sufficiency"][e]
        np.testing.assert_allclose(rel[:7], (p - p_removed)[:7], atol=2e-6)
        assert rel[6] == pytest.approx(0.0, abs=1e-6)  # the model never reads probe 6's mask
        assert np.isnan(rel[7])  # an empty mask: the probe is not measured
        # Only R is read, and only R is kept: the probability is untouched.
        np.testing.assert_allclose(suf[:6], p[:6], atol=2e-6)
        assert np.isnan(suf[7])  # an empty mask keeps nothing
    # Homer's bright probes (3, 4) need their region: removing it makes p(homer) collapse.
    assert run.metrics["reliance"][-1, 3] == pytest.approx(p1(x[3:4])[0] - p1(removed[3:4])[0])
    assert run.metrics["reliance"][-1, 3] > 0.9


def test_transplant_rate_is_the_share_of_bright_donors(cue_run):
    _, x, labels, masks, run = cue_run
    t, base = run.metrics["transplant"][-1], run.metrics["transplant_base"][-1]
    # Donors: probes with a non-empty mask (0-6), 2 recipients each. Class 1's recipients
    # (probes 0, 1, 2, 7) are all predicted 0, so all eligible. Pasting R decides the class:
    # a bright R (probes 3, 4) makes every recipient homer, a dim one (5: 0.2 * 6 = 1.2 < B)
    # none, probe 6's mask lies outside R so its paste changes nothing.
    np.testing.assert_allclose(t[3:7], [1.0, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(base[3:7], [0.0, 0.0, 0.0, 0.0])
    # Class 0's dark R pasted on class 1 probes: donor 0 -> 3, 4; donor 1 -> 5, 6; donor
    # 2 -> 3, 4. Probe 5 (dim R) is predicted 0 already: not counted, it is donor 1's base.
    np.testing.assert_allclose(t[:3], [1.0, 1.0, 1.0])
    np.testing.assert_allclose(base[:3], [0.0, 0.5, 0.0])
    assert np.isnan(t[7]) and np.isnan(base[7])  # an empty mask is no donor
    rates = M.transplant_rates(run.metrics["transplant"], labels, run.metrics["transplant_base"])
    np.testing.assert_allclose(rates[1], [0.5, 0.5, 0.5])  # (2 + 2 + 0 + 0) / 8 eligible
    np.testing.assert_allclose(rates[0], [1.0, 1.0, 1.0])  # 5 of 5 eligible
    base_rates = M.transplant_rates(run.metrics["transplant_base"], labels)
    np.testing.assert_allclose(base_rates[0], [1 / 6] * 3)  # 1 of 6 recipients already 0


def test_pairing_rule_by_hand():
    labels = np.array([0, 0, 1, 1, 1, 2])
    donors = np.array([True, True, True, False, True, True])
    d, r = M.transplant_pairs(labels, donors, recipients=2, budget=None)
    # class 0: others [2, 3, 4, 5]; donor 0 -> 2, 3; donor 1 -> 4, 5
    # class 1: others [0, 1, 5]; donor 2 -> 0, 1; donor 4 -> 5, 0 (round robin)
    # class 2: others [0, 1, 2, 3, 4]; donor 5 -> 0, 1
    assert list(zip(d.tolist(), r.tolist(), strict=True)) == [
        (0, 2), (0, 3), (1, 4), (1, 5), (2, 0), (2, 1), (4, 5), (4, 0), (5, 0), (5, 1),
    ]  # fmt: skip
    # The budget: about 2 N = 12 images for 5 donors -> 2 each; 1 donor -> 8 (the cap), ...
    assert len(M.transplant_pairs(labels, donors, recipients=8)[0]) == 10
    one = np.array([True, False, False, False, False, False])
    assert len(M.transplant_pairs(labels, one)[0]) == 4  # ... or fewer when fewer others
    assert len(M.transplant_pairs(labels, donors, 8, budget=None)[0]) == 2 * 4 + 2 * 3 + 5


def test_flags_thresholds_and_scalars_are_recorded(cue_run):
    _, _, labels, _, run = cue_run
    meta = json.loads((run.path / "record.json").read_text())
    assert meta["interventions"]["reliance_threshold"] == M.RELIANCE_THRESHOLD
    assert meta["fragility"]["copies"] == 2
    rel = run.metrics["reliance"][-1]
    assert run.flags["relies_on_cue"].tolist() == (rel >= M.RELIANCE_THRESHOLD).tolist()
    assert run.flags["relies_on_cue"][[3, 4]].all() and not run.flags["relies_on_cue"][6]
    assert not run.flags["ignores_object"].any()  # cue masks: the object flag stays off
    strict = {**run.meta, "interventions": {**meta["interventions"], "reliance_threshold": 0.999}}
    assert not compute_flags(replace(run, meta=strict))["relies_on_cue"].any()  # read back
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run.path), size_guidance={"tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["tensors"])
    want = {
        "cam/mean_reliance", "cam/class_homer/mean_reliance", "cam/class_homer/transplant_rate",
        "cam/mean_transplant_rate", "cam/mean_fragility", "cam/class_plain/mean_sufficiency",
        "cam/class_plain/transplant_base_rate", "cam/mean_transplant_base_rate",
    }  # fmt: skip
    assert want <= tags, want - tags
    last = acc.Tensors("cam/class_homer/transplant_rate")[-1]
    assert float(keras.ops.convert_to_numpy(last.tensor_proto.float_val[0])) == pytest.approx(0.5)
    base = acc.Tensors("cam/class_plain/transplant_base_rate")[-1].tensor_proto.float_val[0]
    assert base == pytest.approx(1 / 6)


def test_fragility_matches_a_slow_reference(cue_run):
    model, x, labels, _, run = cue_run
    copies = M.perturbed_copies(x, 2, 0.01, 0)
    res = cam_callback.compute_cams(model, x, layer="conv", target=labels, score="probability")
    rep = cam_callback.compute_cams(
        model, copies, layer="conv", target=np.tile(labels, 2), score="probability"
    )
    want = M.fragility(res.heatmaps, res.probabilities, rep.heatmaps, rep.probabilities)
    np.testing.assert_allclose(run.metrics["fragility"][-1], want, atol=1e-6, equal_nan=True)
    assert np.isfinite(run.metrics["fragility"][-1]).any()


def test_fragility_by_hand():
    maps = np.zeros((2, 1, 10))
    maps[:, 0, 0] = 1.0  # top cell (k = 1 of 10): cell 0
    copy = np.zeros((4, 1, 10))
    copy[0, 0, 0] = copy[1, 0, 3] = 1.0  # copy 0: probe 0 keeps cell 0, probe 1 moves
    copy[2, 0, 0] = copy[3, 0, 0] = 1.0  # copy 1: both keep cell 0
    p = np.array([[0.9, 0.1], [0.9, 0.1]])
    cp = np.array([[0.8, 0.2], [0.8, 0.2], [0.2, 0.8], [0.7, 0.3]])  # copy 1 flips probe 0
    # probe 0: only copy 0 kept the class, same cell -> 0; probe 1: (0 + 1) / 2 kept -> 0.5
    np.testing.assert_allclose(M.fragility(maps, p, copy, cp), [0.0, 0.5])
    flipped = cp.copy()
    flipped[[0, 2], 0], flipped[[0, 2], 1] = 0.1, 0.9
    assert np.isnan(M.fragility(maps, p, copy, flipped)[0])  # no copy kept the prediction
    assert M.fragile_flag({"fragility": np.array([[0.6, 0.5]])})["fragile"].tolist() == [
        True,
        False,
    ]


def test_fragility_of_an_empty_map_is_undefined_and_a_moved_hot_cell_is_fragile():
    p = np.array([[0.9, 0.1]])
    empty = np.zeros((1, 7, 7))
    assert np.isnan(M.fragility(empty, p, empty.copy(), p)[0])  # nothing to move
    one, moved = np.zeros((1, 7, 7)), np.zeros((1, 7, 7))
    one[0, 6, 6] = moved[0, 3, 3] = 1.0  # ties at zero are not top cells
    assert M.fragility(one, p, moved, p)[0] == 1.0
    assert M.fragility(one, p, one.copy(), p)[0] == 0.0


def test_integer_probes_are_altered_without_wrapping_around():
    x = np.zeros((2, 6, 6, 1), np.uint8)
    x[:, 0, 0] = 255
    filled = impute(x, np.eye(6, dtype=bool)[None].repeat(2, 0), seed=0)
    assert filled.dtype == np.uint8
    assert filled[:, 1:, 1:].max() < 100  # near 0 +- noise, never 255 - noise
    copies = M.perturbed_copies(x, 2, 0.02, 0)
    assert copies.dtype == np.uint8 and copies[:, 1:].max() <= 6  # 0 + 5.1, never 251
    assert copies[:, 0, 0].min() >= 249


def test_numpy_numbers_are_taken_and_recorded_as_plain_ones():
    opts = fragility_options({"copies": np.int64(2), "noise": np.float32(0.01)})
    assert opts.copies == 2 and type(opts.copies) is int and type(opts.noise) is float
    assert json.dumps(opts.__dict__)  # goes into record.json


def test_a_failing_build_of_the_altered_probes_warns_and_fit_goes_on(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise MemoryError("no room for the altered probes")

    monkeypatch.setattr(pipeline_build, "ProbeInterventions", broken)
    x, labels, masks = probes()
    tracker = cam_callback.CAMTracker(
        x, labels, log_dir=tmp_path, probe_masks=masks, mask_kind="cue", layer="conv",
        animate=None, tensorboard=False, report=False,
    )  # fmt: skip
    model = region_model()
    with pytest.warns(UserWarning, match="starting the pipeline.*MemoryError"):
        history = model.fit(x, labels, epochs=2, batch_size=8, verbose=0, callbacks=[tracker])
    assert len(history.history["loss"]) == 2


def test_object_masks_flag_an_ignored_object_and_skip_the_transplant():
    x, labels, masks = probes()
    images = ProbeInterventions(x, masks, labels, "object")
    assert images.passes == 2 * 8 and images.images is not None
    assert len(images.images.transplant) == 0
    flags = M.flags(
        {"reliance": np.array([[0.05, 0.5, np.nan]])}, np.full((1, 3, 2), 0.5), mask_kind="object"
    )
    assert flags["ignores_object"].tolist() == [True, False, False]
    assert not flags["relies_on_cue"].any()


def test_masks_at_another_size_and_bad_fragility_options():
    x, labels, masks = probes()
    big = np.repeat(np.repeat(masks, 2, axis=1), 2, axis=2)  # masks at display size 16x16
    small = ProbeInterventions(x, masks, labels, "cue").images
    scaled = ProbeInterventions(x, big, labels, "cue").images
    np.testing.assert_array_equal(small.removed, scaled.removed)
    with pytest.raises(ValueError, match="unknown keys"):
        fragility_options({"copy": 2})
    with pytest.raises(TypeError, match="fragility"):
        fragility_options("yes")
    with pytest.raises(ValueError, match="noise"):
        fragility_options({"noise": 2.0})


def test_badges_state_the_figures_on_the_page_and_the_cam_tab(cue_run):
    from cam_callback.report import probe_rows
    from cam_callback.tensorboard_plugin.runs import probe_table

    _, x, _, _, run = cue_run
    rows = probe_rows(run, 0.5)
    rel = run.metrics["reliance"][-1, 3]
    want = f"removing the cue drops p(homer) by {rel:.2f}; the cue alone makes 50% of other "
    want += "probes homer"
    assert rows[3]["badges"]["relies_on_cue"] == want
    page = cam_callback.write_report(run.path.parent)
    assert want in page.read_text()
    # Probes 0-2 have empty maps: their fragility is undefined (NaN), never "robust" (0) or
    # "fragile"; the page explains the flag only where a probe carries it.
    assert np.isnan(run.metrics["fragility"][-1, :3]).all()
    fragile = bool(run.flags["fragile"].any())
    assert ("noise too small to change the prediction" in page.read_text()) == fragile
    assert probe_table(run)[3]["badges"]["relies_on_cue"] == want  # the CAM tab's rows


def test_a_logits_head_is_measured_by_its_softmax(tmp_path):
    """The score is the explained target's probability as the head gives it: the softmax."""
    x, labels, masks = probes()
    model = region_model()
    linear = keras.Model(model.input, model.get_layer("dense").output)
    linear.get_layer("dense").activation = keras.activations.linear
    linear.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    tracker = cam_callback.CAMTracker(
        x, labels, log_dir=tmp_path, probe_masks=masks, mask_kind="object", layer="conv",
        target="label", animate=None, tensorboard=False, head="logits",
    )  # fmt: skip
    linear.fit(x, labels, epochs=1, batch_size=8, verbose=0, callbacks=[tracker])
    run = cam_callback.load_run(tmp_path)
    removed = x.copy()
    removed[:7] = impute(x[:7], masks[:7], seed=0)
    p, q = p1(x), p1(removed)  # softmax of [0, A (s - B)] is the sigmoid
    want = np.where(labels == 1, p - q, (1 - p) - (1 - q))
    np.testing.assert_allclose(run.metrics["reliance"][-1, :7], want[:7], atol=2e-6)
    assert np.isnan(run.metrics["reliance"][-1, 7])  # no mask: not measured
    assert "transplant" not in run.metrics  # object masks: no transplant
    # Object masks: probe 6's mask misses what the model reads, so it ignores that "object".
    assert run.flags["ignores_object"][6] and not run.flags["ignores_object"][3]


def test_images_sharing_a_mask_are_filled_as_each_alone():
    """impute() solves once per distinct mask, every image of it a right-hand side."""
    rng = np.random.default_rng(1)
    x = rng.random((6, 12, 10, 3))
    m = rng.random((6, 12, 10)) < 0.4
    m[3] = m[5] = m[1]
    alone = np.concatenate([impute(x[i : i + 1], m[i : i + 1], noise=0.0) for i in range(6)])
    np.testing.assert_allclose(impute(x, m, noise=0.0), alone, atol=1e-12)
    assert not np.allclose(alone[1][m[1]], x[1][m[1]])  # something was filled


def test_road_noise_is_a_share_of_the_range_by_default_and_absolute_on_request():
    """Issue 26 item 10: ROAD's code adds an absolute N(0, 0.01) in the input's units; our
    default is 0.01 x each image's value range, the same on [0, 1] images."""
    rng = np.random.default_rng(0)
    x = rng.random((2, 16, 16, 3)) * np.array([[[[255.0]]], [[[1.0]]]])  # 0-255 and 0-1
    hole = np.zeros((2, 16, 16), bool)
    hole[:, 4:12, 4:12] = True
    exact = impute(x, hole, noise=0.0)
    jitter = {s: impute(x, hole, seed=2, noise_scale=s) - exact for s in ("range", "absolute")}
    spread = x.reshape(2, -1).max(1) - x.reshape(2, -1).min(1)
    for i in range(2):
        default, absolute = jitter["range"][i][hole[i]], jitter["absolute"][i][hole[i]]
        assert 0.008 < default.std() / spread[i] < 0.012  # 1% of the range
        assert 0.008 < absolute.std() < 0.012  # 0.01 itself
        np.testing.assert_allclose(default, spread[i] * absolute, atol=1e-9)  # same draws
    np.testing.assert_array_equal(impute(x, hole, seed=2), exact + jitter["range"])
    with pytest.raises(ValueError, match="`noise_scale` must be one of"):
        impute(x, hole, noise_scale="std")

    def probs(images):  # reads the hole's mean: the noise's scale is all that moves it
        m = images[:, 4:12, 4:12].mean((1, 2, 3)) / 255.0
        return np.stack([1 - m, m], 1)

    ranks = np.zeros((2, 16, 16))
    ranks[:, 4:12, 4:12] = 1.0
    t = np.array([1, 1])
    a = road(x, ranks, t, probs, noise_scale="absolute")
    b = road(x, ranks, t, probs)
    assert not np.allclose(a, b)  # the option reaches the imputation
