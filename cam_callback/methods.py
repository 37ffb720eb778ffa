"""The method registry beyond the five built-in gradient maps, written once for every backend.

Each method is a function ``fn(ctx, **options) -> maps`` over a :class:`MethodContext`,
which offers only backend-neutral primitives: the explained layer's activations and
their gradients (or the input's), the model's probabilities and explained scores for
any batch, and both from the explained layer onwards. The maths is numpy. Each method
states what it ``needs``:

- ``"layer_gradients"``: ``A`` and ``G = d score / d A`` of the explained layer.
- ``"input_gradients"``: the input and ``d score / d input``.
- ``"activations"``: ``A`` only (and, for ``"cam"``, the head's weights).
- ``"forwards"``: forward passes only (masked or occluded inputs, ablated channels).

and what it ``explains`` (:data:`EXPLAINS`; :func:`explained_score` resolves it):
``"score"`` honours ``compute_cams(score=...)`` (the logit or the probability),
``"logit"`` is always the logit (CAM reads the Dense kernel), ``"none"`` is
class-agnostic (Eigen-CAM). Score-CAM, Ablation-CAM and occlusion weigh by the
explained score of their perturbed inputs, so they honour ``score`` too.

Memory follows ``batch_size``: perturbed copies (masked, occluded, ablated, noisy,
interpolated inputs) are made ``batch_size`` at a time, never all at once.

Input-space maps are reduced over channels as follows. ``gradient_x_input`` and
``integrated_gradients`` by the absolute value of the **sum**, ``|sum_c|`` (as
captum's visualisation): their attributions are additive over input dimensions
(IG's completeness), so a pixel's share is the sum of its channels' shares, and
channels that cancel give the pixel nothing. ``smoothgrad`` (and ``"saliency"``)
by the **max** of ``|gradient|``, as Simonyan et al. and tf-keras-vis do: a
gradient is a sensitivity, not a share, and the most sensitive channel says how
much the pixel matters. ``guided_gradcam`` by the max of ``|guided gradient|``,
then times Grad-CAM.

A user adds a method by name with :func:`register_method`; it then works in
``compute_cams``, ``CAMTracker`` and ``evaluate``.

Example:
    >>> def edges(ctx):
    ...     a = ctx.activations()  # [N, h, w, K]
    ...     return np.abs(np.diff(a.mean(-1), axis=1, append=0))
    >>> register_method("edges", edges, needs="activations", explains="none")  # doctest: +SKIP
    >>> compute_cams(model, x, method="edges").heatmaps.shape  # doctest: +SKIP
    (8, 6, 6)
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from cam_callback import backends, cams
from cam_callback import layers as _layers
from cam_callback._imageops import resize_bilinear

NEEDS: tuple[str, ...] = ("layer_gradients", "input_gradients", "activations", "forwards")
EXPLAINS: tuple[str, ...] = ("score", "logit", "probability", "none")


@dataclass(frozen=True)
class Method:
    """A registered method.

    Attributes:
        name: The name ``compute_cams(method=...)`` takes.
        fn: ``fn(ctx, **options) -> maps [N, h, w]`` (any scale; negatives are cut).
        needs: One of :data:`NEEDS`.
        explains_layer: Needs the explained layer (``True``) or explains the input.
        options: Default options, overridable by ``compute_cams(..., method_options=...)``.
        input_maps: Maps at the input's resolution although a layer is explained.
        explains: One of :data:`EXPLAINS`: ``"score"`` (the requested ``score``),
            ``"logit"``, ``"probability"`` or ``"none"`` (class-agnostic).
    """

    name: str
    fn: Callable[..., np.ndarray]
    needs: str
    explains_layer: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)
    input_maps: bool = False
    explains: str = "score"


REGISTRY: dict[str, Method] = {}


def register_method(
    name: str,
    fn: Callable[..., np.ndarray],
    *,
    needs: str,
    explains_layer: bool | None = None,
    options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    explains: str = "score",
) -> Method:
    """Adds a method by name, for ``compute_cams``, ``CAMTracker`` and ``evaluate``.

    Args:
        name: A new name (the built-ins cannot be replaced).
        fn: ``fn(ctx, **options)`` returning maps ``[N, h, w]``; see :class:`MethodContext`.
        needs: One of :data:`NEEDS`.
        explains_layer: ``None``: ``True`` unless ``needs == "input_gradients"``.
        options: Default keyword options of ``fn``.
        overwrite: Replace a method registered earlier under ``name``.
        explains: What the maps explain, one of :data:`EXPLAINS`: ``"score"`` when
            ``fn`` uses ``ctx.gradients``/``ctx.scores`` (the requested score),
            ``"probability"`` when it reads ``ctx.predict``, ``"none"`` when no class is used.

    Raises:
        TypeError: ``fn`` not callable, or ``name`` not a str.
        ValueError: A taken name, an unknown ``needs`` or ``explains``.

    Example:
        >>> register_method("mean_act", lambda ctx: ctx.activations().mean(-1),
        ...                 needs="activations", explains="none")  # doctest: +SKIP
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"`name` must be a non-empty str. Received: name={name!r}")
    if not callable(fn):
        raise TypeError(f"`fn` must be callable. Received: fn of type {type(fn).__name__}")
    if needs not in NEEDS:
        raise ValueError(f"`needs` must be one of {NEEDS}. Received: needs={needs!r}")
    if explains not in EXPLAINS:
        raise ValueError(f"`explains` must be one of {EXPLAINS}. Received: explains={explains!r}")
    if name in cams.METHODS or (name in REGISTRY and not overwrite):
        raise ValueError(
            f"`name` {name!r} is already a method; pick another name"
            + ("" if name in cams.METHODS else " or pass overwrite=True")
            + f". Received: name={name!r}"
        )
    if explains_layer is None:
        explains_layer = needs != "input_gradients"
    method = Method(name, fn, needs, bool(explains_layer), dict(options or {}), explains=explains)
    REGISTRY[name] = method
    return method


