"""Every metric and flag against hand-computed values on hand-made maps."""

from __future__ import annotations

import numpy as np
import pytest

from cam_callback import metrics as M


def test_drift_cosine_by_hand():
    a = np.array([[[1.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [0.0, 0.0]], [[0, 0], [0, 0.0]]])
    b = np.array([[[0.0, 1.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]], [[0, 0], [0, 0.0]]])
    # orthogonal -> 1; 45 degrees -> 1 - 1/sqrt(2); two zero maps -> 0
    np.testing.assert_allclose(M.cosine_drift(a, b), [1.0, 1 - 1 / np.sqrt(2), 0.0], atol=1e-6)
    np.testing.assert_allclose(M.cosine_drift(a[:1], a[2:]), [1.0])


def test_concentration_by_hand():
    flat = np.ones((1, 4, 5))  # 20 cells, top 10% = 2 cells -> 2/20
    peaked = np.zeros((1, 4, 5))
    peaked[0, 1, 1] = 1.0
    half = np.zeros((1, 4, 5))
    half[0, 0, :4] = 1.0  # 4 equal cells, the top 2 hold half
    np.testing.assert_allclose(
        M.concentration(np.concatenate([flat, peaked, half])), [0.1, 1.0, 0.5]
    )
    assert M.concentration(np.zeros((1, 2, 2)))[0] == 0.0


def test_mask_focus_upsamples_to_mask():
    m = np.array([[[1.0, 0.0], [0.0, 0.0]]])
    left_half = np.zeros((1, 4, 4), bool)
    left_half[0, :, :2] = True
    # Upsampled bilinearly to 4x4, the left half holds 0.75 of the energy (a 2x2 with one
    # corner at 1 interpolates to weights 1, .75, .25, 0 along each axis: (1+.75)/(1+.75+.25)).
    np.testing.assert_allclose(M.mask_focus(m, left_half), [1.75 / 2.0], atol=1e-6)
    np.testing.assert_allclose(M.mask_focus(m, ~left_half), [0.25 / 2.0], atol=1e-6)
    assert M.mask_focus(np.zeros((1, 2, 2)), left_half)[0] == 0.0


def test_epoch_metrics_by_hand():
    maps = np.array([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [0.0, 0.0]]])
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.3, 0.5]])
    out = M.epoch_metrics(maps, probs, labels=np.array([0, 1]), previous=maps[::-1], first=maps)
    np.testing.assert_allclose(out["true_class_probability"], [0.6, 0.3])
    np.testing.assert_allclose(out["predicted_class"], [0, 2])
    np.testing.assert_allclose(out["margin"], [0.3, 0.2], atol=1e-6)
    np.testing.assert_allclose(out["correct"], [1, 0])
    np.testing.assert_allclose(out["drift"], [1, 1])
    np.testing.assert_allclose(out["drift_from_first"], [0, 0])
    masks = np.zeros((2, 4, 4), bool)
    masks[:, :2, :2] = True  # a quarter of the image
    with_masks = M.epoch_metrics(maps, probs, masks=masks)
    np.testing.assert_allclose(with_masks["mask_lift"], with_masks["mask_focus"] * 4, rtol=1e-6)
    first = M.epoch_metrics(maps, probs)
    assert first["drift"].tolist() == [0, 0] and "correct" not in first
    single = M.epoch_metrics(maps[:1], np.array([[0.8]]))
    np.testing.assert_allclose(single["margin"], [0.6], atol=1e-6)


def test_summary_scalars():
    s = M.summary_scalars({"correct": np.array([1.0, 0, 0, 1]), "drift": np.array([0.1, 0.3])})
    assert s == pytest.approx({"misclassified_fraction": 0.5, "mean_drift": 0.2})


def test_summary_scalars_per_group_tell_the_flagged_story():
    # Two homer probes pulled to the cue, two others not: the overall mean hides it.
    values = {
        "mask_focus": np.array([0.8, 0.6, 0.1, 0.1]),
        "mask_lift": np.array([3.2, 2.4, 0.4, 0.4]),
        "true_class_probability": np.array([0.9, 0.8, 0.5, 0.3]),
    }
    s = M.summary_scalars(
        values, labels=np.array([0, 0, 1, 1]), class_names=["Homer S.", "tri"], mask_kind="cue"
    )
    assert s["mean_mask_lift"] == pytest.approx(1.6)
    assert s["on_cue/count"] == 2 and s["on_cue/mean_mask_focus"] == pytest.approx(0.7)
    assert s["class_homer_s/mean_mask_focus"] == pytest.approx(0.7)
    assert s["class_tri/mean_true_class_probability"] == pytest.approx(0.4)
    obj = M.summary_scalars(values, mask_kind="object")
    assert obj["left_mask/count"] == 2 and obj["left_mask/mean_mask_lift"] == pytest.approx(0.4)
    assert not any(k.startswith("class_") for k in obj)


