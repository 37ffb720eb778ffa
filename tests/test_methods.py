"""Every registered method against a float64 numpy reference of its paper's equation.

The references take activations from a prefix model and gradients in closed form
(layer -> GAP -> Dense: d logit_c / d A_ijk = W[k, c] / (h w)), or from an eager
tape written here, never from the package's own gradient code.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import small_cnn

from cam_callback import api, compute_cams, methods


@pytest.fixture(scope="module")
def setup():
    import keras

    keras.utils.set_random_seed(1)
    model = small_cnn(3, head="layer")  # conv2 -> gap -> dense (logits) -> softmax
    rng = np.random.default_rng(3)
    for name in ("conv1", "conv2", "dense"):  # non-zero biases: not positively homogeneous
        kernel, bias = model.get_layer(name).get_weights()
        model.get_layer(name).set_weights([kernel, rng.normal(0, 0.1, bias.shape)])
    x = np.random.default_rng(2).random((4, 32, 32, 3), dtype=np.float32)
    prefix = keras.Model(model.inputs, model.get_layer("conv2").output)
    a = prefix.predict(x, verbose=0).astype(np.float64)  # [N, 13, 13, 12]
    kernel, bias = (w.astype(np.float64) for w in model.get_layer("dense").get_weights())
    probs = model.predict(x, verbose=0).astype(np.float64)
    t = probs.argmax(1)
    hw = a.shape[1] * a.shape[2]
    g = np.broadcast_to((kernel[:, t].T / hw)[:, None, None, :], a.shape)  # closed form
    return model, x, a, g, kernel, bias, t


def norm(m):
    m = np.maximum(m, 0)
    peak = m.reshape(len(m), -1).max(1)[:, None, None]
    return np.where(peak > 0, m / np.where(peak > 0, peak, 1), 0)


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def pc_reference(m):
    """First principal component via the eigenvectors of the covariance (not an SVD)."""
    out = []
    for mi in m:
        flat = mi.reshape(-1, mi.shape[-1])
        c = flat - flat.mean(0)
        vals, vecs = np.linalg.eigh(c.T @ c)
        proj = c @ vecs[:, -1]
        if np.corrcoef(proj, flat.mean(1))[0, 1] < 0:
            proj = -proj
        out.append(proj.reshape(mi.shape[:2]))
    return np.array(out)


def check(model, x, method, want, atol=1e-4, **kw):
    got = compute_cams(model, x, method=method, **kw).heatmaps
    assert got.shape == want.shape
    err = np.abs(got - norm(want)).max()
    r = np.corrcoef(got.ravel(), norm(want).ravel())[0, 1]
    assert err < atol, f"{method}: max |diff| {err:.2e}, r={r:.6f}"
    return err, r


def test_xgradcam(setup):
    model, x, a, g, *_ = setup
    total = a.sum(axis=(1, 2), keepdims=True)
    share = np.divide(a, total, out=np.zeros_like(a), where=total > 0)  # dead channels: 0
    w = (share * g).sum(axis=(1, 2))
    check(model, x, "xgradcam", np.einsum("nk,nhwk->nhw", w, a))


def test_gradcam_elementwise(setup):
    model, x, a, g, *_ = setup
    check(model, x, "gradcam_elementwise", np.maximum(g * a, 0).sum(-1))


def test_eigengradcam(setup):
    model, x, a, g, *_ = setup
    check(model, x, "eigengradcam", pc_reference(g * a))


def test_eigencam_and_its_sign(setup):
    model, x, a, *_ = setup
    check(model, x, "eigencam", pc_reference(a))
    # the sign is fixed, whatever sign the SVD happens to return
    rng = np.random.default_rng(0)
    many = np.concatenate([a, np.maximum(rng.normal(size=(24, *a.shape[1:])), 0)])
    many = np.concatenate([many, many[..., ::-1], 3 - many])
    raw = methods.principal_component(many)
    for i in range(len(many)):
        assert np.corrcoef(raw[i].ravel(), many[i].mean(-1).ravel())[0, 1] > 0


def test_cam_is_the_dense_weights_on_the_activations(setup):
    model, x, a, _, kernel, _, t = setup
    check(model, x, "cam", np.einsum("nk,nhwk->nhw", kernel[:, t].T, a))
    # on a GAP -> Dense head CAM equals Grad-CAM of the logit
    np.testing.assert_allclose(
        compute_cams(model, x, method="cam").heatmaps,
        compute_cams(model, x, method="gradcam").heatmaps,
        atol=1e-5,
    )


def test_cam_explains_the_logit_whatever_score_asks(setup):
    # CAM runs fused on the logit's gradient (W[:, c] / (h w) on this head): asked for the
    # probability, it must still give the kernel's map, not the softmax gradient's.
    model, x, a, _, kernel, _, t = setup
    want = np.einsum("nk,nhwk->nhw", kernel[:, t].T, a)
    check(model, x, "cam", want, score="probability")
    assert compute_cams(model, x, method="cam", score="probability").score == "logit"
    assert api.inspect_model(model, x, method="cam", score="probability").score == "logit"
    prob = compute_cams(model, x, method="gradcam", score="probability").heatmaps
    assert np.abs(prob - norm(want)).max() > 1e-3  # the probability's map differs here


def test_cam_refuses_other_heads():
    import keras

    inp = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    h = keras.layers.Flatten()(h)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(h))
    x = np.zeros((1, 16, 16, 3), np.float32)
    with pytest.raises(ValueError, match="GlobalAveragePooling2D -> Dense.*Flatten"):
        compute_cams(model, x, method="cam")
    with pytest.raises(ValueError, match="GlobalAveragePooling2D -> Dense.*Flatten"):
        api.inspect_model(model, x, method="cam")  # so the tracker fails before epoch 0


def test_tracker_refuses_cam_on_another_head_before_an_epoch(tmp_path):
    import keras

    from cam_callback import CAMTracker

    inp = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    h = keras.layers.Flatten()(h)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.zeros((4, 16, 16, 3), np.float32)
    epochs = []
    track = CAMTracker(x[:2], np.array([0, 1]), log_dir=tmp_path, method="cam", animate=None)
    spy = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: epochs.append(e))
    with pytest.raises(ValueError, match="GlobalAveragePooling2D -> Dense"):
        model.fit(x, np.array([0, 1, 0, 1]), epochs=1, verbose=0, callbacks=[track, spy])
    assert epochs == []


def _bilinear(m, h, w):
    """[h0, w0] -> [h, w]: torch's F.interpolate(mode="bilinear", align_corners=False), which
    the Score-CAM authors' code calls: source (o + 0.5) * in / out - 0.5, clamped to the edge."""

    def axis(n_in, n_out):
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
        lo = np.minimum(np.floor(src).astype(int), n_in - 1)
        return lo, np.minimum(lo + 1, n_in - 1), src - lo

    y0, y1, fy = axis(m.shape[0], h)
    x0, x1, fx = axis(m.shape[1], w)
    rows = m[y0] * (1 - fy)[:, None] + m[y1] * fy[:, None]
    return rows[:, x0] * (1 - fx) + rows[:, x1] * fx


