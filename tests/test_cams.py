"""compute_cams against hand-computed maps and a plain per-image reference."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import nested_cnn, small_cnn

from cam_callback import api, backends
from cam_callback.api import CAMError, compute_cams
from cam_callback.core import engine as core_engine
from cam_callback.core import inspection

# ---------------------------------------------------------------- a map on paper


def hand_model(softmax: bool = True) -> keras.Model:
    """2x2x1 input -> 1x1 conv (kernels 1 and 2) -> GAP -> Dense(2), weights by hand."""
    inp = keras.Input((2, 2, 1))
    a = keras.layers.Conv2D(2, 1, use_bias=False, name="conv")(inp)
    g = keras.layers.GlobalAveragePooling2D()(a)
    out = keras.layers.Dense(2, use_bias=False, activation="softmax" if softmax else None)(g)
    model = keras.Model(inp, out)
    model.get_layer("conv").set_weights([np.array([1.0, 2.0]).reshape(1, 1, 1, 2)])
    model.layers[-1].set_weights([np.array([[1.0, -1.0], [0.5, -1.0]])])
    return model


def test_gradcam_matches_paper_computation():
    # x = [[1,2],[3,4]]; A1 = x, A2 = 2x. z0 = mean(A1)*1 + mean(A2)*0.5 = 2.5 + 2.5 = 5.
    # dz0/dA_k = W[k,0]/4, so weights are 0.25 and 0.125: cam = 0.25x + 0.125*2x = 0.5x,
    # i.e. [[.5,1],[1.5,2]], divided by its max 2 -> [[.25,.5],[.75,1]].
    x = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32).reshape(1, 2, 2, 1)
    res = compute_cams(hand_model(), x, layer="conv")
    np.testing.assert_allclose(res.heatmaps[0], [[0.25, 0.5], [0.75, 1.0]], atol=1e-6)
    assert res.targets.tolist() == [0]
    assert res.layer == "conv"
    # Class 1: weights -0.25 and -0.25 -> cam = relu(-0.75x) = 0, and an all-zero map stays 0.
    res1 = compute_cams(hand_model(), x, layer="conv", target=1)
    np.testing.assert_array_equal(res1.heatmaps[0], np.zeros((2, 2)))
    # Probabilities are the softmax of z = (5, -7.5).
    want = np.exp([5.0, -7.5]) / np.exp([5.0, -7.5]).sum()
    np.testing.assert_allclose(res.probabilities[0], want, rtol=1e-5)


def test_layercam_and_hirescam_on_paper():
    # Conv bias (0, -2): A1 = x = [[1,2],[3,4]], A2 = 2x - 2 = [[0,2],[4,6]]. Class 1 of a head
    # with W[:,1] = (-1, 1): G1 = -0.25, G2 = +0.25 everywhere (GAP over 4 cells).
    inp = keras.Input((2, 2, 1))
    a = keras.layers.Conv2D(2, 1, name="conv")(inp)
    out = keras.layers.Dense(2, use_bias=False, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(a)
    )
    model = keras.Model(inp, out)
    kernel = np.array([1.0, 2.0]).reshape(1, 1, 1, 2)
    model.get_layer("conv").set_weights([kernel, np.array([0.0, -2.0])])
    model.layers[-1].set_weights([np.array([[1.0, -1.0], [0.5, 1.0]])])
    x = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32).reshape(1, 2, 2, 1)
    # layercam: relu(G1)*A1 + relu(G2)*A2 = 0.25*A2 = [[0,.5],[1,1.5]] -> / 1.5.
    lc = compute_cams(model, x, layer="conv", method="layercam", target=1).heatmaps[0]
    np.testing.assert_allclose(lc, [[0.0, 1 / 3], [2 / 3, 1.0]], atol=1e-6)
    # hirescam: 0.25*(A2 - A1) = [[-.25,0],[.25,.5]] -> relu -> / 0.5.
    hc = compute_cams(model, x, layer="conv", method="hirescam", target=1).heatmaps[0]
    np.testing.assert_allclose(hc, [[0.0, 0.0], [0.5, 1.0]], atol=1e-6)


def test_saliency_is_abs_input_gradient_max_over_channels():
    # A linear head on a 2x2x2 input: d z0 / d x is W[:, 0], signed and different per channel.
    inp = keras.Input((2, 2, 2))
    out = keras.layers.Dense(2, use_bias=False, activation="softmax")(keras.layers.Flatten()(inp))
    model = keras.Model(inp, out)
    ch0 = np.array([[1.0, -3.0], [0.5, 2.0]])
    ch1 = np.array([[-2.0, 1.0], [0.25, -4.0]])
    kernel = np.zeros((8, 2))
    kernel[:, 0] = np.stack([ch0, ch1], axis=-1).reshape(-1)
    kernel[:, 1] = -kernel[:, 0] / 10  # class 0 is predicted on positive inputs
    model.layers[-1].set_weights([kernel])
    x = np.full((1, 2, 2, 2), 0.1, np.float32)
    res = compute_cams(model, x, method="saliency", target=0)
    # max(|ch0|, |ch1|) = [[2,3],[.5,4]], divided by 4.
    np.testing.assert_allclose(res.heatmaps[0], [[0.5, 0.75], [0.125, 1.0]], atol=1e-6)
    assert res.layer == ""


# ---------------------------------------------------------------- per-image reference


def reference_map(a: np.ndarray, g: np.ndarray, method: str) -> np.ndarray:
    """The textbook formulas, one image [h, w, K], in float64."""
    a, g = a.astype(np.float64), g.astype(np.float64)
    if method == "gradcam":
        cam = (a * g.mean(axis=(0, 1))).sum(-1)
    elif method == "gradcam++":
        # Chattopadhay et al., eq. 19 with first-order terms: alpha = g^2 / (2 g^2 +
        # sum_ab A_ab g^3), set to 0 where that denominator is 0; weights eq. 9.
        num, den = g**2, 2 * g**2 + a.sum(axis=(0, 1)) * g**3
        alpha = np.divide(num, den, out=np.zeros_like(num), where=den != 0)
        cam = (a * (alpha * np.maximum(g, 0)).sum(axis=(0, 1))).sum(-1)
    elif method == "layercam":
        cam = (np.maximum(g, 0) * a).sum(-1)
    else:  # hirescam
        cam = (g * a).sum(-1)
    cam = np.maximum(cam, 0)
    return cam / cam.max() if cam.max() > 0 else cam


def to_numpy(t) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(t))


def reference_cams(
    features, dense: keras.layers.Dense, images: np.ndarray, method: str, targets=None
):
    """One image at a time, apart from the engine and from autodiff.

    A = features(x); the head is logit = mean_ij(A) @ W + b, so d logit_t / d A is
    W[:, t] / (h w) at every cell, written out by hand.
    """
    kernel, bias = (to_numpy(w).astype(np.float64) for w in dense.weights)
    out = []
    for i, x in enumerate(images):
        a = to_numpy(features(x[None]))[0].astype(np.float64)
        logits = a.mean(axis=(0, 1)) @ kernel + bias
        target = int(np.argmax(logits)) if targets is None else int(targets[i])
        g = np.broadcast_to(kernel[:, target] / (a.shape[0] * a.shape[1]), a.shape)
        out.append(reference_map(a, g, method))
    return np.stack(out)


def sequential_cnn():
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(8, 3, activation="relu", name="conv1"),
            keras.layers.Conv2D(8, 3, activation="relu", name="conv2"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(4, activation="softmax", name="dense"),
        ]
    )
    return model


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam", "hirescam"])
def test_batched_matches_reference_sequential_and_functional(method, images32):
    seq = sequential_cnn()
    feats = keras.Sequential(seq.layers[:2])
    got = compute_cams(seq, images32, method=method, batch_size=4)
    assert got.layer == "conv2"
    np.testing.assert_allclose(
        got.heatmaps, reference_cams(feats, seq.get_layer("dense"), images32, method), atol=1e-4
    )

    fun = small_cnn(head="folded")
    feats = keras.Model(fun.input, fun.get_layer("conv2").output)
    got = compute_cams(fun, images32, method=method, layer="conv2", batch_size=4)
    np.testing.assert_allclose(
        got.heatmaps, reference_cams(feats, fun.get_layer("dense"), images32, method), atol=1e-4
    )


def test_batched_matches_reference_nested(images32):
    model = nested_cnn()
    backbone = model.get_layer("backbone")
    got = compute_cams(model, images32, layer="backbone/conv_b")
    assert got.layer == "backbone/conv_b"
    assert got.heatmaps.shape == (6, 14, 14)
    want = reference_cams(backbone, model.get_layer("head"), images32, "gradcam")
    np.testing.assert_allclose(got.heatmaps, want, atol=1e-4)
    # The bare name is found inside the nested model, and auto-detection goes there too.
    np.testing.assert_allclose(
        compute_cams(model, images32, layer="conv_b").heatmaps, want, atol=1e-4
    )
    assert compute_cams(model, images32).layer == "backbone/conv_b"


def test_mobilenetv2_nested_in_classifier_matches_reference():
    backbone = keras.applications.MobileNetV2(
        input_shape=(64, 64, 3), include_top=False, weights=None, alpha=0.35
    )
    inp = keras.Input((64, 64, 3))
    x = keras.layers.GlobalAveragePooling2D()(backbone(inp))
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="head")(x))
    images = np.random.default_rng(1).random((3, 64, 64, 3), dtype=np.float32)
    got = compute_cams(model, images)
    assert got.layer == f"{backbone.name}/out_relu"
    # Untrained, its logits tie to float32 precision: explain the classes we reported.
    assert got.targets.tolist() == got.probabilities.argmax(1).tolist()
    want = reference_cams(backbone, model.get_layer("head"), images, "gradcam", got.targets)
    np.testing.assert_allclose(got.heatmaps, want, atol=1e-4)
    np.testing.assert_allclose(got.probabilities, model.predict(images, verbose=0), atol=1e-5)


# ---------------------------------------------------------------- models of every shape


def test_sequential_without_input_called_once(images32):
    model = keras.Sequential(
        [
            keras.layers.Conv2D(4, 3, activation="relu", name="c"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ]
    )
    model(images32[:1])
    with pytest.warns(UserWarning, match="taking its softmax"):  # a linear head, no loss
        res = compute_cams(model, images32)
    assert res.layer == "c" and res.heatmaps.shape == (6, 30, 30)
    z = model.predict(images32, verbose=0).astype(np.float64)
    want = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(res.probabilities, want / want.sum(1, keepdims=True), atol=1e-6)


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = keras.layers.Conv2D(6, 3, activation="relu", name="feat")
        self.gap = keras.layers.GlobalAveragePooling2D()
        self.dense = keras.layers.Dense(3, activation="softmax", name="out")

    def call(self, x, training=False):
        return self.dense(self.gap(self.conv(x)))


def test_subclassed_model_with_named_layer(images32):
    model = Subclassed()
    model(images32[:1])
    res = compute_cams(model, images32, layer="feat")
    want = reference_cams(model.conv, model.dense, images32, "gradcam")
    np.testing.assert_allclose(res.heatmaps, want, atol=1e-4)


def multi_output_model():
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inp)
    g = keras.layers.GlobalAveragePooling2D()(x)
    a = keras.layers.Dense(3, activation="softmax", name="species")(g)
    b = keras.layers.Dense(2, activation="softmax", name="pose")(g)
    return keras.Model(inp, [a, b])


def test_multi_output_picks_head_by_index_or_name(images32):
    model = multi_output_model()
    by_name = compute_cams(model, images32, output="pose")
    by_index = compute_cams(model, images32, output=1)
    np.testing.assert_allclose(by_name.heatmaps, by_index.heatmaps, atol=1e-6)
    assert by_name.probabilities.shape == (6, 2)
    want = reference_cams(
        keras.Model(model.input, model.get_layer("conv").output),
        model.get_layer("pose"),
        images32,
        "gradcam",
    )
    np.testing.assert_allclose(by_name.heatmaps, want, atol=1e-4)
    assert compute_cams(model, images32, output="species").probabilities.shape == (6, 3)


def test_explicit_targets_and_layer_object(images32):
    model = small_cnn()
    per_image = np.array([0, 1, 2, 3, 0, 1])
    res = compute_cams(model, images32, target=per_image, layer=model.get_layer("conv1"))
    assert res.targets.tolist() == per_image.tolist() and res.layer == "conv1"
    assert res.targets.dtype == np.int64
    res2 = compute_cams(model, images32, target=2)
    assert res2.targets.tolist() == [2] * 6
    pred = compute_cams(model, images32)
    assert pred.targets.tolist() == pred.probabilities.argmax(1).tolist()


# ---------------------------------------------------------------- logit versus probability


def test_logit_and_probability_scores(images32):
    soft = small_cnn(head="folded")
    linear = small_cnn(head="linear")
    linear.set_weights(soft.get_weights())
    logit = compute_cams(soft, images32, score="logit")
    prob = compute_cams(soft, images32, score="probability")
    same_linear = compute_cams(linear, images32, score="logit")
    np.testing.assert_allclose(logit.heatmaps, same_linear.heatmaps, atol=1e-5)
    assert np.abs(logit.heatmaps - prob.heatmaps).max() > 1e-3
    # A separate Activation("softmax") layer: its input is the logit.
    layered = small_cnn(head="layer")
    layered.set_weights(soft.get_weights())
    np.testing.assert_allclose(compute_cams(layered, images32).heatmaps, logit.heatmaps, atol=1e-5)
    # The model still returns probabilities: nothing was swapped for good.
    np.testing.assert_allclose(to_numpy(soft(images32)).sum(1), 1.0, atol=1e-5)
    assert soft.get_layer("dense").activation.__name__ == "softmax"


# ---------------------------------------------------------------- caching


def test_second_call_with_same_shapes_does_not_retrace(images32):
    model = small_cnn()
    compute_cams(model, images32, batch_size=4)  # chunks of 4 and 2
    assert api.trace_count(model) == 1
    compute_cams(model, images32, batch_size=4)
    compute_cams(model, images32[:3])
    assert api.trace_count(model) == 1
    compute_cams(model, images32, method="layercam")  # a new method is a new function
    assert api.trace_count(model) == 2


# ---------------------------------------------------------------- no side effects

FUSED = ("gradcam", "gradcam++", "layercam", "hirescam", "saliency")  # run inside the call


def test_no_side_effects_on_weights_bn_and_next_training_step(images32):
    a = small_cnn(bn=True)
    b = small_cnn(bn=True)
    b.set_weights(a.get_weights())
    for m in (a, b):
        m.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    y = np.array([0, 1, 2, 3, 0, 1])
    before = [w.copy() for w in a.get_weights()]
    pred_before = a.predict(images32, verbose=0)
    for method in FUSED:
        compute_cams(a, images32, method=method)
    for w0, w1 in zip(before, a.get_weights(), strict=True):
        np.testing.assert_array_equal(w0, w1)  # moving mean/variance included
    np.testing.assert_array_equal(pred_before, a.predict(images32, verbose=0))
    a.train_on_batch(images32, y)
    b.train_on_batch(images32, y)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-6, atol=1e-7)
    for layer in a.layers:
        assert "call" not in layer.__dict__


def test_hooks_are_removed_after_a_failure(images32):
    model = small_cnn()
    from cam_callback.core import layers as lyr

    conv = model.get_layer("conv2")

    def boom(call, args, kwargs):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"), lyr.intercepted({conv: boom}):
        model(images32)
    assert "call" not in conv.__dict__
    np.testing.assert_allclose(to_numpy(model(images32)).sum(1), 1.0, atol=1e-5)


# ---------------------------------------------------------------- bad input


def test_bad_image_shape_names_expected_shape(images32):
    with pytest.raises(ValueError, match=r"`images`.*expected shape \(N, 32, 32, 3\).*\(6, 28"):
        compute_cams(small_cnn(), images32[:, :28])


def test_empty_batch():
    with pytest.raises(ValueError, match="`images` is empty"):
        compute_cams(small_cnn(), np.zeros((0, 32, 32, 3), np.float32))


def test_nan_and_inf(images32):
    bad = images32.copy()
    bad[2, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="`images` contains NaN or inf values in 1 image"):
        compute_cams(small_cnn(), bad)
    bad[2, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        compute_cams(small_cnn(), bad)


def test_unknown_layer_lists_spatial_candidates(images32):
    with pytest.raises(
        ValueError,
        match=r"`layer` .conv9. not found. Layers with spatial output: conv1, pool, conv2\.",
    ):
        compute_cams(small_cnn(), images32, layer="conv9")
    with pytest.raises(ValueError, match=r"backbone/conv_a, backbone/conv_b.*backbone/nope"):
        compute_cams(nested_cnn(), images32, layer="backbone/nope")


def test_non_spatial_layer(images32):
    with pytest.raises(ValueError, match=r"`layer` 'gap' has output shape \(None, 12\)"):
        compute_cams(small_cnn(), images32, layer="gap")


def test_model_without_spatial_layer_suggests_saliency():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match=r'no layer with a spatial output.*method="saliency"'):
        compute_cams(model, np.zeros((2, 8), np.float32))


def test_unknown_method_and_score(images32):
    with pytest.raises(ValueError, match=r"`method` must be one of .*'gradcam\+\+'.*method='cams'"):
        compute_cams(small_cnn(), images32, method="cams")
    with pytest.raises(ValueError, match="`score`"):
        compute_cams(small_cnn(), images32, score="softmax")


def test_target_out_of_range(images32):
    with pytest.raises(ValueError, match=r"`target` class 7 is outside the model's 4 classes"):
        compute_cams(small_cnn(), images32, target=7)
    with pytest.raises(ValueError, match=r"`target` class -1"):
        compute_cams(small_cnn(), images32, target=[0, 1, 2, 3, -1, 0])
    with pytest.raises(ValueError, match=r"one class id per image: expected shape \(6,\)"):
        compute_cams(small_cnn(), images32, target=[0, 1])
    with pytest.raises(ValueError, match="`target` must be"):
        compute_cams(small_cnn(), images32, target="top")


def test_output_missing_on_multi_output(images32):
    with pytest.raises(ValueError, match=r"`output` is required.*species, pose"):
        compute_cams(multi_output_model(), images32)
    with pytest.raises(ValueError, match=r"`output` 'age' not found"):
        compute_cams(multi_output_model(), images32, output="age")


def test_wrong_types(images32):
    with pytest.raises(TypeError, match="`model` must be a keras.Model"):
        compute_cams("model", images32)
    with pytest.raises(TypeError, match="`layer` must be"):
        compute_cams(small_cnn(), images32, layer=3)
    with pytest.raises(ValueError, match="`batch_size`"):
        compute_cams(small_cnn(), images32, batch_size=0)
    with pytest.raises(TypeError, match="`images` must be numeric"):
        compute_cams(small_cnn(), np.array([["a"]]))


def backend_error(message: str) -> BaseException:
    """An error of the active backend's own kind."""
    kind = backends.name()
    if kind == "tensorflow":
        import tensorflow as tf

        return tf.errors.InvalidArgumentError(None, None, message)
    if kind == "jax":
        import jax

        return jax.errors.JaxRuntimeError(message)
    return RuntimeError(message)


