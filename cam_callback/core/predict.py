"""Forward passes for callers: probabilities, explained scores and layer activations.

Each runs through one cached compiled forward (:mod:`cam_callback.core.engine`).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from cam_callback import backends
from cam_callback.core import layers as _layers
from cam_callback.core.engine import cached_function, in_chunks, probabilities
from cam_callback.core.heads import check_head, head_scores, logit_hooks
from cam_callback.core.inspection import (
    check_score,
    inspect,
    model_info,
    pick_output,
    prepare_images,
)
from cam_callback.core.results import CAMError


def predict_probabilities(
    model: keras.Model,
    images: Any,
    *,
    output: int | str | None = None,
    batch_size: int = 64,
    head: str = "auto",
) -> np.ndarray:
    """The model's probabilities for ``images`` through one cached compiled forward, ``[N, C]``.

    What ``model.predict`` returns for a softmax or sigmoid model; the softmax
    (sigmoid) of a linear output, read as ``head`` says (see :func:`compute_cams`);
    ``[1 - p, p]`` for one sigmoid unit.

    Example:
        >>> predict_probabilities(model, x).shape  # doctest: +SKIP
        (100, 10)
    """
    check_head(head)
    x = prepare_images(model, images)
    _, used, _, _ = inspect(model, x, None, False, output, "probability", head)
    return probabilities(model, used, x, batch_size)


def layer_activations(
    model: keras.Model,
    images: Any,
    layer: str | keras.layers.Layer | None = None,
    *,
    batch_size: int = 32,
) -> np.ndarray:
    """A layer's output for ``images``, found as in :func:`compute_cams` (nested paths too).

    Args:
        model: The model.
        images: ``[N, H, W, C]`` in the model's input space.
        layer: A name, an ``"outer/inner"`` path, a layer, or ``None`` for the last
            layer with a spatial output.
        batch_size: Images per compiled call.

    Returns:
        float32 activations, ``[N, h, w, channels]`` for a spatial layer.

    Example:
        >>> path = "mobilenetv2_1.00_96/block_3_expand"
        >>> acts = layer_activations(model, x[:4], path)  # doctest: +SKIP
        >>> frames.activation_grid(acts[0])  # doctest: +SKIP
    """
    x = prepare_images(model, images)
    info = model_info(model, x)
    path, target = _layers.resolve_layer(model, layer, info.calls)

    def body(call: Any, m: keras.Model, images: Any) -> dict[str, Any]:
        seen: list[Any] = []

        def record(call: Any, args: tuple, kwargs: dict) -> Any:
            out = call(*args, **kwargs)
            seen.append(out)
            return out

        with _layers.intercepted({target: record}):
            call(m, images)
        return {"activations": keras.ops.cast(seen[-1], "float32")}

    fn = cached_function(model, ("activations", path, x.shape[1:], x.dtype.str), x, body)
    try:
        return in_chunks(fn, x, batch_size)["activations"]
    except backends.get().ERRORS as exc:
        raise CAMError(
            f"reading activations of layer {path!r} failed on input of shape {x.shape}: {exc}"
        ) from exc


def predict_scores(
    model: keras.Model,
    images: Any,
    *,
    score: str = "logit",
    output: int | str | None = None,
    batch_size: int = 64,
    head: str = "auto",
) -> tuple[np.ndarray, np.ndarray, str]:
    """``(probabilities, scores, score used)``: the head's ``[N, C]`` outputs, one forward.

    ``scores`` are what :func:`compute_cams` explains for ``score`` (see
    :func:`head_scores`); the third item is the score really used (``"probability"``
    where no logit can be read). Example: ``predict_scores(model, x)[1].shape == (N, C)``.
    """
    check_score(score)
    x = prepare_images(model, images)
    info, used, _, _ = inspect(model, x, None, False, output, score, head)

    def body(call: Any, m: keras.Model, batch: Any) -> dict[str, Any]:
        store: dict[str, Any] = {}  # the logit hooks of hooked_forward, without a gradient
        with _layers.intercepted(logit_hooks(info.calls, used, store)):
            out = pick_output(call(m, batch), used.key)
        probs, scores = head_scores(out, store.get("logits"), used)
        return {"probabilities": probs, "scores": scores}

    key = ("scores", used, x.shape[1:], x.dtype.str)
    out = in_chunks(cached_function(model, key, x, body), x, batch_size)
    return out["probabilities"], out["scores"], used.score