@pytest.fixture(scope="module")
def strided():
    """input 16x16 -> Conv2D(8, 1x1, stride 2, relu) -> GAP -> Dense(3) -> softmax, by hand.

    Every forward pass is closed form: A = relu(x[::2, ::2] @ K + b). Channel 6 is dead
    (constant 0) and channel 7 constant 0.5: the Score-CAM authors skip both."""
    import keras

    inp = keras.Input((16, 16, 3))
    a = keras.layers.Conv2D(8, 1, strides=2, activation="relu", name="conv")(inp)
    z = keras.layers.Dense(3, name="dense")(keras.layers.GlobalAveragePooling2D()(a))
    model = keras.Model(inp, keras.layers.Activation("softmax")(z))
    rng = np.random.default_rng(11)
    k, b = rng.normal(size=(3, 8)), rng.normal(0, 0.2, 8)
    k[:, 6], b[6] = 0.0, -1.0
    k[:, 7], b[7] = 0.0, 0.5
    w, bd = rng.normal(size=(8, 3)), rng.normal(0, 0.1, 3) + 1.0  # target logits > 0
    model.get_layer("conv").set_weights([k[None, None], b])
    model.get_layer("dense").set_weights([w, bd])
    x = rng.normal(0.0, 1.0, (3, 16, 16, 3)).astype(np.float32)

    def logits(images):  # float64, closed form
        act = np.maximum(images.astype(np.float64)[:, ::2, ::2] @ k + b, 0)
        return act.mean(axis=(1, 2)) @ w + bd, act

    return model, x, logits