def test_backend_failure_is_wrapped_with_context(images32):
    model = small_cnn()
    compute_cams(model, images32)
    engine = next(iter(core_engine.ENGINES[model].values()))
    real = engine.fn

    def failing(x, t):
        raise backend_error("kernel exploded")

    engine.fn = failing
    try:
        with pytest.raises(CAMError, match=r"layer 'conv2' on input of shape \(6, 32, 32, 3\)"):
            compute_cams(model, images32)
    finally:
        engine.fn = real


# ---------------------------------------------------------------- Grad-CAM++ as in the paper


def test_gradcam_plus_plus_matches_paper_at_28x28():
    # A 28x28 layer: logit gradients are ~1e-4 here, where an epsilon in alpha's
    # denominator would dominate. A and G come from a split model and a hand-written head.
    inp = keras.Input((30, 30, 3))
    a = keras.layers.Conv2D(16, 3, activation="relu", name="feat")(inp)
    out = keras.layers.Dense(5, activation="softmax", name="head")(
        keras.layers.GlobalAveragePooling2D()(a)
    )
    model = keras.Model(inp, out)
    images = np.random.default_rng(2).random((4, 30, 30, 3), dtype=np.float32)
    got = compute_cams(model, images, method="gradcam++")
    assert got.heatmaps.shape == (4, 28, 28)
    feats = keras.Model(inp, a)
    want = reference_cams(feats, model.get_layer("head"), images, "gradcam++", got.targets)
    for g, w in zip(got.heatmaps, want, strict=True):
        assert np.corrcoef(g.ravel(), w.ravel())[0, 1] > 0.999
    np.testing.assert_allclose(got.heatmaps, want, atol=1e-3)