def get(name: str) -> Method:
    """The registered method ``name``; ``KeyError`` when there is none."""
    return REGISTRY[name]


def explained_score(method: str, score: str) -> str:
    """What ``method``'s maps explain when ``score`` is the score really used.

    ``"logit"`` or ``"probability"``, or ``"none"`` for a class-agnostic method.
    The built-in gradient methods explain ``score``.

    Raises:
        ValueError: An unknown method or score.

    Example:
        >>> explained_score("eigencam", "logit"), explained_score("scorecam", "probability")
        ('none', 'probability')
    """
    if score not in cams.SCORES:
        raise ValueError(f"`score` must be one of {cams.SCORES}. Received: score={score!r}")
    if method in cams.METHODS:
        return score
    if method not in REGISTRY:
        raise ValueError(
            f"`method` must be one of {cams.available_methods()}. Received: method={method!r}"
        )
    explains = REGISTRY[method].explains
    return score if explains == "score" else explains


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
    ) -> None:
        self.model = model
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
        return cams.predict_probabilities(
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
        return self._checked(cams.predict_scores(
            self.model, x, score=self.score, output=self.output, batch_size=self.batch_size,
            head=self.head.request,
        ))  # fmt: skip

    def activations(self, images: np.ndarray | None = None) -> np.ndarray:
        """The explained layer's output ``[B, h, w, K]`` (float32)."""
        x = self.images if images is None else images
        return cams.layer_activations(self.model, x, self.target_layer, batch_size=self.batch_size)

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
        layer = None if wrt == "input" else self.target_layer
        fn = _gradient_function(self.model, self.info, self.head, layer, x, guided=guided)
        src, grads = [], []
        for i in range(0, len(x), self.batch_size):
            s, g = fn(x[i : i + self.batch_size], t[i : i + self.batch_size].astype(np.int32))
            src.append(s)
            grads.append(g)
        return np.concatenate(src), np.concatenate(grads)

    def predict_from_layer(self, activations: np.ndarray) -> np.ndarray:
        """The head's probabilities ``[B, C]`` with the explained layer's output replaced.

        Runs only the part of the model after the layer. Needs a layer in the
        top-level graph of a Functional or Sequential model.
        """
        suffix = _suffix_model(self.model, self.target_layer, self.layer)
        a = np.ascontiguousarray(activations, np.float32)
        output = self.output if self.head.key is not None else None
        return cams.predict_probabilities(
            suffix, a, output=output, batch_size=self.batch_size, head=self.head.request
        )

    def scores_from_layer(self, activations: np.ndarray) -> np.ndarray:
        """The explained score ``[B, C]`` with the explained layer's output replaced.

        As :meth:`predict_from_layer`, for :attr:`score` (logits or probabilities).
        """
        suffix = _suffix_model(self.model, self.target_layer, self.layer)
        a = np.ascontiguousarray(activations, np.float32)
        output = self.output if self.head.key is not None else None
        return self._checked(cams.predict_scores(
            suffix, a, score=self.score, output=output, batch_size=self.batch_size,
            head=self.head.request,
        ))  # fmt: skip

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


def _batches(n: int, size: int) -> Iterator[np.ndarray]:
    """Index arrays ``[0, size), [size, 2 size), ...`` covering ``range(n)``."""
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
) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``fn(images, targets) -> (source, grads)``, compiled once per model and key."""
    path = "" if layer is None else next(c.path for c in info.calls if c.layer is layer)
    key = ("raw_gradients", path, head, x.shape[1:], x.dtype.str, guided)
    engines = cams._ENGINES.setdefault(model, {})
    engine = engines.get(key)
    if engine is None:
        engine = cams._Engine(fn=_build_gradients(model, info, head, layer, x, guided))
        engines[key] = engine
    return engine.fn


def _build_gradients(
    model: keras.Model,
    info: Any,
    head: Any,
    layer: keras.layers.Layer | None,
    x: np.ndarray,
    guided: bool = False,
) -> Callable:
    """The shared backend interface (:mod:`cam_callback.backends`), returning raw ``(A, G)``."""
    backend = backends.get()
    forward = functools.partial(
        cams._forward, info=info, head=head, target_layer=layer, count=not backend.EAGER
    )
    if guided:
        plain, relus = forward, [c.layer for c in info.calls if _relu_kind(c.layer)]

        def forward(call: Any, m: Any, images: Any, targets: Any, capture: Any) -> tuple:
            # Guided ReLUs go in first, the capture hooks on top of them: a ReLU layer
            # that is also the explained layer is then both guided and recorded.
            with _guided(relus):
                return plain(call, m, images, targets, capture)

    def finish(source: Any, grads: Any, probs: Any, chosen: Any) -> tuple[Any, Any]:
        return keras.ops.cast(source, "float32"), keras.ops.cast(grads, "float32")

    fn = cams.build_cam_function(model, info, layer, x, forward, finish)

    def run(images: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = fn(images, targets)
        return out[0], out[1]

    return run


@keras.ops.custom_gradient
def guided_relu(x: Any) -> Any:
    """ReLU whose gradient passes only where both its input and the gradient are positive."""
    ops = keras.ops
    y = ops.relu(x)

    def grad(*args: Any, upstream: Any = None) -> Any:
        if upstream is None:
            (upstream,) = args
        return upstream * ops.cast(x > 0, upstream.dtype) * ops.cast(upstream > 0, upstream.dtype)

    return y, grad


def _relu_kind(layer: Any) -> str:
    """``"layer"`` for a ReLU layer, ``"activation"`` for a layer with ``activation=relu``."""
    if isinstance(layer, keras.layers.ReLU):
        plain = not layer.negative_slope and not layer.threshold
        return "layer" if plain else ""
    if isinstance(layer, keras.layers.Activation) or hasattr(layer, "activation"):
        return (
            "activation"
            if _layers.activation_name(getattr(layer, "activation", None)) == "relu"
            else ""
        )
    return ""


class _guided:
    """Swaps every ReLU of ``relus`` for :func:`guided_relu` while it is entered."""

    def __init__(self, relus: list) -> None:
        self.relus = relus
        self.saved: list = []

    def __enter__(self) -> None:
        ops = keras.ops
        for layer in self.relus:
            if _relu_kind(layer) == "layer":
                cap = layer.max_value

                def call(inputs: Any, *a: Any, _cap: Any = cap, **k: Any) -> Any:
                    y = guided_relu(inputs)
                    return y if _cap is None else ops.minimum(y, _cap)

                self.saved.append((layer, "call", layer.__dict__.get("call")))
                object.__setattr__(layer, "call", call)
            else:
                self.saved.append((layer, "activation", layer.activation))
                object.__setattr__(layer, "activation", guided_relu)

    def __exit__(self, *exc: Any) -> None:
        for layer, attr, value in reversed(self.saved):
            if attr == "call" and value is None:
                object.__delattr__(layer, "call")
            else:
                object.__setattr__(layer, attr, value)
        self.saved = []


def check(method: str, calls: list, target_layer: Any, path: str) -> None:
    """Checks a registered method needs against the model, before any map (inspect_model)."""
    if method == "cam":
        _gap_dense_head(calls, target_layer, path)


def compute(
    model: keras.Model,
    images: Any,
    *,
    method: str,
    layer: Any,
    target: Any,
    score: str,
    output: Any,
    batch_size: int,
    method_options: Mapping[str, Any] | None = None,
    head: str = "auto",
) -> Any:
    """``compute_cams`` for a registered method: checks, runs ``fn``, normalises."""
    spec = REGISTRY[method]
    options = dict(spec.options)
    if method_options is not None and not isinstance(method_options, Mapping):
        raise TypeError(
            f"`method_options` must be a dict of {method!r}'s options. "
            f"Received: method_options={method_options!r}"
        )
    for k, v in (method_options or {}).items():
        if k not in options:
            raise ValueError(
                f"`method_options` for {method!r} takes {sorted(options) or 'no options'}. "
                f"Received: {k!r}"
            )
        options[k] = v
    x = cams.prepare_images(model, images)
    info, head, path, target_layer = cams._inspect(
        model, x, layer, "saliency" if not spec.explains_layer else "gradcam", output, score, head
    )
    targets = cams._prepare_targets(target, len(x), head.n_classes)
    ctx = MethodContext(
        model,
        x,
        targets,
        info=info,
        head=head,
        layer=path,
        target_layer=target_layer,
        output=output,
        batch_size=batch_size,
    )
    maps = np.asarray(spec.fn(ctx, **options), np.float64)
    input_res = not spec.explains_layer or spec.input_maps
    want = (len(x), *(x.shape[1:3] if input_res else maps.shape[1:3]))
    if maps.ndim != 3 or maps.shape != want:
        raise ValueError(
            f"method {method!r} returned maps of shape {maps.shape}; expected [N, h, w] = "
            f"{want}. Received: method={method!r}"
        )
    return cams.CAMResult(
        heatmaps=_normalize(maps).astype(np.float32),
        probabilities=ctx.probabilities.astype(np.float32),
        targets=ctx.targets,
        layer=path,
        method=method,
    )


def _normalize(maps: np.ndarray) -> np.ndarray:
    """ReLU, then each map divided by its own max (an all-zero map stays zero)."""
    maps = np.maximum(np.nan_to_num(maps, nan=0.0), 0.0)
    peak = maps.reshape(len(maps), -1).max(1)[:, None, None]
    return np.where(peak > 0, maps / np.where(peak > 0, peak, 1.0), 0.0)


def _weighted(weights: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``sum_k w_k A_k``: ``[N, K]`` weights on ``[N, h, w, K]`` activations."""
    return np.einsum("nk,nhwk->nhw", weights, a.astype(np.float64))


