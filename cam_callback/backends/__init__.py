"""One small module per Keras backend, behind one narrow interface.

Each backend module provides two builders; nothing else in the package imports a
backend library directly:

``cam_function(model_ref, forward, finish, *, wrt_input, spec) -> fn``
    ``fn(images, targets) -> (maps, probabilities, chosen, connected)`` (numpy).
    ``forward(call, images, targets, capture)`` runs the model through
    ``call(model, images)`` with the explained layer's output routed through
    ``capture`` and returns ``(total, probabilities, chosen, activation)``; the
    backend differentiates ``total`` by the activation (or by the input when
    ``wrt_input``) and hands both to ``finish(source, grads, probs, chosen)``, the
    method maths written once in ``keras.ops``. Built once per key, reused.

``forward_function(model_ref, body, *, spec) -> fn``
    ``fn(images) -> numpy``: ``body(call, images)`` compiled once, for the forward-only
    work (probabilities, a layer's activations).

``spec`` is ``(input shape without batch, dtype string)``.
"""

from __future__ import annotations

import contextlib
import importlib
from types import ModuleType

import keras

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