def scorecam_reference(x, logits, score, top=None):
    """Wang et al. 2020, as the authors' code (haofanwang/Score-CAM, cam/scorecam.py) does it:
    each channel upsampled bilinearly, skipped when constant, min-max scaled to a mask;
    its weight is the target's softmax probability on input * mask (here also the logit)."""
    z, a = logits(x)
    t = z.argmax(1)
    n, k = len(x), a.shape[-1]
    weights = np.zeros((n, k))
    for i in range(n):
        chans = range(k) if top is None else np.argsort(-a[i].reshape(-1, k).var(0))[:top]
        for c in chans:
            up = _bilinear(a[i, ..., c], 16, 16)
            if up.max() == up.min():
                continue
            mask = (up - up.min()) / (up.max() - up.min())
            zm, _ = logits(x[i : i + 1] * mask[None, ..., None])
            weights[i, c] = softmax(zm)[0, t[i]] if score == "probability" else zm[0, t[i]]
    return np.einsum("nk,nhwk->nhw", weights, a)


@pytest.mark.parametrize("score", ["probability", "logit"])
def test_scorecam_against_the_authors_code(strided, score):
    model, x, logits = strided
    check(model, x, "scorecam", scorecam_reference(x, logits, score), score=score, layer="conv")
    opts = {"max_channels": 3}
    want = scorecam_reference(x, logits, score, top=3)
    check(model, x, "scorecam", want, score=score, layer="conv", method_options=opts)


def test_scorecam_options_are_checked(strided):
    model, x, _ = strided
    with pytest.raises(ValueError, match="`max_channels`"):
        compute_cams(model, x, method="scorecam", method_options={"max_channels": 0})


def ablation_reference(a, kernel, bias, t, score):
    """Desai & Ramaswamy 2020 on a layer -> GAP -> Dense head, in closed form: y and y_k are
    the target's score with channel k of A zeroed, w_k = (y - y_k) / y."""
    n, k = len(a), a.shape[-1]

    def f(pooled):
        z = pooled @ kernel + bias
        return (softmax(z) if score == "probability" else z)[np.arange(n), t]

    pooled = a.mean(axis=(1, 2))
    y = f(pooled)
    weights = np.zeros((n, k))
    for c in range(k):
        p = pooled.copy()
        p[:, c] = 0
        weights[:, c] = (y - f(p)) / y
    return np.einsum("nk,nhwk->nhw", weights, a), y


@pytest.mark.parametrize("score", ["logit", "probability"])
def test_ablationcam_in_closed_form(setup, score):
    model, x, a, _, kernel, bias, t = setup
    want, y = ablation_reference(a, kernel, bias, t, score)
    assert np.all(y > 0)  # here: no sign flip
    check(model, x, "ablationcam", want, score=score)


def test_ablationcam_warns_where_the_logit_is_negative(strided):
    model, x, logits = strided
    _, a = logits(x)
    kernel, bias = (v.astype(np.float64) for v in model.get_layer("dense").get_weights())
    t = np.array([2, 2, 2])
    want, y = ablation_reference(a, kernel, bias, t, "logit")
    assert y[0] < 0 < y[1:].min()  # image 0's class-2 logit is negative: its weights flip
    with pytest.warns(UserWarning, match="ablationcam.*<= 0 for 1 of 3"):
        check(model, x, "ablationcam", want, target=t, layer="conv")


def _input_grads(model, x, t):
    """d logit_t / d x by an eager tape on the logits layer, written here."""
    import keras
    import tensorflow as tf

    logits = keras.Model(model.inputs, model.get_layer("dense").output)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = logits(xt, training=False)
        total = tf.reduce_sum(tf.gather(out, t, axis=1, batch_dims=1))
    return tape.gradient(total, xt).numpy().astype(np.float64)


def test_gradient_x_input(setup):
    model, x, *_, t = setup
    want = np.abs((x * _input_grads(model, x, t)).sum(-1))  # |sum_c|, as captum
    check(model, x, "gradient_x_input", want)
    # the channels' signs matter: the sum of absolute values is another map here
    other = np.abs(x * _input_grads(model, x, t)).sum(-1)
    assert np.abs(norm(other) - norm(want)).max() > 0.05


