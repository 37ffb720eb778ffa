"""How maps are computed, as one frozen value: :class:`CAMSettings`.

``compute_cams``, ``inspect_model``, ``evaluate`` and ``CAMTracker`` take these settings
as the flat keywords Keras users expect, build one :class:`CAMSettings` (every value
checked there, once, before any model is run) and pass it whole from then on. What a
call explains (``target``) is not a setting: it belongs to the images of each call.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import keras

from cam_callback.core.heads import check_head
from cam_callback.core.inspection import check_score
from cam_callback.core.tokens import check_token_arguments
from cam_callback.methods.registry import available_methods

__all__ = ["CAMSettings"]


def _layer(layer: Any) -> str | keras.layers.Layer | None:
    if layer is not None and not isinstance(layer, (str, keras.layers.Layer)):
        raise TypeError(
            "`layer` must be None, a layer name, an 'outer/inner' path or a keras Layer. "
            f"Received: layer={layer!r}"
        )
    return layer


def _method(method: Any) -> str:
    if not isinstance(method, str) or method not in available_methods():
        raise ValueError(
            f"`method` must be one of {available_methods()}. Received: method={method!r}"
        )
    return method


def _output(value: Any) -> int | str | None:
    whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if value is not None and not (whole or isinstance(value, str)):
        raise TypeError(
            f"`output` must be None, an output index or name. Received: output={value!r}"
        )
    return value if value is None or isinstance(value, str) else int(value)


def _batch_size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`batch_size` must be a positive int. Received: batch_size={value!r}")
    return int(value)


def _options(value: Any, method: str) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise TypeError(
            f"`method_options` must be a dict of {method!r}'s options. "
            f"Received: method_options={value!r}"
        )
    return MappingProxyType(dict(value))  # a copy: a later change by the caller is not seen


@dataclass(frozen=True)
class CAMSettings:
    """The settings of a map, checked when built: what to explain and how to read the model.

    Attributes:
        layer: ``None`` (the default layer), a layer name, an ``"outer/inner"`` path or a
            ``keras.layers.Layer``; see :func:`cam_callback.compute_cams`.
        method: A name of :func:`cam_callback.available_methods`, or ``"auto"``.
        score: ``"logit"`` or ``"probability"``.
        output: The head of a multi-output model, by index or name; ``None`` for one output.
        head: How the output becomes probabilities (``"auto"``, ``"softmax"``, ...).
        grid: A token layer's patch grid ``(h, w)``, or ``None`` to infer it.
        prefix_tokens: Tokens before a token layer's patches, or ``None`` to infer them.
        batch_size: Images per compiled call.
        method_options: Options of the method (read-only), or ``None`` for its defaults.

    Raises:
        TypeError: A value of the wrong type; the message names the argument.
        ValueError: A value out of its range or choices; the message names the argument.

    Example:
        >>> s = CAMSettings(method="gradcam", grid=4)
        >>> s.grid, s.replace(head="sigmoid").head, s.head
        ((4, 4), 'sigmoid', 'auto')
        >>> CAMSettings(batch_size=0)
        Traceback (most recent call last):
        ...
        ValueError: `batch_size` must be a positive int. Received: batch_size=0
    """

    layer: str | keras.layers.Layer | None = None
    method: str = "auto"
    score: str = "logit"
    output: int | str | None = None
    head: str = "auto"
    grid: tuple[int, int] | None = None  # an int is read as a square grid
    prefix_tokens: int | None = None
    batch_size: int = 32
    method_options: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        grid, prefix = check_token_arguments(self.grid, self.prefix_tokens)
        checked = {
            "layer": _layer(self.layer),
            "method": _method(self.method),
            "score": check_score(self.score),
            "output": _output(self.output),
            "head": check_head(self.head),
            "grid": grid,
            "prefix_tokens": prefix,
            "batch_size": _batch_size(self.batch_size),
            "method_options": _options(self.method_options, self.method),
        }
        for name, value in checked.items():  # normalised in place: the value stays frozen after
            object.__setattr__(self, name, value)

    def replace(self, **changes: Any) -> CAMSettings:
        """A copy with ``changes``, checked as a new value is.

        Example:
            >>> CAMSettings().replace(method="layercam").method
            'layercam'
        """
        return dataclasses.replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        """The settings as JSON-ready values (a layer object by its name).

        Example:
            >>> CAMSettings(layer="conv2").describe()["layer"]
            'conv2'
        """
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if isinstance(self.layer, keras.layers.Layer):
            out["layer"] = self.layer.name
        out["method_options"] = None if self.method_options is None else dict(self.method_options)
        out["grid"] = None if self.grid is None else list(self.grid)
        return out
