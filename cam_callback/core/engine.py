"""The compiled engine: one hooked forward (and gradient) per batch, traced once.

Compiled functions are cached per model (weakly: a deleted model frees them) and
per key, so each (model, layer, method, head, input signature) traces once. Each
returns **named outputs** (:data:`~cam_callback.backends.Outputs`): ``"maps"``,
``"probabilities"``, ``"targets"`` and whatever else its finish names, one row per
image, so nothing is packed into one tensor to be sliced apart later.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from cam_callback import backends
from cam_callback.backends import CamFunction, Outputs, Program
from cam_callback.core import layers as _layers
from cam_callback.core.heads import Head, head_scores, logit_hooks
from cam_callback.core.inspection import ModelInfo, model_info, pick_output
from cam_callback.core.results import CAMError
from cam_callback.core.tokens import TokenGrid

Finish = Callable[[Any, Any, dict[str, Any]], Mapping[str, Any]]
"""``finish(source, grads, extras) -> named outputs``, in ``keras.ops``."""
Body = Callable[[Any, keras.Model, Any], Mapping[str, Any]]
"""``body(call, model, images) -> named outputs``: a forward-only compiled function."""


@dataclass
class Engine:
    """A compiled function and the backend errors it may raise.

    Attributes:
        fn: The compiled function: ``fn(images, targets) -> (outputs, connected)``
            (:data:`~cam_callback.backends.CamFunction`), or ``fn(images) -> outputs``
            for a forward-only one.
        errors: Exception types of the backend's own failures (wrapped as ``CAMError``).
    """

    fn: Callable[..., Any]
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


def build_cam_function(
    model: keras.Model,
    info: ModelInfo,
    target_layer: keras.layers.Layer | None,
    x: np.ndarray,
    forward: Callable[..., tuple[Any, Any, dict[str, Any]]],
    finish: Finish,
    tokens: TokenGrid | None = None,
) -> CamFunction:
    """The backend's compiled ``fn(images, targets) -> (outputs, connected)``.

    Differentiates by ``target_layer``'s output (its patch grid when ``tokens`` is
    given), or by the input when it is ``None``; ``finish(source, grads, extras)``
    names the outputs. Shared by the fused methods and the context's raw gradients.

    Example:
        >>> fn = build_cam_function(model, info, layer, x, forward, finish)  # doctest: +SKIP
        >>> outputs, connected = fn(x, np.full(len(x), -1, np.int32))  # doctest: +SKIP
    """
    if target_layer is None:
        source_shape = tuple(x.shape[1:])
    else:
        out_shape = next(c.shape for c in info.calls if c.layer is target_layer)
        source_shape = tuple(out_shape[1:])
        if tokens is not None:
            source_shape = (tokens.height, tokens.width, out_shape[-1])
    program = Program(
        forward,
        finish,
        wrt_input=target_layer is None,
        spec=(tuple(x.shape[1:]), x.dtype.name),
        source_shape=source_shape,
    )
    return compile_program(model, program)


def compile_program(model: keras.Model, program: Program) -> CamFunction:
    """The active backend's ``cam_function`` for ``program``, its traces counted.

    Example:
        >>> fn = compile_program(model, program)  # doctest: +SKIP
    """
    backend = backends.get()
    # The engine is cached on the model: a weak reference keeps no cycle through it.
    fn = backend.cam_function(weakref.ref(model), program)
    if backend.EAGER:
        count_trace(model)  # built once; runs eagerly
    return fn


def run_engine(
    engine: Engine,
    x: np.ndarray,
    targets: np.ndarray,
    batch_size: int,
    *,
    failed: str,
    disconnected: str,
) -> Outputs:
    """``engine.fn(images, targets)`` chunk by chunk, its named outputs joined.

    A backend failure is re-raised as a ``CAMError`` starting with ``failed`` and
    naming the input shape; ``disconnected`` is the ValueError's message where the
    score does not depend on what is differentiated.

    Example:
        >>> out = run_engine(engine, x, t, 32, failed="computing gradcam maps failed",
        ...                  disconnected="...")  # doctest: +SKIP
        >>> out["maps"].shape  # doctest: +SKIP
        (8, 6, 6)
    """
    parts: list[Outputs] = []
    for chunk, chunk_targets, n in chunks(x, targets, batch_size=batch_size):
        try:
            out, connected = engine.fn(chunk, chunk_targets)
        except engine.errors as exc:  # only the backend's own failures get our context
            raise CAMError(f"{failed} on input of shape {(n, *x.shape[1:])}: {exc}") from exc
        if not connected:
            raise ValueError(disconnected)
        parts.append({k: v[:n] for k, v in out.items()})
    return joined(parts)


def joined(parts: list[Outputs]) -> Outputs:
    """The chunks' named outputs, each concatenated along the batch.

    Example:
        >>> joined([{"maps": np.zeros((2, 1))}, {"maps": np.ones((1, 1))}])["maps"].shape
        (3, 1)
    """
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}


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


def compile_forward(
    model: keras.Model, x: np.ndarray, body: Body
) -> Callable[[np.ndarray], Outputs]:
    """``body(call, model, images)`` compiled once for any batch size; its traces counted.

    ``call(model, images)`` runs the model in inference on the active backend. The
    model is held weakly: the function is cached on it, so a strong reference
    would keep both alive forever.

    Example:
        >>> fn = compile_forward(model, x, lambda call, m, b: {"out": call(m, b)})
        ... # doctest: +SKIP
    """
    backend = backends.get()

    def counted(call: Any, m: keras.Model, images: Any) -> Mapping[str, Any]:
        if not backend.EAGER:
            count_trace(m)
        return body(call, m, images)

    fn = backend.forward_function(
        weakref.ref(model), counted, spec=(tuple(x.shape[1:]), x.dtype.name)
    )
    if backend.EAGER:
        count_trace(model)
    return fn


def cached_function(
    model: keras.Model, key: tuple, x: np.ndarray, body: Body
) -> Callable[[np.ndarray], Outputs]:
    """:func:`compile_forward`'s function, cached once per model and key.

    Example:
        >>> fn = cached_function(model, ("mine",), x, body)  # doctest: +SKIP
    """
    errors = backends.get().ERRORS
    return cached_engine(model, key, lambda: Engine(compile_forward(model, x, body), errors)).fn


def chunks(
    x: np.ndarray, targets: np.ndarray, *, batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
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


def in_chunks(fn: Callable[[np.ndarray], Outputs], x: np.ndarray, batch_size: int) -> Outputs:
    """Calls a compiled forward-only function on ``batch_size`` images at a time.

    Example:
        >>> in_chunks(fn, x, 32)["probabilities"].shape  # doctest: +SKIP
        (8, 10)
    """
    dummy = np.zeros(len(x), np.int32)
    return joined([
        {k: v[:n] for k, v in fn(chunk).items()}
        for chunk, _, n in chunks(x, dummy, batch_size=batch_size)
    ])  # fmt: skip


def probabilities(model: keras.Model, head: Head, x: np.ndarray, batch_size: int) -> np.ndarray:
    """The selected head's probabilities as float32 ``[N, C]`` (``[1 - p, p]`` for binary)."""
    # Probabilities computed from a hooked logit need the hook in this forward too.
    calls = model_info(model, x).calls if head.squash and head.hook else []

    def body(call: Any, m: keras.Model, images: Any) -> dict[str, Any]:
        store: dict[str, Any] = {}
        with _layers.intercepted(logit_hooks(calls, head, store) if calls else {}):
            outputs = pick_output(call(m, images), head.key)
        return {"probabilities": head_scores(outputs, store.get("logits"), head)[0]}

    forward = cached_function(model, ("forward", head, x.shape[1:], x.dtype.str), x, body)
    return in_chunks(forward, x, batch_size)["probabilities"]
