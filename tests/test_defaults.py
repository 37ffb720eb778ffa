"""What a user gets without `layer=` or `method=`: the coarse-map rule and `method="auto"`."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

from cam_callback import compute_cams, inspect_model
from cam_callback.core.layers import MIN_SIDE


def coarse_cnn() -> keras.Model:
    """32 px -> conv1 8 x 8 -> conv2 4 x 4 -> pad 6 x 6 -> conv3 2 x 2 -> softmax."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 4, strides=4, activation="relu", name="conv1")(inp)
    x = keras.layers.Conv2D(4, 2, strides=2, activation="relu", name="conv2")(x)
    x = keras.layers.ZeroPadding2D(1, name="pad")(x)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="conv3")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(3, activation="softmax")(x))


def test_a_coarse_default_layer_warns_naming_a_finer_one():
    model, x = coarse_cnn(), np.random.default_rng(0).random((2, 32, 32, 3), np.float32)
    assert MIN_SIDE == 4
    with pytest.warns(UserWarning, match="'conv3' is coarse; its maps are 2 x 2") as seen:
        check = inspect_model(model, x)
    message = str(seen[0].message)
    # The padding layer (6 x 6) is skipped: its border is not a feature.
    assert "a finer layer is 'conv2' (4 x 4)" in message and "layer='conv2'" in message
    assert check.layer == "conv3" and check.map_shape == (2, 2)
    assert "a finer layer is 'conv2' (4 x 4)" in check.note
    with warnings.catch_warnings(record=True) as again:  # once per model and input
        warnings.simplefilter("always")
        compute_cams(model, x)
    assert not [w for w in again if "coarse" in str(w.message)]
    assert compute_cams(model, x, layer="conv2").heatmaps.shape == (2, 4, 4)


def test_auto_is_gradcam_on_a_cnn():
    model, x = coarse_cnn(), np.random.default_rng(0).random((2, 32, 32, 3), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the coarse warning
        check = inspect_model(model, x, layer="conv2")
        res = compute_cams(model, x, layer="conv2")
    assert check.method == "gradcam" and res.method == "gradcam"
    want = compute_cams(model, x, layer="conv2", method="gradcam")
    np.testing.assert_array_equal(res.heatmaps, want.heatmaps)


def test_auto_cannot_be_registered_as_a_method():
    from cam_callback.methods import register_method

    with pytest.raises(ValueError, match=r"`name` 'auto' is the default .*Received: name='auto'"):
        register_method("auto", lambda ctx: ctx.activations.mean(-1), needs="activations")
