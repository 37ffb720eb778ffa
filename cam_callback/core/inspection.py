"""What a model is before any map: its images, layers, outputs, heads and targets.

Every check of :func:`cam_callback.compute_cams` that needs no gradient lives
here, so the engine and the methods share one reading of the model.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import warnings
import weakref
from dataclasses import dataclass
from types import FrameType
from typing import Any

import keras
import numpy as np

from cam_callback import _validate, backends
from cam_callback.core import layers as _layers
from cam_callback.core.heads import Head, HeadInfo, check_head, head_info
from cam_callback.core.loss import resolve_head
from cam_callback.core.token_layers import default_layer, explained_tokens

SCORES: tuple[str, ...] = ("logit", "probability")


@dataclass
class ModelInfo:
    """What running a few images through the model found, cached per input signature.

    Attributes:
        calls: Every layer call, without its eager outputs.
        output_names: The outputs' names (``None``: a single output).
        heads: What each output looks like, keyed like :func:`select_output`'s result.
    """

    calls: list[_layers.LayerCall]
    output_names: list[str] | None
    heads: dict[Any, HeadInfo]


# Keyed weakly by model: a deleted model frees what was found.
INFO: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""``{model: {(shape, dtype): ModelInfo}}``."""
_WARNED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # what was said, per model
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def check_score(score: Any) -> str:
    """Returns ``score`` if it is one of :data:`SCORES`, else raises a ValueError.

    Example:
        >>> check_score("logit")
        'logit'
    """
    if score not in SCORES:
        raise ValueError(f"`score` must be one of {SCORES}. Received: score={score!r}")
    return score


def inspect(
    model: keras.Model,
    x: np.ndarray,
    layer: Any,
    explains_layer: bool,
    output: Any,
    score: str,
    head: str = "auto",
    *,
    grid: tuple[int, int] | None = None,
    prefix_tokens: int | None = None,
) -> tuple[ModelInfo, Head, str, keras.layers.Layer | None]:
    """``(info, head, layer path, layer)`` for prepared images ``x``, every check run.

    ``explains_layer=False`` explains the input: the path is ``""`` and the layer ``None``.
    ``layer=None`` takes :func:`~cam_callback.core.token_layers.default_layer`; a token
    layer's grid is checked (``grid``/``prefix_tokens``, see
    :func:`~cam_callback.core.token_layers.explained_tokens`).

    Example:
        >>> info, head, path, lyr = inspect(model, x, None, True, None, "logit")  # doctest: +SKIP
    """
    check_head(head)
    info = model_info(model, x)
    used = resolve(model, info, select_output(info, output), score, head)
    if not explains_layer:
        return info, used, "", None
    if layer is None:
        layer = default_layer(model, info.calls, x, used, grid=grid,
                              prefix_tokens=prefix_tokens)[0]  # fmt: skip
    path, target_layer = _layers.resolve_layer(model, layer, info.calls)
    check_spatial(path, target_layer, info.calls)
    explained_tokens(model, info.calls, x, target_layer, grid=grid, prefix_tokens=prefix_tokens)
    if _layers.feeds(model, target_layer, used.key) is False:
        raise ValueError(
            f"`layer` {path!r} does not feed the explained output, so its gradient is "
            f"undefined. Received: layer={path!r}, output={output!r}"
        )
    return info, used, path, target_layer


def prepare_images(model: keras.Model, images: Any) -> np.ndarray:
    """Checks ``images`` against the model's input and returns them as an array.

    Raises:
        TypeError: Not numeric, or a model with several inputs.
        ValueError: Empty, NaN/inf, or a shape that does not fit the model.
    """
    x = _validate.image_batch(images, "images")
    expected = _expected_input_shape(model)
    if expected is not None:
        ok = x.ndim == len(expected) and all(
            e is None or e == s for e, s in zip(expected[1:], x.shape[1:], strict=True)
        )
        if not ok:
            want = "(N, " + ", ".join("?" if e is None else str(e) for e in expected[1:]) + ")"
            raise ValueError(
                f"`images` does not fit the model's input: expected shape {want}. "
                f"Received: images.shape={x.shape}"
            )
    dtype = _input_dtype(model)
    x = x.astype(dtype, copy=False)
    return np.ascontiguousarray(x)


def _expected_input_shape(model: keras.Model) -> tuple | None:
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    if not inputs:
        return None
    if len(inputs) != 1:
        raise TypeError(
            f"`model` has {len(inputs)} inputs; compute_cams explains single-input image "
            "models. Received: a multi-input model"
        )
    return tuple(None if d is None else int(d) for d in inputs[0].shape)


def _input_dtype(model: keras.Model) -> str:
    try:
        dtype = model.inputs[0].dtype
    except (AttributeError, ValueError, TypeError, IndexError):
        return "float32"
    dtype = getattr(dtype, "name", str(dtype))
    return dtype if "float" in dtype else "float32"


