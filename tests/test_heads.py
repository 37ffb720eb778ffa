"""Heads: logits, sigmoid and post-softmax layers read right everywhere a probability appears.

References are float64 numpy from a split model: for conv -> GAP -> Dense, the gradient of
class c's logit by the conv's activations is ``W[:, c] / (h w)`` at every position, so
Grad-CAM is ``relu(A @ W[:, c])`` over the max; the probability's is ``A @ (W @ dp/dz)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import warnings

import keras
import numpy as np
import pytest

from cam_callback import (
    CAMTracker,
    api,
    compute_cams,
    find_misclassified,
    load_run,
    methods,
    select_probes,
)
from cam_callback.core import engine, loss
from cam_callback.evaluation import evaluate

SIZE = 16


@pytest.fixture
def x():
    return np.random.default_rng(1).random((6, SIZE, SIZE, 3), dtype=np.float32)


def softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))


def features(n=3, activation=None, seed=0):
    """conv -> GAP -> Dense(n): the input, the conv's output and the Dense's output."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((SIZE, SIZE, 3), name="image")
    a = keras.layers.Conv2D(6, 3, activation="relu", name="conv")(inp)
    z = keras.layers.Dense(n, activation=activation, name="dense")(
        keras.layers.GlobalAveragePooling2D(name="gap")(a)
    )
    return inp, a, z


def logits_model(n=3, loss="sparse", seed=0):
    """A linear head compiled as the Keras guides do (``loss=None``: not compiled)."""
    inp, _, z = features(n, seed=seed)
    model = keras.Model(inp, z)
    losses = {
        "sparse": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        "categorical": keras.losses.CategoricalCrossentropy(from_logits=True),
        "partial": functools.partial(
            keras.losses.sparse_categorical_crossentropy, from_logits=True
        ),
        "binary": keras.losses.BinaryCrossentropy(from_logits=True),
    }
    if loss is not None:
        model.compile("adam", losses[loss])
    return model


def with_softmax_layer(model, squash="softmax"):
    """The same weights with an explicit Activation(squash) after the Dense."""
    inp, _, z = features(model.output.shape[-1])
    out = keras.Model(inp, keras.layers.Activation(squash, name=squash)(z))
    out.set_weights(model.get_weights())
    return out


def reference(model, images, targets=None, score="logit", squash="softmax"):
    """Grad-CAM at "conv" of a conv -> GAP -> Dense head, float64, from a split model."""
    a = np.asarray(
        keras.Model(model.inputs, model.get_layer("conv").output).predict(images, verbose=0),
        np.float64,
    )
    kernel, bias = (np.asarray(w, np.float64) for w in model.get_layer("dense").get_weights())
    z = a.mean(axis=(1, 2)) @ kernel + bias
    p = softmax(z) if squash == "softmax" else sigmoid(z)
    t = p.argmax(1) if targets is None else np.asarray(targets)
    maps = []
    for i, c in enumerate(t):
        if score == "logit":
            w = kernel[:, c]
        elif squash == "softmax":  # d p_c / d z = p_c (e_c - p)
            w = kernel @ (p[i, c] * (np.eye(len(p[i]))[c] - p[i]))
        else:
            w = kernel[:, c] * p[i, c] * (1 - p[i, c])
        m = np.maximum(a[i] @ w, 0.0)
        maps.append(m / m.max() if m.max() > 0 else m)
    return np.stack(maps), p, t


