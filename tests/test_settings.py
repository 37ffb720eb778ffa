"""CAMSettings: the map settings as one frozen value, checked once when built."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
from conftest import small_cnn

from cam_callback import api
from cam_callback.api import CAMSettings, compute_cams, compute_with, inspect_model, inspect_with


def test_values_are_checked_and_normalised_when_built():
    s = CAMSettings(grid=4, output=np.int64(1), batch_size=np.int32(8))
    assert (s.grid, s.output, s.batch_size) == ((4, 4), 1, 8)
    assert type(s.output) is int and type(s.batch_size) is int
    for bad, err, name in [
        ({"layer": 3}, TypeError, "layer"),
        ({"method": "nope"}, ValueError, "method"),
        ({"score": "logits"}, ValueError, "score"),
        ({"output": 1.5}, TypeError, "output"),
        ({"head": "soft"}, ValueError, "head"),
        ({"grid": (4, 0)}, ValueError, "grid"),
        ({"prefix_tokens": -1}, ValueError, "prefix_tokens"),
        ({"batch_size": True}, ValueError, "batch_size"),
        ({"method_options": [1]}, TypeError, "method_options"),
    ]:
        with pytest.raises(err, match=f"`{name}`.*Received"):
            CAMSettings(**bad)


def test_the_value_is_frozen_and_keeps_no_link_to_the_callers_dict():
    options = {"max_channels": 4}
    s = CAMSettings(method="scorecam", method_options=options)
    options["max_channels"] = 99
    assert s.method_options == {"max_channels": 4}
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.method = "gradcam"  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.method_options["max_channels"] = 1  # type: ignore[index]
    again = s.replace(method_options={"max_channels": 2})
    assert again.method_options == {"max_channels": 2} and s.method_options["max_channels"] == 4
    with pytest.raises(ValueError, match="`batch_size`"):
        s.replace(batch_size=0)  # a copy is checked as a new value is


def test_describe_is_json_ready():
    layer = keras.layers.Dense(2, name="d")
    got = CAMSettings(layer=layer, grid=(2, 3), method_options={"a": 1}).describe()
    assert got["layer"] == "d" and got["grid"] == [2, 3] and got["method_options"] == {"a": 1}


@pytest.fixture(scope="module")
def model_and_images():
    model = small_cnn()
    x = np.random.default_rng(0).random((5, 32, 32, 3)).astype("float32")
    return model, x


def test_the_flat_keywords_and_the_value_give_the_same_maps(model_and_images):
    model, x = model_and_images
    flat = compute_cams(model, x, layer="conv1", method="layercam", target=1, batch_size=2)
    s = CAMSettings(layer="conv1", method="layercam", batch_size=2)
    whole = compute_with(model, x, s, target=1)
    np.testing.assert_array_equal(flat.heatmaps, whole.heatmaps)
    np.testing.assert_array_equal(flat.probabilities, whole.probabilities)
    auto = s.replace(method="auto")
    assert inspect_model(model, x, layer="conv1") == inspect_with(model, x, auto)
    probs = api.probabilities_with(model, x, s)
    np.testing.assert_allclose(probs, api.predict_probabilities(model, x), atol=1e-6)


def test_compute_with_refuses_loose_keywords(model_and_images):
    model, x = model_and_images
    with pytest.raises(TypeError, match="`settings` must be a CAMSettings"):
        compute_with(model, x, {"method": "gradcam"})  # type: ignore[arg-type]
