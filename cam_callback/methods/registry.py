"""The one method registry: every method by name, with what it needs and explains.

Every method, the built-in Grad-CAM family and the rollouts too, is one function
``fn(ctx, **options) -> maps [N, h, w]`` over a context that offers what the
entry ``needs`` (activations, gradients, attention, forward passes), registered
as a :class:`Method` that also says what score it ``explains``. The engine
decides how it runs (:func:`cam_callback.methods.core.compute`): an entry written
in ``keras.ops`` that needs only what the compiled call computes (``fused=True``:
layer or input gradients, the attention) runs inside the one compiled call per
batch over a :class:`~cam_callback.methods.fused.CompiledContext`; any other over
a :class:`~cam_callback.methods.context.MethodContext` (numpy, forward passes on
any input). :func:`available_methods` lists the registry.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect as inspect_module
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cam_callback.core.attention import check_attention_calls
from cam_callback.core.inspection import SCORES
from cam_callback.core.layers import LayerCall
from cam_callback.methods.fused import FUSABLE

AUTO = "auto"
"""The default ``method``: ``TOKEN_DEFAULT`` (:mod:`~.resolve`) at a ViT's default layer, else
Grad-CAM."""

NEEDS: tuple[str, ...] = (
    "layer_gradients",
    "input_gradients",
    "activations",
    "forwards",
    "attention",
    "attention_gradients",
)
EXPLAINS: tuple[str, ...] = ("score", "logit", "probability", "none")


@dataclass(frozen=True)
class Method:
    """A registered method.

    Attributes:
        name: The name ``compute_cams(method=...)`` takes.
        fn: ``fn(ctx, **options) -> maps [N, h, w]`` (any scale; negatives are cut).
        needs: One of :data:`NEEDS`.
        explains_layer: Needs the explained layer (``True``) or explains the input.
        options: Default options, overridable by ``compute_cams(..., method_options=...)``.
        input_maps: Maps at the input's resolution although a layer is explained.
        explains: One of :data:`EXPLAINS`: ``"score"`` (the requested ``score``),
            ``"logit"``, ``"probability"`` or ``"none"`` (class-agnostic).
        fused: ``fn`` is written in ``keras.ops`` and runs inside the compiled call.
        check: ``check(calls, target_layer, path)`` raising a ValueError where the
            model does not suit the method (run by ``inspect_model`` too), or ``None``.
        builtin: Shipped with the package; cannot be replaced.
    """

    name: str
    fn: Callable[..., Any]
    needs: str
    explains_layer: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)
    input_maps: bool = False
    explains: str = "score"
    fused: bool = False
    check: Callable[..., None] | None = None
    builtin: bool = False


REGISTRY: dict[str, Method] = {}
"""Every method by name: :func:`available_methods` lists it."""


def register_method(
    name: str,
    fn: Callable[..., Any],
    *,
    needs: str,
    explains_layer: bool | None = None,
    options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    explains: str = "score",
    fused: bool = False,
) -> Method:
    """Adds a method by name, for ``compute_cams``, ``CAMTracker`` and ``evaluate``.

    A method is one function ``fn(ctx, **options)`` returning maps ``[N, h, w]``
    (any scale: negatives are cut and each map is divided by its max). ``ctx``
    offers ``activations()``, ``gradients(wrt="layer" | "input")``, ``attention()``,
    ``attention_gradients()``, ``scores()``, ``predict()`` and the rest of
    :class:`~cam_callback.methods.context.MethodContext`; ``needs`` says which the
    method reads, so the engine computes it and decides how to run ``fn``.

    Args:
        name: A new name (the built-ins cannot be replaced).
        fn: ``fn(ctx, **options) -> maps``.
        needs: One of :data:`NEEDS`: ``"activations"``, ``"layer_gradients"``,
            ``"input_gradients"``, ``"forwards"`` (``ctx.scores``/``ctx.predict`` on
            other inputs), ``"attention"`` or ``"attention_gradients"`` (every
            ``MultiHeadAttention``'s ``[N, heads, T, T]``, maps on its token grid).
        explains_layer: ``None``: ``True`` unless ``needs == "input_gradients"``.
        options: Default keyword options of ``fn``.
        overwrite: Replace a method registered earlier under ``name``.
        explains: What the maps explain, one of :data:`EXPLAINS`: ``"score"`` when
            ``fn`` uses ``ctx.gradients``/``ctx.scores`` (the requested score),
            ``"probability"`` when it reads ``ctx.predict``, ``"none"`` when no class is used.
        fused: ``fn`` is written in ``keras.ops`` and needs only gradients or the
            attention (:data:`~cam_callback.methods.fused.FUSABLE`): it then runs inside
            the one compiled call per batch, at about Grad-CAM's cost. The attention
            needs are always fused.

    Returns:
        The registered :class:`Method`.

    Raises:
        TypeError: ``fn`` not callable, or ``name`` not a str.
        ValueError: A taken name, an unknown ``needs`` or ``explains``.

    Example:
        >>> def mean_act(ctx):
        ...     return ctx.activations().mean(-1)
        >>> register_method("mean_act", mean_act, needs="activations", explains="none").name
        'mean_act'
        >>> compute_cams(model, x, method="mean_act").heatmaps.shape  # doctest: +SKIP
        (8, 6, 6)
        >>> del REGISTRY["mean_act"]
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"`name` must be a non-empty str. Received: name={name!r}")
    if not callable(fn):
        raise TypeError(f"`fn` must be callable. Received: fn of type {type(fn).__name__}")
    if needs not in NEEDS:
        raise ValueError(f"`needs` must be one of {NEEDS}. Received: needs={needs!r}")
    if explains not in EXPLAINS:
        raise ValueError(f"`explains` must be one of {EXPLAINS}. Received: explains={explains!r}")
    if needs.startswith("attention"):
        fused = True  # the attention is only read inside the compiled call
    if fused and needs not in FUSABLE:
        raise ValueError(
            f"a fused method needs one of {FUSABLE}: what the compiled call computes. "
            f"Received: needs={needs!r}, fused=True"
        )
    if name == AUTO:  # compute() resolves it to a built-in: a method by this name never runs
        raise ValueError(
            f"`name` {AUTO!r} is the default that picks a built-in method; pick another "
            f"name. Received: name={name!r}"
        )
    taken = REGISTRY.get(name)
    if taken is not None and (taken.builtin or not overwrite):
        raise ValueError(
            f"`name` {name!r} is already a method; pick another name"
            + ("" if taken.builtin else " or pass overwrite=True")
            + f". Received: name={name!r}"
        )
    if explains_layer is None:
        explains_layer = needs != "input_gradients"
    method = Method(
        name, fn, needs, bool(explains_layer), dict(options or {}), explains=explains, fused=fused,
        check=attention_check(name) if needs.startswith("attention") else None,
    )  # fmt: skip
    REGISTRY[name] = method
    return method


