"""Attention rollout and gradient rollout against float64 numpy references.

The references read the attention independently of the package: each
MultiHeadAttention is called on its own input with ``return_attention_scores=True``
(from a split Functional ViT, or block by block in keras-hub's encoder), and the
gradient comes from a ``tf.GradientTape`` over a hand-run forward pass.
The same maps on JAX and PyTorch are checked in tests/test_vit.py (one child per backend).
"""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np
import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from vit_models import functional_vit, hub_vit, images  # noqa: E402

from cam_callback import compute_cams, evaluate, inspect_model  # noqa: E402
from cam_callback.core.attention import captured_attention  # noqa: E402

DEPTH = 2
pytestmark = pytest.mark.filterwarnings("ignore:head='auto'")  # the test ViTs have linear heads
OPTIONS = (
    {}, {"discard_ratio": 0.5}, {"head_fusion": "max"},
    {"head_fusion": "min"}, {"head_fusion": "max", "discard_ratio": 0.5},
)  # fmt: skip


# ---------------------------------------------------------------- references (numpy, float64


def split_attention(model: keras.Model, x: np.ndarray, depth: int = DEPTH) -> list[np.ndarray]:
    """Each block's attention ``[N, heads, T, T]``: its MHA called on its LayerNorm's output."""
    split = keras.Model(model.input, [model.get_layer(f"block{i}_ln1").output
                                      for i in range(1, depth + 1)])  # fmt: skip
    out = []
    for i, y in enumerate(split(x), 1):
        _, a = model.get_layer(f"block{i}_mha")(y, y, return_attention_scores=True)
        out.append(np.asarray(keras.ops.convert_to_numpy(a), np.float64))
    return out


def hub_attention(model: keras.Model, x: np.ndarray) -> list[np.ndarray]:
    """keras-hub's ViT block by block: each block's MHA on its ``ln_1`` output."""
    backbone = model.backbone
    h = backbone.get_layer("vit_patching_and_embedding")(x)
    out = []
    for block in backbone.get_layer("vit_encoder").encoder_layers:
        y = block.layer_norm_1(h)
        _, a = block.mha(y, y, return_attention_scores=True)
        out.append(np.asarray(keras.ops.convert_to_numpy(a), np.float64))
        h = block(h)
    return out


def rollout_reference(
    attentions: list[np.ndarray], discard_ratio: float = 0.0, head_fusion: str = "mean"
) -> np.ndarray:
    """Abnar & Zuidema: ``R = Ã_L ... Ã_1``, ``Ã = rownorm(0.5 fuse_h A + 0.5 I)``; vit-explain's
    ``head_fusion``: the heads' mean, max or min, head by head in a Python loop."""
    t = attentions[0].shape[-1]
    r = np.broadcast_to(np.eye(t), (len(attentions[0]), t, t))
    for a in attentions:
        fused = a[:, 0].copy()
        for h in range(1, a.shape[1]):
            if head_fusion == "mean":
                fused = fused + a[:, h]
            else:
                pick = np.greater if head_fusion == "max" else np.less
                fused = np.where(pick(a[:, h], fused), a[:, h], fused)
        a = fused / a.shape[1] if head_fusion == "mean" else fused
        k = int(t * t * discard_ratio)
        if k:
            flat = a.reshape(len(a), -1).copy()
            for row in flat:  # vit-explain: the k lowest, never the class token's own entry
                low = np.argsort(row, kind="stable")[:k]
                row[low[low != 0]] = 0.0
            a = flat.reshape(a.shape)
        a = 0.5 * a + 0.5 * np.eye(t)
        a = a / a.sum(-1, keepdims=True)
        r = a @ r
    return r


def gradient_rollout_reference(attentions: list, grads: list) -> np.ndarray:
    """Chefer et al. 2021: ``R = I``, then ``R += mean_h (G * A)^+ R`` block by block."""
    t = attentions[0].shape[-1]
    r = np.broadcast_to(np.eye(t), (len(attentions[0]), t, t))
    for a, g in zip(attentions, grads, strict=True):
        r = r + np.maximum(np.asarray(g, np.float64) * a, 0).mean(1) @ r
    return r


def as_map(r: np.ndarray, prefix: int = 1, side: int = 4) -> np.ndarray:
    """The class token's row over the patches (the patch rows' mean without one), normalised."""
    row = r[:, 0, prefix:] if prefix else r.mean(1)
    m = np.maximum(row.reshape(len(r), side, side), 0)
    peak = m.reshape(len(m), -1).max(1)[:, None, None]
    return np.where(peak > 0, m / np.where(peak > 0, peak, 1), 0)  # an all-zero map stays 0