def principal_component(m: np.ndarray) -> np.ndarray:
    """First principal component of each ``[h*w, K]`` map projected back to ``[h, w]``.

    The rows are centred over positions (as pytorch-grad-cam's ``get_2d_projection``)
    and the sign is fixed so the projection correlates positively with the mean over
    channels: an SVD's sign is arbitrary.
    """
    n, h, w, k = m.shape
    out = np.zeros((n, h, w))
    for i in range(n):
        flat = m[i].reshape(h * w, k).astype(np.float64)
        centred = flat - flat.mean(0)
        if not np.any(centred):
            continue
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        proj = centred @ vt[0]
        mean = flat.mean(1)
        if np.dot(proj - proj.mean(), mean - mean.mean()) < 0:
            proj = -proj
        out[i] = proj.reshape(h, w)
    return out


# ---- layer maps from gradients ----


def xgradcam(ctx: MethodContext) -> np.ndarray:
    """XGrad-CAM (Fu et al. 2020): ``w_k = sum_ij (A_ijk / sum_ab A_abk) G_ijk``."""
    a, g = ctx.gradients()
    a64, g64 = a.astype(np.float64), g.astype(np.float64)
    total = a64.sum(axis=(1, 2), keepdims=True)
    share = np.where(total != 0, a64 / np.where(total != 0, total, 1.0), 0.0)
    return _weighted((share * g64).sum(axis=(1, 2)), a64)


