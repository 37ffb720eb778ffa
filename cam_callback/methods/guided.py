"""Guided backpropagation: every ReLU passes back only positive gradients (Springenberg et al.).

:class:`guided_relus` swaps a model's ReLUs for :func:`guided_relu` while it is entered
and always puts them back, also after an exception.
"""

from __future__ import annotations

from typing import Any

import keras

from cam_callback.core import layer_roles


@keras.ops.custom_gradient
def guided_relu(x: Any) -> Any:
    """ReLU whose gradient passes only where both its input and the gradient are positive."""
    ops = keras.ops
    y = ops.relu(x)

    def grad(*args: Any, upstream: Any = None) -> Any:
        if upstream is None:
            (upstream,) = args
        return upstream * ops.cast(x > 0, upstream.dtype) * ops.cast(upstream > 0, upstream.dtype)

    return y, grad


def relu_kind(layer: Any) -> str:
    """``"layer"`` for a ReLU layer, ``"activation"`` for a layer with ``activation=relu``.

    Example:
        >>> relu_kind(keras.layers.ReLU())
        'layer'
    """
    if isinstance(layer, keras.layers.ReLU):
        plain = not layer.negative_slope and not layer.threshold
        return "layer" if plain else ""
    if isinstance(layer, keras.layers.Activation) or hasattr(layer, "activation"):
        return (
            "activation"
            if layer_roles.activation_name(getattr(layer, "activation", None)) == "relu"
            else ""
        )
    return ""


class guided_relus:
    """Swaps every ReLU of ``relus`` for :func:`guided_relu` while it is entered.

    Example:
        >>> with guided_relus([relu_layer]):  # doctest: +SKIP
        ...     grads = tape.gradient(...)
    """

    def __init__(self, relus: list) -> None:
        self.relus = relus
        self.saved: list = []

    def __enter__(self) -> None:
        ops = keras.ops
        for layer in self.relus:
            if relu_kind(layer) == "layer":
                cap = layer.max_value

                def call(inputs: Any, *a: Any, _cap: Any = cap, **k: Any) -> Any:
                    y = guided_relu(inputs)
                    return y if _cap is None else ops.minimum(y, _cap)

                self.saved.append((layer, "call", layer.__dict__.get("call")))
                object.__setattr__(layer, "call", call)
            else:
                self.saved.append((layer, "activation", layer.activation))
                object.__setattr__(layer, "activation", guided_relu)

    def __exit__(self, *exc: Any) -> None:
        for layer, attr, value in reversed(self.saved):
            if attr == "call" and value is None:
                object.__delattr__(layer, "call")
            else:
                object.__setattr__(layer, attr, value)
        self.saved = []
