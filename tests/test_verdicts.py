"""Every verdict and metric the page shows, on models whose right answer is known by construction.

The planted models read the red channel of a 32 px image through hand-set weights, with a
third "none" class that wins when no evidence is there:
``z_homer = A (w_r (m_R - 1/2) + w_o (m_O - 1/2))``, ``z_other = -z_homer``,
``z_none = NONE * A``, with ``m_R``, ``m_O`` the mean red of region ``R`` (the cue, 8x8
px) and ``O`` (the object, 10x10 px); everything else is red 1/2 (neutral). So:

- the **R-reader** (``w_r = 1``) reads only ``R``: reliance on ``R`` ~ p, sufficiency of
  ``R`` = p, its cue pasted elsewhere decides the class (causal transplant 1);
- the **non-reader** (``w_o = 1``) never reads ``R``: reliance 0, causal transplant 0
  whatever its base rate, and ``ignores_object`` when ``R`` is given as the object;
- the **AND-reader** (``w_r = w_o = 1/2``) needs both: removing either drops p, pasting
  ``R`` alone transplants nothing;
- a zero kernel gives **empty maps**, NaN weights a **non-finite** model, a small ``A``
  a **low-confidence** one, and swapping the two classes' weights at one epoch a
  **flipped**, **unstable** one.

The maps are HiResCAM at the red layer (activation ``red - 1/2``): ``relu(g * A)``, ``g``
the explained logit's weight at each cell, which is non-zero only on what the model reads.
The numpy functions are tested on planted inputs; three tiny ``fit`` runs (3 epochs, 8
probes) check that the tracker's record says the same.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import cam_callback
from cam_callback import metrics as M
from cam_callback.report import probe_rows

SIDE, A, NONE = 32, 100.0, 0.4
CLASSES = ["other", "homer", "none"]
R = np.zeros((SIDE, SIDE), bool)
R[2:10, 2:10] = True
OBJ = np.zeros((SIDE, SIDE), bool)
OBJ[18:28, 18:28] = True  # O, the object
# Probes: homers with the cue (0-2), others without it (3-5), an other with homer's cue and
# object (6), and a homer without the cue (7).
LABELS = np.array([1, 1, 1, 0, 0, 0, 0, 1])
RED_R = np.array([1, 1, 1, 0, 0, 0, 1, 0], float)
RED_O = np.array([1, 1, 1, 0, 0, 0, 1, 1], float)


def probes(red_r=RED_R, red_o=RED_O, seed: int = 0) -> np.ndarray:
    """float32 ``[N, 32, 32, 3]``: red 1/2 but in R and O; green and blue random."""
    rng = np.random.default_rng(seed)
    x = rng.random((len(red_r), SIDE, SIDE, 3)).astype(np.float32)
    x[..., 0] = 0.5
    x[:, R, 0] = np.asarray(red_r, np.float32)[:, None]
    x[:, OBJ, 0] = np.asarray(red_o, np.float32)[:, None]
    return x


class Planted:
    """The numpy planted model: probabilities and HiResCAM maps at its red layer."""

    def __init__(self, w_r: float, w_o: float, a: float = A, scale: float = 1.0) -> None:
        self.a, self.scale = a, scale  # scale: the red kernel (0: empty maps; NaN: diverged)
        w = a * (w_r * R / R.sum() + w_o * OBJ / OBJ.sum())
        self.weights = np.stack([-w, w, np.zeros_like(w)], -1)  # [32, 32, 3 classes]
        self.bias = np.array([0.0, 0.0, NONE * a])

    def activation(self, x: np.ndarray) -> np.ndarray:
        return self.scale * (np.asarray(x, np.float64)[..., 0] - 0.5)

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.einsum("nhw,hwc->nc", self.activation(x), self.weights) + self.bias

    def probs(self, x: np.ndarray) -> np.ndarray:
        z = self.logits(x)
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    def maps(self, x: np.ndarray, targets: np.ndarray) -> np.ndarray:
        g = np.moveaxis(self.weights, -1, 0)[np.asarray(targets)]  # [N, 32, 32]
        cam = np.maximum(g * self.activation(x), 0.0)
        peak = cam.reshape(len(cam), -1).max(1)[:, None, None]
        return np.where(peak > 0, cam / np.where(peak > 0, peak, 1.0), 0.0)

    def swapped(self) -> Planted:
        """The same model with homer's and other's weights exchanged."""
        out = Planted(0.0, 0.0, self.a, self.scale)
        out.weights = self.weights[..., [1, 0, 2]]
        return out


R_READER, NON_READER, AND_READER = Planted(1, 0), Planted(0, 1), Planted(0.5, 0.5)


def measure(model: Planted, x, labels, masks, mask_kind="cue"):
    """One epoch's metrics of ``model`` with the label explained, as the tracker makes them."""
    p = model.probs(x)
    maps = M.mark_not_computed(model.maps(x, labels), p)
    out = M.epoch_metrics(maps, p, labels=labels, masks=masks)
    images = M.build_interventions(x, masks, labels=labels, mask_kind=mask_kind)
    altered = model.probs(images.altered)
    out.update(M.intervention_metrics(images, p, altered, labels, labels))
    return out, p, maps


