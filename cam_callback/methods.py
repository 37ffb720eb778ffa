"""The method registry beyond the five built-in gradient maps, written once for every backend.

Each method is a function ``fn(ctx, **options) -> maps`` over a :class:`MethodContext`,
which offers only backend-neutral primitives: the explained layer's activations and
their gradients (or the input's), the model's probabilities for any batch, and the
probabilities from the explained layer onwards. The maths is numpy. Each method
states what it ``needs``:

- ``"layer_gradients"``: ``A`` and ``G = d score / d A`` of the explained layer.
- ``"input_gradients"``: the input and ``d score / d input``.
- ``"activations"``: ``A`` only (and, for ``"cam"``, the head's weights).
- ``"forwards"``: forward passes only (masked or occluded inputs, ablated channels).

Input-space maps are reduced over channels as follows. ``gradient_x_input`` and
``integrated_gradients`` by the absolute **sum**: their attributions are additive
over input dimensions (IG's completeness), so a pixel's share is the sum of its
channels'. ``smoothgrad`` (and ``"saliency"``) by the **max** of ``|gradient|``,
as Simonyan et al. and tf-keras-vis do: a gradient is a sensitivity, not a share,
and the most sensitive channel says how much the pixel matters.
``guided_gradcam`` by the max of ``|guided gradient|``, then times Grad-CAM.

A user adds a method by name with :func:`register_method`; it then works in
``compute_cams``, ``CAMTracker`` and ``evaluate``.

Example:
    >>> def edges(ctx):
    ...     a = ctx.activations()  # [N, h, w, K]
    ...     return np.abs(np.diff(a.mean(-1), axis=1, append=0))
    >>> register_method("edges", edges, needs="activations")  # doctest: +SKIP
    >>> compute_cams(model, x, method="edges").heatmaps.shape  # doctest: +SKIP
    (8, 6, 6)
"""

from __future__ import annotations

import dataclasses
import functools
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

NEEDS: tuple[str, ...] = ("layer_gradients", "input_gradients", "activations", "forwards")


@dataclass(frozen=True)
class Method:
    """A registered method.

    Attributes:
        name: The name ``compute_cams(method=...)`` takes.
        fn: ``fn(ctx, **options) -> maps [N, h, w]`` (any scale; negatives are cut).
        needs: One of :data:`NEEDS`.
        explains_layer: Needs the explained layer (``True``) or explains the input.
        options: Default options, overridable by ``compute_cams(..., method_options=...)``.
    """

    name: str
    fn: Callable[..., np.ndarray]
    needs: str
    explains_layer: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)
    input_maps: bool = False  # maps at the input's resolution although a layer is explained


REGISTRY: dict[str, Method] = {}