def gradcam_elementwise(ctx: MethodContext) -> np.ndarray:
    """``sum_k ReLU(G_k * A_k)`` (pytorch-grad-cam's GradCAMElementWise)."""
    a, g = ctx.gradients()
    return np.maximum(a.astype(np.float64) * g, 0.0).sum(-1)


def eigengradcam(ctx: MethodContext) -> np.ndarray:
    """First principal component of ``G * A`` (sign: positive with its channel mean)."""
    a, g = ctx.gradients()
    return principal_component(a.astype(np.float64) * g)


# ---- layer maps without gradients ----


def eigencam(ctx: MethodContext) -> np.ndarray:
    """Eigen-CAM (Muhammad & Yeasin 2020): first principal component of ``A``.

    Class-agnostic (explains ``"none"``). The sign makes the map correlate
    positively with the mean activation.
    """
    return principal_component(ctx.activations())


def cam(ctx: MethodContext) -> np.ndarray:
    """CAM (Zhou et al. 2016): ``sum_k W[k, c] A_k`` for a layer -> GAP -> Dense head.

    ``W`` is the Dense kernel: the map explains the logit whatever ``score`` asks
    (the bias does not vary in space).
    """
    dense = _gap_dense_head(ctx.info.calls, ctx.target_layer, ctx.layer)
    kernel = keras.ops.convert_to_numpy(dense.kernel).astype(np.float64)
    a = ctx.activations()
    weights = kernel[:, ctx.targets].T  # [N, K]
    if ctx.head.kind == "binary":  # one unit: class 0's logit is -z
        weights = np.where((ctx.targets == 0)[:, None], -kernel[:, 0], kernel[:, 0])
    return _weighted(weights, a)