# ---------------------------------------------------------------- heads


def binary_cnn(kind: str = "folded") -> keras.Model:
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inp)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    if kind == "folded":
        out = keras.layers.Dense(1, activation="sigmoid", name="dense")(x)
    else:
        out = keras.layers.Activation("sigmoid")(keras.layers.Dense(1, name="dense")(x))
    return keras.Model(inp, out)


def balanced(model, images):
    """Sets the last bias so that about half the images are predicted positive."""
    dense = model.get_layer("dense")
    z = model.predict(images, verbose=0)
    kernel, bias = dense.get_weights()
    logits = np.log(z / (1 - z))[:, 0]
    dense.set_weights([kernel, bias - np.median(logits) + 1e-4])
    return model


def binary_reference(feats, dense, images, method="gradcam"):
    """+logit for class 1, -logit for class 0, argmax over [1-p, p], one image at a time."""
    kernel, bias = (to_numpy(w).astype(np.float64) for w in dense.weights)
    maps, targets = [], []
    for x in images:
        a = to_numpy(feats(x[None]))[0].astype(np.float64)
        z = (a.mean(axis=(0, 1)) @ kernel + bias)[0]
        p = 1 / (1 + np.exp(-z))
        t = int(np.argmax([1 - p, p]))
        sign = 1.0 if t == 1 else -1.0
        g = np.broadcast_to(sign * kernel[:, 0] / (a.shape[0] * a.shape[1]), a.shape)
        maps.append(reference_map(a, g, method))
        targets.append(t)
    return np.stack(maps), np.array(targets)


