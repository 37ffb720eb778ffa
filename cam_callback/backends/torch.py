"""PyTorch: plain autograd, with every module in eval mode during the call.

Nothing is compiled: the function is built once per key and runs eagerly. The
modules' ``training`` flags are put back exactly as found, also after an error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np
import torch

ERRORS: tuple[type[BaseException], ...] = (RuntimeError,)  # torch's kernels raise these
PAD_BATCH = False  # one program serves every batch size
EAGER = True  # the Python body runs at every call


def _call(model: Any, images: Any) -> Any:
    return model(images, training=False)


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    # Keras layers are torch modules but not always registered as children: take both.
    found = {id(m): m for m in model.modules()}
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, torch.nn.Module):
            found.setdefault(id(layer), layer)
    flags = [(m, m.training) for m in found.values()]
    try:
        for m, _ in flags:
            m.training = False
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def inference(model: Any) -> contextlib.AbstractContextManager:
    """Eval mode and no graph, for a plain run of the model (discovery)."""
    stack = contextlib.ExitStack()
    stack.enter_context(torch.no_grad())
    stack.enter_context(_eval_mode(model))
    return stack


def _capture(out: Any) -> Any:
    # Frozen weights leave the activation outside the graph: make it a leaf we can ask about.
    return out if out.requires_grad else out.detach().requires_grad_(True)


def cam_function(
    model_ref: Callable[[], Any],
    forward: Callable[..., tuple],
    finish: Callable[..., tuple],
    *,
    wrt_input: bool,
    spec: tuple[tuple[int, ...], str],
    source_shape: tuple[int, ...],
) -> Callable[[np.ndarray, np.ndarray], tuple]:
    """See :mod:`cam_callback.backends`."""

    def run(images: np.ndarray, targets: np.ndarray) -> tuple:
        model = model_ref()
        x = keras.ops.convert_to_tensor(images)
        t = keras.ops.convert_to_tensor(targets)
        with torch.enable_grad(), _eval_mode(model):
            if wrt_input:
                x = x.detach().requires_grad_(True)
            total, probs, chosen, activation = forward(_call, model, x, t, _capture)
            source = x if wrt_input else activation
            (grads,) = torch.autograd.grad(total, source, allow_unused=True)
        connected = grads is not None
        if grads is None:
            grads = torch.zeros_like(source)
        with torch.no_grad():
            out = finish(source.detach(), grads, probs.detach(), chosen)
        return (*(keras.ops.convert_to_numpy(o) for o in out), connected)

    return run


def forward_function(
    model_ref: Callable[[], Any],
    body: Callable[[Callable, Any, Any], Any],
    *,
    spec: tuple[tuple[int, ...], str],
) -> Callable[[np.ndarray], np.ndarray]:
    """See :mod:`cam_callback.backends`."""

    def run(images: np.ndarray) -> np.ndarray:
        model = model_ref()
        with torch.no_grad(), _eval_mode(model):
            out = body(_call, model, keras.ops.convert_to_tensor(images))
        return keras.ops.convert_to_numpy(out)

    return run
