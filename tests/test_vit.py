"""Vision Transformers: token layers on their patch grid, subclassed encoders, the default
layer, a float64 reference, every backend, and the tracker on a tiny ViT."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
from _child_vit import maps_of
from vit_models import functional_vit, hub_dinov2, hub_swin, hub_vit, images

from cam_callback import CAMTracker, compute_cams, inspect_model, layer_activations, load_run
from cam_callback.methods import principal_component

HERE = Path(__file__).parent
BACKEND = keras.backend.backend()


@pytest.fixture(scope="module")
def fvit():
    return functional_vit()


@pytest.fixture(scope="module")
def hvit():
    model = hub_vit()
    if model is None:
        pytest.skip("keras-hub is not installed")
    return model


@pytest.fixture(scope="module")
def x():
    return images(3)


def reference(model, x, layer, prefix):
    """Tokens and their gradient from a split Functional ViT; Grad-CAM in float64 numpy.

    Returns ``{class: maps [N, h, w]}``, each map divided by its max (0 stays 0).
    """
    import tensorflow as tf

    lyr = model.get_layer(layer)
    head = keras.Model(model.inputs, lyr.output)
    tail = keras.Model(lyr.output, model.outputs)
    tokens = tf.constant(keras.ops.convert_to_numpy(head(x)))
    out = {}
    for c in range(model.output.shape[-1]):
        with tf.GradientTape() as tape:
            tape.watch(tokens)
            score = tf.reduce_sum(tail(tokens)[:, c])
        a = tokens.numpy().astype(np.float64)[:, prefix:]
        g = tape.gradient(score, tokens).numpy().astype(np.float64)[:, prefix:]
        side = int(np.sqrt(a.shape[1]))
        cam = np.maximum((a * g.mean(1, keepdims=True)).sum(-1), 0).reshape(len(x), side, side)
        peak = cam.max(axis=(1, 2), keepdims=True)
        out[c] = np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0)
    return out


@pytest.mark.skipif(BACKEND != "tensorflow", reason="the reference's gradient is a GradientTape")
@pytest.mark.parametrize("class_token", [True, False])
def test_gradcam_on_tokens_matches_float64_reference(class_token, fvit, x):
    model = fvit if class_token else functional_vit(class_token=False)
    want = reference(model, x, "block1_out", prefix=int(class_token))
    assert sum(float(m.max()) for m in want.values()) > 0  # not a zero-vs-zero check
    for c, maps in want.items():
        res = compute_cams(model, x, layer="block1_out", target=c)
        assert res.heatmaps.shape == (3, 4, 4)
        np.testing.assert_allclose(res.heatmaps, maps, atol=1e-5)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="the reference splits the model on TF")
def test_ablationcam_on_tokens_keeps_each_images_class_token(fvit, x):
    """Ablation-CAM runs the model after the layer: each ablated grid goes back into tokens
    behind its own image's class token (zeroing channel k of the patches only). At
    block1_out the class token differs per image, so a wrong pairing changes the maps."""
    lyr = fvit.get_layer("block1_out")
    tokens = keras.ops.convert_to_numpy(keras.Model(fvit.inputs, lyr.output)(x))
    logits = keras.Model(lyr.output, fvit.outputs)

    def tail(t):  # the probabilities: y > 0, as score="probability" explains
        return keras.ops.softmax(logits(t), axis=-1)

    n, _, d = tokens.shape
    a = tokens[:, 1:].astype(np.float64).reshape(n, 4, 4, d)
    peaks = 0.0
    for c in range(3):
        y = keras.ops.convert_to_numpy(tail(tokens))[:, c].astype(np.float64)
        weights = np.zeros((n, d))
        for i in range(n):
            ablated = np.repeat(tokens[i][None], d, 0)
            ablated[np.arange(d), 1:, np.arange(d)] = 0.0  # copy k loses channel k of the patches
            yk = keras.ops.convert_to_numpy(tail(ablated))[:, c].astype(np.float64)
            weights[i] = (y[i] - yk) / y[i]
        cam = np.maximum((a * weights[:, None, None]).sum(-1), 0)
        peak = cam.max(axis=(1, 2), keepdims=True)
        want = np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0)
        peaks += want.max()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the head is linear: a warning says it is read
            got = compute_cams(fvit, x, layer="block1_out", method="ablationcam", target=c,
                               score="probability")
        np.testing.assert_allclose(got.heatmaps, want, atol=1e-4)
    assert peaks > 0  # not a zero-vs-zero check


def test_class_token_vit_last_block_is_zero_and_default_is_not(hvit, x):
    encoder = f"{hvit.backbone.name}/vit_encoder"
    check = inspect_model(hvit, x)
    assert check.layer == f"{encoder}/transformer_block_2/ln_1"
    assert check.map_shape == (4, 4)
    assert "do not reach" in check.note and "1 prefix tokens dropped" in check.note
    # The last block's patch tokens get no gradient: every gradient map is zero there.
    last = f"{encoder}/transformer_block_2"
    for method in ("gradcam", "gradcam_elementwise"):
        assert compute_cams(hvit, x, layer=last, method=method).heatmaps.max() == 0.0
    # At the default, G * A is not zero (Grad-CAM's own sign depends on the random weights).
    assert compute_cams(hvit, x, method="gradcam_elementwise").heatmaps.max() == 1.0


def test_layers_inside_keras_hub_encoder(hvit, x):
    encoder = f"{hvit.backbone.name}/vit_encoder"
    path = f"{encoder}/transformer_block_1"
    res = compute_cams(hvit, x, layer=path)
    assert res.layer == path and res.heatmaps.shape == (3, 4, 4)
    assert res.heatmaps.max() == 1.0
    block = hvit.backbone.get_layer("vit_encoder").encoder_layers[0]
    by_object = compute_cams(hvit, x, layer=block)
    np.testing.assert_array_equal(by_object.heatmaps, res.heatmaps)
    # A layer inside the block, and the model left as found (no hook stays installed).
    compute_cams(hvit, x, layer=f"{path}/ln_2", method="layercam")
    assert "call" not in block.__dict__ and "call" not in block.layer_norm_2.__dict__
    # The map sits on the patch grid: the class token is not in it.
    tokens = layer_activations(hvit, x, path)
    assert tokens.shape == (3, 17, 16)
    eig = compute_cams(hvit, x, layer=path, method="eigencam").heatmaps
    want = principal_component(tokens[:, 1:].reshape(3, 4, 4, 16).astype(np.float64))
    want = np.maximum(want, 0) / np.maximum(want, 0).max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(eig, want, atol=1e-5)


def test_dinov2_register_tokens_are_dropped():
    model = hub_dinov2()
    if model is None:
        pytest.skip("keras-hub has no DINOV2Backbone")
    x = images(2, 28)
    check = inspect_model(model, x)
    assert check.map_shape == (4, 4) and "5 prefix tokens dropped" in check.note
    assert check.layer.endswith("layers_1/norm1")
    path = f"{model.layers[1].name}/encoder/layers_0"
    tokens = layer_activations(model, x, path)
    assert tokens.shape[1] == 1 + 4 + 16
    eig = compute_cams(model, x, layer=path, method="eigencam").heatmaps
    want = principal_component(tokens[:, 5:].reshape(2, 4, 4, -1).astype(np.float64))
    want = np.maximum(want, 0) / np.maximum(want, 0).max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(eig, want, atol=1e-5)
    # prefix_tokens= overrides the search, and a wrong one is refused by name.
    with pytest.raises(ValueError, match="prefix_tokens=2"):
        compute_cams(model, x, layer=path, prefix_tokens=2)


def test_swin_tokens_without_prefix():
    model = hub_swin()
    if model is None:
        pytest.skip("keras-hub has no SwinTransformerBackbone")
    x = images(2, 32)
    check = inspect_model(model, x)
    assert check.map_shape == (4, 4) and "0 prefix tokens dropped" in check.note
    res = compute_cams(model, x)
    assert res.heatmaps.shape == (2, 4, 4) and np.isfinite(res.heatmaps).all()


def _odd_vit(width=31):
    """31-pixel-high images in 7-pixel patches: no token count tells the 4 x w grid."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((31, width, 3))
    x = keras.layers.Conv2D(8, 7, strides=7, name="patches")(inp)
    x = keras.layers.Reshape((4 * ((width - 7) // 7 + 1), 8), name="tokens")(x)
    x = keras.layers.Concatenate(axis=1, name="with_cls")([x[:, :1] * 0.0 + 1.0, x])
    x = keras.layers.Dense(8, activation="relu", name="mix")(x)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(inp, keras.layers.Dense(3, name="logits")(x))


def test_unknown_grid_names_the_argument_that_fixes_it():
    model = _odd_vit()
    x = images(2, 31)
    for call in (compute_cams, inspect_model):
        with pytest.raises(ValueError, match=r"grid=\(h, w\).*prefix_tokens=n"):
            call(model, x, layer="mix")
    res = compute_cams(model, x, layer="mix", grid=(4, 4))
    assert res.heatmaps.shape == (2, 4, 4)
    assert inspect_model(model, x, layer="mix", grid=(4, 4)).note.startswith("token layer: 1")
    with pytest.raises(ValueError, match="apply to token layers"):
        compute_cams(model, x, layer="patches", grid=(4, 4))


def test_tracker_takes_grid_and_prefix_tokens(tmp_path):
    """A class token before a 4 x 6 grid of 7-pixel patches on 31 x 45 images: the tracker
    refuses it before the first batch naming grid=, and records it with grid=(4, 6)."""
    model = _odd_vit(width=45)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(2).random((4, 31, 45, 3), dtype=np.float32)
    y = np.arange(4) % 3
    quiet = {"tensorboard": False, "animate": None, "report": False, "layer": "mix"}
    for bad in ({"grid": (4, 0)}, {"grid": "4x6"}, {"prefix_tokens": -1}):
        with pytest.raises(ValueError, match=f"`{next(iter(bad))}`.*Received"):
            CAMTracker(x, y, log_dir=tmp_path / "bad", **quiet, **bad)
    blind = CAMTracker(x, y, log_dir=tmp_path / "blind", **quiet)
    with pytest.raises(ValueError, match=r"grid=\(h, w\).*prefix_tokens=n"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[blind])
    tracker = CAMTracker(x, y, log_dir=tmp_path / "run", grid=(4, 6), prefix_tokens=1, **quiet)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[tracker])
    run = load_run(tmp_path / "run")
    assert run.heatmaps.shape == (2, 4, 4, 6)
    assert run.meta["grid"] == [4, 6] and run.meta["prefix_tokens"] == 1
    fresh = compute_cams(model, x, layer="mix", grid=(4, 6), prefix_tokens=1)
    assert fresh.heatmaps.max() == 1.0  # not a zero-vs-zero check
    np.testing.assert_allclose(run.heatmaps[-1], fresh.heatmaps, atol=1e-5)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="runs the other backends in children")
def test_same_vit_weights_same_maps_on_every_backend(fvit, x, tmp_path):
    """One child per backend, on the same saved weights: Grad-CAM on tokens, rollout (plain
    and with discard_ratio) and gradient rollout agree with TensorFlow within 1e-4. The JAX
    child sees two host devices and computes them again under keras.distribution's
    DataParallel: equal to its own one-device maps."""
    fvit.save_weights(tmp_path / "vit.weights.h5")
    np.save(tmp_path / "x.npy", x)
    children = {
        b: subprocess.Popen(
            [sys.executable, str(HERE / "_child_vit.py"), str(tmp_path)],
            env={**os.environ, "KERAS_BACKEND": b,
                 "XLA_FLAGS": "--xla_force_host_platform_device_count=2"},  # fmt: skip
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for b in ("jax", "torch")
    }
    here = maps_of(fvit, x)  # while the children run
    assert sorted(here) == ["gradcam_tokens", "gradient_rollout", "rollout", "rollout_discard"]
    for key, maps in here.items():  # no zero-vs-zero comparison
        assert maps.shape == (3, 4, 4) and (maps.max(axis=(1, 2)) == 1.0).all(), key
    for b, child in children.items():
        out, err = child.communicate(timeout=240)
        assert child.returncode == 0, err[-3000:]
        assert b != "jax" or out.strip().splitlines()[-1] == "2", out  # two JAX devices
        got = np.load(tmp_path / f"maps_{b}.npz")
        assert sorted(got.files) == sorted(here), b
        for key, maps in here.items():
            np.testing.assert_allclose(got[key], maps, atol=1e-4, err_msg=f"{b}/{key}")
    dp, single = np.load(tmp_path / "maps_dp.npz"), np.load(tmp_path / "maps_jax.npz")
    assert sorted(dp.files) == ["gradcam_tokens", "gradient_rollout", "rollout"]
    for key in dp.files:  # two devices against one, same backend, same weights
        np.testing.assert_allclose(dp[key], single[key], atol=1e-6, err_msg=f"dp/{key}")


def test_tracker_records_a_vit(tmp_path):
    from PIL import Image

    from cam_callback import write_report

    model = functional_vit()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = images(8), np.arange(8) % 3
    tracker = CAMTracker(x[:2], y[:2], log_dir=tmp_path, class_names=["a", "b", "c"])
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[tracker])
    run = load_run(tmp_path)
    assert run.epochs == [-1, 0, 1] and run.layer == "block2_ln1"
    assert run.heatmaps.shape == (3, 2, 4, 4)
    fresh = compute_cams(model, x[:2])
    np.testing.assert_allclose(run.heatmaps[-1], fresh.heatmaps, atol=1e-5)
    gif = Image.open(tmp_path / "cam" / "animations" / "probe_000.gif")
    assert gif.n_frames == 3
    assert list((tmp_path / "cam").glob("events.out.tfevents.*"))
    page = write_report(run)
    assert "block2_ln1" in Path(page).read_text()



def _softmax_vit(scale: float) -> keras.Model:
    """The Functional ViT with a softmax head, the head's kernel multiplied by ``scale``."""
    base = functional_vit()
    logits = base.get_layer("logits")
    kernel, bias = logits.get_weights()
    logits.set_weights([kernel * scale, bias])
    out = keras.layers.Activation("softmax", name="softmax")(base.output)
    return keras.Model(base.input, out, name=f"softmax_vit_{int(scale)}")


def test_default_layer_does_not_depend_on_confidence(x):
    """A head kernel x1e4 saturates the float32 probabilities (p = 1): the default is
    decided on the logits with a relative threshold, so it is the same layer as at x1."""
    plain, confident = _softmax_vit(1.0), _softmax_vit(1e4)
    probs = keras.ops.convert_to_numpy(confident(x))
    assert (probs.max(1) == 1.0).all()  # saturated: the probabilities no longer move
    assert inspect_model(plain, x).layer == "block2_ln1"
    assert inspect_model(confident, x).layer == "block2_ln1"


def test_auto_is_gradient_rollout_at_the_default_vit_layer(hvit, x):
    """The default on a ViT: gradient rollout, non-empty before training and class-specific;
    a token layer the user names keeps Grad-CAM; the note says which and why."""
    check = inspect_model(hvit, x)
    assert check.method == "gradient_rollout" and "default method gradient_rollout" in check.note
    res = compute_cams(hvit, x)
    assert res.method == "gradient_rollout" and res.layer == check.layer
    want = compute_cams(hvit, x, method="gradient_rollout")
    np.testing.assert_array_equal(res.heatmaps, want.heatmaps)
    assert (res.heatmaps.max(axis=(1, 2)) == 1.0).all()  # untrained, and no empty map
    other = compute_cams(hvit, x, target=(res.targets + 1) % 3)
    assert np.abs(other.heatmaps - res.heatmaps).max(axis=(1, 2)).min() > 1e-3
    named = f"{hvit.backbone.name}/vit_encoder/transformer_block_1"
    assert compute_cams(hvit, x, layer=named).method == "gradcam"
    assert inspect_model(hvit, x, layer=named).method == "gradcam"

