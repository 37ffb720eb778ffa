"""The hooked forward pass every compiled CAM call runs.

The model runs with the explained layer's output captured (a token layer's as its
patch grid) and the head's logit hooked, and the explained score is picked per
image; :mod:`cam_callback.core.engine` compiles it with its gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from cam_callback import backends
from cam_callback.core import layers as _layers
from cam_callback.core.engine import count_trace, pick_scores
from cam_callback.core.heads import Head, head_scores, logit_hooks
from cam_callback.core.inspection import ModelInfo, pick_output
from cam_callback.core.tokens import TokenGrid, grid_to_tokens, tokens_to_grid

Forward = Callable[..., tuple[Any, Any, dict[str, Any]]]
"""``forward(call, model, images, targets, capture) -> (total, activation, extras)``."""


def hooked_forward(
    call: Any,
    model: keras.Model,
    images: Any,
    targets: Any,
    capture: Any,
    *,
    info: ModelInfo,
    head: Head,
    target_layer: keras.layers.Layer | None,
    count: bool,
    tokens: TokenGrid | None = None,
) -> tuple[Any, Any, Any, Any]:
    """One forward pass with hooks: ``(summed score, probabilities, chosen, activation)``.

    Shared by every backend: ``call`` runs the model, ``capture`` sees the explained
    layer's output and returns what flows on (JAX adds a zero to differentiate by).
    A token layer's output (``tokens`` given) is captured as its ``[b, h, w, dim]``
    patch grid and rebuilt into tokens for the rest of the model, so the gradient
    and every method see a spatial map.
    """
    if count:
        count_trace(model)
    store: dict[str, Any] = {}
    hooks = logit_hooks(info.calls, head, store)
    activations: list[Any] = []
    if target_layer is not None:
        previous = hooks.get(target_layer)

        def record(c: Any, args: tuple, kwargs: dict) -> Any:
            out = previous(c, args, kwargs) if previous else c(*args, **kwargs)
            if tokens is None:
                out = capture(out)
                activations.append(out)
                return out
            grid = capture(tokens_to_grid(out, tokens))
            activations.append(grid)
            return grid_to_tokens(grid, out[:, : tokens.prefix], tokens)

        hooks[target_layer] = record
    with _layers.intercepted(hooks):
        outputs = pick_output(call(model, images), head.key)
    probs, scores = head_scores(outputs, store.get("logits"), head)
    chosen, total = pick_scores(probs, scores, targets)
    return total, probs, chosen, activations[0] if activations else None


def gradient_forward(
    *,
    info: ModelInfo,
    head: Head,
    target_layer: keras.layers.Layer | None,
    tokens: TokenGrid | None = None,
) -> Forward:
    """:func:`hooked_forward` as a :data:`Forward`: extras ``"probabilities"``, ``"targets"``.

    Example:
        >>> forward = gradient_forward(info=info, head=head, target_layer=layer)
        ... # doctest: +SKIP
    """
    count = not backends.get().EAGER

    def forward(call: Any, m: keras.Model, images: Any, targets: Any, capture: Any) -> tuple:
        total, probs, chosen, activation = hooked_forward(
            call, m, images, targets, capture, info=info, head=head, target_layer=target_layer,
            count=count, tokens=tokens,
        )  # fmt: skip
        return total, activation, {"probabilities": probs, "targets": chosen}

    return forward
