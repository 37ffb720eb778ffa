"""docs/methods.md's "Adding a method" block, run as written, against a numpy reference.

The model is Conv2D -> Flatten -> Dense (logits): the logit's gradient at the conv layer is
the Dense kernel's column, different at every position, so the positive-gradient weights,
Grad-CAM's mean-gradient weights and HiResCAM's elementwise product all give other maps.
"""

from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np
import pytest

from cam_callback import api, compute_cams, methods

DOC = Path(__file__).parent.parent / "docs" / "methods.md"


def doc_block() -> str:
    """The first python block under the "## Adding a method" heading."""
    section = DOC.read_text().split("## Adding a method", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def flatten_model():
    keras.utils.set_random_seed(3)
    inp = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)  # [6, 6, 4]
    out = keras.layers.Dense(3, name="dense")(keras.layers.Flatten()(a))
    model = keras.Model(inp, out)
    x = np.random.default_rng(1).normal(size=(5, 8, 8, 3)).astype(np.float32)
    acts = keras.Model(inp, a).predict(x, verbose=0).astype(np.float64)
    kernel = model.get_layer("dense").get_weights()[0].astype(np.float64)  # [144, 3]
    return model, x, acts, kernel


def norm(m: np.ndarray) -> np.ndarray:
    m = np.maximum(m, 0)
    peak = m.reshape(len(m), -1).max(1)[:, None, None]
    return np.where(peak > 0, m / np.where(peak > 0, peak, 1), 0)


def test_the_documented_method_runs_as_written_and_matches_numpy(flatten_model):
    model, x, acts, kernel = flatten_model
    namespace: dict = {}
    exec(compile(doc_block(), str(DOC), "exec"), namespace)  # noqa: S102 - our own doc
    try:
        assert "positive_gradcam" in methods.available_methods()
        assert methods.get("positive_gradcam").fused  # runs in the one compiled call
        got = compute_cams(model, x, method="positive_gradcam", layer="conv", head="logits")
        t = got.targets
        # d logit_t / d A: the Dense kernel's column t on the [6, 6, 4] grid Flatten reads.
        g = kernel[:, t].T.reshape(len(x), 6, 6, 4)
        weights = np.maximum(g, 0).mean(axis=(1, 2))  # [N, K]
        want = norm(np.einsum("nk,nhwk->nhw", weights, acts))
        np.testing.assert_allclose(got.heatmaps, want, atol=1e-5)
        np.testing.assert_array_equal(t, (acts.reshape(len(x), -1) @ kernel).argmax(1))
        # The same keras.ops function over the numpy context (not fused): the same maps.
        methods.register_method("positive_gradcam_numpy", namespace["positive_gradcam"],
                                needs="layer_gradients")  # fmt: skip
        plain = compute_cams(model, x, method="positive_gradcam_numpy", layer="conv",
                             head="logits")  # fmt: skip
        np.testing.assert_allclose(plain.heatmaps, got.heatmaps, atol=1e-5)
        # On this head the method differs from Grad-CAM and HiResCAM: the test can tell.
        for other in ("gradcam", "hirescam"):
            theirs = compute_cams(model, x, method=other, layer="conv", head="logits").heatmaps
            assert np.abs(theirs - got.heatmaps).max() > 0.05, other
    finally:
        methods.REGISTRY.pop("positive_gradcam", None)
        methods.REGISTRY.pop("positive_gradcam_numpy", None)


def test_a_fused_method_gets_only_what_the_compiled_call_computes(flatten_model):
    model, x, *_ = flatten_model

    def scores_inside(ctx):
        return ctx.scores()[:, :, None] * ctx.activations()[..., 0]

    methods.register_method("scores_inside", scores_inside, needs="layer_gradients", fused=True)
    try:
        with pytest.raises(ValueError, match=r"ctx.scores runs the model on other inputs.*fused"):
            compute_cams(model, x, method="scores_inside", layer="conv", head="logits")
    finally:
        methods.REGISTRY.pop("scores_inside", None)
    with pytest.raises(ValueError, match=r"a fused method needs one of .*needs='forwards'"):
        methods.register_method("x4", scores_inside, needs="forwards", fused=True)
    assert "x4" not in methods.REGISTRY


def test_fused_options_key_the_compiled_call_by_value_not_by_repr(flatten_model):
    from cam_callback.methods.fused import option_key

    a, b = np.zeros(2000), np.zeros(2000)
    b[1000] = 1.0  # the two reprs are equal ("...") where the arrays are not
    assert repr(a) == repr(b) and option_key("w", a) != option_key("w", b)
    assert option_key("k", 1) != option_key("k", True)
    with pytest.raises(TypeError, match="`method_options`.*Received: w=\\[1\\]"):
        option_key("w", [1])

    model, x, *_ = flatten_model

    def weighted(ctx, *, w):  # the channels weighted by an array option
        a, _ = ctx.gradients()
        return keras.ops.sum(a * keras.ops.convert_to_tensor(w, a.dtype), -1)

    methods.register_method("weighted", weighted, needs="layer_gradients", fused=True,
                            options={"w": None})  # fmt: skip
    try:
        k = model.get_layer("conv").filters
        one = np.eye(k)[0].astype("float32")
        got = [compute_cams(model, x, method="weighted", layer="conv",
                            method_options={"w": w}).heatmaps for w in (one, one[::-1].copy())]
    finally:
        methods.REGISTRY.pop("weighted", None)
    assert not np.allclose(got[0], got[1])  # the second array got its own trace


def test_an_attention_method_is_refused_on_a_cnn_before_any_map(flatten_model):
    model, x, *_ = flatten_model
    methods.register_method("my_rollout", lambda ctx: ctx.attention()[0], needs="attention")
    try:
        with pytest.raises(ValueError, match="my_rollout"):
            api.inspect_model(model, x, method="my_rollout")  # what the tracker runs first
    finally:
        methods.REGISTRY.pop("my_rollout", None)


def test_gradients_refuse_an_unknown_wrt_and_compute_cams_checks_the_model_first(flatten_model):
    model, x, *_ = flatten_model
    methods.register_method("typo", lambda ctx: ctx.gradients(wrt="inputs")[1].sum(-1),
                            needs="input_gradients")  # fmt: skip
    try:
        with pytest.raises(ValueError, match="`wrt` must be one of"):
            compute_cams(model, x, method="typo")
    finally:
        methods.REGISTRY.pop("typo", None)
    with pytest.raises(TypeError, match="`model` must be a keras.Model"):
        compute_cams(None, x, method="nope")