def test_integrated_gradients(setup):
    model, x, *_, t = setup
    steps = 8
    total = np.zeros(x.shape)
    for k in range(1, steps + 1):
        total += _input_grads(model, (k / steps * x).astype(np.float32), t)
    want = np.abs((x * total / steps).sum(-1))  # |sum_c|: completeness holds per pixel
    check(model, x, "integrated_gradients", want, method_options={"steps": steps})
    # batch_size 3 splits the 8 x 4 path images across images and steps: the same map
    check(model, x, "integrated_gradients", want, method_options={"steps": steps}, batch_size=3)
    # completeness (Sundararajan's axiom): attributions sum to f(x) - f(0), here within
    # the Riemann error of 8 steps
    import keras

    logits = keras.Model(model.inputs, model.get_layer("dense").output)
    fx = logits.predict(x, verbose=0)[np.arange(len(x)), t]
    f0 = logits.predict(np.zeros_like(x), verbose=0)[np.arange(len(x)), t]
    attr = (x * total / steps).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(attr, fx - f0, rtol=0.15, atol=0.02)
    # an image baseline x0: the path runs from x0 to x
    x0 = np.random.default_rng(9).random(x.shape[1:]).astype(np.float32)
    total = sum(_input_grads(model, (x0 + k / steps * (x - x0)).astype(np.float32), t)
                for k in range(1, steps + 1))  # fmt: skip
    want = np.abs(((x - x0) * total / steps).sum(-1))
    opts = {"steps": steps, "baseline": x0}
    check(model, x, "integrated_gradients", want, method_options=opts, batch_size=5)
    with pytest.raises(ValueError, match="`baseline` must be a scalar or broadcast"):
        compute_cams(model, x, method="integrated_gradients",
                     method_options={"baseline": np.zeros((5, 5, 3))})  # fmt: skip


@pytest.mark.parametrize("batch_size", [32, 3])
def test_smoothgrad_is_seeded(setup, batch_size):
    model, x, *_, t = setup
    samples, noise = 4, 0.15
    rng = np.random.default_rng(7)
    spread = (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3)))[:, None, None, None]
    eps = rng.standard_normal((samples, *x.shape)) * (noise * spread)[None]
    g = np.mean([_input_grads(model, (x + e).astype(np.float32), t) for e in eps], 0)
    opts = {"samples": samples, "seed": 7}
    check(model, x, "smoothgrad", np.abs(g).max(-1), method_options=opts, batch_size=batch_size)
    a = compute_cams(model, x, method="smoothgrad", method_options=opts).heatmaps
    b = compute_cams(model, x, method="smoothgrad", method_options=opts).heatmaps
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("score", ["logit", "probability"])
def test_occlusion_against_one_patch_at_a_time(setup, score):
    import keras

    model, x, *_, t = setup
    x = x[:2]
    n, h, w = x.shape[:3]
    patch, stride = 12, 10
    f = (
        model
        if score == "probability"
        else keras.Model(model.inputs, model.get_layer("dense").output)
    )
    y = f.predict(x, verbose=0)[np.arange(n), t[:n]].astype(np.float64)
    total, cover = np.zeros((n, h, w)), np.zeros((h, w))
    for top in (0, 10, 20):  # 20 is the last full square: 20 + 12 = 32
        for left in (0, 10, 20):
            xo = x.copy()
            xo[:, top : top + patch, left : left + patch] = 0
            p = f.predict(xo, verbose=0)[np.arange(n), t[:n]]
            total[:, top : top + patch, left : left + patch] += (y - p)[:, None, None]
            cover[top : top + patch, left : left + patch] += 1
    opts = {"patch": patch, "stride": stride}
    check(model, x, "occlusion", total / cover, method_options=opts, score=score)
    # 9 squares in batches of 4: the same map
    check(model, x, "occlusion", total / cover, method_options=opts, score=score, batch_size=4)