def tape_gradients(model: keras.Model, x: np.ndarray, targets: np.ndarray):
    """The attentions and ``d logit_target / d A`` from a hand-run forward under a GradientTape."""
    import tensorflow as tf

    get = model.get_layer
    with tf.GradientTape() as tape:
        h = get("position")(get("class_token")(get("tokens")(get("patches")(x))))
        attentions = []
        for i in range(1, DEPTH + 1):
            y = get(f"block{i}_ln1")(h)
            y, a = get(f"block{i}_mha")(y, y, return_attention_scores=True)
            attentions.append(a)
            h = get(f"block{i}_add1")([h, y])
            y = get(f"block{i}_mlp2")(get(f"block{i}_mlp1")(get(f"block{i}_ln2")(h)))
            h = get(f"block{i}_out")([h, y])
        logits = get("logits")(get("pool")(get("final_ln")(h)))
        score = tf.reduce_sum(tf.gather(logits, targets, batch_dims=1))
    grads = tape.gradient(score, attentions)
    return [np.asarray(a, np.float64) for a in attentions], [g.numpy() for g in grads]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def vit():
    return functional_vit(depth=DEPTH), images(4)


@pytest.fixture(scope="module")
def hub():
    model = hub_vit(depth=DEPTH)
    if model is None:
        pytest.skip("keras-hub is not installed")
    return model, images(3)


def mhas(model: keras.Model) -> list:
    return [lyr for lyr in model.layers if isinstance(lyr, keras.layers.MultiHeadAttention)]


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("options", OPTIONS)
def test_rollout_matches_the_papers_recursion(vit, options):
    model, x = vit
    res = compute_cams(model, x, method="rollout", method_options=options)
    want = as_map(rollout_reference(split_attention(model, x), **options))
    assert res.heatmaps.shape == (4, 4, 4) and res.score == "none"
    np.testing.assert_allclose(res.heatmaps, want, atol=1e-5)


def test_discard_ratio_changes_the_map_and_is_checked(vit):
    model, x = vit
    plain = compute_cams(model, x, method="rollout").heatmaps
    dropped = compute_cams(model, x, method="rollout", method_options={"discard_ratio": 0.9})
    want = as_map(rollout_reference(split_attention(model, x), 0.9))
    np.testing.assert_allclose(dropped.heatmaps, want, atol=1e-5)
    assert np.abs(dropped.heatmaps - plain).max() > 0.05
    for bad in (1.0, -0.1, "0.5", True):
        with pytest.raises(ValueError, match="`discard_ratio`.*Received: discard_ratio"):
            compute_cams(model, x, method="rollout", method_options={"discard_ratio": bad})


def test_head_fusions_differ_and_are_checked(vit):
    model, x = vit
    maps = {f: compute_cams(model, x, method="rollout",
                            method_options={"head_fusion": f}).heatmaps
            for f in ("mean", "max", "min")}  # fmt: skip
    assert np.abs(maps["max"] - maps["min"]).max() > 0.05  # the option reaches the maps
    assert np.abs(maps["max"] - maps["mean"]).max() > 0.01
    with pytest.raises(ValueError, match="`head_fusion`.*Received: head_fusion='median'"):
        compute_cams(model, x, method="rollout", method_options={"head_fusion": "median"})


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the reference uses a tape")
def test_gradient_rollout_matches_a_gradient_tape_reference(vit):
    model, x = vit
    res = compute_cams(model, x, method="gradient_rollout")
    attentions, grads = tape_gradients(model, x, res.targets)
    want = as_map(gradient_rollout_reference(attentions, grads))
    assert res.score == "logit"
    np.testing.assert_allclose(res.heatmaps, want, atol=1e-5)
    other = compute_cams(model, x, method="gradient_rollout", target=(res.targets + 1) % 3)
    assert np.abs(other.heatmaps - res.heatmaps).max() > 0.05  # it explains the class


def test_without_a_class_token_the_patch_rows_are_averaged():
    model, x = functional_vit(depth=DEPTH, class_token=False), images(2)
    res = compute_cams(model, x, method="rollout")
    want = as_map(rollout_reference(split_attention(model, x)), prefix=0)
    np.testing.assert_allclose(res.heatmaps, want, atol=1e-5)


def test_both_rollouts_on_a_keras_hub_vit(hub):
    model, x = hub
    res = compute_cams(model, x, method="rollout")
    want = as_map(rollout_reference(hub_attention(model, x)))
    np.testing.assert_allclose(res.heatmaps, want, atol=1e-5)
    grad = compute_cams(model, x, method="gradient_rollout")
    assert grad.heatmaps.shape == (3, 4, 4) and (grad.heatmaps.max(axis=(1, 2)) == 1).all()
    assert inspect_model(model, x, method="rollout").score == "none"