@contextlib.contextmanager
def no_head_warning():
    """Fails if the package warns about the head or the score on the way."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        yield
    ours = [str(w.message) for w in seen if issubclass(w.category, UserWarning)]
    assert not [m for m in ours if "head" in m or "probabilit" in m], ours


def declared(spec, explains):
    """A registry entry like ``spec`` that declares what it explains."""
    return dataclasses.replace(spec, explains=explains)


# ---------------------------------------------------------------- a logits head


@pytest.mark.parametrize("loss", ["sparse", "categorical", "partial"])
def test_logits_model_gives_softmax_probabilities_and_explains_the_logit(x, loss):
    model = logits_model(loss=loss)
    with no_head_warning():  # the compiled loss says it
        res = compute_cams(model, x)
        probs = api.predict_probabilities(model, x)
        check = api.inspect_model(model, x)
    raw = model.predict(x, verbose=0)
    np.testing.assert_allclose(res.probabilities.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(res.probabilities, softmax(raw), atol=1e-6)
    np.testing.assert_allclose(probs, softmax(raw), atol=1e-6)
    want, _, t = reference(model, x)
    assert res.targets.tolist() == t.tolist()
    np.testing.assert_allclose(res.heatmaps, want, atol=1e-5)
    assert (res.head, res.score) == ("logits", "logit")
    assert (check.head, check.score, check.n_classes) == ("logits", "logit", 3)
    # score="probability" explains the softmax, not the raw output
    prob = compute_cams(model, x, score="probability")
    want_prob = reference(model, x, score="probability")[0]
    np.testing.assert_allclose(prob.heatmaps, want_prob, atol=1e-5)
    assert prob.score == "probability"


def test_binary_crossentropy_from_logits_reads_sigmoids(x):
    multi = logits_model(3, loss="binary")
    res = compute_cams(multi, x)
    z = multi.predict(x, verbose=0)
    np.testing.assert_allclose(res.probabilities, sigmoid(z), atol=1e-6)
    assert res.head == "multilabel_logits"
    np.testing.assert_allclose(res.heatmaps, reference(multi, x, squash="sigmoid")[0], atol=1e-5)
    one = logits_model(1, loss="binary")
    res1 = compute_cams(one, x, target=1)
    z1 = one.predict(x, verbose=0)[:, 0]
    np.testing.assert_allclose(res1.probabilities[:, 1], sigmoid(z1), atol=1e-6)
    np.testing.assert_allclose(res1.probabilities.sum(1), 1.0, atol=1e-6)
    assert (res1.head, res1.score) == ("binary_logits", "logit")
    np.testing.assert_allclose(res1.heatmaps, reference(one, x, np.zeros(6, int))[0], atol=1e-5)
    # class 0 explains -z: the map of the negated kernel
    neg = logits_model(1, loss="binary")
    k, b = neg.get_layer("dense").get_weights()
    neg.get_layer("dense").set_weights([-k, -b])
    res0 = compute_cams(one, x, target=0)
    np.testing.assert_allclose(res0.heatmaps, reference(neg, x, np.zeros(6, int))[0], atol=1e-5)


def test_auto_without_a_loss_takes_the_softmax_and_warns_once(x):
    model = logits_model(loss=None)
    with pytest.warns(UserWarning, match="taking its softmax") as seen:
        res = compute_cams(model, x)
        compute_cams(model, x[:3], method="layercam")
        api.predict_probabilities(model, x)
        api.inspect_model(model, x)
        find_misclassified(model, x, np.zeros(6, int))
    assert len([w for w in seen if "taking its softmax" in str(w.message)]) == 1
    np.testing.assert_allclose(res.probabilities, softmax(model.predict(x, verbose=0)), atol=1e-6)
    fresh = logits_model(loss=None)
    with no_head_warning():  # saying it silences it
        assert compute_cams(fresh, x, head="softmax").head == "logits"


def test_head_argument_overrides_auto(x):
    multi = logits_model(3, loss="binary")  # auto: sigmoid
    z = multi.predict(x, verbose=0)
    for head in ("softmax", "logits"):
        got = compute_cams(multi, x, head=head)
        np.testing.assert_allclose(got.probabilities, softmax(z), atol=1e-6)
        assert got.head == "logits"
    plain = logits_model(loss=None)
    got = api.predict_probabilities(plain, x, head="sigmoid")
    np.testing.assert_allclose(got, sigmoid(plain.predict(x, verbose=0)), atol=1e-6)
    # a softmax model read as "probabilities" is read as auto reads it
    soft = with_softmax_layer(multi)
    a = compute_cams(soft, x)
    b = compute_cams(soft, x, head="probabilities")
    np.testing.assert_allclose(a.heatmaps, b.heatmaps, atol=1e-6)
    np.testing.assert_allclose(b.probabilities, softmax(z), atol=1e-6)
    assert (b.head, b.score) == ("softmax", "logit")
    # log-probabilities are logits too: softmax(log p) = p
    inp, _, zz = features()
    logp = keras.layers.Lambda(lambda p: keras.ops.log(p), name="log")(
        keras.layers.Activation("softmax")(zz)
    )
    log_model = keras.Model(inp, logp)
    log_model.set_weights(multi.get_weights())
    got = compute_cams(log_model, x, head="logits")
    np.testing.assert_allclose(got.probabilities, softmax(z), atol=1e-5)
    assert (got.head, got.score) == ("logits", "logit")


def test_head_arguments_that_contradict_the_model_are_refused(x):
    soft = with_softmax_layer(logits_model())
    with pytest.raises(ValueError, match=r"`head`='logits' says .* softmax of layer 'softmax'"):
        compute_cams(soft, x, head="logits")
    with pytest.raises(ValueError, match=r"`head`='sigmoid' contradicts the model"):
        api.inspect_model(soft, x, head="sigmoid")
    with pytest.raises(ValueError, match=r"`head`='probabilities' says .* outside \[0, 1\]"):
        api.predict_probabilities(logits_model(), x, head="probabilities")
    with pytest.raises(ValueError, match=r"`head`='softmax' needs 2 classes"):
        compute_cams(logits_model(1, loss=None), x, head="softmax")
    with pytest.raises(ValueError, match=r"one unit with no sigmoid.*head=\"sigmoid\""):
        compute_cams(logits_model(1, loss=None), x)


@pytest.mark.parametrize("bad", ["softmaxx", None, 3, "Logits"])
def test_bad_head_is_refused_early_naming_head(x, bad):
    model = logits_model()
    msg = r"`head` must be one of \('auto', 'softmax', 'sigmoid', 'logits', 'probabilities'\)"
    calls = [
        lambda: compute_cams(model, x, head=bad),
        lambda: compute_cams(model, x, method="occlusion", head=bad),
        lambda: api.inspect_model(model, x, head=bad),
        lambda: api.predict_probabilities(model, x, head=bad),
        lambda: find_misclassified(model, x, np.zeros(6, int), head=bad),
        lambda: select_probes(x, np.zeros(6, int), model=model, hard=1, head=bad),
        lambda: CAMTracker(x, log_dir="unused", head=bad),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=msg + rf".*Received: head={bad!r}"):
            call()
    assert model not in engine.ENGINES  # refused before anything was traced


# ---------------------------------------------------------------- perturbation methods


@pytest.mark.parametrize("method", ["scorecam", "ablationcam", "occlusion"])
def test_perturbation_methods_on_logits_equal_an_explicit_softmax(x, method):
    model = logits_model()
    soft = with_softmax_layer(model)
    got = compute_cams(model, x, method=method, layer="conv")
    want = compute_cams(soft, x, method=method, layer="conv")
    np.testing.assert_allclose(got.probabilities, want.probabilities, atol=1e-6)
    np.testing.assert_allclose(got.heatmaps, want.heatmaps, atol=1e-5)
    assert got.targets.tolist() == want.targets.tolist()
    assert got.head == "logits" and want.head == "softmax"


@pytest.mark.parametrize("method", ["gradcam", "ablationcam", "guided_gradcam", "xgradcam"])
def test_head_argument_reaches_every_cached_function_and_suffix(x, method):
    plain = logits_model(loss=None)
    kw = {"method": method, "layer": "conv", "score": "probability"}
    compute_cams(plain, x, head="softmax", **kw)  # its compiled functions must not serve sigmoid
    got = compute_cams(plain, x, head="sigmoid", **kw)
    want = compute_cams(with_softmax_layer(plain, "sigmoid"), x, **kw)
    np.testing.assert_allclose(got.probabilities, want.probabilities, atol=1e-6)
    np.testing.assert_allclose(got.heatmaps, want.heatmaps, atol=1e-5)
    assert got.head == "multilabel_logits"


def test_evaluate_on_logits_equals_an_explicit_softmax(x):
    model = logits_model()
    soft = with_softmax_layer(model)
    metrics = ("deletion_auc", "insertion_auc", "average_drop")
    got = evaluate(model, x, methods=("gradcam",), metrics=metrics, steps=4)
    want = evaluate(soft, x, methods=("gradcam",), metrics=metrics, steps=4)
    for m in metrics:
        np.testing.assert_allclose(
            got.per_image["gradcam"][m], want.per_image["gradcam"][m], atol=1e-5, err_msg=m
        )
    assert 0.0 <= got.scores["gradcam"]["deletion_auc"] <= 1.0
    assert 0.0 <= got.scores["gradcam"]["average_drop"] <= 100.0


# ---------------------------------------------------------------- layers after the softmax

T = 0.5


def post_softmax(kind):
    """Dense(softmax) followed by a layer that hides it; the Dense's input is the logit."""
    inp, _, p = features(activation="softmax")
    layer = {
        "lambda": keras.layers.Lambda(lambda q: q, name="post"),
        "identity": keras.layers.Identity(name="post"),
        "rescaling": keras.layers.Rescaling(1.0, name="post"),
        "temperature": keras.layers.Activation(
            lambda q: keras.activations.softmax(q / T), name="post"
        ),
        "divide": keras.layers.Activation(lambda q: q / T, name="post"),
        "reverse": keras.layers.Lambda(lambda q: keras.ops.flip(q, axis=-1), name="post"),
    }[kind]
    return keras.Model(inp, layer(p))


