"""Tiny models shared by the tests: no downloads, a few conv layers, 32-48 px."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    import keras

    keras.utils.set_random_seed(0)


def small_cnn(n_classes: int = 4, size: int = 32, head: str = "folded", bn: bool = False):
    """A Functional CNN. head: "folded" (softmax in Dense), "layer" (Activation), "linear"."""
    import keras

    inp = keras.Input((size, size, 3), name="image")
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inp)
    if bn:
        x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Conv2D(12, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    if head == "folded":
        out = keras.layers.Dense(n_classes, activation="softmax", name="dense")(x)
    elif head == "layer":
        x = keras.layers.Dense(n_classes, name="dense")(x)
        out = keras.layers.Activation("softmax", name="softmax")(x)
    else:
        out = keras.layers.Dense(n_classes, name="dense")(x)
    return keras.Model(inp, out, name="small_cnn")


def nested_cnn(n_classes: int = 3, size: int = 32):
    """A classifier around a nested Functional backbone named "backbone"."""
    import keras

    b_in = keras.Input((size, size, 3))
    y = keras.layers.Conv2D(8, 3, activation="relu", name="conv_a")(b_in)
    y = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv_b")(y)
    backbone = keras.Model(b_in, y, name="backbone")
    inp = keras.Input((size, size, 3))
    x = backbone(inp)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(n_classes, activation="softmax", name="head")(x)
    return keras.Model(inp, out, name="classifier")


@pytest.fixture
def images32():
    rng = np.random.default_rng(0)
    return rng.random((6, 32, 32, 3), dtype=np.float32)