def test_binary_sigmoid_head_is_two_classes(images32):
    rng = np.random.default_rng(5)
    images = rng.random((10, 32, 32, 3), dtype=np.float32)
    model = balanced(binary_cnn(), images)
    feats = keras.Model(model.input, model.get_layer("conv2").output)
    for method in ("gradcam", "gradcam++", "hirescam"):
        want, want_t = binary_reference(feats, model.get_layer("dense"), images, method)
        got = compute_cams(model, images, method=method)
        assert 0 < want_t.sum() < len(want_t)  # both classes are predicted
        assert got.targets.tolist() == want_t.tolist()
        np.testing.assert_allclose(got.heatmaps, want, atol=1e-4)
    p = model.predict(images, verbose=0)
    np.testing.assert_allclose(got.probabilities, np.concatenate([1 - p, p], 1), atol=1e-6)
    # target=1 is accepted and explains +logit; target=2 is not a class.
    ones = compute_cams(model, images, target=1)
    want1 = binary_reference(feats, model.get_layer("dense"), images)[0]
    pos = want_t == 1
    np.testing.assert_allclose(ones.heatmaps[pos], want1[pos], atol=1e-4)
    with pytest.raises(ValueError, match=r"`target` class 2 is outside the model's 2 classes"):
        compute_cams(model, images, target=2)
    check = api.inspect_model(model, images)
    assert (check.n_classes, check.head, check.score) == (2, "binary", "logit")
    # An Activation("sigmoid") layer after a linear Dense explains the same logit.
    layered = binary_cnn("layer")
    layered.set_weights(model.get_weights())
    np.testing.assert_allclose(
        compute_cams(layered, images).heatmaps, compute_cams(model, images).heatmaps, atol=1e-5
    )
    # score="probability" explains p and 1 - p: for Grad-CAM a positive rescale of +-logit.
    prob = compute_cams(model, images, score="probability")
    np.testing.assert_allclose(prob.heatmaps, compute_cams(model, images).heatmaps, atol=1e-4)
    assert api.inspect_model(model, images, score="probability").score == "probability"