def model_info(model: keras.Model, x: np.ndarray) -> ModelInfo:
    """What a few images through ``model`` show (layer calls, outputs, heads), cached.

    Example: ``model_info(model, x).calls[0].path``.
    """
    per_model = INFO.setdefault(model, {})
    key = (x.shape[1:], x.dtype.str)
    info = per_model.get(key)
    if info is not None:
        return info
    sample = x[:8]  # a few images: enough to tell probabilities from free logits
    try:
        with backends.inference(model):
            calls, out = _layers.discover(model, sample)
    except Exception as exc:
        raise ValueError(
            f"`images` could not be run through the model: {exc}. Received: images.shape={x.shape}"
        ) from exc
    names: list[str] | None = None
    if isinstance(out, dict):
        names = list(out)
        outs = dict(out)
    elif isinstance(out, (list, tuple)) and len(out) != 1:
        names = list(getattr(model, "output_names", None) or [str(i) for i in range(len(out))])
        outs = dict(enumerate(out))
    else:
        outs = {None: out[0] if isinstance(out, (list, tuple)) else out}
    heads = {k: head_info(calls, v, single=k is None) for k, v in outs.items()}
    # Keep shapes and indices only: eager outputs would pin memory for the model's lifetime.
    info = ModelInfo(
        calls=[dataclasses.replace(c, output=None, input=None) for c in calls],
        output_names=names,
        heads=heads,
    )
    per_model[key] = info
    return info


def resolve(model: keras.Model, info: ModelInfo, key: Any, score: str, head: str) -> Head:
    """The head ``key`` read as ``head`` asks, with the compiled loss; warns once per model."""
    loss = getattr(model, "loss", None)
    if loss is None:  # tf.keras-style containers keep the user's losses inside
        compiled = getattr(model, "compiled_loss", None)
        loss = getattr(compiled, "_user_losses", None) or getattr(compiled, "_losses", None)
    said = _WARNED.setdefault(model, set())

    def warn(topic: Any, message: str) -> None:
        if topic not in said:
            said.add(topic)
            warnings.warn(message, UserWarning, stacklevel=_user_stacklevel())

    return resolve_head(
        info.heads[key],
        key,
        score=score,
        head=head,
        loss=loss,
        names=info.output_names,
        calls=info.calls,
        warn=warn,
    )


def _user_stacklevel() -> int:
    """The ``stacklevel`` of the first caller outside this package (2 = our caller's caller)."""
    frame: FrameType | None = sys._getframe(2)
    level = 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


def select_output(info: ModelInfo, output: int | str | None) -> int | str | None:
    """The key of the explained output (``None`` for a single output), checked.

    Example: ``select_output(info, "b")`` on a two-output model.
    """
    names = info.output_names
    if names is None:
        if output not in (None, 0):
            raise ValueError(
                f"`output` selects a head of a multi-output model, but this model has one "
                f"output. Received: output={output!r}"
            )
        return None
    if output is None:
        raise ValueError(
            f"`output` is required: the model has {len(names)} outputs ({', '.join(names)}). "
            "Pass output=<index or name>. Received: output=None"
        )
    if isinstance(output, bool) or not isinstance(output, (int, str)):
        raise TypeError(f"`output` must be an int or a str. Received: output={output!r}")
    by_name = all(isinstance(k, str) for k in info.heads)
    if isinstance(output, int):
        if not 0 <= output < len(names):
            raise ValueError(
                f"`output` index out of range: the model has {len(names)} outputs "
                f"({', '.join(names)}). Received: output={output}"
            )
        return names[output] if by_name else output
    if output not in names:
        raise ValueError(
            f"`output` {output!r} not found. Outputs: {', '.join(names)}. "
            f"Received: output={output!r}"
        )
    return output if by_name else names.index(output)


def pick_output(out: Any, key: int | str | None) -> Any:
    """The output ``key`` (from :func:`select_output`) of a model's outputs ``out``.

    Example: ``pick_output([y], None) is y``.
    """
    if key is None:
        return out[0] if isinstance(out, (list, tuple)) else out
    return out[key]


def check_spatial(path: str, layer: keras.layers.Layer, calls: list[_layers.LayerCall]) -> None:
    """A ValueError unless ``layer`` runs once with a ``[B, h, w, K]`` output, h, w > 1,
    or a ``[B, tokens, dim]`` output (explained on its patch grid).

    Example: ``check_spatial("conv2", layer, info.calls)``.
    """
    seen = [c for c in calls if c.layer is layer]
    if not seen:
        raise ValueError(
            f"`layer` {path!r} is not called when the model runs, so it cannot be explained. "
            f"Layers with spatial output: {', '.join(_layers.spatial_paths(calls))}. "
            f"Received: layer={path!r}"
        )
    if len(seen) > 1:
        raise ValueError(
            f"`layer` {path!r} runs {len(seen)} times in one forward pass (a shared layer), so "
            "its map is ambiguous; pick a layer that runs once. Layers with spatial output: "
            f"{', '.join(_layers.spatial_paths(calls))}. Received: layer={path!r}"
        )
    if not (seen[-1].is_spatial or seen[-1].is_tokens):
        raise ValueError(
            f"`layer` {path!r} has output shape {(None, *seen[-1].shape[1:])}, not a "
            "spatial [batch, h, w, channels] map with h, w > 1 nor [batch, tokens, dim]. "
            "Layers with spatial output: "
            f"{', '.join(_layers.spatial_paths(calls))}. Received: layer={path!r}"
        )
