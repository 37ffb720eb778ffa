"""One resolve step for every method: the score, the images, the layer and its token grid,
and the method ``method="auto"`` (the default) runs.

Shared by :func:`cam_callback.methods.core.compute` and ``inspect_model``, so both
run the same checks before any map.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from cam_callback.core.attention import attention_shape, check_attention_calls
from cam_callback.core.inspection import inspect, prepare_images
from cam_callback.core.layers import LayerCall
from cam_callback.core.token_layers import explained_tokens
from cam_callback.core.tokens import TokenGrid
from cam_callback.methods.settings import CAMSettings

TOKEN_DEFAULT = "gradient_rollout"
"""What ``method="auto"`` runs at a Vision Transformer's default layer (docs/methods.md,
``benchmarks/bench_vit_defaults.py``: Grad-CAM and its family give all-zero maps for a
third to four fifths of the probes there, before and during training; gradient rollout
for none, and it explains the requested class)."""


def default_method(calls: list[LayerCall], tokens: TokenGrid | None, layer: Any) -> tuple[str, str]:
    """``(method, why)``: what ``method="auto"`` runs.

    Gradient rollout (:data:`TOKEN_DEFAULT`) where the default layer (``layer`` is
    ``None``) outputs tokens and every block's ``MultiHeadAttention`` can be read,
    all over one token count; Grad-CAM otherwise (a spatial layer, a token layer the
    user named, a token model whose attention cannot be read).

    Example:
        >>> default_method([], None, None)[0]
        'gradcam'
    """
    if tokens is None:
        return "gradcam", ""
    if layer is not None:
        return "gradcam", "default method Grad-CAM at the token layer named"
    try:
        found = check_attention_calls(calls, TOKEN_DEFAULT)
    except ValueError:
        return "gradcam", (
            "default method Grad-CAM: the model's attention cannot be read (no plain "
            "keras.layers.MultiHeadAttention), so gradient rollout cannot run"
        )
    if len({attention_shape(c)[1] for c in found}) != 1:
        return "gradcam", (
            "default method Grad-CAM: the attention layers see different token counts, "
            "which a rollout cannot multiply"
        )
    return TOKEN_DEFAULT, (
        "default method gradient_rollout (Chefer et al. 2021): at a ViT's default layer "
        "Grad-CAM's maps are all zero for many probes, before and during training; gradient "
        "rollout's are not, and they explain the requested class (docs/methods.md)"
    )


def resolve(
    model: keras.Model, images: Any, spec: Any, settings: CAMSettings
) -> tuple[np.ndarray, Any, Any, str, Any, Any]:
    """Prepares the images and inspects the model for ``spec`` as ``settings`` say.

    Returns ``(images, model info, resolved head, layer path, layer, token grid)``
    (the grid is ``None`` unless the layer outputs ``[batch, tokens, dim]``); runs
    the entry's own layer check. Shared by :func:`compute` and ``inspect_model``.

    Example:
        >>> x, info, head, path, layer, tokens = resolve(model, x, REGISTRY["gradcam"],
        ...                                              CAMSettings())  # doctest: +SKIP
    """
    s = settings
    x = prepare_images(model, images)
    # A method that always explains the logit reads the head as a logit head.
    asked = "logit" if spec.explains == "logit" else s.score
    info, used, path, target_layer = inspect(
        model, x, s.layer, spec.explains_layer, s.output, asked, s.head,
        grid=s.grid, prefix_tokens=s.prefix_tokens,
    )  # fmt: skip
    if spec.check is not None:
        spec.check(info.calls, target_layer, path)
    tokens = explained_tokens(model, info.calls, x, target_layer, grid=s.grid,
                              prefix_tokens=s.prefix_tokens)  # fmt: skip
    return x, info, used, path, target_layer, tokens
