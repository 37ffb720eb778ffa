"""The one compiled call per batch over every attention matrix, and, if asked, its gradient.

Every ``keras.layers.MultiHeadAttention`` call's attention is read through
:func:`~cam_callback.core.attention.captured_attention` and handed by name to a
finish in ``keras.ops`` (a rollout), inside the compiled call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from itertools import pairwise
from typing import Any

import keras
import numpy as np

from cam_callback import backends
from cam_callback.backends import CamFunction, Outputs, Program
from cam_callback.core.attention import attention_shape, captured_attention
from cam_callback.core.engine import Engine, compile_forward, compile_program
from cam_callback.core.forward import hooked_forward
from cam_callback.core.heads import Head
from cam_callback.core.inspection import ModelInfo
from cam_callback.core.layers import LayerCall

AttentionFinish = Callable[[dict[str, Any]], Mapping[str, Any]]
"""``finish(named) -> outputs``: ``named`` holds ``"attention"`` (and, with gradients,
``"attention_gradients"``), each a list of ``[B, heads, T, T]`` in call order, plus
``"probabilities"`` and ``"targets"``."""


def attention_engine(
    model: keras.Model,
    x: np.ndarray,
    info: ModelInfo,
    head: Head,
    calls: Sequence[LayerCall],
    finish: AttentionFinish,
    *,
    gradients: bool,
) -> Engine:
    """One compiled call per batch over every attention: ``fn(images, targets) -> (outputs,
    connected)``.

    ``finish`` gets every call's attention ``A`` (and, with ``gradients``,
    ``d score / d A`` for the explained score of ``targets``, the predicted class
    where ``-1``) by name, in ``keras.ops``, and names its outputs; the engine adds
    ``"probabilities"`` and ``"targets"``. Without ``gradients`` the call is a
    forward only. ``connected`` is False where the score does not depend on the
    attention.

    Example:
        >>> engine = attention_engine(model, x, info, head, calls, finish, gradients=True)
        ... # doctest: +SKIP
        >>> outputs, ok = engine.fn(x, np.full(len(x), -1, np.int32))  # doctest: +SKIP
    """
    hooked = functools.partial(hooked_forward, info=info, head=head, target_layer=None)
    if gradients:
        fn = _with_gradients(model, x, calls, hooked, finish)
    else:
        fn = _forward_only(model, x, [c.layer for c in calls], hooked, finish)
    return Engine(fn=fn, errors=backends.get().ERRORS)


def _forward_only(
    model: keras.Model,
    x: np.ndarray,
    layers: list[Any],
    hooked: Callable[..., tuple],
    finish: AttentionFinish,
) -> CamFunction:
    def body(call: Any, m: keras.Model, batch: Any) -> dict[str, Any]:
        seen: list[Any] = []

        def sink(i: int, a: Any, query: Any) -> Any:
            seen.append(a)
            return a

        unset = -keras.ops.ones((keras.ops.shape(batch)[0],), "int32")  # picked outside
        with captured_attention(layers, sink):
            _, probs, _, _ = hooked(call, m, batch, unset, _same, count=False)
        return {**finish({"attention": seen, "probabilities": probs}), "probabilities": probs}

    forward_only = compile_forward(model, x, body)

    def run(images: np.ndarray, targets: np.ndarray) -> tuple[Outputs, bool]:
        out = forward_only(images)
        out["targets"] = np.where(targets < 0, out["probabilities"].argmax(1), targets)
        return out, True

    return run


def _with_gradients(
    model: keras.Model,
    x: np.ndarray,
    calls: Sequence[LayerCall],
    hooked: Callable[..., tuple],
    finish: AttentionFinish,
) -> CamFunction:
    shapes = [attention_shape(c) for c in calls]
    sizes = [int(np.prod(s)) for s in shapes]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    layers = [c.layer for c in calls]
    ops = keras.ops
    count = not backends.get().EAGER

    def forward(call: Any, m: keras.Model, images: Any, targets: Any, capture: Any) -> tuple:
        held: dict[str, Any] = {}
        seen: list[Any] = []

        def sink(i: int, a: Any, query: Any) -> Any:
            if i == 0:
                # One zero [B, sum of sizes] to differentiate by, added to every block's
                # attention. Tied to the query because TensorFlow's tape only follows
                # tensors derived from watched ones; the tie is exactly zero.
                tie = ops.mean(ops.cast(query, "float32"), axis=(1, 2, 3))[:, None]
                tie = ops.where(ops.isfinite(tie), tie, ops.zeros_like(tie)) * 0.0
                held["zero"] = capture(tie + ops.zeros((1, offsets[-1]), "float32"))
            seen.append(ops.cast(a, "float32"))
            part = held["zero"][:, offsets[i] : offsets[i + 1]]
            return a + ops.cast(ops.reshape(part, (-1, *shapes[i])), a.dtype)

        with captured_attention(layers, sink):
            total, probs, chosen, _ = hooked(call, m, images, targets, capture, count=count)
        # Only the zero is differentiated; the attention itself is a named extra.
        return total, held["zero"], {"attention": seen, "probabilities": probs, "targets": chosen}

    def finish_all(source: Any, grads: Any, extras: dict[str, Any]) -> dict[str, Any]:
        g = [
            ops.reshape(ops.cast(grads[:, a:b], "float32"), (-1, *s))
            for (a, b), s in zip(pairwise(offsets), shapes, strict=True)
        ]
        named = {**extras, "attention_gradients": g}
        return {**finish(named), "probabilities": extras["probabilities"],
                "targets": ops.cast(extras["targets"], "int32")}  # fmt: skip

    spec = (tuple(x.shape[1:]), x.dtype.name)
    program = Program(forward, finish_all, wrt_input=False, spec=spec, source_shape=(offsets[-1],))
    return compile_program(model, program)


def _same(out: Any) -> Any:
    return out
