"""Reading the attention of every ``keras.layers.MultiHeadAttention``, on every backend.

Models call ``MultiHeadAttention`` without ``return_attention_scores`` (keras-hub's
ViT, DeiT and DINOv2 blocks do), and Keras then takes a fused
``ops.dot_product_attention`` path that never forms the attention matrix. While
:func:`captured_attention` is open, each layer's ``_compute_attention`` (Keras's
documented hook for custom attention) is replaced, on the instance only, by the
explicit path Keras itself takes when scores are asked for: scaled ``Q K^T``, the
masked softmax, then ``A V``. The attention ``A`` (``[batch, heads, T, S]``)
passes through a callback between the softmax and ``A V``, which records it and may
return a tensor to use instead (a zero added to differentiate by). The replacement
is removed on exit, also after an exception: the model is left as it was.

:func:`cam_callback.core.attention_call.attention_engine` builds the one compiled
call per batch that hands every attention matrix to a method by name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import keras
import numpy as np

from cam_callback.core.layers import LayerCall
from cam_callback.core.token_layers import patch_size_hint
from cam_callback.core.tokens import TokenGrid, token_grid

Sink = Callable[[int, Any, Any], Any]
"""``sink(index, attention, query)``: sees call ``index``'s attention, returns the one used."""

# What the explicit path reads off a MultiHeadAttention (Keras 3.x): checked up front.
_NEEDED = ("_dot_product_equation", "_combine_equation", "_masked_softmax", "_inverse_sqrt_key_dim")


def attention_calls(calls: Sequence[LayerCall]) -> list[LayerCall]:
    """The calls of ``keras.layers.MultiHeadAttention`` layers, in the order they ran.

    A layer called twice appears twice: each call has its own attention.

    Example:
        >>> [c.path for c in attention_calls(info.calls)]  # doctest: +SKIP
        ['vi_t_backbone/vit_encoder/transformer_block_0/mha', '.../transformer_block_1/mha']
    """
    return [c for c in calls if isinstance(c.layer, keras.layers.MultiHeadAttention)]


def check_attention_calls(calls: Sequence[LayerCall], method: str) -> list[LayerCall]:
    """The model's self-attention calls; a ValueError naming ``method`` when none can be read.

    Each call must be a plain ``MultiHeadAttention`` (a subclass with its own
    ``_compute_attention`` computes attention we cannot see) over ``[batch, tokens,
    dim]`` inputs, whose attention is ``[batch, heads, T, T]``.

    Example:
        >>> len(check_attention_calls(info.calls, "rollout"))  # doctest: +SKIP
        2
    """
    found = attention_calls(calls)
    if not found:
        raise ValueError(
            f"`method` {method!r} follows attention through the model, but the model has no "
            "keras.layers.MultiHeadAttention layer (a Vision Transformer has one per block). "
            f"Use a CAM method such as 'gradcam' instead. Received: method={method!r}"
        )
    for c in found:
        layer = c.layer
        plain = keras.layers.MultiHeadAttention._compute_attention
        own = type(layer)._compute_attention is not plain
        missing = [a for a in _NEEDED if not hasattr(layer, a)]
        shape = c.output_shape
        if own or missing or shape is None or len(shape) != 3:
            why = (
                f"{type(layer).__name__} computes its own attention" if own
                else f"this Keras version's MultiHeadAttention lacks {missing}" if missing
                else f"its output {shape} is not [batch, tokens, dim]"
            )  # fmt: skip
            raise ValueError(
                f"`method` {method!r} cannot read the attention of layer {c.path!r}: {why}. "
                f"Received: method={method!r}"
            )
        keys = key_tokens(c)
        if keys is not None and keys != shape[1]:
            raise ValueError(
                f"`method` {method!r} follows self-attention, where the tokens attend to "
                f"themselves, but layer {c.path!r} is cross-attention: {shape[1]} queries "
                f"attend to {keys} keys (attention [batch, {layer.num_heads}, {shape[1]}, "
                f"{keys}]), which no rollout can chain. Use a CAM method such as 'gradcam' "
                f"on a token layer instead. Received: method={method!r}, query shape "
                f"{(None, *shape[1:])}, key length {keys}"
            )
    return found


