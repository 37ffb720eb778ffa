"""One small module per Keras backend, behind one narrow interface.

Each backend module provides two builders; nothing else in the package imports a
backend library directly. Both compiled functions return **named outputs**: a
dict of numpy arrays, one row per image, so a caller asks for what it wants by
name (maps, probabilities, classes, attention) instead of slicing one tensor.

``cam_function(model_ref, program) -> fn``
    ``fn(images, targets) -> (outputs, connected)``. The :class:`Program`'s
    ``forward(call, model, images, targets, capture)`` runs the model through
    ``call(model, images)`` with the explained layer's output routed through
    ``capture`` and returns ``(total, activation, extras)``; the backend
    differentiates ``total`` by the activation (or by the input when
    ``wrt_input``) and hands both, with ``extras`` untouched (a dict of tensors
    or lists of tensors), to ``finish(source, grads, extras)``, which returns the
    named outputs in ``keras.ops``. ``connected`` is False where ``total`` does not
    depend on the source. Built once per key, reused.

``forward_function(model_ref, body, *, spec) -> fn``
    ``fn(images) -> outputs``: ``body(call, model, images)``, returning a dict of
    tensors, compiled once, for the forward-only work (probabilities, a layer's
    activations, the attention).

``spec`` is ``(input shape without batch, dtype string)``.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import keras
import numpy as np

Outputs = dict[str, np.ndarray]
"""A compiled function's named outputs: numpy arrays with one row per image."""
Spec = tuple[tuple[int, ...], str]
"""``(input shape without batch, dtype string)``: the compiled input signature."""
CamFunction = Callable[[np.ndarray, np.ndarray], tuple[Outputs, bool]]
"""``fn(images, targets) -> (outputs, connected)``, what :func:`cam_function` builds."""


@dataclass(frozen=True)
class Program:
    """What :func:`cam_function` compiles: a hooked forward, its gradient and a finish.

    Attributes:
        forward: ``forward(call, model, images, targets, capture) -> (total, activation,
            extras)``; ``extras`` is a dict of tensors (or lists of tensors) passed to
            ``finish`` untouched.
        finish: ``finish(source, grads, extras) -> dict`` of named output tensors.
        wrt_input: Differentiate by the input instead of the captured activation.
        spec: The input signature, ``(shape without batch, dtype)``.
        source_shape: The differentiated source's shape without the batch.

    Example:
        >>> Program(forward, finish, wrt_input=False, spec=((32, 32, 3), "float32"),
        ...         source_shape=(8, 8, 16))  # doctest: +SKIP
    """

    forward: Callable[..., tuple[Any, Any, dict[str, Any]]]
    finish: Callable[[Any, Any, dict[str, Any]], Mapping[str, Any]]
    wrt_input: bool
    spec: Spec
    source_shape: tuple[int, ...]


def to_numpy(outputs: Mapping[str, Any], n: int | None = None) -> Outputs:
    """Each named output as a numpy array, its first ``n`` rows (all where ``None``).

    Example:
        >>> to_numpy({"maps": np.ones((3, 2))}, 2)["maps"].shape
        (2, 2)
    """
    return {k: np.asarray(keras.ops.convert_to_numpy(v))[:n] for k, v in outputs.items()}


SUPPORTED = ("tensorflow", "jax", "torch")
_PACKAGES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
_EXTRAS = {"tensorflow": "cam-callback", "jax": "cam-callback[jax]", "torch": "cam-callback[torch]"}


def name() -> str:
    """The active Keras backend's name, e.g. ``"jax"``."""
    return keras.backend.backend()


def get(backend: str | None = None) -> ModuleType:
    """The gradient module of ``backend`` (the active Keras backend by default).

    Raises:
        ValueError: A backend cam-callback does not support.
        ImportError: The backend's package is not installed; the message names it.

    Example:
        >>> get().__name__  # doctest: +SKIP
        'cam_callback.backends.tensorflow'
    """
    backend = backend or name()
    if backend not in SUPPORTED:
        raise ValueError(
            f"Keras backend {backend!r} is not supported by cam-callback; use one of "
            f"{', '.join(SUPPORTED)} (KERAS_BACKEND). Received: backend={backend!r}"
        )
    try:
        importlib.import_module(_PACKAGES[backend])
    except ImportError as exc:
        raise ImportError(
            f"KERAS_BACKEND={backend} needs the {_PACKAGES[backend]!r} package, which is not "
            f"installed: pip install '{_EXTRAS[backend]}'"
        ) from exc
    return importlib.import_module(f"cam_callback.backends.{backend}")


def process() -> tuple[int, int]:
    """``(this process's index, process count)`` of a multi-process run (JAX), else ``(0, 1)``.

    Example:
        >>> process()  # doctest: +SKIP
        (0, 1)
    """
    module = get()
    return module.process() if hasattr(module, "process") else (0, 1)


def inference(model: keras.Model) -> contextlib.AbstractContextManager:
    """The context in which to run ``model`` outside the compiled functions (discovery).

    PyTorch: eval mode and no autograd graph; elsewhere nothing.
    """
    module = get()
    return module.inference(model) if hasattr(module, "inference") else contextlib.nullcontext()