def attention_check(method: str) -> Callable[[list[LayerCall], Any, str], None]:
    """The model check of a method that reads the attention, run by ``inspect_model`` too (so
    before an epoch): a ValueError naming ``method`` where no attention can be read.

    Example:
        >>> attention_check("rollout")([], None, "")
        Traceback (most recent call last):
        ...
        ValueError: `method` 'rollout' follows attention through the model, but the model has no ...
    """

    def check(calls: list[LayerCall], target_layer: Any, path: str) -> None:
        check_attention_calls(calls, method)

    return check


def get(name: str) -> Method:
    """The registered method ``name``; ``KeyError`` when there is none.

    Example:
        >>> get("gradcam").fused
        True
    """
    return REGISTRY[name]


def available_methods() -> tuple[str, ...]:
    """``"auto"`` (the default), then every method name in registration order.

    ``"auto"`` is gradient rollout at a Vision Transformer's default layer, Grad-CAM
    elsewhere (:func:`cam_callback.methods.resolve.default_method`).

    Example:
        >>> available_methods()[:2], "scorecam" in available_methods()
        (('auto', 'gradcam'), True)
    """
    return (AUTO, *REGISTRY)


def check_method(method: Any) -> Method:
    """The entry of ``method``; a ValueError naming the choices when there is none.

    ``"auto"`` checks as Grad-CAM's entry, which resolves the same layer and score
    as gradient rollout (both explain the requested score at the explained layer).

    Example:
        >>> check_method("gradcam").name, check_method("auto").name
        ('gradcam', 'gradcam')
    """
    if method == AUTO:
        return REGISTRY["gradcam"]
    if not isinstance(method, str) or method not in REGISTRY:
        raise ValueError(
            f"`method` must be one of {available_methods()}. Received: method={method!r}"
        )
    return REGISTRY[method]


def explained_score(method: str, score: str) -> str:
    """What ``method``'s maps explain when ``score`` is the score really used.

    ``"logit"`` or ``"probability"``, or ``"none"`` for a class-agnostic method.

    Raises:
        ValueError: An unknown method or score.

    Example:
        >>> explained_score("eigencam", "logit"), explained_score("scorecam", "probability")
        ('none', 'probability')
    """
    if score not in SCORES:
        raise ValueError(f"`score` must be one of {SCORES}. Received: score={score!r}")
    explains = check_method(method).explains
    return score if explains == "score" else explains


def register_builtin(
    name: str,
    fn: Callable[..., Any],
    *,
    check: Callable[..., None] | None = None,
    input_maps: bool = False,
    **kwargs: Any,
) -> Method:
    """Registers a method shipped with the package: it cannot be replaced later.

    Options default to ``fn``'s keyword-only parameters.

    Example:
        >>> register_builtin("gradcam", gradcam, needs="layer_gradients", fused=True)
        ... # doctest: +SKIP
    """
    kwargs.setdefault("options", {
        k: p.default for k, p in inspect_module.signature(fn).parameters.items()
        if p.kind is p.KEYWORD_ONLY
    })  # fmt: skip
    entry = register_method(name, fn, **kwargs)
    method = dataclasses.replace(
        entry, check=check or entry.check, input_maps=input_maps, builtin=True
    )
    REGISTRY[name] = method
    return method


def with_options(name: str, **options: Any) -> Callable[..., np.ndarray]:
    """A registered method with other defaults, to register under a new name.

    Example:
        >>> register_method("scorecam64", with_options("scorecam", max_channels=64),
        ...                 needs="forwards")  # doctest: +SKIP
    """
    base = REGISTRY[name]
    return functools.partial(base.fn, **{**base.options, **options})
