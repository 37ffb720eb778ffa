"""The fused path: a method written in ``keras.ops`` runs inside the one compiled call per batch.

A method registered with ``fused=True`` is the same ``fn(ctx, **options)`` as every
other; here ``ctx`` is a :class:`CompiledContext`, whose primitives are the traced
tensors of the compiled call itself: the explained layer's activations and their
gradient (or the input's), or every block's attention (and its gradient). The
forward, the gradient and the method trace into one function, so such a method
costs about what Grad-CAM costs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import keras
import numpy as np

from cam_callback import backends
from cam_callback.backends import Outputs
from cam_callback.core.attention import attention_grid, check_attention_calls
from cam_callback.core.attention_call import attention_engine
from cam_callback.core.engine import (
    Engine,
    build_cam_function,
    cached_engine,
    run_engine,
)
from cam_callback.core.forward import gradient_forward
from cam_callback.core.heads import Head
from cam_callback.core.inspection import ModelInfo
from cam_callback.core.tokens import TokenGrid

FUSABLE: tuple[str, ...] = (
    "layer_gradients",
    "input_gradients",
    "attention",
    "attention_gradients",
)
"""What a fused method may need: what the compiled call computes on the way."""

_ELSEWHERE = frozenset({
    "model", "images", "predict", "scores", "predict_from_layer", "scores_from_layer", "info",
    "head", "layer", "target_layer", "output", "batch_size",
})  # fmt: skip


WRT: tuple[str, ...] = ("layer", "input")
"""What ``ctx.gradients(wrt=...)`` differentiates with respect to."""


def check_wrt(wrt: Any) -> str:
    """``wrt`` checked against :data:`WRT` (a typo would silently read the layer).

    Example:
        >>> check_wrt("input")
        'input'
    """
    if wrt not in WRT:
        raise ValueError(f"`wrt` must be one of {WRT}. Received: wrt={wrt!r}")
    return str(wrt)



def option_key(name: str, value: Any) -> Any:
    """What a compiled call is cached by for one option: the value itself where it is
    hashable, an array by its dtype, shape and bytes (a repr would cut a long array).

    Example:
        >>> option_key("k", 3), option_key("w", np.zeros(2))[:2]
        (('int', 3), ('<f8', (2,)))
    """
    if isinstance(value, np.ndarray):
        return (value.dtype.str, value.shape, hashlib.sha256(value.tobytes()).hexdigest())
    try:
        hash(value)
    except TypeError:
        raise TypeError(
            f"`method_options` of a fused method must be hashable values or numpy arrays "
            f"(the compiled call is cached by them). Received: {name}={value!r}"
        ) from None
    return (type(value).__qualname__, value)  # 1, 1.0 and True are equal, not the same option

class CompiledContext:
    """A method's context inside the compiled call: ``keras.ops`` tensors, one batch.

    It offers the primitives of :class:`~cam_callback.methods.context.MethodContext`
    that the registration's ``needs`` asked the call to compute; forward passes on
    other inputs (``predict``, ``scores``, ...) cannot run inside it.

    Attributes:
        needs: What the registration asked for, one of :data:`FUSABLE`.
        tokens: The patch grid maps are laid out on (the attention's, for the
            attention methods), or ``None`` on a spatial layer.
        score: The explained score, ``"logit"`` or ``"probability"``.
        probabilities: The head's probabilities ``[B, C]``.
        targets: The class explained per image ``[B]``.

    Example:
        >>> a = np.ones((1, 2, 2, 3))
        >>> ctx = CompiledContext("layer_gradients", {"source": a, "gradients": a})
        >>> tuple(ctx.activations().shape)
        (1, 2, 2, 3)
    """

    def __init__(
        self,
        needs: str,
        named: Mapping[str, Any],
        *,
        tokens: TokenGrid | None = None,
        score: str = "logit",
    ) -> None:
        self.needs = needs
        self.tokens = tokens
        self.score = score
        self.probabilities = named.get("probabilities")
        self.targets = named.get("targets")
        self._named = named

    def activations(self) -> Any:
        """The explained layer's output ``[B, h, w, K]`` (``needs="layer_gradients"``)."""
        return self._named[self._have("source", "layer_gradients", "activations")]

    def gradients(self, *, wrt: str = "layer") -> tuple[Any, Any]:
        """``(source, d score / d source)``; ``wrt`` must be what the method registered."""
        need = "input_gradients" if check_wrt(wrt) == "input" else "layer_gradients"
        self._have("source", need, f"gradients(wrt={wrt!r})")
        return self._named["source"], self._named["gradients"]

    def attention(self) -> list[Any]:
        """Every self-attention call's ``[B, heads, T, T]``, in call order."""
        return self._named[self._have("attention", "attention*", "attention")]

    def attention_gradients(self) -> tuple[list[Any], list[Any]]:
        """``(attention, d score / d attention)``, lists over the calls."""
        key = self._have("attention_gradients", "attention_gradients", "attention_gradients")
        return self._named["attention"], self._named[key]

    def _have(self, key: str, need: str, what: str) -> str:
        ok = self.needs.startswith(need[:-1]) if need.endswith("*") else self.needs == need
        if not ok or key not in self._named:
            raise ValueError(
                f"a fused method registered with needs={self.needs!r} cannot read ctx.{what} "
                f"inside the compiled call; register it with needs={need.rstrip('*')!r}. "
                f"Received: needs={self.needs!r}"
            )
        return key

    def __getattr__(self, name: str) -> Any:
        if name not in _ELSEWHERE:
            raise AttributeError(name)
        raise ValueError(
            f"ctx.{name} runs the model on other inputs, which a fused method (keras.ops "
            f"inside the one compiled call) cannot; register the method with fused=False "
            f"to get the full context. Received: ctx.{name}"
        )