def test_a_user_registers_a_method_by_name(setup, tmp_path):
    model, x, a, *_ = setup
    seen = {}

    def mean_activation(ctx, *, power=1):
        seen["needs"] = ctx.layer
        return ctx.activations().mean(-1) ** power

    methods.register_method("mean_act", mean_activation, needs="activations", options={"power": 1})
    try:
        assert "mean_act" in api.available_methods()
        check(model, x, "mean_act", a.mean(-1) ** 2, method_options={"power": 2})
        assert seen["needs"] == "conv2"
        with pytest.raises(ValueError, match="already a method"):
            methods.register_method("mean_act", mean_activation, needs="activations")
        with pytest.raises(ValueError, match="already a method"):
            methods.register_method("gradcam", mean_activation, needs="activations")
        with pytest.raises(ValueError, match="`needs`"):
            methods.register_method("x2", mean_activation, needs="magic")
        with pytest.raises(ValueError, match="takes \\['power'\\].*'powr'"):
            compute_cams(model, x, method="mean_act", method_options={"powr": 2})
    finally:
        methods.REGISTRY.pop("mean_act", None)
    with pytest.raises(ValueError, match="`method` must be one of.*Received: method='mean_act'"):
        compute_cams(model, x, method="mean_act")


def test_gradient_methods_trace_once(setup):
    import keras

    model = small_cnn(3)
    x = np.random.default_rng(0).random((3, 32, 32, 3), dtype=np.float32)
    compute_cams(model, x, method="xgradcam")  # fused: one compiled call of its own
    assert api.trace_count(model) == 1
    compute_cams(model, x[:2], method="eigengradcam")  # raw gradients + the forward
    before = api.trace_count(model)
    compute_cams(model, x, method="xgradcam")
    compute_cams(model, x[:2], method="eigengradcam")
    compute_cams(model, x, method="gradcam_elementwise")  # a new finish: one more trace
    assert api.trace_count(model) == before + 1
    del keras


