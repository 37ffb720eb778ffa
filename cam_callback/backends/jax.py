"""JAX: ``jax.grad`` over Keras's stateless call inside one ``jax.jit`` per key.

JAX cannot differentiate by an intermediate value, so the explained layer's
output gets a zero ``delta`` added: the gradient by ``delta`` is the gradient by
the activation. Batches are padded to a power of two, so a few compiled shapes
serve every batch size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cam_callback.backends import CamFunction, Outputs, Program, Spec, to_numpy

ERRORS: tuple[type[BaseException], ...] = (jax.errors.JaxRuntimeError,)
PAD_BATCH = True  # one program per batch shape: callers pad to a few sizes
EAGER = False  # the Python body runs once per compiled shape


def _local(value: Any) -> Any:
    """This process's own copy of a variable spread over several processes.

    Under keras.distribution across processes the weights are global arrays: a jit
    over them is a collective every process must join. Only process 0 computes maps,
    so it works on its local replica and never waits for the others.
    """
    if getattr(value, "is_fully_addressable", True):
        return value
    return jax.device_put(np.asarray(value.addressable_data(0)), jax.local_devices()[0])


def _state(model: Any) -> tuple[list, list]:
    return (
        [_local(v.value) for v in model.trainable_variables],
        [_local(v.value) for v in model.non_trainable_variables],
    )


def _stateless(trainable: list, non_trainable: list) -> Callable[[Any, Any], Any]:
    def call(model: Any, images: Any) -> Any:
        out, _ = model.stateless_call(trainable, non_trainable, images, training=False)
        return out

    return call


def _bucket(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def _padded(x: np.ndarray, size: int) -> np.ndarray:
    if len(x) == size:
        return x
    pad = np.zeros((size - len(x), *x.shape[1:]), x.dtype)
    return np.concatenate([x, pad])


def cam_function(model_ref: Callable[[], Any], program: Program) -> CamFunction:
    """See :mod:`cam_callback.backends`."""
    wrt_input = program.wrt_input

    def loss(delta: Any, trainable: list, non_trainable: list, images: Any, targets: Any) -> tuple:
        call = _stateless(trainable, non_trainable)
        if wrt_input:
            images = images + delta.astype(images.dtype)

            def capture(out: Any) -> Any:
                return out
        else:

            def capture(out: Any) -> Any:
                return out + delta.astype(out.dtype)

        total, activation, extras = program.forward(call, model_ref(), images, targets, capture)
        return total, (extras, images if wrt_input else activation)

    @jax.jit
    def step(trainable: list, non_trainable: list, images: Any, targets: Any) -> Mapping:
        delta = jnp.zeros((images.shape[0], *program.source_shape), jnp.float32)
        grads, (extras, source) = jax.grad(loss, has_aux=True)(
            delta, trainable, non_trainable, images, targets
        )
        return program.finish(source, grads, extras)

    def run(images: np.ndarray, targets: np.ndarray) -> tuple[Outputs, bool]:
        n = len(images)
        size = _bucket(n)
        trainable, non_trainable = _state(model_ref())
        out = step(trainable, non_trainable, _padded(images, size), _padded(targets, size))
        return to_numpy(out, n), True

    return run


def forward_function(
    model_ref: Callable[[], Any], body: Callable[..., Mapping[str, Any]], *, spec: Spec
) -> Callable[[np.ndarray], Outputs]:
    """See :mod:`cam_callback.backends`."""

    @jax.jit
    def step(trainable: list, non_trainable: list, images: Any) -> Mapping[str, Any]:
        return body(_stateless(trainable, non_trainable), model_ref(), images)

    def run(images: np.ndarray) -> Outputs:
        n = len(images)
        trainable, non_trainable = _state(model_ref())
        return to_numpy(step(trainable, non_trainable, _padded(images, _bucket(n))), n)

    return run


def process() -> tuple[int, int]:
    """``(jax.process_index(), jax.process_count())``: who writes under keras.distribution."""
    return jax.process_index(), jax.process_count()
