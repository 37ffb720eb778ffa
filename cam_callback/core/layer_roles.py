"""What a layer does to a classifier's output: squash it, pass it on, or feed it.

Read off the calls of a discovery pass (:func:`cam_callback.core.layers.discover`), to find
the logit behind a softmax or sigmoid and the layers after it that only pass values on.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from cam_callback.core.layers import LayerCall

SQUASHING = ("softmax", "sigmoid")


def activation_name(fn: Any) -> str:
    """The name of a Keras activation function, or ``""``."""
    return getattr(fn, "__name__", "") or ""


def squash_name(layer: keras.layers.Layer) -> str:
    """``"softmax"`` or ``"sigmoid"`` where ``layer`` ends in one, else its activation's name.

    Example:
        >>> squash_name(keras.layers.Dense(3, activation="softmax"))
        'softmax'
    """
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    if isinstance(layer, keras.layers.Lambda):  # Lambda(keras.activations.softmax)
        name = activation_name(getattr(layer, "function", None))
        return name if name in SQUASHING else ""
    return activation_name(getattr(layer, "activation", None))


def head_kind(layer: keras.layers.Layer) -> str:
    """How a model's last layer squashes its logits.

    Returns:
        ``"input"`` when the layer is itself a softmax or sigmoid (its input is
        the logit: ``Softmax``, ``Activation("softmax")``,
        ``Lambda(keras.activations.sigmoid)``), ``"activation"`` when a softmax
        or sigmoid is folded into it (e.g. ``Dense(10, activation="softmax")``),
        else ``"linear"``.
    """
    if isinstance(layer, (keras.layers.Softmax, keras.layers.Lambda)):
        return "input" if squash_name(layer) in SQUASHING else "linear"
    act = activation_name(getattr(layer, "activation", None))
    if act in SQUASHING:
        return "input" if isinstance(layer, keras.layers.Activation) else "activation"
    return "linear"


def off_class_axes(layer: keras.layers.Layer, rank: int) -> tuple[int, ...]:
    """The axes a ``Softmax`` layer normalises over when they are not the class (last) axis.

    ``()`` for a softmax over the last axis of a rank-``rank`` output, and for any
    other layer (``Activation("softmax")`` and ``Dense(..., "softmax")`` take the last).

    Example:
        >>> off_class_axes(keras.layers.Softmax(axis=0), 2)
        (0,)
        >>> off_class_axes(keras.layers.Softmax(axis=-1), 2)
        ()
    """
    if not isinstance(layer, keras.layers.Softmax):
        return ()
    axis = layer.axis
    axes = tuple(int(a) % rank for a in (axis if isinstance(axis, (tuple, list)) else (axis,)))
    return () if axes == (rank - 1,) else axes


def passes_through(call: LayerCall) -> bool:
    """Whether a call can only reshape values, not mix in learned ones: a leaf layer
    without weights whose one input has the output's shape (``Identity``, ``Lambda``,
    ``Rescaling``, ``Activation(fn)``, ``Dropout`` at inference).

    Example:
        >>> passes_through(calls[-1])  # doctest: +SKIP
        True
    """
    layer, inp = call.layer, call.input
    if isinstance(layer, keras.Model) or layer.weights or not hasattr(inp, "shape"):
        return False
    return tuple(int(d) for d in inp.shape) == call.output_shape


def feeder(calls: list[LayerCall], index: int) -> int | None:
    """The index of the leaf call whose output is ``calls[index]``'s input, or ``None``.

    Matched by identity, else by value: the latest earlier leaf call whose output has
    the input's shape and values. Needs a discovery pass's tensors (see :func:`discover`).

    Example:
        >>> calls[feeder(calls, len(calls) - 1)].path  # doctest: +SKIP
        'dense'
    """
    inp = calls[index].input
    earlier = [j for j in range(index - 1, -1, -1) if not isinstance(calls[j].layer, keras.Model)]
    for j in earlier:
        if calls[j].output is inp:
            return j
    if not hasattr(inp, "shape"):
        return None
    want = np.asarray(keras.ops.convert_to_numpy(inp))
    for j in earlier:
        out = calls[j].output
        if calls[j].output_shape == want.shape and np.array_equal(
            np.asarray(keras.ops.convert_to_numpy(out)), want
        ):
            return j
    return None
