"""Attention rollouts for Vision Transformers, written once in ``keras.ops``.

- ``"rollout"`` (Abnar & Zuidema 2020, "Quantifying Attention Flow in
  Transformers"): per block the heads' attention fused into ``A`` (their mean, or
  with ``head_fusion`` their max or min, as vit-explain offers), optionally with its
  lowest ``discard_ratio`` entries dropped (vit-explain's option), plus the
  identity for the residual, rows renormalised: ``Ã = (A + I) / rowsum``; then
  ``R = Ã_L ... Ã_1``. Class-agnostic: it explains ``"none"``.
- ``"gradient_rollout"`` (Chefer, Gur & Wolf 2021, "Generic Attention-model
  Explainability"): ``Ā = mean_h (∂y/∂A ⊙ A)^+`` per block, ``R = I``, then
  ``R = R + Ā R`` block by block; ``y`` the explained score (logit or probability).

The map is the class token's row of ``R`` over the patch tokens, on the patch grid
(:func:`~cam_callback.core.tokens.token_grid`). A model without a class token
(no prefix tokens: a global-average-pooling head) gets the mean of the patch
tokens' rows instead, the relevance that reaches the pooled tokens.

Each is one small ``fn(ctx)`` in ``keras.ops``: the context gives every
``keras.layers.MultiHeadAttention`` the model runs (``ctx.attention()``, and
``ctx.attention_gradients()``; read through
:func:`~cam_callback.core.attention.captured_attention`) and the attention's token
grid (``ctx.tokens``), inside one compiled call per batch. ``layer`` only says on
which token grid the map is laid out (its default is the model's default layer);
the rollout always spans every block.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np  # noqa: F401 - the examples use it

from cam_callback.core.tokens import TokenGrid
from cam_callback.methods.fused import CompiledContext
from cam_callback.methods.registry import register_builtin


def discard_lowest(a: Any, ratio: float) -> Any:
    """``[B, T, T]`` with each map's lowest ``int(ratio T^2)`` entries set to 0.

    The class token's attention to itself (entry ``[0, 0]``) is never dropped, as
    in vit-explain. Ties are broken by position (a stable rank).

    Example:
        >>> np.asarray(discard_lowest(np.array([[[0.5, 0.1], [0.3, 0.2]]]), 0.5)).tolist()
        [[[0.5, 0.0], [0.3, 0.0]]]
    """
    t = int(a.shape[-1])
    k = int(t * t * ratio)
    if k == 0:
        return a
    ops = keras.ops
    flat = ops.reshape(a, (-1, t * t))
    rank = ops.argsort(ops.argsort(flat, axis=-1), axis=-1)  # each entry's rank, 0 = lowest
    keep = ops.logical_or(rank >= k, ops.arange(t * t)[None, :] == 0)
    return ops.reshape(ops.where(keep, flat, ops.zeros_like(flat)), (-1, t, t))


HEAD_FUSIONS: tuple[str, ...] = ("mean", "max", "min")
"""How ``"rollout"`` fuses a block's heads (``method_options={"head_fusion": ...}``)."""


def rollout_matrix(
    attentions: Sequence[Any], discard_ratio: float = 0.0, head_fusion: str = "mean"
) -> Any:
    """Attention rollout ``R = Ã_L ... Ã_1``, ``Ã = (fuse_h A + I) / rowsum``: ``[B, T, T]``.

    Args:
        attentions: Each block's attention ``[B, heads, T, T]``, in call order.
        discard_ratio: Share of each fused map's lowest entries set to 0 first.
        head_fusion: ``fuse_h``, one of :data:`HEAD_FUSIONS`: the heads' mean, max or min.

    Example:
        >>> a = np.full((1, 1, 2, 2), 0.5)
        >>> np.asarray(rollout_matrix([a, a])).round(3).tolist()
        [[[0.625, 0.375], [0.375, 0.625]]]
    """
    ops = keras.ops
    fuse = {"mean": ops.mean, "max": ops.max, "min": ops.min}[head_fusion]
    result = None
    for a in attentions:
        a = discard_lowest(fuse(ops.cast(a, "float32"), axis=1), discard_ratio)
        a = a + ops.eye(int(a.shape[-1]), dtype="float32")[None]
        a = a / ops.sum(a, axis=-1, keepdims=True)
        result = a if result is None else ops.matmul(a, result)
    return result


