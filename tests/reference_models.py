"""Reference models whose layer gradient varies in space, and an engine-free split of them.

On a layer -> GlobalAveragePooling -> Dense head ``d logit / d A_ijk`` is the same at every
position ``ij``, so HiResCAM equals Grad-CAM there, XGrad-CAM equals Grad-CAM and
GradCAMElementWise equals LayerCAM. The heads built here break that:

- ``"flatten"``: conv -> pool -> ``feat`` (ReLU) -> Flatten -> Dense (logits): ``G`` is the
  Dense kernel reshaped, a different weight at every position.
- ``"conv_after"``: conv -> pool -> ``feat`` (swish) -> 3x3 Conv2D (ReLU) -> GAP -> Dense
  (logits): ``G`` depends on the neighbourhood and on where the ReLU after it is open.
- ``"flatten_softmax"``: conv -> pool -> ``feat`` (linear) -> Flatten -> Dense with the softmax
  folded in; the explained score is still the logit (``score="logit"``).

The explained layer's activation differs per model: after a ReLU ``A >= 0`` and
GradCAMElementWise's ``relu(G A)`` is exactly LayerCAM's ``relu(G) A``; only signed
activations (swish as in EfficientNet, or a linear conv) tell those two apart.

:func:`split` cuts a model at ``feat`` into ``f1`` (input -> ``feat``) and a tail built anew
from the same layer objects, and :func:`layer_gradients` takes ``G = d logit_t / d A`` with a
tape written here (``tf.GradientTape``, ``jax.grad`` or ``torch.autograd``), so the references
never run the package's own gradient code.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

LAYER = "feat"
N_CLASSES = 4
KINDS = ("flatten", "conv_after", "flatten_softmax")
ACTIVATIONS = {"flatten": "relu", "conv_after": "swish", "flatten_softmax": None}


def build(kind: str, seed: int = 10) -> keras.Model:
    """A 32 px reference model of ``kind`` (see the module docstring), seeded weights.

    Biases are set non-zero so the network is not positively homogeneous; the explained
    layer's are shifted up by 0.2 so each of its channels sums well away from zero over the
    map (XGrad-CAM divides by that sum). With seed 10 every method gives a non-zero map on
    (nearly) every (image, class) pair, and no Grad-CAM++ denominator is near zero; tests
    check both.
    """
    inp = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv1")(inp)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Conv2D(8, 3, activation=ACTIVATIONS[kind], name=LAYER)(x)  # [13, 13, 8]
    if kind == "conv_after":
        x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="after")(x)
        x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    else:
        x = keras.layers.Flatten(name="flatten")(x)
    activation = "softmax" if kind == "flatten_softmax" else None
    out = keras.layers.Dense(N_CLASSES, activation=activation, name="dense")(x)
    model = keras.Model(inp, out, name=f"ref_{kind}")
    # Weights from numpy, not Keras's initialisers: the same model on every backend.
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.weights:
            kernel, bias = layer.get_weights()
            field = np.prod(kernel.shape[:-2])
            fan_in, fan_out = field * kernel.shape[-2], field * kernel.shape[-1]
            limit = np.sqrt(6.0 / (fan_in + fan_out))  # Glorot uniform
            kernel = rng.uniform(-limit, limit, kernel.shape)
            bias = rng.normal(0.2 if layer.name == LAYER else 0.0, 0.1, bias.shape)
            layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return model


def images(n: int = 4, seed: int = 7) -> np.ndarray:
    """``[n, 32, 32, 3]`` float32 in [0, 1]."""
    return np.random.default_rng(seed).random((n, 32, 32, 3), dtype=np.float32)


@dataclass
class Split:
    """``f1``: input -> explained layer; ``tail``: explained layer -> pre-head features."""

    f1: keras.Model
    tail: keras.Model
    kernel: np.ndarray
    bias: np.ndarray

    def logits(self, a):
        """The class logits from the layer's output, the last Dense written out (no softmax)."""
        h = self.tail(a)
        return keras.ops.add(keras.ops.matmul(h, self.kernel), self.bias)


def split(model: keras.Model, layer: str = LAYER) -> Split:
    """Cuts ``model`` at ``layer``; the tail reuses the model's own layer objects.

    The final Dense is applied by hand (``h @ W + b``): its folded softmax, if any, is left
    out, so what the tape differentiates is the logit whatever the head.
    """
    f1 = keras.Model(model.input, model.get_layer(layer).output)
    names = [lyr.name for lyr in model.layers]
    after = model.layers[names.index(layer) + 1 : -1]  # a plain chain up to the last Dense
    inp = keras.Input(model.get_layer(layer).output.shape[1:])
    x = inp
    for lyr in after:
        x = lyr(x)
    dense = model.layers[-1]
    kernel, bias = dense.get_weights()
    return Split(f1=f1, tail=keras.Model(inp, x), kernel=kernel, bias=bias)


def layer_gradients(
    parts: Split, x: np.ndarray, targets: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A, G, logits)``: ``A = f1(x)``, ``G = d logit_t / d A`` on a tape written here."""
    a = parts.f1.predict(x, verbose=0).astype(np.float32)
    onehot = np.eye(parts.kernel.shape[1], dtype=np.float32)[targets]
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        at = tf.constant(a)
        with tf.GradientTape() as tape:
            tape.watch(at)
            z = parts.logits(at)
            score = tf.reduce_sum(z * onehot)
        g, z = tape.gradient(score, at).numpy(), z.numpy()
    elif backend == "jax":
        import jax

        def score(at):
            z = parts.logits(at)
            return (z * onehot).sum(), z

        (_, z), g = jax.value_and_grad(score, has_aux=True)(a)
        g, z = np.asarray(g), np.asarray(z)
    else:
        import torch

        at = torch.tensor(a, requires_grad=True)
        z = parts.logits(at)
        (z * torch.tensor(onehot)).sum().backward()
        g, z = at.grad.numpy(), z.detach().numpy()
    return a, g.astype(np.float32), z