def test_multilabel_sigmoid_head_is_explained_per_class(images32):
    inp = keras.Input((32, 32, 3))
    a = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inp)
    out = keras.layers.Dense(3, activation="sigmoid", name="dense")(
        keras.layers.GlobalAveragePooling2D()(a)
    )
    model = keras.Model(inp, out)
    got = compute_cams(model, images32)
    # Probabilities are the sigmoids as they are, not renormalised.
    np.testing.assert_allclose(got.probabilities, model.predict(images32, verbose=0), atol=1e-6)
    assert np.abs(got.probabilities.sum(1) - 1).max() > 0.1
    assert got.targets.tolist() == got.probabilities.argmax(1).tolist()
    # Each class's score is its own logit: what reference_cams differentiates.
    want = reference_cams(keras.Model(inp, a), model.get_layer("dense"), images32, "gradcam")
    np.testing.assert_allclose(got.heatmaps, want, atol=1e-4)
    check = api.inspect_model(model, images32)
    assert (check.n_classes, check.head) == (3, "multilabel")


def test_heads_that_are_not_classifiers_are_refused(images32):
    inp = keras.Input((32, 32, 3))
    a = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    g = keras.layers.GlobalAveragePooling2D()(a)
    regression = keras.Model(inp, keras.layers.Dense(1, name="value")(g))
    with pytest.raises(ValueError, match=r"one unit with no sigmoid.*regression"):
        api.inspect_model(regression, images32)
    with pytest.raises(ValueError, match=r"regression"):
        compute_cams(regression, images32)
    per_pixel = keras.Model(inp, keras.layers.Conv2D(2, 1, activation="softmax")(a))
    with pytest.raises(ValueError, match=r"shape \('N', 30, 30, 2\), not \[batch, classes\]"):
        api.inspect_model(per_pixel, images32)
    logits = small_cnn(head="linear")  # several linear units: logits of a softmax classifier
    check = api.inspect_model(logits, images32)
    assert (check.head, check.score, check.n_classes) == ("logits", "logit", 4)