@pytest.mark.parametrize("kind", ["lambda", "identity", "rescaling", "temperature"])
def test_post_softmax_layer_keeps_the_true_logit(x, kind):
    model = post_softmax(kind)
    with no_head_warning():
        res = compute_cams(model, x)
        check = api.inspect_model(model, x)
    want, p, t = reference(model, x)
    np.testing.assert_allclose(res.heatmaps, want, atol=1e-5)
    # the probability's map is far from it: the test tells the two apart
    prob = reference(model, x, score="probability")[0]
    assert np.abs(prob - want).max() > 0.05
    assert (res.score, res.head) == (check.score, check.head) == ("logit", "softmax")
    # probabilities are the model's output: still probabilities after these layers
    np.testing.assert_allclose(res.probabilities, model.predict(x, verbose=0), atol=1e-6)
    np.testing.assert_allclose(res.probabilities.sum(1), 1.0, atol=1e-5)
    assert res.targets.tolist() == t.tolist()


def test_post_softmax_layer_that_leaves_no_probability_warns_and_reads_the_softmax(x):
    model = post_softmax("divide")  # p / T: the order of the classes kept, not a probability
    with pytest.warns(UserWarning, match=r"comes from 'post' after the softmax of layer 'dense'"):
        res = compute_cams(model, x)
    want, p, _ = reference(model, x)
    np.testing.assert_allclose(res.heatmaps, want, atol=1e-5)
    np.testing.assert_allclose(res.probabilities, p, atol=1e-6)
    assert (res.score, res.head) == ("logit", "softmax")


