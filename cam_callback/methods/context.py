"""What a method may ask for, the same on every backend: numpy in, numpy out.

Perturbed copies (masked, occluded, ablated, noisy, interpolated inputs) are made
``batch_size`` at a time, never all at once: memory follows ``batch_size``.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import keras
import numpy as np

from cam_callback.backends import Outputs
from cam_callback.core.engine import (
    Engine,
    build_cam_function,
    cached_engine,
    joined,
)
from cam_callback.core.forward import Forward, gradient_forward
from cam_callback.core.predict import layer_activations, predict_probabilities, predict_scores
from cam_callback.core.tokens import TokenGrid
from cam_callback.methods.fused import check_wrt
from cam_callback.methods.guided import guided_relus, relu_kind


class Context(Protocol):
    """What every method's ``fn(ctx, **options)`` may read, whichever context runs it.

    :class:`MethodContext` (numpy, any forward pass) and, inside the compiled call,
    :class:`~cam_callback.methods.fused.CompiledContext` (``keras.ops`` tensors)
    both offer these; a method written in ``keras.ops`` runs over either.
    """

    tokens: TokenGrid | None
    score: str

    def activations(self) -> Any:
        """The explained layer's output ``[B, h, w, K]``."""

    def gradients(self, *, wrt: str = "layer") -> tuple[Any, Any]:
        """``(source, d score / d source)``, source the layer's output or the input."""