def key_tokens(call: LayerCall) -> int | None:
    """The key (value) length a ``MultiHeadAttention`` call attends to, where its build shows it.

    Read off the shapes Keras built the layer with (``None``: not known).

    Example:
        >>> key_tokens(attention_calls(info.calls)[0])  # doctest: +SKIP
        17
    """
    shapes = getattr(call.layer, "_build_shapes_dict", None) or {}
    shape = shapes.get("key_shape") or shapes.get("value_shape")
    if shape is None or len(shape) < 3 or shape[-2] is None:
        return None
    return int(shape[-2])


def attention_shape(call: LayerCall) -> tuple[int, int, int]:
    """``(heads, T, T)`` of a self-attention call's attention matrix (from its output shape).

    Example:
        >>> attention_shape(attention_calls(info.calls)[0])  # doctest: +SKIP
        (2, 17, 17)
    """
    tokens = int(call.output_shape[1])  # type: ignore[index]
    return int(call.layer.num_heads), tokens, tokens


@contextlib.contextmanager
def captured_attention(
    layers: Sequence[keras.layers.MultiHeadAttention], sink: Sink
) -> Iterator[None]:
    """Routes the attention of every call of ``layers`` through ``sink`` while open.

    ``sink(i, attention, query)`` gets the ``i``-th attention computed while the
    context is open (``[batch, heads, T, S]``, after the softmax and mask) and the
    scaled query, and returns the attention to multiply the values with. The
    patches are undone on exit, also after an exception.

    Example:
        >>> seen = []
        >>> with captured_attention(mhas, lambda i, a, q: seen.append(a) or a):  # doctest: +SKIP
        ...     model(x)
    """
    installed: list[tuple[Any, bool, Any]] = []
    counter = [0]
    try:
        for layer in dict.fromkeys(layers):  # each layer once, in order
            own = "_compute_attention" in layer.__dict__
            installed.append((layer, own, layer.__dict__.get("_compute_attention")))
            # object.__setattr__ skips Keras's attribute tracking: this is not state.
            object.__setattr__(layer, "_compute_attention", _explicit(layer, sink, counter))
        yield
    finally:
        for layer, own, previous in reversed(installed):
            if own:
                object.__setattr__(layer, "_compute_attention", previous)
            else:
                object.__delattr__(layer, "_compute_attention")


def attention_grid(
    model: keras.Model, images: np.ndarray, tokens: TokenGrid | None, calls: Sequence[LayerCall]
) -> TokenGrid:
    """The attention's token grid: the explained layer's where its tokens are the attention's,
    else found afresh (a ValueError where the blocks see different token counts).

    Example:
        >>> attention_grid(vit, x, None, attention_calls(info.calls))  # doctest: +SKIP
        TokenGrid(prefix=1, height=4, width=4)
    """
    counts = {attention_shape(c)[1] for c in calls}
    if len(counts) != 1:
        raise ValueError(
            "rollout multiplies the attention of every block, which needs one token count; "
            f"the attention layers have {sorted(counts)}. Received: layers="
            f"{[c.path for c in calls]}"
        )
    n = counts.pop()
    if tokens is not None and tokens.tokens == n:
        return tokens  # grid= and prefix_tokens= given to compute_cams are in it
    image = (int(images.shape[1]), int(images.shape[2]))
    return token_grid((None, n, 1), image, patch_size=patch_size_hint(model),
                      layer=calls[-1].path)  # fmt: skip


def _explicit(layer: Any, sink: Sink, counter: list[int]) -> Callable[..., tuple[Any, Any]]:
    """Keras's own explicit attention path (``return_attention_scores=True``), with a sink."""
    ops = keras.ops

    def compute(
        query: Any,
        key: Any,
        value: Any,
        attention_mask: Any = None,
        training: Any = None,
        return_attention_scores: bool = False,
        use_causal_mask: bool = False,
    ) -> tuple[Any, Any]:
        if use_causal_mask:
            causal = layer._compute_causal_mask(query, value)
            attention_mask = causal if attention_mask is None else ops.logical_and(
                ops.cast(attention_mask, "bool"), causal
            )  # fmt: skip
        query = ops.multiply(query, ops.cast(layer._inverse_sqrt_key_dim, query.dtype))
        scores = ops.einsum(layer._dot_product_equation, key, query)
        attention = layer._masked_softmax(scores, attention_mask)
        index = counter[0]
        counter[0] += 1
        attention = sink(index, attention, query)
        used = attention
        if training and layer._dropout > 0.0:
            used = layer._dropout_layer(attention, training=training)
        output = ops.einsum(layer._combine_equation, used, value)
        return output, (attention if return_attention_scores else None)

    return compute