def register_method(
    name: str,
    fn: Callable[..., np.ndarray],
    *,
    needs: str,
    explains_layer: bool | None = None,
    options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Method:
    """Adds a method by name, for ``compute_cams``, ``CAMTracker`` and ``evaluate``.

    Args:
        name: A new name (the built-ins cannot be replaced).
        fn: ``fn(ctx, **options)`` returning maps ``[N, h, w]``; see :class:`MethodContext`.
        needs: One of :data:`NEEDS`.
        explains_layer: ``None``: ``True`` unless ``needs == "input_gradients"``.
        options: Default keyword options of ``fn``.
        overwrite: Replace a method registered earlier under ``name``.

    Raises:
        TypeError: ``fn`` not callable, or ``name`` not a str.
        ValueError: A taken name or an unknown ``needs``.

    Example:
        >>> register_method("mean_act", lambda ctx: ctx.activations().mean(-1),
        ...                 needs="activations")  # doctest: +SKIP
    """
    from cam_callback import cams

    if not isinstance(name, str) or not name:
        raise TypeError(f"`name` must be a non-empty str. Received: name={name!r}")
    if not callable(fn):
        raise TypeError(f"`fn` must be callable. Received: fn of type {type(fn).__name__}")
    if needs not in NEEDS:
        raise ValueError(f"`needs` must be one of {NEEDS}. Received: needs={needs!r}")
    if name in cams.METHODS or (name in REGISTRY and not overwrite):
        raise ValueError(
            f"`name` {name!r} is already a method; pick another name"
            + ("" if name in cams.METHODS else " or pass overwrite=True")
            + f". Received: name={name!r}"
        )
    if explains_layer is None:
        explains_layer = needs != "input_gradients"
    method = Method(name, fn, needs, bool(explains_layer), dict(options or {}))
    REGISTRY[name] = method
    return method


def get(name: str) -> Method:
    """The registered method ``name``; ``KeyError`` when there is none."""
    return REGISTRY[name]


class MethodContext:
    """What a method may ask for, the same on every backend (numpy in, numpy out).

    Attributes:
        images: ``[N, H, W, C]`` in the model's input space.
        targets: int ``[N]``, the class explained per image (resolved from "predicted").
        probabilities: ``[N, C]`` on ``images``.
        layer: The explained layer's path (``""`` for input-space methods).
        score: The score really used, ``"logit"`` or ``"probability"``.
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
        self._info = info
        self._head = head
        self._target_layer = target_layer
        self._output = output
        self._batch_size = batch_size
        self.probabilities = self.predict(images)
        predicted = self.probabilities.argmax(1)
        self.targets = np.where(targets < 0, predicted, targets).astype(np.int64)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """The head's probabilities ``[B, C]`` for any batch in the input space."""
        from cam_callback import cams

        x = np.ascontiguousarray(images, dtype=self.images.dtype)
        return cams._probabilities(self.model, self._head, x, self._batch_size)

    def activations(self, images: np.ndarray | None = None) -> np.ndarray:
        """The explained layer's output ``[B, h, w, K]`` (float32)."""
        from cam_callback import cams

        x = self.images if images is None else images
        return cams.layer_activations(
            self.model, x, self._target_layer, batch_size=self._batch_size
        )

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
        x = self.images if images is None else np.asarray(images, self.images.dtype)
        t = self.targets if targets is None else np.asarray(targets)
        layer = None if wrt == "input" else self._target_layer
        fn = _gradient_function(self.model, self._info, self._head, layer, x, guided=guided)
        src, grads = [], []
        for i in range(0, len(x), self._batch_size):
            s, g = fn(x[i : i + self._batch_size], t[i : i + self._batch_size].astype(np.int32))
            src.append(s)
            grads.append(g)
        return np.concatenate(src), np.concatenate(grads)

    def predict_from_layer(self, activations: np.ndarray) -> np.ndarray:
        """The head's probabilities ``[B, C]`` with the explained layer's output replaced.

        Runs only the part of the model after the layer. Needs a layer in the
        top-level graph of a Functional or Sequential model.
        """
        from cam_callback import cams

        suffix = _suffix_model(self.model, self._target_layer, self.layer)
        a = np.ascontiguousarray(activations, np.float32)
        key = self._head.key
        out = cams.predict_probabilities(
            suffix,
            a,
            output=self._output if key is not None else None,
            batch_size=self._batch_size,
            head=self._head.request,
        )
        return out


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
    from cam_callback import cams

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
    from cam_callback import backends, cams

    backend = backends.get()
    forward = functools.partial(
        cams._forward, info=info, head=head, target_layer=layer, count=not backend.EAGER
    )
    if guided:
        plain, relus = forward, [c.layer for c in info.calls if _relu_kind(c.layer)]

        def forward(call: Any, m: Any, images: Any, targets: Any, capture: Any) -> tuple:
            def guided_call(mm: Any, xx: Any) -> Any:
                with _guided(relus):
                    return call(mm, xx)

            return plain(guided_call, m, images, targets, capture)

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
    from cam_callback import layers as _layers

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
    from cam_callback import cams

    spec = REGISTRY[method]
    options = dict(spec.options)
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

    Class-agnostic. The sign makes the map correlate positively with the mean activation.
    """
    return principal_component(ctx.activations())


def cam(ctx: MethodContext) -> np.ndarray:
    """CAM (Zhou et al. 2016): ``sum_k W[k, c] A_k`` for a layer -> GAP -> Dense head.

    ``W`` is the Dense kernel (the logit's weights; the bias does not vary in space).
    """
    dense = _gap_dense_head(ctx._info.calls, ctx._target_layer, ctx.layer)
    kernel = keras.ops.convert_to_numpy(dense.kernel).astype(np.float64)
    a = ctx.activations()
    weights = kernel[:, ctx.targets].T  # [N, K]
    if ctx._head.kind == "binary":  # one unit: class 0's logit is -z
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


def _upsampled_masks(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Each channel upsampled to the image and min-max scaled to [0, 1]: ``[K, H, W]``."""
    from cam_callback.evaluation import upsample_maps

    up = upsample_maps(np.moveaxis(a, -1, 0), h, w)
    lo = up.min(axis=(1, 2), keepdims=True)
    span = up.max(axis=(1, 2), keepdims=True) - lo
    return np.where(span > 0, (up - lo) / np.where(span > 0, span, 1.0), 0.0)


def scorecam(ctx: MethodContext, *, max_channels: int | None = None) -> np.ndarray:
    """Score-CAM (Wang et al. 2020): ``ReLU(sum_k p_c(X * M_k) A_k)``.

    ``M_k`` is channel ``k`` upsampled to the image and scaled to [0, 1];
    ``p_c`` the target's softmax probability (the paper's score). The masked
    inputs of an image run as batches. ``max_channels``: only the top-k channels
    by spatial variance (Faster Score-CAM); the others weigh 0.
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
        masks = _upsampled_masks(a[i][..., chans], h, w)  # [k', H, W]
        masked = ctx.images[i][None] * masks[..., None].astype(ctx.images.dtype)
        p = ctx.predict(masked)
        weights[i, chans] = p[:, ctx.targets[i]]
    return _weighted(weights, a)


def ablationcam(ctx: MethodContext) -> np.ndarray:
    """Ablation-CAM (Desai & Ramaswamy 2020): ``w_k = (y - y_k) / y``, ``ReLU(sum w_k A_k)``.

    ``y`` is the target's probability, ``y_k`` with channel ``k`` of the layer set
    to zero; only the model after the layer runs, all channels of an image in batches.
    """
    a = ctx.activations()
    n, _, _, k = a.shape
    base = ctx.predict_from_layer(a)
    y = base[np.arange(n), ctx.targets].astype(np.float64)
    weights = np.zeros((n, k))
    keep = 1.0 - np.eye(k, dtype=np.float32)  # row k zeroes channel k
    for i in range(n):
        ablated = a[i][None] * keep[:, None, None, :]
        yk = ctx.predict_from_layer(ablated)[:, ctx.targets[i]].astype(np.float64)
        weights[i] = (y[i] - yk) / y[i] if y[i] > 0 else 0.0
    return _weighted(weights, a)


# ---- input-space maps ----


def gradient_x_input(ctx: MethodContext) -> np.ndarray:
    """``sum_c |x_c * d score / d x_c|`` (absolute sum over channels, see the module doc)."""
    x, g = ctx.gradients(wrt="input")
    return np.abs(x.astype(np.float64) * g).sum(-1)


def integrated_gradients(
    ctx: MethodContext, *, steps: int = 32, baseline: float | np.ndarray = 0.0
) -> np.ndarray:
    """Integrated Gradients (Sundararajan et al. 2017), absolute sum over channels.

    ``(x - x0) * mean_{k=1..steps} G(x0 + k/steps (x - x0))``: a right Riemann sum
    from the ``baseline`` ``x0`` (zeros by default; a scalar or an image).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"`steps` must be a positive int. Received: steps={steps!r}")
    x = ctx.images.astype(np.float64)
    x0 = np.broadcast_to(np.asarray(baseline, np.float64), x.shape)
    alphas = np.arange(1, steps + 1) / steps
    path = (x0[None] + alphas[:, None, None, None, None] * (x - x0)[None]).reshape(
        steps * len(x), *x.shape[1:]
    )
    _, g = ctx.gradients(path, np.tile(ctx.targets, steps), wrt="input")
    mean = g.reshape(steps, *x.shape).astype(np.float64).mean(0)
    return np.abs((x - x0) * mean).sum(-1)


def smoothgrad(ctx: MethodContext, *, samples: int = 16, noise: float = 0.15, seed: int = 0):
    """SmoothGrad (Smilkov et al. 2017): the gradient averaged over noisy copies, max ``|.|``.

    Noise: Gaussian, standard deviation ``noise * (max - min)`` of each image,
    drawn from ``numpy.random.default_rng(seed)``, so a map is reproducible.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"`samples` must be a positive int. Received: samples={samples!r}")
    x = ctx.images.astype(np.float64)
    spread = (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3)))[:, None, None, None]
    rng = np.random.default_rng(seed)
    noisy = x[None] + rng.standard_normal((samples, *x.shape)) * (noise * spread)[None]
    _, g = ctx.gradients(
        noisy.reshape(samples * len(x), *x.shape[1:]), np.tile(ctx.targets, samples), wrt="input"
    )
    return np.abs(g.reshape(samples, *x.shape).astype(np.float64).mean(0)).max(-1)


def guided_gradcam(ctx: MethodContext) -> np.ndarray:
    """Guided Grad-CAM (Selvaraju et al. 2017): ``max_c |guided gradient|`` x Grad-CAM.

    Grad-CAM at the explained layer, upsampled bilinearly to the input and scaled
    to [0, 1], times the guided-backpropagation saliency (max over channels).
    """
    from cam_callback import cams
    from cam_callback.evaluation import upsample_maps

    _, g = ctx.gradients(wrt="input", guided=True)
    grad_cam = cams.compute_cams(
        ctx.model,
        ctx.images,
        layer=ctx._target_layer,
        target=ctx.targets,
        score=ctx.score,
        output=ctx._output,
        batch_size=ctx._batch_size,
        head=ctx._head.request,
    ).heatmaps
    h, w = ctx.images.shape[1:3]
    return np.abs(g.astype(np.float64)).max(-1) * upsample_maps(grad_cam, h, w)


def occlusion(ctx: MethodContext, *, patch: int = 8, stride: int = 4, value: float = 0.0):
    """Occlusion sensitivity (Zeiler & Fergus 2014): the target's probability drop.

    Each ``patch`` x ``patch`` square, moved by ``stride``, is set to ``value``;
    a pixel's map is the mean drop over the squares covering it. All the
    occluded copies of an image run as batches.
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
    y = ctx.probabilities[np.arange(n), ctx.targets].astype(np.float64)
    for i in range(n):
        batch = np.repeat(ctx.images[i][None], len(boxes), 0)
        for j, (t, lf) in enumerate(boxes):
            batch[j, t : t + patch, lf : lf + patch] = value
        drop = y[i] - ctx.predict(batch)[:, ctx.targets[i]]
        for j, (t, lf) in enumerate(boxes):
            out[i, t : t + patch, lf : lf + patch] += drop[j]
    return out / np.maximum(cover, 1)


for _name, _fn, _needs, _layer in (
    ("xgradcam", xgradcam, "layer_gradients", True),
    ("gradcam_elementwise", gradcam_elementwise, "layer_gradients", True),
    ("eigengradcam", eigengradcam, "layer_gradients", True),
    ("cam", cam, "activations", True),
    ("eigencam", eigencam, "activations", True),
    ("scorecam", scorecam, "forwards", True),
    ("ablationcam", ablationcam, "forwards", True),
    ("gradient_x_input", gradient_x_input, "input_gradients", False),
    ("integrated_gradients", integrated_gradients, "input_gradients", False),
    ("smoothgrad", smoothgrad, "input_gradients", False),
    ("occlusion", occlusion, "forwards", False),
    ("guided_gradcam", guided_gradcam, "input_gradients", True),
):
    _sig = {
        k: p.default
        for k, p in __import__("inspect").signature(_fn).parameters.items()
        if p.kind is p.KEYWORD_ONLY
    }
    register_method(_name, _fn, needs=_needs, explains_layer=_layer, options=_sig)
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