class MethodContext:
    """What a method may ask for, the same on every backend (numpy in, numpy out).

    Attributes:
        model: The model explained.
        images: ``[N, H, W, C]`` in the model's input space.
        targets: int ``[N]``, the class explained per image (resolved from "predicted").
        probabilities: ``[N, C]`` on ``images``.
        layer: The explained layer's path (``""`` for input-space methods).
        target_layer: The explained layer itself (``None`` for input-space methods).
        score: The score really used, ``"logit"`` or ``"probability"``: what
            :meth:`gradients` differentiates and :meth:`scores` returns.
        output: The head of a multi-output model, as given to ``compute_cams``.
        batch_size: Images per forward pass; perturbed copies are made this many at a time.
        info: What inspecting the model found (its layer calls, ``info.calls``).
        head: How the output is explained (``head.kind``: ``"softmax"``, ``"logits"``,
            ``"binary"`` or ``"multilabel"``).
        tokens: The patch grid of a token layer ``[batch, tokens, dim]`` (prefix tokens
            dropped), or ``None``: :meth:`activations`, :meth:`gradients` and the
            ``*_from_layer`` methods then work on ``[B, h, w, dim]`` patch grids.
    """

    def __init__(
        self,
        model: keras.Model,
        images: np.ndarray,
        targets: np.ndarray,
        *,
        info: Any,
        head: Any,
        layer: str,
        target_layer: keras.layers.Layer | None,
        output: int | str | None,
        batch_size: int,
        tokens: TokenGrid | None = None,
    ) -> None:
        self.model = model
        self.tokens = tokens
        self._prefix: np.ndarray | None = None  # the images' prefix tokens, once read
        self._grids: np.ndarray | None = None  # and their patch grids
        self.images = images
        self.layer = layer
        self.score = head.score
        self.info = info
        self.head = head
        self.target_layer = target_layer
        self.output = output
        self.batch_size = batch_size
        self.probabilities = self.predict(images)
        predicted = self.probabilities.argmax(1)
        self.targets = np.where(targets < 0, predicted, targets).astype(np.int64)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """The head's probabilities ``[B, C]`` for any batch in the input space."""
        return predict_probabilities(
            self.model,
            self._input(images),
            output=self.output,
            batch_size=self.batch_size,
            head=self.head.request,
        )

    def scores(self, images: np.ndarray | None = None) -> np.ndarray:
        """The explained score ``[B, C]`` (:attr:`score`: logits or probabilities) of any batch.

        Example:
            >>> drop = ctx.scores()[0, ctx.targets[0]] - ctx.scores(occluded)[:, ctx.targets[0]]
            ... # doctest: +SKIP
        """
        x = self.images if images is None else self._input(images)
        return self._checked(predict_scores(
            self.model, x, score=self.score, output=self.output, batch_size=self.batch_size,
            head=self.head.request,
        ))  # fmt: skip

    def activations(self, images: np.ndarray | None = None) -> np.ndarray:
        """The explained layer's output ``[B, h, w, K]`` (float32); a token layer's patch grid."""
        x = self.images if images is None else images
        a = layer_activations(self.model, x, self.target_layer, batch_size=self.batch_size)
        if self.tokens is None:
            return a
        t = self.tokens
        if images is None:
            self._prefix = a[:, : t.prefix]
        return np.ascontiguousarray(a[:, t.prefix :].reshape(len(a), t.height, t.width, -1))

    def gradients(
        self,
        images: np.ndarray | None = None,
        targets: np.ndarray | None = None,
        *,
        wrt: str = "layer",
        guided: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(source, d score / d source)``, source the layer's output or the input.

        ``images`` and ``targets`` default to the context's; the score is the
        target's logit or probability as ``compute_cams`` explains it. ``guided``:
        guided backpropagation (Springenberg et al.), every ReLU passing back only
        positive gradients where its input is positive.
        """
        x = self.images if images is None else self._input(images)
        t = self.targets if targets is None else np.asarray(targets)
        layer = None if check_wrt(wrt) == "input" else self.target_layer
        tokens = None if layer is None else self.tokens
        fn = _gradient_function(self.model, self.info, self.head, layer, x, guided=guided,
                                tokens=tokens)  # fmt: skip
        out = joined([
            fn(x[i : i + self.batch_size], t[i : i + self.batch_size].astype(np.int32))[0]
            for i in range(0, len(x), self.batch_size)
        ])  # fmt: skip
        return out["source"], out["gradients"]

    def predict_from_layer(self, activations: np.ndarray) -> np.ndarray:
        """The head's probabilities ``[B, C]`` with the explained layer's output replaced.

        Runs only the part of the model after the layer. Needs a layer in the
        top-level graph of a Functional or Sequential model. A token layer's grid
        goes back into tokens, each row with the prefix tokens of the context's
        image it matches best (an ablated copy of image ``i`` gets image ``i``'s).
        """
        suffix = _suffix_model(self.model, self.target_layer, self.layer)
        a = self._as_layer_output(activations)
        output = self.output if self.head.key is not None else None
        return predict_probabilities(
            suffix, a, output=output, batch_size=self.batch_size, head=self.head.request
        )

    def scores_from_layer(self, activations: np.ndarray) -> np.ndarray:
        """The explained score ``[B, C]`` with the explained layer's output replaced.

        As :meth:`predict_from_layer`, for :attr:`score` (logits or probabilities).
        """
        suffix = _suffix_model(self.model, self.target_layer, self.layer)
        a = self._as_layer_output(activations)
        output = self.output if self.head.key is not None else None
        return self._checked(predict_scores(
            suffix, a, score=self.score, output=output, batch_size=self.batch_size,
            head=self.head.request,
        ))  # fmt: skip

    def _as_layer_output(self, activations: np.ndarray) -> np.ndarray:
        a = np.ascontiguousarray(activations, np.float32)
        t = self.tokens
        if t is None:
            return a
        patches = a.reshape(len(a), t.height * t.width, a.shape[-1])
        if t.prefix == 0:
            return patches
        if self._grids is None or self._prefix is None:
            self._grids = self.activations()  # keeps the images' prefix tokens too
        prefix = self._prefix
        if prefix is None:  # activations() of the context's own images sets it
            raise ValueError(f"no prefix tokens were read at layer {self.layer!r}")
        flat = self._grids.reshape(len(self._grids), -1)
        # The image whose own patch grid agrees with the row in the most entries.
        owner = [int(np.argmax((flat == row).sum(1))) for row in a.reshape(len(a), -1)]
        return np.ascontiguousarray(np.concatenate([prefix[owner], patches], axis=1))

    def _input(self, images: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(images, dtype=self.images.dtype)

    def _checked(self, result: tuple[np.ndarray, np.ndarray, str]) -> np.ndarray:
        _, scores, used = result
        if used != self.score:  # never weigh by one score and record another
            raise ValueError(
                f"the model's {self.score} could not be read for perturbed inputs (got the "
                f"{used}); pass score={used!r}. Received: score={self.score!r}"
            )
        return scores


def batches(n: int, size: int) -> Iterator[np.ndarray]:
    """Index arrays ``[0, size), [size, 2 size), ...`` covering ``range(n)``.

    Example:
        >>> [b.tolist() for b in batches(3, 2)]
        [[0, 1], [2]]
    """
    for start in range(0, n, size):
        yield np.arange(start, min(start + size, n))


_SUFFIX: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _suffix_model(model: keras.Model, layer: Any, path: str) -> keras.Model:
    per_model = _SUFFIX.setdefault(model, {})
    if path in per_model:
        return per_model[path]
    if "/" in path:
        raise ValueError(
            f"this method runs the model from the explained layer on, which needs a layer in "
            f"the top-level graph; {path!r} is inside a nested model. Explain the nested "
            f"model's output layer instead. Received: layer={path!r}"
        )
    try:
        suffix = keras.Model(layer.output, model.outputs)
    except Exception as exc:
        raise ValueError(
            f"cannot run the model from layer {path!r} on (a subclassed model has no graph to "
            f"cut): {exc}. Received: layer={path!r}"
        ) from exc
    per_model[path] = suffix
    return suffix


def _gradient_function(
    model: keras.Model,
    info: Any,
    head: Any,
    layer: keras.layers.Layer | None,
    x: np.ndarray,
    *,
    guided: bool = False,
    tokens: TokenGrid | None = None,
) -> Callable[[np.ndarray, np.ndarray], tuple[Outputs, bool]]:
    """``fn(images, targets) -> ({"source", "gradients"}, connected)``, compiled once per key."""
    path = "" if layer is None else next(c.path for c in info.calls if c.layer is layer)
    key = ("raw_gradients", path, head, tokens, x.shape[1:], x.dtype.str, guided)
    plain = gradient_forward(info=info, head=head, target_layer=layer, tokens=tokens)
    forward: Forward = plain
    if guided:
        relus = [c.layer for c in info.calls if relu_kind(c.layer)]

        def forward(call: Any, m: Any, images: Any, targets: Any, capture: Any) -> tuple:
            # Guided ReLUs go in first, the capture hooks on top of them: a ReLU layer
            # that is also the explained layer is then both guided and recorded.
            with guided_relus(relus):
                return plain(call, m, images, targets, capture)

    def finish(source: Any, grads: Any, extras: dict[str, Any]) -> dict[str, Any]:
        return {"source": keras.ops.cast(source, "float32"),
                "gradients": keras.ops.cast(grads, "float32")}  # fmt: skip

    build = functools.partial(build_cam_function, model, info, layer, x, forward, finish, tokens)
    return cached_engine(model, key, lambda: Engine(fn=build())).fn