@pytest.mark.parametrize("method", ["scorecam", "integrated_gradients", "eigengradcam"])
def test_every_kind_of_method_works_in_the_tracker(method, tmp_path):
    from cam_callback import CAMTracker, load_run

    model = small_cnn(3)
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 32, 32, 3), dtype=np.float32), rng.integers(0, 3, 16)
    tracker = CAMTracker(
        x[:3], y[:3], log_dir=tmp_path, method=method, animate=None, tensorboard=False
    )
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[tracker])
    run = load_run(tmp_path)
    assert run.heatmaps.shape[:2] == (3, 3)  # before training, then 2 epochs
    want = compute_cams(model, x[:3], method=method, target=run.targets[-1]).heatmaps
    np.testing.assert_allclose(run.heatmaps[-1], want, atol=2e-3)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_every_method_gives_the_same_maps_on_jax_and_torch(backend, setup, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).parent
    model, x, *_ = setup
    model.save_weights(tmp_path / "w.weights.h5")
    np.save(tmp_path / "x.npy", x)
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "PYTHONPATH": f"{here.parent}{os.pathsep}{here}",
    }
    out = subprocess.run(
        [sys.executable, str(here / "_child_methods.py"), str(tmp_path / "w.weights.h5"),
         str(tmp_path / "x.npy"), str(tmp_path / "out.npz")],
        capture_output=True, text=True, env=env, timeout=500,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    got = np.load(tmp_path / "out.npz")
    assert not got["tensorflow_imported"]
    import _child_methods

    for name in _child_methods.CNN_METHODS:
        if name == "mean_act":
            continue
        ours = compute_cams(model, x, method=name, method_options=_child_methods.OPTIONS.get(name))
        np.testing.assert_allclose(got[f"{name}/probs"], ours.probabilities, atol=1e-5)
        err = np.abs(got[f"{name}/maps"] - ours.heatmaps).max()
        assert err < 1e-4, f"{name} on {backend}: max |diff| {err:.2e}"
    for name in _child_methods.BY_SCORE:
        ours = compute_cams(model, x, method=name, score="probability",
                            method_options=_child_methods.OPTIONS.get(name))  # fmt: skip
        err = np.abs(got[f"{name}/probability_maps"] - ours.heatmaps).max()
        assert err < 1e-4, f"{name} (probability) on {backend}: max |diff| {err:.2e}"
    # evaluate() (and the tracker's faithfulness inside it) gives the same scores
    from cam_callback import evaluate

    table = evaluate(model, x, methods=_child_methods.EVALUATED, metrics=_child_methods.METRICS,
                     steps=4)  # fmt: skip
    for name in _child_methods.EVALUATED:
        for metric in _child_methods.METRICS:
            np.testing.assert_allclose(
                got[f"evaluate/{name}/{metric}"], table.per_image[name][metric], atol=1e-3,
                err_msg=f"{name} {metric} on {backend}",
            )  # fmt: skip


def test_guided_gradcam_in_closed_form():
    """input -> Conv2D(1x1, relu) -> GAP -> Dense: guided backprop is closed form.

    d logit_c / d x_ijc' = sum_k K[c', k] W[k, c] / (HW) [z_ijk > 0], and guided backprop
    also drops the channels whose gradient at the ReLU, W[k, c] / (HW), is negative."""
    import keras

    keras.utils.set_random_seed(4)
    inp = keras.Input((8, 8, 3))
    z = keras.layers.Conv2D(6, 1, activation="relu", name="conv")(inp)
    h = keras.layers.GlobalAveragePooling2D()(z)
    model = keras.Model(inp, keras.layers.Dense(2, name="dense")(h))  # linear head: logits
    rng = np.random.default_rng(5)
    model.get_layer("conv").set_weights([rng.normal(size=(1, 1, 3, 6)), rng.normal(size=6)])
    x = rng.normal(size=(3, 8, 8, 3)).astype(np.float32)
    k = model.get_layer("conv").get_weights()[0][0, 0].astype(np.float64)  # [3, 6]
    b = model.get_layer("conv").get_weights()[1].astype(np.float64)
    w = model.get_layer("dense").get_weights()[0].astype(np.float64)  # [6, 2]
    zz = x.astype(np.float64) @ k + b  # [N, 8, 8, 6]
    a = np.maximum(zz, 0)
    t = (a.mean(axis=(1, 2)) @ w).argmax(1)
    up = w[:, t].T / 64  # [N, 6]: the gradient arriving at the ReLU output
    gate = (zz > 0) * (up[:, None, None, :] > 0)
    guided = np.einsum("nhwk,ck->nhwc", gate * up[:, None, None, :], k)
    grad_cam = norm(np.einsum("nk,nhwk->nhw", up, a))  # mean_ij G = up; 8x8 = input size
    want = np.abs(guided).max(-1) * grad_cam
    check(model, x, "guided_gradcam", want, layer="conv")
    # the plain gradient differs: the guided gate matters here
    plain = np.einsum("nhwk,ck->nhwc", (zz > 0) * up[:, None, None, :], k)
    assert np.abs(norm(np.abs(plain).max(-1) * grad_cam) - norm(want)).max() > 0.05
    # the model is left as found: the activation is relu again, no call override remains
    assert model.get_layer("conv").activation is keras.activations.relu
    assert "call" not in model.get_layer("conv").__dict__
    check_shape = api.inspect_model(model, x, method="guided_gradcam", layer="conv")
    assert check_shape.map_shape == (8, 8)


def test_guided_relu_layers_are_restored_after_a_failure():
    import keras

    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, name="conv")(inp)
    h = keras.layers.ReLU(max_value=6.0, name="relu6")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(h))
    relu = model.get_layer("relu6")
    with pytest.raises(RuntimeError, match="boom"), methods.guided_relus([relu]):
        assert "call" in relu.__dict__
        raise RuntimeError("boom")
    assert "call" not in relu.__dict__
    x = np.random.default_rng(0).random((2, 8, 8, 3), dtype=np.float32)
    res = compute_cams(model, x, method="guided_gradcam", layer="conv")
    assert res.heatmaps.shape == (2, 8, 8) and res.heatmaps.max() == pytest.approx(1.0)
    assert "call" not in relu.__dict__