def run_fused(  # noqa: PLR0913
    model: keras.Model,
    x: np.ndarray,
    targets: np.ndarray,
    name: str,
    fn: Callable[..., Any],
    needs: str,
    options: Mapping[str, Any],
    *,
    info: ModelInfo,
    head: Head,
    path: str,
    layer: keras.layers.Layer | None,
    output: Any,
    batch_size: int,
    tokens: TokenGrid | None = None,
) -> Outputs:
    """``fn(ctx, **options)`` in the compiled call, chunk by chunk: named outputs.

    ``"maps"``, ``"probabilities"``, ``"targets"``; ``needs`` (one of
    :data:`FUSABLE`) says what the call computes for ``ctx``. The compiled function
    is cached per (layer, method, options, head, token grid, input signature), so it
    is traced once.

    Example:
        >>> out = run_fused(model, x, t, "gradcam", gradcam, "layer_gradients", {}, info=info,
        ...                 head=head, path="conv", layer=layer, output=None, batch_size=32)
        ... # doctest: +SKIP
        >>> out["maps"].shape  # doctest: +SKIP
        (8, 6, 6)
    """
    # The function itself is in the key: a method registered again under its name retraces.
    frozen = (fn, tuple(sorted((k, option_key(k, v)) for k, v in options.items())))
    targets = targets.astype(np.int32)
    errors = backends.get().ERRORS

    def maps(named: Mapping[str, Any], grid: TokenGrid | None) -> Any:
        ctx = CompiledContext(needs, named, tokens=grid, score=head.score)
        return keras.ops.cast(fn(ctx, **options), "float32")

    key: tuple[Any, ...]
    if needs.startswith("attention"):
        calls = check_attention_calls(info.calls, name)
        grid = attention_grid(model, x, tokens, calls)
        key = (name, frozen, grid, head, x.shape[1:], x.dtype.str)
        engine = cached_engine(model, key, lambda: attention_engine(
            model, x, info, head, calls, lambda named: {"maps": maps(named, grid)},
            gradients=needs == "attention_gradients",
        ))  # fmt: skip
        failed = f"computing {name} maps failed"
        disconnected = (
            f"`method` {name!r}: the explained score does not depend on the attention (no "
            f"gradient reaches it), so the map cannot be computed. Received: method={name!r}"
        )
    else:
        wrt = layer if needs == "layer_gradients" else None
        key = (path, name, frozen, head, tokens, x.shape[1:], x.dtype.str)
        finish = _gradient_finish(maps, tokens)
        engine = cached_engine(model, key, lambda: Engine(fn=build_cam_function(
            model, info, wrt, x, gradient_forward(info=info, head=head, target_layer=wrt,
                                                  tokens=tokens), finish, tokens,
        ), errors=errors))  # fmt: skip
        failed = f"computing {name} maps failed for layer {path or '(input)'!r}"
        disconnected = (
            f"`layer` {path!r} does not feed the explained output, so its gradient is "
            f"undefined. Received: layer={path!r}, output={output!r}"
        )
    return run_engine(engine, x, targets, batch_size, failed=failed, disconnected=disconnected)


def _gradient_finish(
    maps: Callable[[Mapping[str, Any], TokenGrid | None], Any], tokens: TokenGrid | None
) -> Callable[[Any, Any, dict[str, Any]], dict[str, Any]]:
    def finish(source: Any, grads: Any, extras: dict[str, Any]) -> dict[str, Any]:
        ops = keras.ops
        named = {**extras, "source": ops.cast(source, "float32"),
                 "gradients": ops.cast(grads, "float32")}  # fmt: skip
        return {"maps": maps(named, tokens), "probabilities": extras["probabilities"],
                "targets": ops.cast(extras["targets"], "int32")}  # fmt: skip

    return finish
