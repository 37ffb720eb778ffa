"""TensorFlow: a ``tf.GradientTape`` inside one ``tf.function`` per key."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from cam_callback.backends import CamFunction, Outputs, Program, Spec, to_numpy

ERRORS: tuple[type[BaseException], ...] = (tf.errors.OpError,)
PAD_BATCH = False  # one program serves every batch size
EAGER = False  # the Python body runs once per trace
# AutoGraph would rewrite our own step functions at every trace (about 2 s on 2 cores, ten
# times the trace itself) for nothing: they never branch on a tensor, and Keras never lets
# AutoGraph into a model's ``call``, so a model that branches on a tensor fails in fit too.
AUTOGRAPH = False


def _compile(fn: Callable, **options: Any) -> Any:
    # TensorFlow counts retracing per code object: every model's (or layer's) function is a
    # closure of the same code, so several trackers in one process looked like one function
    # retraced and logged its warning. A partial has no code object: TensorFlow keys the count
    # on each compiled function, which traces once.
    own = functools.partial(fn)
    own.__module__ = fn.__module__
    # A partial takes attributes (typeshed declares none); no __wrapped__: that is the key.
    own.__name__ = fn.__name__  # type: ignore[attr-defined]
    return tf.function(own, autograph=AUTOGRAPH, **options)


def _call(model: Any, images: Any) -> Any:
    return model(images, training=False)


def _identity(out: Any) -> Any:
    return out


def cam_function(model_ref: Callable[[], Any], program: Program) -> CamFunction:
    """See :mod:`cam_callback.backends`."""
    shape, dtype = program.spec
    signature = (
        tf.TensorSpec((None, *shape), tf.as_dtype(dtype)),
        tf.TensorSpec((None,), tf.int32),
    )
    state = {"connected": True}

    def step(images: tf.Tensor, targets: tf.Tensor) -> Mapping[str, Any]:
        with tf.GradientTape() as tape:
            if program.wrt_input:
                tape.watch(images)
            total, activation, extras = program.forward(
                _call, model_ref(), images, targets, _identity
            )
        source = images if program.wrt_input else activation
        grads = tape.gradient(total, source)
        if grads is None:  # the layer does not feed the score: known at trace time
            state["connected"] = False
            grads = tf.zeros_like(source)
        return program.finish(source, grads, extras)

    compiled = _compile(step, input_signature=signature, reduce_retracing=True)

    def run(images: np.ndarray, targets: np.ndarray) -> tuple[Outputs, bool]:
        return to_numpy(compiled(tf.constant(images), tf.constant(targets))), state["connected"]

    return run


def forward_function(
    model_ref: Callable[[], Any], body: Callable[..., Mapping[str, Any]], *, spec: Spec
) -> Callable[[np.ndarray], Outputs]:
    """See :mod:`cam_callback.backends`."""
    shape, dtype = spec

    def fn(images: tf.Tensor) -> Mapping[str, Any]:
        return body(_call, model_ref(), images)

    signature = (tf.TensorSpec((None, *shape), tf.as_dtype(dtype)),)
    compiled = _compile(fn, input_signature=signature)
    return lambda images: to_numpy(compiled(tf.constant(images)))