def _gap_dense_head(calls: list, target_layer: Any, path: str) -> Any:
    """The Dense layer of a layer -> GAP -> Dense head; a ValueError for any other head."""
    leaves = [c for c in calls if not isinstance(c.layer, keras.Model)]
    idx = next((i for i, c in enumerate(leaves) if c.layer is target_layer), None)
    following = (
        [type(c.layer).__name__ for c in leaves[idx + 1 : idx + 4]] if idx is not None else []
    )
    ok = (
        idx is not None
        and len(leaves) >= idx + 3
        and isinstance(leaves[idx + 1].layer, keras.layers.GlobalAveragePooling2D)
        and isinstance(leaves[idx + 2].layer, keras.layers.Dense)
        and all(
            isinstance(c.layer, (keras.layers.Activation, keras.layers.Softmax))
            for c in leaves[idx + 3 :]
        )
    )
    if not ok:
        raise ValueError(
            "`method` 'cam' needs the explained layer to feed GlobalAveragePooling2D -> Dense "
            f"(the original CAM head); after {path!r} come {following or 'no layers'}. "
            "Use 'gradcam', which equals CAM on such a head. Received: method='cam'"
        )
    return leaves[idx + 2].layer


def _upsampled_masks(a: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """``([K, H, W] masks, bool [K] varies)``: channels upsampled and min-max scaled to [0, 1].

    A channel constant after upsampling has no mask (all zeros, ``varies`` False).
    """
    up = resize_bilinear(np.moveaxis(a, -1, 0).astype(np.float64), h, w)
    lo = up.min(axis=(1, 2), keepdims=True)
    span = up.max(axis=(1, 2), keepdims=True) - lo
    masks = np.where(span > 0, (up - lo) / np.where(span > 0, span, 1.0), 0.0)
    return masks, span.reshape(-1) > 0


def scorecam(ctx: MethodContext, *, max_channels: int | None = None) -> np.ndarray:
    """Score-CAM (Wang et al. 2020): ``ReLU(sum_k s_c(X * M_k) A_k)``.

    ``M_k`` is channel ``k`` upsampled bilinearly to the image and scaled to [0, 1];
    ``s_c`` the target's explained score on the masked image: its softmax
    probability with ``score="probability"`` (the paper's and the authors' code's
    weight), its logit with ``score="logit"`` (the class score pytorch-grad-cam's
    ScoreCAM reads). As in the authors' code, a channel that is constant after
    upsampling gets no mask and weighs 0. The masked copies are made
    ``batch_size`` at a time. ``max_channels``: only the top-k channels by spatial
    variance (Faster Score-CAM); the others weigh 0.
    """
    if max_channels is not None and (
        isinstance(max_channels, bool) or not isinstance(max_channels, int) or max_channels < 1
    ):
        raise ValueError(
            "`max_channels` must be None or a positive int. "
            f"Received: max_channels={max_channels!r}"
        )
    a = ctx.activations().astype(np.float64)
    n, h, w = ctx.images.shape[:3]
    k = a.shape[-1]
    weights = np.zeros((n, k))
    for i in range(n):
        chans = np.arange(k)
        if max_channels is not None and max_channels < k:
            var = a[i].reshape(-1, k).var(0)
            chans = np.sort(np.argsort(-var, kind="stable")[:max_channels])
        for part in _batches(len(chans), ctx.batch_size):
            masks, varies = _upsampled_masks(a[i][..., chans[part]], h, w)
            if not varies.any():
                continue
            masked = ctx.images[i][None] * masks[varies][..., None].astype(ctx.images.dtype)
            weights[i, chans[part][varies]] = ctx.scores(masked)[:, ctx.targets[i]]
    return _weighted(weights, a)


def ablationcam(ctx: MethodContext) -> np.ndarray:
    """Ablation-CAM (Desai & Ramaswamy 2020): ``w_k = (y - y_k) / y``, ``ReLU(sum w_k A_k)``.

    ``y`` is the target's explained score, ``y_k`` the same with channel ``k`` of
    the layer set to zero. With ``score="logit"`` (the default) ``y`` is the class
    score before the softmax, as in the paper and pytorch-grad-cam's AblationCAM;
    ``score="probability"`` uses the softmax probability in the same formula.
    Where ``y <= 0`` (a negative logit) the division flips the weights' sign, as
    the formula does in both; a warning says so, and ``y = 0`` gives a zero map.
    Only the model after the layer runs, on ``batch_size`` ablated copies at a time.
    """
    a = ctx.activations()
    n, _, _, k = a.shape
    y = ctx.scores_from_layer(a)[np.arange(n), ctx.targets].astype(np.float64)
    if np.any(y <= 0):
        warnings.warn(
            f"ablationcam: the target's {ctx.score} y is <= 0 for {int(np.sum(y <= 0))} of {n} "
            "images; the weights (y - y_k) / y change sign there (a zero map where y = 0). "
            "score='probability' keeps y > 0.",
            UserWarning,
            stacklevel=3,
        )
    weights = np.zeros((n, k))
    for i in range(n):
        yk = np.empty(k)
        for part in _batches(k, ctx.batch_size):
            ablated = np.repeat(a[i][None], len(part), 0)
            ablated[np.arange(len(part)), :, :, part] = 0.0  # copy j loses channel part[j]
            yk[part] = ctx.scores_from_layer(ablated)[:, ctx.targets[i]]
        weights[i] = (y[i] - yk) / y[i] if y[i] != 0 else 0.0
    return _weighted(weights, a)


# ---- input-space maps ----


def gradient_x_input(ctx: MethodContext) -> np.ndarray:
    """``|sum_c x_c * d score / d x_c|`` (absolute sum over channels, see the module doc)."""
    x, g = ctx.gradients(wrt="input")
    return np.abs((x.astype(np.float64) * g).sum(-1))


def integrated_gradients(
    ctx: MethodContext, *, steps: int = 32, baseline: float | np.ndarray = 0.0
) -> np.ndarray:
    """Integrated Gradients (Sundararajan et al. 2017), ``|sum_c|`` over channels.

    ``(x - x0) * mean_{k=1..steps} G(x0 + k/steps (x - x0))``: a right Riemann sum
    from the ``baseline`` ``x0`` (zeros by default; a scalar or an image). Summed
    over channels before the absolute value, so the map's total is the attribution
    that completeness ties to ``f(x) - f(x0)``. The path images are made
    ``batch_size`` at a time.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"`steps` must be a positive int. Received: steps={steps!r}")
    x = ctx.images.astype(np.float64)
    n = len(x)
    x0 = np.asarray(baseline, np.float64)
    try:
        fits = np.broadcast_shapes(x0.shape, x.shape) == x.shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"`baseline` must be a scalar or broadcast to the images {x.shape}. "
            f"Received: baseline of shape {x0.shape}"
        )
    diff = x - x0
    total = np.zeros(x.shape)
    for part in _batches(steps * n, ctx.batch_size):  # (step, image) pairs, step-major
        img, alpha = part % n, (part // n + 1) / steps
        path = diff[img]  # x0 + alpha (x - x0), built in place: one batch of copies
        path *= alpha[:, None, None, None]
        path += x0[img] if x0.ndim == 4 else x0
        _, g = ctx.gradients(path, ctx.targets[img], wrt="input")
        np.add.at(total, img, g)
    return np.abs((diff * total / steps).sum(-1))


def smoothgrad(ctx: MethodContext, *, samples: int = 16, noise: float = 0.15, seed: int = 0):
    """SmoothGrad (Smilkov et al. 2017): the gradient averaged over noisy copies, max ``|.|``.

    Noise: Gaussian, standard deviation ``noise * (max - min)`` of each image,
    drawn from ``numpy.random.default_rng(seed)`` sample by sample, so a map is
    reproducible. The noisy copies are made ``batch_size`` at a time.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"`samples` must be a positive int. Received: samples={samples!r}")
    x = ctx.images.astype(np.float64)
    n = len(x)
    spread = noise * (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3)))
    rng = np.random.default_rng(seed)
    total = np.zeros(x.shape)
    for part in _batches(samples * n, ctx.batch_size):  # (sample, image) pairs, sample-major
        img = part % n
        noisy = rng.standard_normal((len(part), *x.shape[1:]))  # in place: one batch
        noisy *= spread[img][:, None, None, None]
        noisy += x[img]
        _, g = ctx.gradients(noisy, ctx.targets[img], wrt="input")
        np.add.at(total, img, g)
    return np.abs(total / samples).max(-1)