def test_post_softmax_layer_that_reorders_classes_explains_the_probability(x):
    model = post_softmax("reverse")
    with pytest.warns(UserWarning, match="explaining the probability instead"):
        res = compute_cams(model, x)
        check = api.inspect_model(model, x)
    assert (res.score, check.score, check.head) == ("probability", "probability", "softmax")
    out = model.predict(x, verbose=0)
    np.testing.assert_allclose(res.probabilities, out, atol=1e-6)
    # the map is the reversed probability's: the original class 2 - t's probability map
    want = reference(model, x, targets=2 - res.targets, score="probability")[0]
    np.testing.assert_allclose(res.heatmaps, want, atol=1e-5)


@pytest.mark.parametrize("kind", ["lambda", "identity", "rescaling", "dropout"])
def test_head_logits_behind_a_pass_through_layer_is_refused(x, kind):
    """softmax(softmax(z)) is no probability the model gives: refused as on a bare softmax."""
    if kind == "dropout":
        inp, _, p = features(activation="softmax")
        model = keras.Model(inp, keras.layers.Dropout(0.5, name="post")(p))
    else:
        model = post_softmax(kind)
    msg = r"`head`='logits' says .* softmax of layer 'dense', passed on by 'post', a probability"
    for call in (compute_cams, api.inspect_model, api.predict_probabilities):
        with pytest.raises(ValueError, match=msg):
            call(model, x, head="logits")
    # auto still reads the model's own softmax
    np.testing.assert_allclose(
        api.predict_probabilities(model, x), model.predict(x, verbose=0), atol=1e-6
    )


