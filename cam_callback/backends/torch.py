"""PyTorch: plain autograd, with every module in eval mode during the call.

Nothing is compiled: the function is built once per key and runs eagerly. The
modules' ``training`` flags are put back exactly as found, also after an error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import keras
import numpy as np
import torch

from cam_callback.backends import CamFunction, Outputs, Program, Spec, to_numpy

ERRORS: tuple[type[BaseException], ...] = (RuntimeError,)  # torch's kernels raise these
PAD_BATCH = False  # one program serves every batch size
EAGER = True  # the Python body runs at every call


def _call(model: Any, images: Any) -> Any:
    return model(images, training=False)


@contextlib.contextmanager
def _eval_mode(model: keras.Model) -> Iterator[None]:
    # On this backend a Keras model and its layers are torch modules, but layers are not
    # always registered as children: take both.
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


def cam_function(model_ref: Callable[[], Any], program: Program) -> CamFunction:
    """See :mod:`cam_callback.backends`."""

    def run(images: np.ndarray, targets: np.ndarray) -> tuple[Outputs, bool]:
        model = model_ref()
        x = keras.ops.convert_to_tensor(images)
        t = keras.ops.convert_to_tensor(targets)
        with torch.enable_grad(), _eval_mode(model):
            if program.wrt_input:
                x = x.detach().requires_grad_(True)
            total, activation, extras = program.forward(_call, model, x, t, _capture)
            source = x if program.wrt_input else activation
            (grads,) = torch.autograd.grad(total, source, allow_unused=True)
        connected = grads is not None
        if grads is None:
            grads = torch.zeros_like(source)
        with torch.no_grad():
            out = program.finish(
                source.detach(), grads, keras.tree.map_structure(_detached, extras)
            )
        return to_numpy(out), connected

    return run


def forward_function(
    model_ref: Callable[[], Any], body: Callable[..., Mapping[str, Any]], *, spec: Spec
) -> Callable[[np.ndarray], Outputs]:
    """See :mod:`cam_callback.backends`."""

    def run(images: np.ndarray) -> Outputs:
        model = model_ref()
        with torch.no_grad(), _eval_mode(model):
            out = body(_call, model, keras.ops.convert_to_tensor(images))
        return to_numpy(out)

    return run


def _detached(value: Any) -> Any:
    return value.detach() if isinstance(value, torch.Tensor) else value