def gradient_rollout_matrix(attentions: Sequence[Any], grads: Sequence[Any]) -> Any:
    """Chefer et al.'s rule ``R = I``, ``R = R + mean_h (G ⊙ A)^+ R`` per block: ``[B, T, T]``.

    Example:
        >>> a, g = np.full((1, 1, 2, 2), 0.5), np.ones((1, 1, 2, 2))
        >>> np.asarray(gradient_rollout_matrix([a], [g])).tolist()
        [[[1.5, 0.5], [0.5, 1.5]]]
    """
    ops = keras.ops
    result = None
    for a, g in zip(attentions, grads, strict=True):
        cam = ops.mean(ops.relu(ops.cast(g, "float32") * ops.cast(a, "float32")), axis=1)
        if result is None:
            result = ops.eye(int(a.shape[-1]), dtype="float32")[None] + ops.zeros_like(cam)
        result = result + ops.matmul(cam, result)
    return result


def token_map(relevance: Any, grid: TokenGrid | None) -> Any:
    """The class token's row of ``[B, T, T]`` relevance over the patches, ``[B, h, w]``.

    Without prefix tokens (no class token) the mean of the patches' rows.

    Example:
        >>> tuple(token_map(np.ones((2, 5, 5)), TokenGrid(1, 2, 2)).shape)
        (2, 2, 2)
    """
    if grid is None:
        raise ValueError("the attention's token grid is unknown: pass `grid` to compute_cams")
    ops = keras.ops
    p = grid.prefix
    row = relevance[:, 0, p:] if p else ops.mean(relevance, axis=1)
    return ops.reshape(row, (-1, grid.height, grid.width))


def rollout(ctx: CompiledContext, *, discard_ratio: float = 0.0, head_fusion: str = "mean") -> Any:
    """Attention rollout (Abnar & Zuidema 2020): maps ``[B, h, w]`` from ``ctx.attention()``.

    Runs inside one compiled forward per batch. ``discard_ratio`` in ``[0, 1)``:
    share of each block's lowest fused attention set to 0 before the identity is
    added (0: the paper's recursion). ``head_fusion``: ``"mean"`` (the paper's),
    ``"max"`` or ``"min"`` over the heads, as vit-explain offers.

    Example:
        >>> compute_cams(vit, x, method="rollout",
        ...              method_options={"discard_ratio": 0.9, "head_fusion": "max"})
        ... # doctest: +SKIP
    """
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(
            f"`head_fusion` must be one of {HEAD_FUSIONS}. Received: head_fusion={head_fusion!r}"
        )
    if (
        isinstance(discard_ratio, bool)
        or not isinstance(discard_ratio, numbers.Real)
        or not (0.0 <= discard_ratio < 1.0)
    ):
        raise ValueError(
            f"`discard_ratio` must be a float in [0, 1). Received: discard_ratio={discard_ratio!r}"
        )
    return token_map(rollout_matrix(ctx.attention(), float(discard_ratio), head_fusion), ctx.tokens)


def gradient_rollout(ctx: CompiledContext) -> Any:
    """Gradient-weighted rollout (Chefer, Gur & Wolf 2021) from ``ctx.attention_gradients()``.

    Runs inside one compiled forward and gradient per batch.

    Example:
        >>> compute_cams(vit, x, method="gradient_rollout").heatmaps.shape  # doctest: +SKIP
        (8, 6, 6)
    """
    return token_map(gradient_rollout_matrix(*ctx.attention_gradients()), ctx.tokens)


register_builtin("rollout", rollout, needs="attention", explains="none")
register_builtin("gradient_rollout", gradient_rollout, needs="attention_gradients")