class SoftmaxInCall(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = keras.layers.Conv2D(6, 3, activation="relu", name="feat")
        self.gap = keras.layers.GlobalAveragePooling2D()
        self.dense = keras.layers.Dense(3, name="out")

    def call(self, x, training=False):
        return keras.ops.softmax(self.dense(self.gap(self.conv(x))))


def test_logit_not_found_warns_once_and_explains_probability(images32):
    model = SoftmaxInCall()
    model(images32[:1])
    with pytest.warns(UserWarning, match="explaining the probability instead") as seen:
        check = api.inspect_model(model, images32, layer="feat")
        got = compute_cams(model, images32, layer="feat")
        compute_cams(model, images32, layer="feat", method="layercam")
    assert len([w for w in seen if "probability instead" in str(w.message)]) == 1
    assert (check.score, check.head) == ("probability", "softmax")
    want = compute_cams(model, images32, layer="feat", score="probability")
    np.testing.assert_allclose(got.heatmaps, want.heatmaps, atol=1e-6)


def test_shared_layer_is_refused_before_any_map(images32):
    inp = keras.Input((32, 32, 3))
    shared = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="shared")
    x = shared(shared(inp))
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, out)
    with pytest.raises(ValueError, match=r"`layer` 'shared' runs 2 times in one forward pass"):
        api.inspect_model(model, images32, layer="shared")
    assert model not in core_engine.ENGINES  # nothing was traced