def test_head_logits_on_the_logit_of_sigmoids_reads_the_sigmoids(x):
    """Dense(3, sigmoid) then log(p / (1 - p)): the output is each sigmoid's logit, and
    head='logits' gives the model's own sigmoids back, not a softmax over them."""
    inp, _, p = features(activation="sigmoid")
    logit = keras.layers.Lambda(
        lambda t: keras.ops.log(t) - keras.ops.log(1.0 - t), name="post"
    )(p)
    model = keras.Model(inp, logit)
    sigmoids = keras.Model(inp, p).predict(x, verbose=0)
    probs = api.predict_probabilities(model, x, head="logits")
    np.testing.assert_allclose(probs, sigmoids, atol=1e-5)
    assert not np.allclose(probs.sum(-1), 1.0)  # independent classes, no softmax


@pytest.mark.parametrize("axis", [0, (0, 1)])
def test_a_softmax_not_over_the_classes_is_refused_naming_layer_and_axis(x, axis):
    inp, _, z = features()
    model = keras.Model(inp, keras.layers.Softmax(axis=axis, name="batch_softmax")(z))
    shown = axis if isinstance(axis, int) else r"\(0, 1\)"
    msg = rf"layer 'batch_softmax', a softmax over axis {shown} .*axis={shown}"
    for head in ("auto", "softmax", "logits", "probabilities"):
        with pytest.raises(ValueError, match=msg):
            api.inspect_model(model, x, head=head)
    with pytest.raises(ValueError, match=msg):
        compute_cams(model, x, batch_size=2)
    for fine in (-1, 1):  # the class axis, however it is written
        ok = keras.Model(inp, keras.layers.Softmax(axis=fine)(z))
        with no_head_warning():
            got = compute_cams(ok, x)
        np.testing.assert_allclose(got.probabilities, ok.predict(x, verbose=0), atol=1e-6)
        assert (got.head, got.score) == ("softmax", "logit")


@pytest.mark.parametrize(
    "fn, squash, head",
    [
        (keras.activations.softmax, "softmax", "softmax"),
        (keras.ops.sigmoid, "sigmoid", "multilabel"),
    ],
)
def test_lambda_of_a_softmax_or_sigmoid_is_a_squash_layer(x, fn, squash, head):
    inp, _, z = features()
    model = keras.Model(inp, keras.layers.Lambda(fn, name="squash")(z))
    with no_head_warning():
        res = compute_cams(model, x)
    want, p, _ = reference(model, x, squash=squash)
    np.testing.assert_allclose(res.heatmaps, want, atol=1e-5)
    np.testing.assert_allclose(res.probabilities, p, atol=1e-6)
    assert (res.head, res.score) == (head, "logit")


# ---------------------------------------------------------------- probes and the tracker


def spread_logits_model():
    """Logits of about [-3, 3]: raw values cross any threshold the softmax does not."""
    model = logits_model(seed=3)
    k, b = model.get_layer("dense").get_weights()
    model.get_layer("dense").set_weights([k * 40.0, b])
    return model


def test_find_misclassified_thresholds_a_probability(x):
    model = spread_logits_model()
    z = model.predict(x, verbose=0).astype(np.float64)
    p = softmax(z)
    labels = p.argmax(1)
    labels[0] = (labels[0] + 1) % 3  # one wrong
    threshold = float(np.median(p.max(1)))
    want = set(np.flatnonzero((p.argmax(1) != labels) | (p.max(1) < threshold)).tolist())
    raw = set(np.flatnonzero((z.argmax(1) != labels) | (z.max(1) < threshold)).tolist())
    assert want != raw  # the raw logits would pick other images
    idx, probs = find_misclassified(model, x, labels, threshold, return_probabilities=True)
    assert set(idx.tolist()) == want
    np.testing.assert_allclose(probs, p, atol=1e-6)
    true_p = p[idx, labels[idx]]
    assert np.all(np.diff(true_p) >= -1e-7)  # most doubtful first
    assert find_misclassified(model, x, labels, threshold).tolist() == idx.tolist()
    picked = select_probes(x, labels, per_class=0, model=model, hard=len(want), threshold=threshold)
    assert picked.tolist() == idx.tolist()


