"""One resolve step for every method: the score, the images, the layer and its token grid.

Shared by :func:`cam_callback.methods.core.compute` and ``inspect_model``, so both
run the same checks before any map.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from cam_callback.core.inspection import check_score, inspect, prepare_images
from cam_callback.core.token_layers import explained_tokens


def resolve(
    model: keras.Model,
    images: Any,
    spec: Any,
    layer: Any,
    output: Any,
    score: str,
    head: str,
    *,
    grid: tuple[int, int] | None = None,
    prefix_tokens: int | None = None,
) -> tuple[np.ndarray, Any, Any, str, Any, Any]:
    """Checks ``score``, prepares the images and inspects the model for ``spec``.

    Returns ``(images, model info, resolved head, layer path, layer, token grid)``
    (the grid is ``None`` unless the layer outputs ``[batch, tokens, dim]``); runs
    the entry's own layer check. Shared by :func:`compute` and ``inspect_model``.

    Example:
        >>> x, info, head, path, layer, tokens = resolve(model, x, REGISTRY["gradcam"], None,
        ...                                              None, "logit", "auto")  # doctest: +SKIP
    """
    check_score(score)
    x = prepare_images(model, images)
    # A method that always explains the logit reads the head as a logit head.
    asked = "logit" if spec.explains == "logit" else score
    info, used, path, target_layer = inspect(
        model, x, layer, spec.explains_layer, output, asked, head,
        grid=grid, prefix_tokens=prefix_tokens,
    )  # fmt: skip
    if spec.check is not None:
        spec.check(info.calls, target_layer, path)
    tokens = explained_tokens(model, info.calls, x, target_layer, grid=grid,
                              prefix_tokens=prefix_tokens)  # fmt: skip
    return x, info, used, path, target_layer, tokens