def test_disconnected_layer_is_refused(images32):
    inp = keras.Input((32, 32, 3))
    a = keras.layers.Conv2D(4, 3, activation="relu", name="conv_a")(inp)
    b = keras.layers.Conv2D(4, 3, activation="relu", name="conv_b")(inp)
    head_a = keras.layers.Dense(2, activation="softmax", name="a")(
        keras.layers.GlobalAveragePooling2D()(a)
    )
    head_b = keras.layers.Dense(3, activation="softmax", name="b")(
        keras.layers.GlobalAveragePooling2D()(b)
    )
    model = keras.Model(inp, [head_a, head_b])
    with pytest.raises(ValueError, match=r"`layer` 'conv_b' does not feed the explained output"):
        compute_cams(model, images32, layer="conv_b", output="a")
    assert compute_cams(model, images32, layer="conv_b", output="b").heatmaps.max() == 1.0


def test_our_value_errors_are_not_wrapped(images32):
    model = small_cnn()
    compute_cams(model, images32)
    engine = next(iter(core_engine.ENGINES[model].values()))
    real, mine = engine.fn, ValueError("`layer` ours")

    def failing(x, t):
        raise mine

    engine.fn = failing
    try:
        with pytest.raises(ValueError) as info:
            compute_cams(model, images32)
        assert info.value is mine
    finally:
        engine.fn = real


