"""The fused path: a method's ``keras.ops`` finish inside the one compiled call per batch.

The forward, the gradient and the finish (Grad-CAM's weighting, say) trace into one
function, so a fused method costs about what Grad-CAM costs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from cam_callback import backends
from cam_callback.core.engine import (
    Engine,
    build_cam_function,
    cached_engine,
    chunks,
    hooked_forward,
)
from cam_callback.core.heads import Head
from cam_callback.core.inspection import ModelInfo
from cam_callback.core.results import CAMError
from cam_callback.core.tokens import TokenGrid


def run_fused(  # noqa: PLR0913
    model: keras.Model,
    x: np.ndarray,
    targets: np.ndarray,
    name: str,
    finish_fn: Callable[[Any, Any], Any],
    info: ModelInfo,
    used: Head,
    path: str,
    layer: keras.layers.Layer | None,
    output: Any,
    batch_size: int,
    tokens: TokenGrid | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(maps, probs, chosen)``: ``finish_fn(A, G)`` run in the compiled call, chunk by chunk.

    The compiled function is cached per (layer, method, head, token grid, input
    signature), so it is traced once. ``layer=None`` differentiates by the input;
    a token layer (``tokens``) is explained on its patch grid.

    Example:
        >>> maps, probs, chosen = run_fused(model, x, t, "gradcam", gradcam, ...)  # doctest: +SKIP
    """
    key = (path, name, used, tokens, x.shape[1:], x.dtype.str)
    engine = cached_engine(
        model, key, lambda: _fused_engine(model, info, layer, finish_fn, used, x, tokens)
    )
    maps, probs, chosen = [], [], []
    for chunk, chunk_targets, n in chunks(x, targets, batch_size=batch_size):
        try:
            m, p, t, connected = engine.fn(chunk, chunk_targets)
        except engine.errors as exc:  # only the backend's own failures get our context
            raise CAMError(
                f"computing {name} maps failed for layer {path or '(input)'!r} on input of "
                f"shape {(n, *x.shape[1:])}: {exc}"
            ) from exc
        if not connected:
            raise ValueError(
                f"`layer` {path!r} does not feed the explained output, so its gradient is "
                f"undefined. Received: layer={path!r}, output={output!r}"
            )
        maps.append(m[:n])
        probs.append(p[:n])
        chosen.append(t[:n])
    return np.concatenate(maps), np.concatenate(probs), np.concatenate(chosen)


def _fused_engine(  # noqa: PLR0913
    model: keras.Model,
    info: ModelInfo,
    layer: Any,
    finish_fn: Callable,
    head: Head,
    x: np.ndarray,
    tokens: TokenGrid | None,
) -> Engine:
    backend = backends.get()

    def forward(call: Any, m: keras.Model, images: Any, targets: Any, capture: Any) -> tuple:
        return hooked_forward(call, m, images, targets, capture, info=info, head=head,
                              target_layer=layer, count=not backend.EAGER,
                              tokens=tokens)  # fmt: skip

    def finish(source: Any, grads: Any, probs: Any, chosen: Any) -> tuple[Any, Any, Any]:
        a = keras.ops.cast(source, "float32")
        g = keras.ops.cast(grads, "float32")
        return keras.ops.cast(finish_fn(a, g), "float32"), probs, keras.ops.cast(chosen, "int32")

    return Engine(fn=build_cam_function(model, info, layer, x, forward, finish, tokens),
                  errors=backend.ERRORS)  # fmt: skip
