"""The one dispatch and the one normalisation of every method.

:func:`compute` resolves the layer, head and score, runs the registry's entry
(:mod:`~cam_callback.methods.registry`) over its context, fused into the compiled
call or in numpy over a :class:`~cam_callback.methods.context.MethodContext`, and
normalises the maps once (:func:`normalize`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from cam_callback.core.results import CAMResult
from cam_callback.core.targets import prepare_targets
from cam_callback.methods.context import MethodContext
from cam_callback.methods.fused import run_fused
from cam_callback.methods.registry import AUTO, REGISTRY, Method, check_method
from cam_callback.methods.resolve import default_method, resolve
from cam_callback.methods.settings import CAMSettings


def normalize(maps: np.ndarray) -> np.ndarray:
    """ReLU, then each map divided by its own max (an all-zero map stays zero): float32.

    The one normalisation of every method, fused or not.

    Example:
        >>> normalize(np.array([[[-1.0, 2.0]]])).tolist()
        [[[0.0, 1.0]]]
    """
    maps = np.maximum(np.nan_to_num(np.asarray(maps, np.float64), nan=0.0), 0.0)
    peak = maps.reshape(len(maps), -1).max(1)[:, None, None] if maps.size else maps
    return np.where(peak > 0, maps / np.where(peak > 0, peak, 1.0), 0.0).astype(np.float32)


def _options(spec: Method, method_options: Any) -> dict[str, Any]:
    options = dict(spec.options)
    if method_options is not None and not isinstance(method_options, Mapping):
        raise TypeError(
            f"`method_options` must be a dict of {spec.name!r}'s options. "
            f"Received: method_options={method_options!r}"
        )
    for k, v in (method_options or {}).items():
        if k not in options:
            raise ValueError(
                f"`method_options` for {spec.name!r} takes {sorted(options) or 'no options'}. "
                f"Received: {k!r}"
            )
        options[k] = v
    return options


def compute(
    model: keras.Model, images: Any, settings: CAMSettings, *, target: Any = "predicted"
) -> CAMResult:
    """The one dispatch: checks, runs the entry over its context, normalises.

    A token layer is explained on its patch grid (``settings.grid``/``prefix_tokens``,
    see :func:`cam_callback.core.tokens.token_grid`).

    Example:
        >>> compute(model, x, CAMSettings(method="xgradcam")).heatmaps.shape  # doctest: +SKIP
        (8, 6, 6)
    """
    method, head, output, batch_size = (
        settings.method, settings.head, settings.output, settings.batch_size
    )
    spec = check_method(method)
    x, info, used, path, target_layer, tokens = resolve(model, images, spec, settings)
    if method == AUTO:
        method = default_method(info.calls, tokens, settings.layer)[0]
        spec = REGISTRY[method]
    options = _options(spec, settings.method_options)
    targets = prepare_targets(target, len(x), used.n_classes)
    if spec.explains == "logit" and used.score != "logit":
        raise ValueError(
            f"`method` {method!r} explains the logit, which cannot be read from this head "
            f"(head {used.name!r}). Received: method={method!r}, head={head!r}"
        )
    explained = used.score if spec.explains == "score" else spec.explains
    if spec.fused:  # in the one compiled call per batch, over its traced tensors
        out = run_fused(model, x, targets, spec.name, spec.fn, spec.needs, options, info=info,
                        head=used, path=path, layer=target_layer, output=output,
                        batch_size=batch_size, tokens=tokens)  # fmt: skip
        maps = np.asarray(out["maps"], np.float64)
        probs, chosen = out["probabilities"], out["targets"]
    else:
        ctx = MethodContext(model, x, targets, info=info, head=used, layer=path,
                            target_layer=target_layer, output=output,
                            batch_size=batch_size, tokens=tokens)  # fmt: skip
        # A keras.ops method runs here too: its result may be a device tensor (torch on a GPU).
        maps = np.asarray(keras.ops.convert_to_numpy(spec.fn(ctx, **options)), np.float64)
        probs, chosen = ctx.probabilities, ctx.targets
    input_res = not spec.explains_layer or spec.input_maps
    want = (len(x), *(x.shape[1:3] if input_res else maps.shape[1:3]))
    if maps.ndim != 3 or maps.shape != want:
        raise ValueError(
            f"method {method!r} returned maps of shape {maps.shape}; expected [N, h, w] = "
            f"{want}. Received: method={method!r}"
        )
    return CAMResult(
        heatmaps=normalize(maps),
        probabilities=np.asarray(probs).astype(np.float32, copy=False),
        targets=np.asarray(chosen).astype(np.int64, copy=False),
        layer=path,
        method=method,
        head=used.name,
        score=explained,
    )