def test_flags_on_constructed_record():
    # 4 epochs, 4 probes, 2 classes.
    p = np.array(
        [
            [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.9, 0.1]],
            [[0.9, 0.1], [0.3, 0.7], [0.4, 0.6], [0.9, 0.1]],
            [[0.9, 0.1], [0.4, 0.6], [0.6, 0.4], [0.9, 0.1]],
            [[0.9, 0.1], [0.55, 0.45], [0.45, 0.55], [0.9, 0.1]],
        ]
    )
    labels = np.array([0, 1, 1, 0])
    correct = (p.argmax(-1) == labels).astype(np.float32)
    drift = np.array([[0, 0, 0, 0], [0, 0.1, 0.1, 0.5], [0, 0.1, 0.1, 0.6], [0, 0.1, 0.1, 0.7]])
    lift = np.array([[3.0, 3.0, 0.8, 2.0]] * 3 + [[3.0, 0.9, 0.5, 1.5]])
    f = M.flags({"correct": correct, "drift": drift, "mask_lift": lift}, p, low_confidence=0.6)
    assert f["misclassified"].tolist() == [False, True, False, False]
    assert f["low_confidence"].tolist() == [False, True, True, False]
    assert f["flipped"].tolist() == [False, True, True, False]
    assert f["unstable"].tolist() == [False, False, False, True]
    assert f["left_mask"].tolist() == [False, True, True, False]
    assert not f["on_cue"].any()
    cue = M.flags({"mask_lift": lift}, p, mask_kind="cue")
    assert cue["on_cue"].tolist() == [True, False, False, True] and not cue["left_mask"].any()
    empty = M.flags({}, np.zeros((0, 3, 2)))
    assert set(empty) == set(M.FLAG_NAMES) and not any(v.any() for v in empty.values())


def test_a_non_finite_prediction_is_never_correct_and_its_map_is_not_computed():
    probs = np.array([[np.nan, np.nan, np.nan], [0.1, 0.7, 0.2], [np.inf, 0.0, 0.0]])
    maps = np.zeros((3, 2, 2))  # what normalising a NaN map gives: looks computed, is not
    maps[1, 0, 0] = 1.0
    marked = M.mark_not_computed(maps, probs)
    assert np.isnan(marked[[0, 2]]).all() and marked[1].tolist() == [[1.0, 0.0], [0.0, 0.0]]
    out = M.epoch_metrics(marked, probs, labels=np.array([0, 1, 0]), previous=marked)
    # argmax(NaN) and argmax(inf, 0, 0) are 0, the label: neither counts as correct.
    assert out["correct"].tolist() == [0.0, 1.0, 0.0]
    assert np.isnan(out["predicted_class"][[0, 2]]).all() and out["predicted_class"][1] == 1
    assert np.isnan(out["margin"][[0, 2]]).all()
    np.testing.assert_allclose(out["margin"][1], 0.5, atol=1e-6)
    for name in ("concentration", "drift"):
        assert np.isnan(out[name][[0, 2]]).all() and np.isfinite(out[name][1]), name
    assert np.isnan(M.mask_focus(marked, np.ones((3, 4, 4), bool))[[0, 2]]).all()
    np.testing.assert_allclose(M.cosine_drift(marked[1:2], maps[1:2]), [0.0])
    # A record written before this rule, with correct=1 for a NaN probe: still misclassified.
    f = M.flags({"correct": np.array([[1.0, 1.0, 1.0]])}, probs[None])
    assert f["misclassified"].tolist() == [True, False, True]
    assert f["non_finite"].tolist() == [True, False, True]


def test_class_groups_stay_unique_when_names_collide():
    keys = M.class_group_keys(np.array([0, 1, 2, 2]), ["Cat!", "cat?", "dog"])
    assert keys == {0: "class_0_cat", 1: "class_1_cat", 2: "class_dog"}
    assert M.class_group_keys(np.array([1, 0]), ["a", "a"]) == {0: "class_0_a", 1: "class_1_a"}
    # A class absent from the probes still makes its twin's tag carry the id: tags are stable.
    assert M.class_group_keys(np.array([1]), ["x", "X"]) == {1: "class_1_x"}
    assert M.class_group_keys(np.array([2, 0]), None) == {0: "class_0", 2: "class_2"}
    s = M.summary_scalars(
        {"true_class_probability": np.array([0.9, 0.1, 0.5])},
        labels=np.array([0, 1, 2]),
        class_names=["Cat!", "cat?", "dog"],
    )
    assert s["class_0_cat/mean_true_class_probability"] == pytest.approx(0.9)
    assert s["class_1_cat/mean_true_class_probability"] == pytest.approx(0.1)
    assert s["class_dog/mean_true_class_probability"] == pytest.approx(0.5)


def test_intervention_scalars_by_hand():
    labels = np.array([0, 0, 1, 1])
    values = {
        "reliance": np.array([0.9, 0.7, 0.1, np.nan]),  # NaN: probe 3's mask covers everything
        "sufficiency": np.array([0.8, 0.6, np.nan, 0.2]),
        "transplant": np.array([1.0, 0.5, 0.25, np.nan]),  # probe 3 is no donor
    }
    s = M.summary_scalars(values, labels=labels, class_names=["homer", "bart"], mask_kind="cue")
    assert s["mean_reliance"] == pytest.approx(1.7 / 3)  # over the probes where it is defined
    assert s["class_homer/mean_reliance"] == pytest.approx(0.8)
    assert s["class_bart/mean_reliance"] == pytest.approx(0.1)
    assert s["class_bart/mean_sufficiency"] == pytest.approx(0.2)
    assert s["class_homer/transplant_rate"] == pytest.approx(0.75)  # mean over its donors
    assert s["class_bart/transplant_rate"] == pytest.approx(0.25)
    assert s["mean_transplant_rate"] == pytest.approx(0.5)
    f = M.flags({"reliance": values["reliance"][None]}, np.full((1, 4, 2), 0.5), mask_kind="cue")
    assert f["relies_on_cue"].tolist() == [True, True, False, False]
