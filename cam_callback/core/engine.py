"""The compiled engine: one hooked forward (and gradient) per batch, traced once.

Compiled functions are cached per model (weakly: a deleted model frees them) and
per key, so each (model, layer, method, head, input signature) traces once.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from cam_callback import backends
from cam_callback.core import layers as _layers
from cam_callback.core.heads import Head, head_scores, logit_hooks
from cam_callback.core.inspection import ModelInfo, model_info, pick_output
from cam_callback.core.tokens import TokenGrid, grid_to_tokens, tokens_to_grid


@dataclass
class Engine:
    """A compiled function and the backend errors it may raise.

    Attributes:
        fn: The compiled function.
        errors: Exception types of the backend's own failures (wrapped as ``CAMError``).
    """

    fn: Any
    errors: tuple[type[BaseException], ...] = ()


ENGINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""``{model: {key: Engine}}``: every compiled function, per model."""
_TRACES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # all traces, ever


def count_trace(model: keras.Model | None) -> None:
    """Counts one trace of a compiled function for ``model`` (see :func:`trace_count`)."""
    if model is not None:
        _TRACES[model] = _TRACES.get(model, 0) + 1


def trace_count(model: keras.Model) -> int:
    """How many times compiled CAM functions were traced for ``model``.

    Example:
        >>> compute_cams(model, x); compute_cams(model, x)  # doctest: +SKIP
        >>> trace_count(model)  # doctest: +SKIP
        1
    """
    return _TRACES.get(model, 0)


def cached_engine(model: keras.Model, key: tuple, build: Callable[[], Engine]) -> Engine:
    """The engine cached on ``model`` under ``key``, built by ``build()`` the first time.

    Example:
        >>> engine = cached_engine(model, ("mine",), lambda: Engine(fn))  # doctest: +SKIP
    """
    engines = ENGINES.setdefault(model, {})
    engine = engines.get(key)
    if engine is None:
        engine = build()
        engines[key] = engine
    return engine


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


def build_cam_function(
    model: keras.Model,
    info: ModelInfo,
    target_layer: keras.layers.Layer | None,
    x: np.ndarray,
    forward: Any,
    finish: Any,
    tokens: TokenGrid | None = None,
) -> Any:
    """The backend's compiled ``fn(images, targets)`` for ``forward`` and ``finish``.

    Differentiates by ``target_layer``'s output (its patch grid when ``tokens`` is
    given), or by the input when it is ``None``. Shared by the built-in methods and
    the registry's raw-gradient methods.
    """
    backend = backends.get()
    if target_layer is None:
        source_shape = tuple(x.shape[1:])
    else:
        out_shape = next(c.output_shape for c in info.calls if c.layer is target_layer)
        source_shape = tuple(out_shape[1:])
        if tokens is not None:
            source_shape = (tokens.height, tokens.width, out_shape[-1])
    fn = backend.cam_function(
        weakref.ref(model),  # the engine is cached on the model: no cycle through it
        forward,
        finish,
        wrt_input=target_layer is None,
        spec=(tuple(x.shape[1:]), x.dtype.name),
        source_shape=source_shape,
    )
    if backend.EAGER:
        count_trace(model)  # built once; runs eagerly
    return fn


def pick_scores(probs: Any, scores: Any, targets: Any) -> tuple[Any, Any]:
    """The class explained per image (the argmax where ``targets < 0``) and the summed score.

    Images are independent, so the gradient of one sum serves every image.
    """
    ops = keras.ops
    predicted = ops.cast(ops.argmax(probs, axis=-1), "int32")
    chosen = ops.where(targets < 0, predicted, targets)
    # A mask, not take_along_axis: its gather gradient costs TensorFlow's trace ~0.1 s
    # of CPU (the start-up's one trace); where() passes no NaN from the other classes,
    # and the gradient is the same, 1 at each picked score.
    mask = ops.arange(ops.shape(scores)[-1], dtype="int32")[None, :] == chosen[:, None]
    return chosen, ops.sum(ops.where(mask, scores, ops.zeros_like(scores)))


def cached_function(model: keras.Model, key: tuple, x: np.ndarray, body: Any) -> Any:
    """``body(call, model, images)`` compiled once per model and key, for any batch size.

    ``call(model, images)`` runs the model in inference on the active backend. The
    model is held weakly: the function is cached on it, so a strong reference
    would keep both alive forever.
    """
    engines = ENGINES.setdefault(model, {})
    engine = engines.get(key)
    if engine is None:
        backend = backends.get()
        model_ref = weakref.ref(model)

        def counted(call: Any, m: keras.Model, images: Any) -> Any:
            if not backend.EAGER:
                count_trace(m)
            return body(call, m, images)

        fn = backend.forward_function(model_ref, counted, spec=(tuple(x.shape[1:]), x.dtype.name))
        if backend.EAGER:
            count_trace(model)
        engine = Engine(fn=fn, errors=backend.ERRORS)
        engines[key] = engine
    return engine.fn


def chunks(x: np.ndarray, targets: np.ndarray, *, batch_size: int) -> Any:
    """Yields ``(images, targets, n_real)`` chunks of ``batch_size``.

    Where a backend compiles one program per batch shape (JAX), each chunk's images
    (and targets, with -1) are zero-padded to one size, the smallest power of two
    that holds ``min(batch_size, N)``, so a short last chunk reuses the program.
    """
    size = batch_size
    if backends.get().PAD_BATCH:
        size = 1 << max(0, min(batch_size, len(x)) - 1).bit_length()
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size]
        if len(chunk) < size:
            chunk = np.concatenate([chunk, np.zeros((size - len(chunk), *x.shape[1:]), x.dtype)])
        t = targets[start : start + batch_size]
        n = len(t)
        if n < len(chunk):
            t = np.concatenate([t, np.full(len(chunk) - n, -1, t.dtype)])
        yield chunk, t, n


def in_chunks(fn: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Calls a compiled one-input function on ``batch_size`` images at a time."""
    dummy = np.zeros(len(x), np.int32)
    return np.concatenate(
        [fn(chunk)[:n] for chunk, _, n in chunks(x, dummy, batch_size=batch_size)]
    )


def probabilities(model: keras.Model, head: Head, x: np.ndarray, batch_size: int) -> np.ndarray:
    """The selected head's probabilities as float32 ``[N, C]`` (``[1 - p, p]`` for binary)."""
    # Probabilities computed from a hooked logit need the hook in this forward too.
    calls = model_info(model, x).calls if head.squash and head.hook else []

    def body(call: Any, m: keras.Model, images: Any) -> Any:
        store: dict[str, Any] = {}
        with _layers.intercepted(logit_hooks(calls, head, store) if calls else {}):
            outputs = pick_output(call(m, images), head.key)
        return head_scores(outputs, store.get("logits"), head)[0]

    forward = cached_function(model, ("forward", head, x.shape[1:], x.dtype.str), x, body)
    return in_chunks(forward, x, batch_size)