def test_every_method_declares_what_it_explains(strided):
    model, x, _ = strided
    assert {m.explains for m in methods.REGISTRY.values()} <= set(methods.EXPLAINS)
    assert methods.get("eigencam").explains == "none"
    assert methods.get("cam").explains == "logit"
    for name in ("scorecam", "ablationcam", "occlusion", "xgradcam", "integrated_gradients"):
        assert methods.get(name).explains == "score", name
        assert methods.explained_score(name, "probability") == "probability"
    assert methods.explained_score("gradcam", "logit") == "logit"  # the built-ins honour it
    assert methods.explained_score("cam", "probability") == "logit"
    assert methods.explained_score("eigencam", "logit") == "none"
    with pytest.raises(ValueError, match="`explains`.*'logits'"):
        methods.register_method("x3", lambda ctx: ctx.activations()[..., 0], needs="activations",
                                explains="logits")  # fmt: skip
    with pytest.raises(ValueError, match="`method`.*'nope'"):
        methods.explained_score("nope", "logit")

    # the class-agnostic map is the same whatever the score; the score-weighted ones are not
    def maps(method, score):
        return compute_cams(model, x, method=method, score=score, layer="conv").heatmaps

    np.testing.assert_array_equal(maps("eigencam", "logit"), maps("eigencam", "probability"))
    for name in ("scorecam", "ablationcam", "occlusion"):
        assert np.abs(maps(name, "logit") - maps(name, "probability")).max() > 0.01, name


def test_the_context_is_public_and_gives_the_explained_score(strided):
    import keras

    model, x, logits = strided
    seen = {}

    def spy(ctx):
        seen.update(
            head=ctx.head.kind, layer=ctx.target_layer.name, output=ctx.output,
            batch_size=ctx.batch_size, calls=len(ctx.info.calls), score=ctx.score,
            scores=ctx.scores(), probs=ctx.predict(ctx.images),
            from_layer=ctx.scores_from_layer(ctx.activations()),
        )  # fmt: skip
        return ctx.activations()[..., 0]

    methods.register_method("spy", spy, needs="activations")
    try:
        for score in ("logit", "probability"):
            compute_cams(model, x, method="spy", layer="conv", score=score, batch_size=2)
            z, _ = logits(x)
            want = z if score == "logit" else softmax(z)
            assert seen["score"] == score
            np.testing.assert_allclose(seen["scores"], want, atol=1e-5)
            np.testing.assert_allclose(seen["from_layer"], want, atol=1e-5)
            np.testing.assert_allclose(seen["probs"], softmax(z), atol=1e-5)
        assert (seen["head"], seen["layer"], seen["output"], seen["batch_size"]) == (
            "softmax",
            "conv",
            None,
            2,
        )
        assert seen["calls"] >= 4
    finally:
        methods.REGISTRY.pop("spy", None)
    del keras


def test_guided_gradients_at_a_relu_layer():
    """conv (1x1, linear) -> ReLU layer (explained) -> conv2 (1x1, relu) -> GAP -> Dense.

    At the ReLU layer's output the plain gradient is (up * [z2 > 0]) @ K2^T with up = W[:, t] / 64;
    guided backprop also drops conv2's negative upstream gradients: (up * [z2 > 0] * [up > 0])."""
    import keras

    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(6, 1, name="conv")(inp)
    h = keras.layers.ReLU(name="relu_a")(h)
    h = keras.layers.Conv2D(5, 1, activation="relu", name="conv2")(h)
    model = keras.Model(inp, keras.layers.Dense(2, name="dense")(
        keras.layers.GlobalAveragePooling2D()(h)))  # fmt: skip
    rng = np.random.default_rng(8)
    k1, b1 = rng.normal(size=(3, 6)), rng.normal(0, 0.3, 6)
    k2, b2 = rng.normal(size=(6, 5)), rng.normal(0, 0.3, 5)
    w = rng.normal(size=(5, 2))
    model.get_layer("conv").set_weights([k1[None, None], b1])
    model.get_layer("conv2").set_weights([k2[None, None], b2])
    model.get_layer("dense").set_weights([w, np.zeros(2)])
    x = rng.normal(size=(3, 8, 8, 3)).astype(np.float32)
    a = np.maximum(x.astype(np.float64) @ k1 + b1, 0)
    z2 = a @ k2 + b2
    t = (np.maximum(z2, 0).mean(axis=(1, 2)) @ w).argmax(1)
    up = (w[:, t].T / 64)[:, None, None, :]  # [N, 1, 1, 5]
    want = {False: (up * (z2 > 0)) @ k2.T, True: (up * (z2 > 0) * (up > 0)) @ k2.T}
    got = {}

    def grads(ctx, *, guided=False):
        got[guided] = ctx.gradients(guided=guided)
        return got[guided][0][..., 0]

    methods.register_method("grads", grads, needs="layer_gradients", options={"guided": False})
    try:
        for guided in (False, True):
            compute_cams(model, x, method="grads", layer="relu_a",
                         method_options={"guided": guided})  # fmt: skip
            np.testing.assert_allclose(got[guided][0], a, atol=1e-5)
            np.testing.assert_allclose(got[guided][1], want[guided], atol=1e-6)
        assert np.abs(want[True] - want[False]).max() > 1e-3  # the gate matters here
    finally:
        methods.REGISTRY.pop("grads", None)
    assert "call" not in model.get_layer("relu_a").__dict__  # left as found
    assert model.get_layer("conv2").activation is keras.activations.relu