def guided_gradcam(ctx: MethodContext) -> np.ndarray:
    """Guided Grad-CAM (Selvaraju et al. 2017): ``max_c |guided gradient|`` x Grad-CAM.

    Grad-CAM at the explained layer, upsampled bilinearly to the input and scaled
    to [0, 1], times the guided-backpropagation saliency (max over channels).
    """
    _, g = ctx.gradients(wrt="input", guided=True)
    grad_cam = cams.compute_cams(
        ctx.model,
        ctx.images,
        layer=ctx.target_layer,
        target=ctx.targets,
        score=ctx.score,
        output=ctx.output,
        batch_size=ctx.batch_size,
        head=ctx.head.request,
    ).heatmaps
    h, w = ctx.images.shape[1:3]
    return np.abs(g.astype(np.float64)).max(-1) * resize_bilinear(
        grad_cam.astype(np.float64), h, w
    )


def occlusion(ctx: MethodContext, *, patch: int = 8, stride: int = 4, value: float = 0.0):
    """Occlusion sensitivity (Zeiler & Fergus 2014): the drop of the target's explained score.

    Each ``patch`` x ``patch`` square, moved by ``stride``, is set to ``value``;
    a pixel's map is the mean drop over the squares covering it. The score is the
    logit or the probability as ``score`` asks (captum's Occlusion reads whatever
    the model returns). The occluded copies are made ``batch_size`` at a time.
    """
    for arg, v in (("patch", patch), ("stride", stride)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"`{arg}` must be a positive int. Received: {arg}={v!r}")
    n, h, w = ctx.images.shape[:3]
    tops = list(range(0, max(h - patch, 0) + 1, stride))
    lefts = list(range(0, max(w - patch, 0) + 1, stride))
    if tops[-1] + patch < h:
        tops.append(h - patch)
    if lefts[-1] + patch < w:
        lefts.append(w - patch)
    boxes = [(t, lf) for t in tops for lf in lefts]
    cover = np.zeros((h, w))
    for t, lf in boxes:
        cover[t : t + patch, lf : lf + patch] += 1
    out = np.zeros((n, h, w))
    y = ctx.scores()[np.arange(n), ctx.targets].astype(np.float64)
    for i in range(n):
        for part in _batches(len(boxes), ctx.batch_size):
            batch = np.repeat(ctx.images[i][None], len(part), 0)
            for j, b in enumerate(part):
                t, lf = boxes[b]
                batch[j, t : t + patch, lf : lf + patch] = value
            drop = y[i] - ctx.scores(batch)[:, ctx.targets[i]]
            for j, b in enumerate(part):
                t, lf = boxes[b]
                out[i, t : t + patch, lf : lf + patch] += drop[j]
    return out / np.maximum(cover, 1)