def test_tracker_records_probabilities_of_a_logits_model(tmp_path, x):
    model = spread_logits_model()
    labels = np.arange(6) % 3
    tracker = CAMTracker(
        x, labels, log_dir=tmp_path, animate=None, tensorboard=False, low_confidence=0.9
    )
    model.fit(x, labels, epochs=1, batch_size=6, verbose=0, callbacks=[tracker])
    run = load_run(tmp_path)
    assert (run.meta["head"], run.meta["score"]) == ("logits", "logit")
    np.testing.assert_allclose(run.probabilities.sum(-1), 1.0, atol=1e-5)
    p = softmax(model.predict(x, verbose=0))  # the last epoch's weights
    np.testing.assert_allclose(run.probabilities[-1], p, atol=1e-5)
    tcp = run.metrics["true_class_probability"]
    assert np.all((tcp >= 0) & (tcp <= 1))
    np.testing.assert_allclose(tcp[-1], p[np.arange(6), labels], atol=1e-5)
    np.testing.assert_array_equal(run.flags["low_confidence"], p.max(1) < 0.9)


def test_recorded_score_is_what_the_method_explains(monkeypatch, tmp_path, x):
    model = with_softmax_layer(logits_model())
    spec = methods.get("eigencam")
    monkeypatch.setitem(methods.REGISTRY, "eigencam", declared(spec, "none"))
    assert compute_cams(model, x, method="eigencam").score == "none"
    assert api.inspect_model(model, x, method="eigencam").score == "none"
    monkeypatch.setitem(methods.REGISTRY, "eigencam", declared(spec, "probability"))
    assert compute_cams(model, x, method="eigencam").score == "probability"
    tracker = CAMTracker(x, log_dir=tmp_path, method="eigencam", animate=None, tensorboard=False)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, np.zeros(6, int), epochs=1, verbose=0, callbacks=[tracker])
    assert load_run(tmp_path).meta["score"] == "probability"
    # a method that honours `score` records the head's
    monkeypatch.setitem(methods.REGISTRY, "eigencam", declared(spec, "score"))
    assert compute_cams(model, x, method="eigencam", score="probability").score == "probability"
    assert compute_cams(model, x, method="xgradcam").score == "logit"


# ---------------------------------------------------------------- reading the compiled loss


def test_loss_squash_reads_objects_names_functions_and_per_output_losses():
    ls = loss.loss_squash
    assert ls(keras.losses.SparseCategoricalCrossentropy(from_logits=True)) == ("softmax", True)
    assert ls(keras.losses.CategoricalCrossentropy()) == ("softmax", False)
    assert ls(keras.losses.BinaryCrossentropy(from_logits=True)) == ("sigmoid", True)
    assert ls(keras.losses.BinaryFocalCrossentropy(from_logits=True)) == ("sigmoid", True)
    assert ls("sparse_categorical_crossentropy") == ("softmax", False)
    assert ls("binary_crossentropy") == ("sigmoid", False)
    assert ls(keras.losses.sparse_categorical_crossentropy) == ("softmax", None)
    part = functools.partial(keras.losses.binary_crossentropy, from_logits=True)
    assert ls(part) == ("sigmoid", True)
    assert ls("mse") == ("", None) and ls(None) == ("", None)
    per = {"cls": keras.losses.SparseCategoricalCrossentropy(from_logits=True), "tags": "mse"}
    assert ls(per, "cls") == ("softmax", True)
    assert ls(per, 0, ["cls", "tags"]) == ("softmax", True)  # outputs as a list, losses by name
    assert ls(per, 1, ["cls", "tags"]) == ("", None)
    assert ls(["mse", keras.losses.BinaryCrossentropy(from_logits=True)], "b", ["a", "b"]) == (
        "sigmoid",
        True,
    )