def _wide_model():
    """32 px -> Conv2D(256, stride 2) -> GAP -> Dense(3) -> softmax: many channels to perturb."""
    import keras

    keras.utils.set_random_seed(5)
    inp = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(256, 3, strides=2, activation="relu", name="wide")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inp, keras.layers.Dense(3, activation="softmax")(h))


@pytest.mark.parametrize(
    "method, few, many",
    [
        ("occlusion", {"patch": 16, "stride": 16}, {"patch": 2, "stride": 1}),  # 4 / 961 copies
        ("scorecam", {"max_channels": 4}, {"max_channels": None}),  # 4 / 256 masks
        ("ablationcam", None, None),  # 256 ablated copies of [15, 15, 256]: 59 MB at once
        ("integrated_gradients", {"steps": 2}, {"steps": 256}),
        ("smoothgrad", {"samples": 2}, {"samples": 256}),
    ],
)
def test_memory_follows_batch_size_not_the_perturbations(method, few, many):
    import tracemalloc

    model = _wide_model()
    x = np.random.default_rng(0).random((1, 32, 32, 3), dtype=np.float32)
    seen = []
    real = api.predict_scores

    def spy(m, images, **kw):
        seen.append(len(images))
        return real(m, images, **kw)

    def peak(options):
        tracemalloc.start()
        try:
            compute_cams(model, x, method=method, layer="wide", batch_size=4,
                         method_options=options)  # fmt: skip
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    compute_cams(model, x, method=method, layer="wide", batch_size=4, method_options=few)
    small = peak(few)
    api.predict_scores, real_scores = spy, api.predict_scores
    try:
        large = peak(many)
    finally:
        api.predict_scores = real_scores
    # all the copies at once would be 8-60 MB here; four at a time is a few hundred kB
    msg = f"{method}: {small / 2**20:.2f} MiB -> {large / 2**20:.2f} MiB"
    assert large < small + 2**20 and large < 6 * 2**20, msg
    assert max(seen, default=0) <= 4  # and the model sees batches of batch_size


def _twins():
    """The same network twice: a Dense(3) logits head, and that head plus a softmax layer."""
    import keras

    keras.utils.set_random_seed(6)
    logits = small_cnn(3, head="linear")
    probs = keras.Model(logits.input, keras.layers.Activation("softmax")(logits.output))
    x = np.random.default_rng(6).random((3, 32, 32, 3), dtype=np.float32)
    return logits, probs, x


LOGIT_OPTIONS = {"scorecam": {}, "ablationcam": {}, "occlusion": {"patch": 8, "stride": 8}}


@pytest.mark.parametrize("score", ["logit", "probability"])  # probability: needs lane-heads
def test_a_logits_head_gives_the_maps_of_its_softmax_twin(score):
    logits, probs, x = _twins()
    for name, opts in LOGIT_OPTIONS.items():
        a = compute_cams(logits, x, method=name, score=score, method_options=opts)
        b = compute_cams(probs, x, method=name, score=score, method_options=opts)
        np.testing.assert_allclose(a.heatmaps, b.heatmaps, atol=1e-5, err_msg=name)
        np.testing.assert_array_equal(a.targets, b.targets)


def test_a_logits_head_reports_probabilities_for_every_method():
    """Needs lane-heads' head_scores: a linear head's probabilities are its softmax."""
    logits, probs, x = _twins()
    want = probs.predict(x, verbose=0)
    for name, opts in LOGIT_OPTIONS.items():
        got = compute_cams(logits, x, method=name, method_options=opts).probabilities
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)
