"""Find the explained layer anywhere in a Keras 3 model, nested models included.

Layers are addressed by path: ``"conv2"`` for a layer of the top model, or
``"mobilenetv2_1.00_96/out_relu"`` for one inside a nested backbone. A bare name
is also searched for in every nested model.

The module also owns the one piece of model patching the package does: a
temporary wrapper around a layer's ``call`` that records what flows through it.
It is only installed while a function is being traced and is always removed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

Hook = Callable[[Callable[..., Any], tuple, dict], Any]


def sublayers(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    """The layers directly inside ``layer``: a model's layers, or those a subclassed layer owns.

    Keras's own layers (``MultiHeadAttention``, ``Dense``...) count as leaves; any other
    layer that owns layers (keras-hub's ``ViTEncoder``, which creates its
    ``transformer_block_{i}`` in ``build()``) is opened like a nested model.

    Example:
        >>> [l.name for l in sublayers(vit.backbone.get_layer("vit_encoder"))][:2]
        ... # doctest: +SKIP
        ['transformer_block_1', 'transformer_block_2']
    """
    if isinstance(layer, keras.Model):
        return list(layer.layers)
    if type(layer).__module__.startswith("keras."):
        return []
    return list(layer._flatten_layers(include_self=False, recursive=False))


def iter_layers(model: keras.Model, prefix: str = "") -> Iterator[tuple[str, keras.layers.Layer]]:
    """Yields ``(path, layer)`` for every layer of ``model``, depth first.

    Nested models, and subclassed layers that own layers (see :func:`sublayers`),
    are yielded themselves and then their own layers, with their name as the path
    prefix: ``"vi_t_backbone/vit_encoder/transformer_block_1"``.

    Args:
        model: A built Keras model.
        prefix: Path of ``model`` itself; empty for the top model.

    Example:
        >>> [p for p, _ in iter_layers(model)]  # doctest: +SKIP
        ['conv1', 'backbone', 'backbone/conv_a', 'dense']
    """
    for layer in sublayers(model):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        path = f"{prefix}{layer.name}"
        yield path, layer
        yield from iter_layers(layer, prefix=path + "/")


@contextlib.contextmanager
def intercepted(hooks: Mapping[keras.layers.Layer, Hook]) -> Iterator[None]:
    """Temporarily routes each layer's ``call`` through a hook.

    A hook receives ``(original_call, args, kwargs)`` and returns what the
    layer should return. The wrappers are removed on exit, also after an
    exception, so the model is left exactly as it was.

    Args:
        hooks: Layer to hook.

    Example:
        >>> seen = []
        >>> def spy(call, args, kwargs):
        ...     out = call(*args, **kwargs)
        ...     seen.append(out.shape)
        ...     return out
        >>> with intercepted({model.get_layer("conv1"): spy}):  # doctest: +SKIP
        ...     model(x)
    """
    installed: list[tuple[keras.layers.Layer, bool, Any]] = []
    try:
        for layer, hook in hooks.items():
            own = "call" in layer.__dict__
            previous = layer.__dict__.get("call")
            original = layer.call

            def wrapper(*args: Any, _call=original, _hook=hook, **kwargs: Any) -> Any:
                return _hook(_call, args, kwargs)

            # object.__setattr__ skips Keras's attribute tracking: this is not state.
            object.__setattr__(layer, "call", wrapper)
            installed.append((layer, own, previous))
        yield
    finally:
        for layer, own, previous in reversed(installed):
            if own:
                object.__setattr__(layer, "call", previous)
            else:
                object.__delattr__(layer, "call")


@dataclass(frozen=True)
class LayerCall:
    """One layer call seen during a discovery pass."""

    path: str
    layer: keras.layers.Layer
    output_shape: tuple[int, ...] | None
    # The eager output and first input, only while the discovery pass is read; cached
    # calls drop them, so a model's info never pins tensors (device memory on a GPU).
    output: Any = field(default=None, compare=False, repr=False)
    input: Any = field(default=None, compare=False, repr=False)

    @property
    def shape(self) -> tuple[int, ...]:
        """The output shape, ``()`` where it is unknown."""
        return self.output_shape or ()

    @property
    def is_spatial(self) -> bool:
        """True for a 4-D ``[batch, h, w, c]`` output with ``h`` and ``w`` above 1."""
        s = self.output_shape
        return s is not None and len(s) == 4 and s[1] > 1 and s[2] > 1

    @property
    def is_tokens(self) -> bool:
        """True for a ``[batch, tokens, dim]`` output with several tokens (a ViT layer)."""
        s = self.output_shape
        return s is not None and len(s) == 3 and s[1] > 1


def discover(model: keras.Model, sample: np.ndarray) -> tuple[list[LayerCall], Any]:
    """Runs ``model`` once on ``sample`` and records every layer call in order.

    Calls are listed as they complete, so a nested model comes after its own
    layers. Works for subclassed models, whose layers have no symbolic output.

    Args:
        model: The model.
        sample: A small batch in the model's input space.

    Returns:
        The calls and the model's output for ``sample``.

    Example:
        >>> calls, out = discover(model, x[:1])  # doctest: +SKIP
    """
    paths = list(iter_layers(model))
    if not model.built or not all(layer.built for _, layer in paths):
        # An unbuilt model (a subclassed one before its first call) builds by running
        # `call` once symbolically inside its first call: built first, unhooked, so each
        # layer is seen once and no layer looks shared.
        model(sample, training=False)
        paths = list(iter_layers(model))
    calls: list[LayerCall] = []

    def make_hook(path: str, layer: keras.layers.Layer) -> Hook:
        def hook(call: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
            out = call(*args, **kwargs)
            shape = tuple(int(d) for d in out.shape) if hasattr(out, "shape") else None
            first = args[0] if args else next(iter(kwargs.values()), None)
            calls.append(LayerCall(path, layer, shape, out, first))
            return out

        return hook

    # A layer object shared under two paths keeps its first path.
    hooks: dict[keras.layers.Layer, Hook] = {}
    for path, layer in paths:
        hooks.setdefault(layer, make_hook(path, layer))
    with intercepted(hooks):
        output = model(sample, training=False)
    return calls, output


def spatial_paths(calls: list[LayerCall]) -> list[str]:
    """Paths of the layers (not models) with a spatial or token output, in call order, once.

    A token output ``[batch, tokens, dim]`` is explained on its patch grid
    (:mod:`cam_callback.core.tokens`).
    """
    seen: dict[str, None] = {}
    for c in calls:
        if (c.is_spatial or c.is_tokens) and not isinstance(c.layer, keras.Model):
            seen.setdefault(c.path, None)
    return list(seen)


MIN_SIDE = 4
"""A default layer whose map has fewer cells than this on a side is coarse: a 2 x 2 map
shows as a wash over one quadrant. :func:`finer_layer` names the layer to use instead."""


def finer_layer(calls: list[LayerCall], min_side: int = MIN_SIDE) -> LayerCall | None:
    """The last spatial layer call whose map is at least ``min_side`` cells on each side.

    The rule for a coarse default: of the layers with a spatial output, the last one
    (the closest to the score) that still has ``min_side`` x ``min_side`` cells, padding
    and cropping layers skipped (their border is not a feature). On ``EfficientNetB0``
    at 64 px the default, ``top_activation``, is 2 x 2; this is
    ``block6a_expand_activation`` (4 x 4).

    Example:
        >>> finer_layer(info.calls).path  # doctest: +SKIP
        'block6a_expand_activation'
    """
    skip = (keras.layers.ZeroPadding2D, keras.layers.Cropping2D, keras.Model)
    for c in reversed(calls):
        if c.is_spatial and not isinstance(c.layer, skip):
            if min(c.shape[1:3]) >= min_side:
                return c
    return None


def resolve_layer(
    model: keras.Model, layer: str | keras.layers.Layer | None, calls: list[LayerCall]
) -> tuple[str, keras.layers.Layer]:
    """Finds the layer to explain.

    Args:
        model: The model.
        layer: ``None`` for the last layer with a spatial output, a name found
            anywhere in the model, an ``"outer/inner"`` path, or a layer object.
        calls: The model's discovery pass (see :func:`discover`).

    Returns:
        The layer's path and the layer.

    Raises:
        TypeError: ``layer`` is of the wrong type.
        ValueError: No such layer, an ambiguous name, or no spatial layer at all.

    Example:
        >>> resolve_layer(model, "backbone/out_relu", calls)[0]  # doctest: +SKIP
        'backbone/out_relu'
    """
    candidates = spatial_paths(calls)
    listed = ", ".join(candidates) or "(none)"
    if layer is None:
        if not candidates:
            raise ValueError(
                "`layer`: the model has no layer with a spatial output (4-D, h and w > 1) "
                "or token output ([batch, tokens, dim]), "
                "so there is nothing for a class activation map to explain. "
                'Use method="saliency" for an input-gradient map instead. Received: layer=None'
            )
        path = candidates[-1]
        return path, next(c.layer for c in calls if c.path == path)

    entries = list(iter_layers(model))
    if isinstance(layer, keras.layers.Layer):
        for path, obj in entries:
            if obj is layer:
                return path, obj
        raise ValueError(
            f"`layer` {layer.name!r} is a layer object that is not part of this model. "
            f"Layers with spatial output: {listed}. Received: layer={layer!r}"
        )
    if not isinstance(layer, str):
        raise TypeError(
            "`layer` must be None, a layer name, an 'outer/inner' path or a keras Layer. "
            f"Received: layer={layer!r} of type {type(layer).__name__}"
        )
    exact = [(p, obj) for p, obj in entries if p == layer]
    if exact:
        return exact[0]
    by_name = [(p, obj) for p, obj in entries if p.rsplit("/", 1)[-1] == layer]
    if len({id(obj) for _, obj in by_name}) > 1:
        raise ValueError(
            f"`layer` {layer!r} names several layers: {', '.join(p for p, _ in by_name)}. "
            f"Give the full path. Received: layer={layer!r}"
        )
    if by_name:
        return by_name[0]
    raise ValueError(
        f"`layer` {layer!r} not found. Layers with spatial output: {listed}. "
        f"Received: layer={layer!r}"
    )


def feeds(model: keras.Model, layer: keras.layers.Layer, output: int | str | None) -> bool | None:
    """Whether ``layer``'s output flows into the model's ``output``, read off the graph.

    Walks a Functional (or Sequential) model's graph back from the output, into
    nested models. Backend-neutral, and known before anything runs.

    Returns:
        ``True`` or ``False``, or ``None`` where the model has no graph to read
        (a subclassed model).

    Example:
        >>> feeds(model, model.get_layer("conv_b"), "a")  # doctest: +SKIP
        False
    """
    try:
        outputs = list(model.outputs or [])
    except (AttributeError, ValueError):
        return None
    if not outputs:
        return None
    if isinstance(output, str):
        names = list(getattr(model, "output_names", None) or [])
        if output not in names:
            return None
        output = names.index(output)
    stack, seen = [outputs[output or 0]], set()
    while stack:
        tensor = stack.pop()
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            continue
        op = history.operation
        if op is layer:
            return True
        if isinstance(op, keras.layers.Layer) and any(obj is layer for _, obj in iter_layers(op)):
            # Inside a subclassed layer (keras-hub's ViTEncoder) there is no graph to read.
            inner = feeds(op, layer, history.tensor_index) if isinstance(op, keras.Model) else None
            if inner is not False:
                return inner
        nodes = getattr(op, "_inbound_nodes", None) or []
        if history.node_index < len(nodes):
            stack.extend(nodes[history.node_index].input_tensors)
    return False