def test_a_model_without_attention_is_refused_naming_method():
    inp = keras.Input((8, 8, 3))
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, name="conv")(inp))
    cnn = keras.Model(inp, keras.layers.Dense(2)(h))
    for method in ("rollout", "gradient_rollout"):
        with pytest.raises(ValueError, match=f"`method` '{method}'.*no keras.layers.Multi"):
            compute_cams(cnn, np.zeros((1, 8, 8, 3), np.float32), method=method)


def test_the_model_is_left_as_found_also_after_an_exception(vit):
    model, x = vit  # the module's model: its programs are already compiled
    layer = mhas(model)[0]
    weights = [w.copy() for w in model.get_weights()]
    before = model.predict(x, verbose=0)
    for method in ("rollout", "gradient_rollout"):
        compute_cams(model, x, method=method)
    assert "_compute_attention" not in layer.__dict__
    np.testing.assert_array_equal(model.predict(x, verbose=0), before)
    for w, v in zip(model.get_weights(), weights, strict=True):
        np.testing.assert_array_equal(w, v)

    def boom(i, a, q):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"), captured_attention([layer], boom):
        assert "_compute_attention" in layer.__dict__
        model(x)
    assert "_compute_attention" not in layer.__dict__
    own = layer._compute_attention  # a layer that had its own attribute gets it back
    object.__setattr__(layer, "_compute_attention", own)
    with pytest.raises(RuntimeError), captured_attention([layer], boom):
        model(x)
    assert layer.__dict__["_compute_attention"] is own
    object.__delattr__(layer, "_compute_attention")
    np.testing.assert_array_equal(model.predict(x, verbose=0), before)


def test_evaluate_on_a_vit(vit):
    """evaluate() scores Grad-CAM on tokens and rollout side by side; rollout is class-agnostic,
    so its row records that it explains no score."""
    model, x = vit
    metrics = ("deletion_auc", "average_drop", "increase_in_confidence")
    table = evaluate(model, x, methods=("gradcam", "rollout"), steps=2, metrics=metrics)
    assert table.settings["explains"] == {"gradcam": "logit", "rollout": "none"}
    for name in ("gradcam", "rollout"):
        row = table.scores[name]
        assert sorted(row) == sorted(metrics)
        assert all(np.isfinite(v) for v in row.values()), (name, row)
        assert 0.0 <= row["deletion_auc"] <= 1.0 and 0.0 <= row["average_drop"] <= 100.0
        assert table.per_image[name]["deletion_auc"].shape == (4,)
    # The rows are the two methods' own maps, not one map scored twice.
    assert table.per_image["gradcam"]["deletion_auc"].tolist() != \
        table.per_image["rollout"]["deletion_auc"].tolist()


def cross_attention_model() -> keras.Model:
    """25 patch tokens (queries) attend to 5 learned summary tokens (keys): cross-attention."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((20, 20, 3))
    t = keras.layers.Reshape((25, 8), name="tokens")(keras.layers.Conv2D(8, 4, strides=4)(inp))
    keys = keras.layers.Dense(8, name="summary")(keras.layers.Reshape((5, 40))(t))
    y = keras.layers.MultiHeadAttention(2, 4, name="cross")(t, keys)
    out = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling1D()(y))
    return keras.Model(inp, out)


def test_cross_attention_is_refused_before_any_map_or_epoch(tmp_path):
    from cam_callback import CAMTracker  # noqa: PLC0415 - the tracker only here

    model, x = cross_attention_model(), np.random.default_rng(0).random((4, 20, 20, 3), "float32")
    msg = r"layer 'cross' is cross-attention: 25 queries attend to 5 keys.*\[batch, 2, 25, 5\]"
    for method in ("rollout", "gradient_rollout"):
        with pytest.raises(ValueError, match=msg):
            inspect_model(model, x, method=method)
        with pytest.raises(ValueError, match=msg):
            compute_cams(model, x, method=method)
    assert compute_cams(model, x, layer="tokens").heatmaps.shape == (4, 5, 5)  # gradcam works
    epochs = []
    seen = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: epochs.append(e))
    tracker = CAMTracker(x, log_dir=tmp_path, method="rollout", animate=None, tensorboard=False)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match=msg):
        model.fit(x, np.zeros(4, int), epochs=2, verbose=0, callbacks=[tracker, seen])
    assert epochs == []