for _name, _fn, _needs, _layer, _explains in (
    ("xgradcam", xgradcam, "layer_gradients", True, "score"),
    ("gradcam_elementwise", gradcam_elementwise, "layer_gradients", True, "score"),
    ("eigengradcam", eigengradcam, "layer_gradients", True, "score"),
    ("cam", cam, "activations", True, "logit"),
    ("eigencam", eigencam, "activations", True, "none"),
    ("scorecam", scorecam, "forwards", True, "score"),
    ("ablationcam", ablationcam, "forwards", True, "score"),
    ("gradient_x_input", gradient_x_input, "input_gradients", False, "score"),
    ("integrated_gradients", integrated_gradients, "input_gradients", False, "score"),
    ("smoothgrad", smoothgrad, "input_gradients", False, "score"),
    ("occlusion", occlusion, "forwards", False, "score"),
    ("guided_gradcam", guided_gradcam, "input_gradients", True, "score"),
):
    _sig = {
        k: p.default
        for k, p in inspect.signature(_fn).parameters.items()
        if p.kind is p.KEYWORD_ONLY
    }
    register_method(
        _name, _fn, needs=_needs, explains_layer=_layer, options=_sig, explains=_explains
    )
# guided_gradcam explains a layer (its Grad-CAM) but draws at the input's resolution
REGISTRY["guided_gradcam"] = dataclasses.replace(REGISTRY["guided_gradcam"], input_maps=True)


def with_options(name: str, **options: Any) -> Callable[..., np.ndarray]:
    """A registered method with other defaults, to register under a new name.

    Example:
        >>> register_method("scorecam64", with_options("scorecam", max_channels=64),
        ...                 needs="forwards")  # doctest: +SKIP
    """
    base = REGISTRY[name]
    return functools.partial(base.fn, **{**base.options, **options})