def record(models, x, labels, masks=None, mask_kind="cue"):
    """A record over epochs, one planted model per epoch: metrics ``[E, N]``, p, maps."""
    rows, ps, maps = [], [], []
    for model in models:
        p = model.probs(x)
        m = M.mark_not_computed(model.maps(x, labels), p)
        out = M.epoch_metrics(
            m, p, labels=labels, masks=masks,
            previous=maps[-1] if maps else None, first=maps[0] if maps else None,
        )  # fmt: skip
        if masks is not None:
            images = M.build_interventions(x, masks, labels=labels, mask_kind=mask_kind)
            out.update(
                M.intervention_metrics(images, p, model.probs(images.altered), labels, labels)
            )
        rows.append(out)
        ps.append(p)
        maps.append(m)
    metrics = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    return metrics, np.stack(ps), np.stack(maps)


def cue_masks(n: int = 8) -> np.ndarray:
    return np.repeat(R[None], n, axis=0)


def object_masks(region: np.ndarray = OBJ, n: int = 8) -> np.ndarray:
    return np.repeat(region[None], n, axis=0)


def p_target(p: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return p[np.arange(len(p)), labels]


# ---- the R-reader: reads only the cue ----


def test_the_r_reader_relies_on_its_cue_and_the_cue_alone_transplants_the_class():
    x = probes()
    out, p, _ = measure(R_READER, x, LABELS, cue_masks())
    pt = p_target(p, LABELS)
    # Predicted: 0-2 homer, 3-5 other, 6 homer (its cue), 7 other (no cue): 6 and 7 wrong.
    assert p.argmax(1).tolist() == [1, 1, 1, 0, 0, 0, 1, 0]
    np.testing.assert_allclose(out["reliance"], pt, atol=1e-6)  # reliance ~ p
    np.testing.assert_allclose(out["sufficiency"], pt, atol=1e-9)  # only R read, R kept
    # Each donor pastes onto 2 recipients of the other class. A donor whose R carries its
    # class's evidence (homer: red; other: dark) makes every eligible recipient its class.
    t, base = out["transplant"], out["transplant_base"]
    np.testing.assert_allclose(t, [1, 1, 1, 1, 1, 1, 0, 0])
    # Donor 1 pastes onto probes 5 and 6; 6 is homer already: out of the count, its base.
    np.testing.assert_allclose(base, [0, 0.5, 0, 0, 0.5, 0, 0.5, 0.5])
    rates = M.transplant_rates(t, LABELS, base)
    assert rates[1] == pytest.approx(5 / 6)  # 5 of 6 eligible pasted images became homer
    assert M.transplant_rates(base, LABELS)[1] == pytest.approx(0.25)
    # The map is on R only: all the attention is on the cue, 16x its share of the image.
    np.testing.assert_allclose(out["mask_focus"][:6], 1.0)
    np.testing.assert_allclose(out["mask_lift"][:6], 16.0)
    f = M.flags({k: v[None] for k, v in out.items()}, p[None], mask_kind="cue",
                heatmaps=R_READER.maps(x, LABELS)[None])  # fmt: skip
    assert f["relies_on_cue"].tolist() == [True] * 6 + [False] * 2
    assert f["on_cue"].tolist() == [True] * 6 + [False] * 2
    assert f["misclassified"].tolist() == [False] * 6 + [True] * 2
    # 6 and 7 are explained as their label, whose evidence R does not hold: empty maps.
    assert f["empty_map"].tolist() == [False] * 6 + [True] * 2
    assert not f["ignores_object"].any() and not f["left_mask"].any()


def test_the_r_reader_given_r_as_the_object_neither_ignores_it_nor_leaves_it():
    x = probes()
    out, p, maps = measure(R_READER, x, LABELS, object_masks(R), mask_kind="object")
    assert "transplant" not in out
    f = M.flags({k: v[None] for k, v in out.items()}, p[None], heatmaps=maps[None])
    assert not f["ignores_object"][:6].any() and not f["left_mask"][:6].any()
    assert not f["on_cue"].any() and not f["relies_on_cue"].any()


# ---- the non-reader: never reads the cue ----


def test_a_model_that_never_reads_the_cue_has_a_causal_transplant_of_zero():
    """Issue 26 item 1: the old rate counted recipients already predicted as the donor's
    class (here 0.25 for homer: probe 6); the causal rate is 0, the base rate 0.25."""
    x = probes()
    out, p, _ = measure(NON_READER, x, LABELS, cue_masks())
    assert p.argmax(1).tolist() == [1, 1, 1, 0, 0, 0, 1, 1]  # by the object: 6 wrong
    np.testing.assert_array_equal(out["reliance"], 0.0)  # R is never read
    t, base = out["transplant"], out["transplant_base"]
    np.testing.assert_array_equal(t, 0.0)  # every donor: no eligible recipient moved
    np.testing.assert_allclose(base, [0, 0.5, 0, 0, 0, 0, 0, 0.5])  # 6 is homer already
    rates, bases = M.transplant_rates(t, LABELS, base), M.transplant_rates(base, LABELS)
    assert {c: float(r) for c, r in rates.items()} == {0: 0.0, 1: 0.0}
    assert bases[1] == pytest.approx(0.25) and bases[0] == 0.0
    s = M.summary_scalars(out, labels=LABELS, class_names=CLASSES, mask_kind="cue")
    assert s["class_homer/transplant_rate"] == 0.0 and s["mean_transplant_rate"] == 0.0
    assert s["class_homer/transplant_base_rate"] == pytest.approx(0.25)
    assert s["mean_transplant_base_rate"] == pytest.approx(0.125)
    f = M.flags({k: v[None] for k, v in out.items()}, p[None], mask_kind="cue")
    assert not f["relies_on_cue"].any() and not f["on_cue"].any()  # its maps are on O


def test_a_model_that_never_reads_the_object_ignores_it_and_its_attention_left_it():
    x = probes()
    out, p, maps = measure(NON_READER, x, LABELS, object_masks(R), mask_kind="object")
    np.testing.assert_array_equal(out["reliance"], 0.0)
    np.testing.assert_array_equal(out["mask_focus"], 0.0)  # its maps lie on O, not on R
    f = M.flags({k: v[None] for k, v in out.items()}, p[None], heatmaps=maps[None])
    assert f["ignores_object"].all() and f["left_mask"].all()
    # Given the region it does read as the object: neither flag.
    out, p, maps = measure(NON_READER, x, LABELS, object_masks(OBJ), mask_kind="object")
    f = M.flags({k: v[None] for k, v in out.items()}, p[None], heatmaps=maps[None])
    np.testing.assert_allclose(out["mask_lift"][:6], SIDE * SIDE / OBJ.sum(), rtol=1e-6)
    assert not f["ignores_object"][:6].any() and not f["left_mask"][:6].any()


# ---- the AND-reader: reads the cue and the object, needs both ----


def test_a_model_that_needs_cue_and_object_relies_on_both_and_transplants_nothing():
    x = probes()
    out, p, _ = measure(AND_READER, x, LABELS, cue_masks())
    pt = p_target(p, LABELS)
    ok = np.arange(6)  # 6 is homer (cue and object red), 7 none (half its evidence)
    assert p.argmax(1).tolist() == [1, 1, 1, 0, 0, 0, 1, 2]
    np.testing.assert_allclose(out["reliance"][ok], pt[ok], atol=1e-6)  # R is needed ...
    np.testing.assert_array_equal(out["transplant"], 0.0)  # ... and not enough alone
    np.testing.assert_allclose(out["mask_focus"][ok], 0.5, atol=1e-6)  # half the energy on R
    obj, p, maps = measure(AND_READER, x, LABELS, object_masks(OBJ), mask_kind="object")
    np.testing.assert_allclose(obj["reliance"][ok], pt[ok], atol=1e-6)  # O is needed too
    f = M.flags({k: v[None] for k, v in obj.items()}, p[None], heatmaps=maps[None])
    assert not f["ignores_object"][ok].any() and not f["left_mask"][ok].any()


# ---- probes without a mask (issue 26 item 2) ----


def test_a_probe_without_a_mask_is_not_measured():
    x = probes()
    masks = cue_masks()
    masks[[0, 3]] = False  # a homer and an other without a mask
    out, p, maps = measure(R_READER, x, LABELS, masks)
    for name in ("mask_focus", "mask_lift", "reliance", "sufficiency", "transplant",
                 "transplant_base"):  # fmt: skip
        assert np.isnan(out[name][[0, 3]]).all(), name
        assert np.isfinite(out[name][[1, 2, 4, 5]]).all(), name
    for kind in ("cue", "object"):
        f = M.flags({k: v[None] for k, v in out.items()}, p[None], mask_kind=kind,
                    heatmaps=maps[None])  # fmt: skip
        for flag in ("left_mask", "on_cue", "relies_on_cue", "ignores_object"):
            assert not f[flag][[0, 3]].any(), (kind, flag)
    assert f["ignores_object"][[6, 7]].all()  # measured ones still are flagged (object kind)
    s = M.summary_scalars(out, labels=LABELS, class_names=CLASSES, mask_kind="cue")
    measured = np.isfinite(out["mask_focus"])
    assert s["mean_mask_focus"] == pytest.approx(out["mask_focus"][measured].mean())
    assert s["mean_mask_lift"] == pytest.approx(out["mask_lift"][measured].mean())
    assert s["class_homer/mean_mask_focus"] == pytest.approx(
        np.nanmean(out["mask_focus"][[1, 2, 7]])
    )
    assert s["on_cue/count"] == 4  # 1, 2, 4, 5: the unmeasured 0 and 3 are in no group
    assert s["mean_reliance"] == pytest.approx(np.nanmean(out["reliance"]))
    unmeasured = {"mask_focus": np.full(2, np.nan), "mask_lift": np.full(2, np.nan)}
    nothing = M.summary_scalars(unmeasured, mask_kind="object")
    assert np.isnan(nothing["mean_mask_focus"]) and nothing["left_mask/count"] == 0


# ---- maps: empty, not finite, fragile ----


def test_a_zero_kernel_gives_empty_maps_and_no_fragility():
    x = probes()
    dead = Planted(1, 0, scale=0.0)  # every activation 0: no evidence anywhere
    out, p, maps = measure(dead, x, LABELS, cue_masks())
    assert (maps == 0).all()
    np.testing.assert_array_equal(out["concentration"], 0.0)
    np.testing.assert_array_equal(out["mask_focus"], 0.0)  # measured: no attention at all
    f = M.flags({k: v[None] for k, v in out.items()}, p[None], heatmaps=maps[None])
    assert f["empty_map"].all() and not f["non_finite"].any()
    assert M.empty_map_notice(f["empty_map"], layer="red", method="hirescam", score="logit")
    copies = M.perturbed_copies(x, 2, 0.02, 0)
    frag = M.fragility(maps, p, dead.maps(copies, np.tile(LABELS, 2)), dead.probs(copies))
    assert np.isnan(frag).all()  # nothing to move
    assert not M.fragile_flag({"fragility": frag[None]})["fragile"].any()
    live = M.flags({}, p[None], heatmaps=R_READER.maps(x, LABELS)[None])
    assert live["empty_map"].tolist() == [False] * 6 + [True] * 2


def test_nan_weights_make_every_probe_non_finite_and_misclassified():
    x = probes()
    with np.errstate(invalid="ignore"):
        broken = Planted(1, 0, scale=np.nan)
        out, p, maps = measure(broken, x, LABELS, cue_masks())
    assert np.isnan(p).all() and np.isnan(maps).all()  # marked as not computed
    f = M.flags({k: v[None] for k, v in out.items()}, p[None], heatmaps=maps[None],
                mask_kind="cue")  # fmt: skip
    assert f["non_finite"].all() and f["misclassified"].all()
    assert not f["empty_map"].any() and not f["on_cue"].any() and not f["relies_on_cue"].any()
    assert np.isnan(out["transplant"]).all()  # no recipient had a prediction to move
    fine = M.flags({}, R_READER.probs(x)[None], heatmaps=R_READER.maps(x, LABELS)[None])
    assert not fine["non_finite"].any()


def pooled_red(x: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """A planted map: the red channel averaged over 8x8 blocks (4x4 cells)."""
    return np.asarray(x, np.float64)[..., 0].reshape(len(x), 4, 8, 4, 8).mean((2, 4))


def test_a_map_of_near_ties_is_fragile_and_a_clear_peak_is_not():
    rng = np.random.default_rng(3)
    x = 0.5 + rng.uniform(-1e-4, 1e-4, (2, SIDE, SIDE, 3))  # probe 0: all cells within 1e-4
    x[1, ..., 0] = 0.5
    x[1, :8, :8, 0] = 1.0  # probe 1: one block far above an even rest
    x[..., 1] = rng.random((2, SIDE, SIDE))  # a value range of about 1: noise 0.02
    p = np.tile([0.9, 0.1], (2, 1))  # the prediction never moves
    copies = M.perturbed_copies(x, 3, 0.02, 0)
    frag = M.fragility(pooled_red(x, None), p, pooled_red(copies, None), np.tile(p, (3, 1)))
    assert frag[0] > 0.5 and frag[1] == 0.0
    assert M.fragile_flag({"fragility": frag[None]})["fragile"].tolist() == [True, False]
    f = M.flags({"fragility": frag[None]}, p[None])
    assert f["fragile"].tolist() == [True, False]


# ---- over epochs: flipped, unstable, low confidence ----


def test_swapping_the_classes_at_one_epoch_flips_and_unsettles_the_probes():
    x = probes()
    cued = np.arange(6)  # confidently right probes
    # epochs -1, 0, 1, 2: the weights swap at epoch 1 and come back at 2.
    metrics, p, maps = record([R_READER, R_READER, R_READER.swapped(), R_READER], x, LABELS)
    f = M.flags(metrics, p, heatmaps=maps)
    assert f["flipped"][cued].all()
    assert f["unstable"][cued].all()  # the swapped epoch's maps are empty: drift 1 at epoch 2
    np.testing.assert_allclose(metrics["drift"][-1, cued], 1.0)
    assert not f["misclassified"][cued].any()  # right again at the end
    steady, sp, smaps = record([R_READER] * 4, x, LABELS)
    g = M.flags(steady, sp, heatmaps=smaps)
    assert not g["flipped"].any() and not g["unstable"].any()
    np.testing.assert_array_equal(steady["drift"], 0.0)
    # Ending swapped: every probe is wrong, and every map is empty.
    _, ep, emaps = record([R_READER, R_READER.swapped()], x, LABELS)
    e = M.flags({"correct": (ep.argmax(-1) == LABELS).astype(np.float32)}, ep, heatmaps=emaps)
    assert e["misclassified"][cued].all() and e["flipped"][cued].all()
    assert e["empty_map"][cued].all()  # their labels' evidence now speaks against them


def test_a_soft_model_is_low_confidence_and_a_sharp_one_is_not():
    x = probes()
    soft = Planted(1, 0, a=1.0)  # logits +-0.5 and 0.4: no class reaches 0.5
    f = M.flags({}, soft.probs(x)[None])
    assert f["low_confidence"].all() and soft.probs(x).max() < 0.5
    assert not M.flags({}, R_READER.probs(x)[None])["low_confidence"][:6].any()


# ---- three tiny runs: the tracker's record says what the planted models say ----


def keras_planted(model: Planted) -> keras.Model:
    """The planted model in Keras: a 1x1 conv "red" (red - 1/2), Flatten, Dense softmax."""
    inp = keras.Input((SIDE, SIDE, 3))
    act = keras.layers.Conv2D(1, 1, name="red")(inp)
    out = keras.layers.Dense(3, activation="softmax", name="head")(keras.layers.Flatten()(act))
    net = keras.Model(inp, out)
    net.get_layer("red").set_weights(
        [np.array([1.0, 0, 0], np.float32).reshape(1, 1, 3, 1) * model.scale,
         np.array([-0.5 * model.scale], np.float32)]
    )  # fmt: skip
    set_head(net, model)
    net.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    return net


def set_head(net: keras.Model, model: Planted) -> None:
    kernel = model.weights.reshape(SIDE * SIDE, 3).astype(np.float32)
    net.get_layer("head").set_weights([kernel, model.bias.astype(np.float32)])


class SwapAt(keras.callbacks.Callback):
    """Sets the planted weights per epoch, before the tracker records it."""

    def __init__(self, models: dict[int, Planted]) -> None:
        super().__init__()
        self.models = models

    def on_epoch_end(self, epoch, logs=None):
        set_head(self.model, self.models[epoch])


def fit(tmp_path_factory, model: Planted, masks, mask_kind="cue", per_epoch=None):
    log = tmp_path_factory.mktemp("verdicts")
    x = probes()
    net = keras_planted(model)
    tracker = cam_callback.CAMTracker(
        x, LABELS, log_dir=log, class_names=CLASSES, probe_masks=masks, mask_kind=mask_kind,
        layer="red", method="hirescam", target="label", animate=None, report=False,
    )  # fmt: skip
    extra = [] if per_epoch is None else [SwapAt(per_epoch)]
    net.fit(x, LABELS, epochs=3, batch_size=8, verbose=0, callbacks=[*extra, tracker])
    return cam_callback.load_run(log)


@pytest.fixture(scope="module")
def r_reader_run(tmp_path_factory):
    masks = cue_masks()
    masks[3] = False  # one probe without a mask
    return fit(tmp_path_factory, R_READER, masks), masks


def scalars(run) -> dict[str, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run.path), size_guidance={"tensors": 0})
    acc.Reload()
    return {
        tag: float(acc.Tensors(tag)[-1].tensor_proto.float_val[0])
        for tag in acc.Tags()["tensors"]
        if tag.startswith("cam/") and "/probe_" not in tag and tag != "cam/grid"
        and acc.Tensors(tag)[-1].tensor_proto.float_val
    }  # fmt: skip


def test_the_r_reader_run_records_what_the_planted_model_says(r_reader_run):
    run, masks = r_reader_run
    x = probes()
    want, p, maps = measure(R_READER, x, LABELS, masks)
    assert run.epochs == [-1, 0, 1, 2]
    np.testing.assert_allclose(run.probabilities[-1], p, atol=1e-5)
    np.testing.assert_allclose(run.heatmaps[-1], maps, atol=1e-5)
    for name in ("mask_focus", "mask_lift", "reliance", "sufficiency", "transplant",
                 "transplant_base"):  # fmt: skip
        np.testing.assert_allclose(run.metrics[name][-1], want[name], atol=1e-5,
                                   equal_nan=True, err_msg=name)  # fmt: skip
    assert np.isnan(run.metrics["reliance"][-1, 3]) and np.isnan(run.metrics["mask_lift"][-1, 3])
    f = run.flags
    assert f["relies_on_cue"].tolist() == [True, True, True, False, True, True, False, False]
    assert f["on_cue"].tolist() == f["relies_on_cue"].tolist()
    assert f["misclassified"].tolist() == [False] * 6 + [True] * 2
    assert f["empty_map"].tolist() == [False] * 6 + [True] * 2
    for flag in ("left_mask", "ignores_object", "non_finite", "fragile", "flipped", "unstable",
                 "low_confidence"):  # fmt: skip
        assert not f[flag].any(), flag
    s = scalars(run)
    assert s["cam/class_homer/transplant_rate"] == pytest.approx(5 / 6, abs=1e-6)
    assert s["cam/class_homer/transplant_base_rate"] == pytest.approx(0.25)
    measured = np.isfinite(want["mask_focus"])
    assert s["cam/mean_mask_focus"] == pytest.approx(want["mask_focus"][measured].mean(), abs=1e-5)
    badge = probe_rows(run, 0.5)[0]["badges"]["relies_on_cue"]
    assert badge.endswith("the cue alone makes 83% of other probes homer (not counting the 25% "
                          "already homer)")  # fmt: skip


def test_the_non_reader_run_has_a_causal_transplant_of_zero(tmp_path_factory):
    run = fit(tmp_path_factory, NON_READER, cue_masks())
    for e in range(len(run.epochs)):
        np.testing.assert_array_equal(run.metrics["transplant"][e], 0.0)
        np.testing.assert_allclose(run.metrics["reliance"][e], 0.0, atol=1e-6)
    rates = M.transplant_rates(run.metrics["transplant"], LABELS, run.metrics["transplant_base"])
    base = M.transplant_rates(run.metrics["transplant_base"], LABELS)
    np.testing.assert_array_equal(rates[1], 0.0)
    np.testing.assert_allclose(base[1], 0.25)  # what the old rate reported as transplanted
    assert not run.flags["relies_on_cue"].any() and not run.flags["on_cue"].any()
    assert run.flags["misclassified"].tolist() == [False] * 6 + [True, False]


def test_the_flipping_run_is_flipped_and_unstable(tmp_path_factory):
    run = fit(tmp_path_factory, R_READER, None,
              per_epoch={0: R_READER, 1: R_READER.swapped(), 2: R_READER})  # fmt: skip
    pred = run.probabilities.argmax(-1)
    assert pred[:, 0].tolist() == [1, 1, 0, 1]
    f = run.flags
    assert f["flipped"][:6].all() and f["unstable"][:6].all()
    assert not f["misclassified"][:6].any()
    np.testing.assert_allclose(run.metrics["drift"][-1, :6], 1.0, atol=1e-6)