def test_multi_output_heads_read_their_own_loss(x):
    inp, a, _ = features()
    g = keras.layers.GlobalAveragePooling2D()(a)
    heads_out = [keras.layers.Dense(3, name="cls")(g), keras.layers.Dense(2, name="tags")(g)]
    model = keras.Model(inp, heads_out)  # outputs as a list, losses by name
    model.compile(
        "adam",
        loss={
            "cls": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "tags": keras.losses.BinaryCrossentropy(from_logits=True),
        },
    )
    out = model.predict(x, verbose=0)
    cls = compute_cams(model, x, output="cls")
    tags = compute_cams(model, x, output=1)
    assert (cls.head, tags.head) == ("logits", "multilabel_logits")
    np.testing.assert_allclose(cls.probabilities, softmax(out[0]), atol=1e-6)
    np.testing.assert_allclose(tags.probabilities, sigmoid(out[1]), atol=1e-6)


# ---------------------------------------------------------------- what decides a linear head

Z = 3.0  # every planted logit: sigmoid 0.953 each, softmax 0.25 each


def planted_multilabel(loss):
    """Four independent classes whose logits are all about 3: each sigmoid is 0.953."""
    inp, _, z = features(4)
    model = keras.Model(inp, z)
    k, _ = model.get_layer("dense").get_weights()
    model.get_layer("dense").set_weights([k * 1e-3, np.full(4, Z, np.float32)])
    if loss is not None:
        model.compile(keras.optimizers.SGD(0.0), loss)
    return model


class FocalLoss(keras.losses.BinaryFocalCrossentropy):
    """A user's focal loss: a subclass whose name says nothing about crossentropy."""


class OwnFocalLoss(keras.losses.Loss):
    """A focal loss written from scratch: ``from_logits`` only as an attribute."""

    def __init__(self, gamma=2.0, from_logits=False, **kwargs):
        super().__init__(**kwargs)
        self.gamma, self.from_logits = gamma, from_logits

    def call(self, y_true, y_pred):
        return keras.ops.mean(y_pred)


def bce_logits(y_true, y_pred):
    """A custom function whose name says logits: it must not decide anything by its name."""
    return keras.losses.binary_crossentropy(y_true, y_pred, from_logits=True)


def categorical_crossentropy_like(y_true, y_pred):
    return keras.ops.mean(y_pred)


def test_loss_squash_reads_from_logits_from_any_loss_never_from_a_name():
    from keras.src.losses.losses import LossFunctionWrapper  # noqa: PLC0415 - Keras's own

    ls = loss.loss_squash
    wrapped = LossFunctionWrapper(keras.losses.binary_crossentropy, from_logits=True)
    assert ls(wrapped) == ("sigmoid", True)
    assert ls(FocalLoss(from_logits=True)) == ("sigmoid", True)
    assert ls(FocalLoss()) == ("sigmoid", False)
    assert ls(OwnFocalLoss(from_logits=True)) == ("", True)  # logits, but not which squash
    assert ls(bce_logits) == ("", None)
    assert ls(categorical_crossentropy_like) == ("", None)  # a name is no proof
    assert ls(functools.partial(bce_logits, from_logits=True)) == ("", True)
    assert ls(lambda y, p, from_logits=True: p) == ("", True)  # a default says it too
    assert ls("BinaryCrossentropy") == ("sigmoid", False)


@pytest.mark.parametrize("loss", ["wrapper", "subclass"])
def test_a_binary_loss_keras_cannot_name_reads_independent_sigmoids(x, loss):
    from keras.src.losses.losses import LossFunctionWrapper  # noqa: PLC0415 - Keras's own

    model = planted_multilabel(
        LossFunctionWrapper(keras.losses.binary_crossentropy, from_logits=True)
        if loss == "wrapper"
        else FocalLoss(from_logits=True)
    )
    with no_head_warning():
        res = compute_cams(model, x)
        check = api.inspect_model(model, x)
    np.testing.assert_allclose(res.probabilities, sigmoid(model.predict(x, verbose=0)), atol=1e-6)
    np.testing.assert_allclose(res.probabilities, 0.953, atol=1e-3)  # not 0.25
    assert (res.head, check.head, check.head_assumed) == ("multilabel_logits",) * 2 + (False,)