def test_activation_is_restored_after_a_failing_hook(images32, monkeypatch):
    model = small_cnn()
    dense = model.get_layer("dense")
    real = type(dense).call

    def fail_when_linear(self, *args, **kwargs):
        if self.activation is keras.activations.linear:
            raise RuntimeError("hook failed")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(dense), "call", fail_when_linear)
    with pytest.raises(RuntimeError, match="hook failed"):
        compute_cams(model, images32)
    monkeypatch.undo()
    assert dense.activation is keras.activations.softmax
    assert "call" not in dense.__dict__
    np.testing.assert_allclose(to_numpy(model(images32)).sum(1), 1.0, atol=1e-5)


# ---------------------------------------------------------------- memory


def _tensors_in(obj, seen=None):
    """Every backend tensor reachable through dataclasses, lists and dicts."""
    import dataclasses

    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if keras.ops.is_tensor(obj):
        return [obj]
    if dataclasses.is_dataclass(obj):
        items = [getattr(obj, f.name) for f in dataclasses.fields(obj)]
    elif isinstance(obj, dict):
        items = list(obj.values())
    elif isinstance(obj, (list, tuple, set)):
        items = list(obj)
    else:
        return []
    return [t for item in items for t in _tensors_in(item, seen)]


def test_model_info_keeps_no_tensors(images32):
    model = nested_cnn()
    compute_cams(model, images32)
    infos = list(inspection.INFO[model].values())
    assert infos and infos[0].calls and _tensors_in(infos) == []
    assert all(c.output is None for c in infos[0].calls)


def test_compiled_functions_are_freed_with_the_model(images32):
    import gc
    import weakref

    model = small_cnn()
    compute_cams(model, images32)
    api.predict_probabilities(model, images32)
    ref = weakref.ref(model)
    assert len(core_engine.ENGINES[model]) == 2
    del model
    gc.collect()
    assert ref() is None
    assert all(k is not None for k in core_engine.ENGINES.keys())  # the entry went with it
    assert ref not in [weakref.ref(k) for k in core_engine.ENGINES.keys()]


# ---------------------------------------------------------------- PyTorch's training flags


@pytest.mark.skipif(backends.name() != "torch", reason="torch modules carry training flags")
def test_torch_eval_mode_during_the_call_and_flags_restored(images32):
    from cam_callback.core import layers as lyr

    model = small_cnn(bn=True)
    modules = [model, *(layer for _, layer in lyr.iter_layers(model))]
    model.get_layer("bn").training = False  # a mixed state, to be found again as it was
    before = [m.training for m in modules]
    assert True in before and False in before
    seen = []
    conv = model.get_layer("conv2")
    real = type(conv).call

    def spy(self, *args, **kwargs):
        seen.append(model.training)
        return real(self, *args, **kwargs)

    type(conv).call = spy
    try:
        compute_cams(model, images32)
        api.predict_probabilities(model, images32)
    finally:
        type(conv).call = real
    assert seen and not any(seen)  # eval mode while running
    assert [m.training for m in modules] == before