@pytest.mark.parametrize("loss", [None, "bce_logits", "own_focal"])
def test_an_undecided_linear_head_is_assumed_warned_and_recorded(tmp_path, x, loss):
    model = planted_multilabel({None: None, "bce_logits": bce_logits,
                                "own_focal": OwnFocalLoss(from_logits=True)}[loss])  # fmt: skip
    with pytest.warns(UserWarning, match=r"ASSUMING softmax logits.*pass head='sigmoid'"):
        check = api.inspect_model(model, x)
    assert (check.head, check.head_assumed) == ("logits", True)
    said = api.inspect_model(model, x, head="sigmoid")
    assert (said.head, said.head_assumed) == ("multilabel_logits", False)
    if loss != "bce_logits":
        return
    # the tracker records that the head was assumed; multi-hot labels decide it
    tracker = CAMTracker(x, log_dir=tmp_path / "a", animate=None, tensorboard=False)
    model.fit(x, np.eye(4)[np.arange(6) % 4], epochs=1, verbose=0, callbacks=[tracker])
    run = load_run(tmp_path / "a")
    assert (run.meta["head"], run.meta["head_assumed"]) == ("logits", True)
    np.testing.assert_allclose(run.probabilities[-1], 0.25, atol=1e-3)
    multi_hot = np.array([[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 1, 0]] * 2)
    with pytest.warns(UserWarning, match="multi-hot"):
        tracker = CAMTracker(x, multi_hot, log_dir=tmp_path / "b", animate=None, tensorboard=False)
    model.fit(x, multi_hot, epochs=1, verbose=0, callbacks=[tracker])
    run = load_run(tmp_path / "b")
    assert (run.meta["head"], run.meta["head_assumed"]) == ("multilabel_logits", None)
    np.testing.assert_allclose(run.probabilities[-1], 0.953, atol=1e-3)  # four sigmoids
    np.testing.assert_allclose(
        run.probabilities[-1], sigmoid(model.predict(x, verbose=0)), atol=1e-6
    )


@pytest.mark.parametrize("kind", ["softmax_layer", "categorical_logits"])
def test_multi_hot_labels_do_not_override_a_head_the_model_states(tmp_path, x, kind):
    """Multi-hot labels decide only what the model leaves open: a softmax layer, or a
    linear output under CategoricalCrossentropy(from_logits=True), stays a softmax."""
    model = planted_multilabel(None)
    if kind == "softmax_layer":
        model = keras.Model(model.input, keras.layers.Softmax(name="sm")(model.output))
        model.compile(keras.optimizers.SGD(0.0), "categorical_crossentropy")
    else:
        model.compile(keras.optimizers.SGD(0.0), keras.losses.CategoricalCrossentropy(True))
    multi_hot = np.array([[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 1, 0]] * 2)
    with pytest.warns(UserWarning, match="multi-hot"):
        tracker = CAMTracker(x, multi_hot, log_dir=tmp_path, animate=None, tensorboard=False)
    model.fit(x, multi_hot.astype("float32"), epochs=1, verbose=0, callbacks=[tracker])
    run = load_run(tmp_path)
    assert run.meta["head"] == ("softmax" if kind == "softmax_layer" else "logits")
    np.testing.assert_allclose(run.probabilities[-1], 0.25, atol=1e-3)  # the model's softmax


def test_one_unit_under_an_own_loss_that_says_from_logits_is_a_binary_logit(x):
    model = logits_model(1, loss=None)
    model.compile("adam", OwnFocalLoss(from_logits=True))
    with no_head_warning():
        res = compute_cams(model, x)
    z = model.predict(x, verbose=0)
    np.testing.assert_allclose(res.probabilities[:, 1:], sigmoid(z), atol=1e-6)
    assert res.head == "binary_logits"
    model.compile("adam", OwnFocalLoss())  # from_logits=False: still refused as a regression
    with pytest.raises(ValueError, match="one unit with no sigmoid"):
        compute_cams(model, x)
