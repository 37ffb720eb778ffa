"""Class activation maps for a batch of images in one compiled call: no I/O.

The method maths is written once here in ``keras.ops``; the gradient itself
comes from one small module per Keras backend (:mod:`cam_callback.backends`).
"""

from __future__ import annotations

import dataclasses
import warnings
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from cam_callback import _validate, backends
from cam_callback import layers as _layers
from cam_callback._imageops import deletion_blur, resize_bilinear

METHODS: tuple[str, ...] = ("gradcam", "gradcam++", "layercam", "hirescam", "saliency")
SCORES: tuple[str, ...] = ("logit", "probability")


class CAMError(RuntimeError):
    """A backend failure while computing maps, with the layer and input shape named."""


@dataclass(frozen=True)
class CAMResult:
    """Maps and predictions for a batch.

    Attributes:
        heatmaps: float32 ``[N, h, w]`` at the explained layer's resolution (input
            resolution for ``"saliency"``), each divided by its own max; an
            all-zero map stays zero.
        probabilities: float32 ``[N, C]``, what ``model.predict(images)`` returns.
        targets: int64 ``[N]``, the class explained for each image.
        layer: The explained layer's path, e.g. ``"mobilenetv2_1.00_96/out_relu"``
            (``""`` for ``"saliency"``).
        method: The method used.
    """

    heatmaps: np.ndarray
    probabilities: np.ndarray
    targets: np.ndarray
    layer: str
    method: str


@dataclass(frozen=True)
class _HeadInfo:
    """What the discovery pass learned about one output: shapes and indices, no tensors."""

    shape: tuple[int, ...]
    producer: int | None  # index in calls of the leaf layer whose output *is* this head
    squash: str  # "softmax", "sigmoid" or "" (none found, or not a layer we can see)
    looks_like: str  # from the values: "distribution", "unit" (all in [0, 1]) or ""


@dataclass
class _ModelInfo:
    calls: list[_layers.LayerCall]  # without their eager outputs
    output_names: list[str] | None  # None: a single output
    heads: dict[Any, _HeadInfo]  # keyed like `_select_output`'s result
    warned: set = field(default_factory=set)


@dataclass(frozen=True)
class _Head:
    """How one output is explained.

    ``kind``: ``"softmax"``, ``"logits"`` (a linear multi-class output),
    ``"binary"`` (one sigmoid unit: two classes ``[1 - p, p]``) or
    ``"multilabel"`` (C sigmoid units). ``score``: the score really used.
    ``hook``: ``"input"``/``"activation"`` where the logit is read off a layer.
    """

    key: Any
    kind: str
    score: str
    n_classes: int
    producer: int | None
    hook: str


@dataclass
class _Engine:
    fn: Any
    errors: tuple[type[BaseException], ...] = ()


# Keyed weakly by model: a deleted model frees its traced functions.
_INFO: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ENGINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_TRACES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # all traces, ever


def _count_trace(model: keras.Model | None) -> None:
    if model is not None:
        _TRACES[model] = _TRACES.get(model, 0) + 1


def trace_count(model: keras.Model) -> int:
    """How many times compiled CAM functions were traced for ``model``.

    Example:
        >>> compute_cams(model, x); compute_cams(model, x)  # doctest: +SKIP
        >>> trace_count(model)  # doctest: +SKIP
        1
    """
    return _TRACES.get(model, 0)


def compute_cams(
    model: keras.Model,
    images: Any,
    *,
    layer: str | keras.layers.Layer | None = None,
    method: str = "gradcam",
    target: str | int | Sequence[int] | np.ndarray = "predicted",
    score: str = "logit",
    output: int | str | None = None,
    batch_size: int = 32,
    method_options: dict[str, Any] | None = None,
) -> CAMResult:
    """Computes class activation maps and probabilities for a batch of images.

    One compiled TensorFlow call (forward plus gradient) runs per chunk of
    ``batch_size`` images. The compiled function is built once per model,
    layer, method, score, output and input signature, and reused. The model
    runs with ``training=False`` and is left exactly as it was.

    Args:
        model: A Keras 3 model: Sequential, Functional, nested (transfer
            learning), subclassed (name the layer) or multi-output (see ``output``).
        images: ``[N, H, W, C]`` in the model's input space, what
            ``model.predict`` takes.
        layer: ``None`` for the last layer with a spatial output, searched into
            nested models; a layer name found anywhere; an ``"outer/inner"``
            path; or a ``keras.layers.Layer``.
        method: ``"gradcam"``, ``"gradcam++"``, ``"layercam"``, ``"hirescam"``
            or ``"saliency"`` (max ``|d score / d input|`` over channels).
        target: ``"predicted"`` (argmax), one class id for all images, or one
            class id per image.
        score: ``"logit"`` explains the class score before a final softmax or
            sigmoid, also when it is folded into the last layer;
            ``"probability"`` explains the model's output.
        output: The head of a multi-output model, by index or name.
        batch_size: Images per compiled call.
        method_options: Options of a registered method (see :mod:`cam_callback.methods`),
            e.g. ``{"max_channels": 64}`` for ``"scorecam"``.

    Returns:
        A :class:`CAMResult`.

    Raises:
        TypeError: An argument of the wrong type.
        ValueError: Bad images, layer, method, target, score or output.
        CAMError: TensorFlow failed while computing; the layer and shape are named.

    Example:
        >>> res = compute_cams(model, x_probe, layer="backbone/out_relu")  # doctest: +SKIP
        >>> res.heatmaps.shape, res.targets[:3]  # doctest: +SKIP
        ((8, 3, 3), array([2, 0, 1]))
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`model` must be a keras.Model. Received: model of type {type(model).__name__}"
        )
    _check_method(method)
    if score not in SCORES:
        raise ValueError(f"`score` must be one of {SCORES}. Received: score={score!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"`batch_size` must be a positive int. Received: batch_size={batch_size!r}"
        )
    if method not in METHODS:  # a registered method: cam_callback.methods runs it
        from cam_callback import methods as _methods

        return _methods.compute(
            model,
            images,
            method=method,
            layer=layer,
            target=target,
            score=score,
            output=output,
            batch_size=batch_size,
            method_options=method_options,
        )
    if method_options:
        raise ValueError(
            f"`method_options` are for registered methods; {method!r} takes none. "
            f"Received: method_options={method_options!r}"
        )

    x = prepare_images(model, images)
    info, head, path, target_layer = _inspect(model, x, layer, method, output, score)
    targets = _prepare_targets(target, len(x), head.n_classes)

    key = (path, method, head.score, head.key, x.shape[1:], x.dtype.str)
    engines = _ENGINES.setdefault(model, {})
    engine = engines.get(key)
    if engine is None:
        engine = _build_engine(model, info, target_layer, method, head, x)
        engines[key] = engine

    maps, probs, used = [], [], []
    for chunk, chunk_targets, n in _chunks(x, targets, batch_size=batch_size):
        try:
            m, p, t, connected = engine.fn(chunk, chunk_targets)
        except engine.errors as exc:  # only the backend's own failures get our context
            raise CAMError(
                f"computing {method} maps failed for layer {path or '(input)'!r} on input of "
                f"shape {(n, *x.shape[1:])}: {exc}"
            ) from exc
        if not connected:
            raise ValueError(
                f"`layer` {path!r} does not feed the explained output, so its gradient is "
                f"undefined. Received: layer={path!r}, output={output!r}"
            )
        maps.append(m[:n])
        probs.append(p[:n])
        used.append(t[:n])
    return CAMResult(
        heatmaps=np.concatenate(maps).astype(np.float32, copy=False),
        probabilities=np.concatenate(probs).astype(np.float32, copy=False),
        targets=np.concatenate(used).astype(np.int64, copy=False),
        layer=path,
        method=method,
    )


@dataclass(frozen=True)
class ModelCheck:
    """What :func:`inspect_model` found.

    Attributes:
        layer: The explained layer's path (``""`` for ``"saliency"``).
        n_classes: Classes as the maps see them (2 for a one-unit sigmoid head).
        map_shape: ``(h, w)`` of the maps.
        score: The score really used, ``"logit"`` or ``"probability"``: a logit that
            cannot be found falls back to the probability, with a warning.
        head: ``"softmax"``, ``"logits"`` (a linear multi-class output), ``"binary"``
            (one sigmoid unit) or ``"multilabel"`` (several sigmoid units).
        backend: The Keras backend computing the maps.
    """

    layer: str
    n_classes: int
    map_shape: tuple[int, int]
    score: str = "logit"
    head: str = "softmax"
    backend: str = "tensorflow"


def inspect_model(
    model: keras.Model,
    images: Any,
    *,
    layer: str | keras.layers.Layer | None = None,
    method: str = "gradcam",
    output: int | str | None = None,
    score: str = "logit",
) -> ModelCheck:
    """Runs every check of :func:`compute_cams` without computing maps.

    Lets a caller (``CAMTracker.on_train_begin``) fail before an epoch is spent:
    a head that is not a classifier, a missing or shared layer, bad images.

    Example:
        >>> check = inspect_model(model, x_probe)  # doctest: +SKIP
        >>> check.layer, check.head, check.score  # doctest: +SKIP
        ('conv2', 'softmax', 'logit')
    """
    _check_method(method)
    if score not in SCORES:
        raise ValueError(f"`score` must be one of {SCORES}. Received: score={score!r}")
    x = prepare_images(model, images)
    info, head, path, target_layer = _inspect(model, x, layer, _as_builtin(method), output, score)
    if method not in METHODS:
        from cam_callback import methods as _methods

        _methods.check(method, info.calls, target_layer, path)
    if target_layer is None or _input_maps(method):
        shape = x.shape[1:3]
    else:
        shape = next(c.output_shape for c in info.calls if c.layer is target_layer)[1:3]
    return ModelCheck(
        path,
        head.n_classes,
        (int(shape[0]), int(shape[1])),
        score=head.score,
        head=head.kind,
        backend=backends.name(),
    )


def available_methods() -> tuple[str, ...]:
    """Every method name: the built-ins, then the registry's (:mod:`cam_callback.methods`).

    Example:
        >>> "scorecam" in available_methods()  # doctest: +SKIP
        True
    """
    from cam_callback import methods as _methods

    return METHODS + tuple(_methods.REGISTRY)


def _check_method(method: Any) -> None:
    if not isinstance(method, str) or method not in available_methods():
        raise ValueError(
            f"`method` must be one of {available_methods()}. Received: method={method!r}"
        )


def _as_builtin(method: str) -> str:
    """The built-in whose layer checks a registered method shares (input-space or layer)."""
    if method in METHODS:
        return method
    from cam_callback import methods as _methods

    return "gradcam" if _methods.REGISTRY[method].explains_layer else "saliency"


def _input_maps(method: str) -> bool:
    """A registered method that explains a layer yet draws at the input's resolution."""
    from cam_callback import methods as _methods

    spec = _methods.REGISTRY.get(method)
    return spec is not None and spec.input_maps


def _inspect(
    model: keras.Model, x: np.ndarray, layer: Any, method: str, output: Any, score: str
) -> tuple[_ModelInfo, _Head, str, keras.layers.Layer | None]:
    info = _model_info(model, x)
    head = _resolve_head(info, _select_output(info, output), score)
    if method == "saliency":
        return info, head, "", None
    path, target_layer = _layers.resolve_layer(model, layer, info.calls)
    _check_spatial(path, target_layer, info.calls)
    if _layers.feeds(model, target_layer, head.key) is False:
        raise ValueError(
            f"`layer` {path!r} does not feed the explained output, so its gradient is "
            f"undefined. Received: layer={path!r}, output={output!r}"
        )
    return info, head, path, target_layer


def prepare_images(model: keras.Model, images: Any) -> np.ndarray:
    """Checks ``images`` against the model's input and returns them as an array.

    Raises:
        TypeError: Not numeric, or a model with several inputs.
        ValueError: Empty, NaN/inf, or a shape that does not fit the model.
    """
    x = _validate.image_batch(images, "images")
    expected = _expected_input_shape(model)
    if expected is not None:
        ok = x.ndim == len(expected) and all(
            e is None or e == s for e, s in zip(expected[1:], x.shape[1:], strict=True)
        )
        if not ok:
            want = "(N, " + ", ".join("?" if e is None else str(e) for e in expected[1:]) + ")"
            raise ValueError(
                f"`images` does not fit the model's input: expected shape {want}. "
                f"Received: images.shape={x.shape}"
            )
    dtype = _input_dtype(model)
    x = x.astype(dtype, copy=False)
    return np.ascontiguousarray(x)


def _expected_input_shape(model: keras.Model) -> tuple | None:
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    if not inputs:
        return None
    if len(inputs) != 1:
        raise TypeError(
            f"`model` has {len(inputs)} inputs; compute_cams explains single-input image "
            "models. Received: a multi-input model"
        )
    return tuple(None if d is None else int(d) for d in inputs[0].shape)


def _input_dtype(model: keras.Model) -> str:
    try:
        dtype = model.inputs[0].dtype
    except (AttributeError, ValueError, TypeError, IndexError):
        return "float32"
    dtype = getattr(dtype, "name", str(dtype))
    return dtype if "float" in dtype else "float32"


def _model_info(model: keras.Model, x: np.ndarray) -> _ModelInfo:
    per_model = _INFO.setdefault(model, {})
    key = (x.shape[1:], x.dtype.str)
    info = per_model.get(key)
    if info is not None:
        return info
    sample = x[:8]  # a few images: enough to tell probabilities from free logits
    try:
        with backends.inference(model):
            calls, out = _layers.discover(model, sample)
    except Exception as exc:
        raise ValueError(
            f"`images` could not be run through the model: {exc}. Received: images.shape={x.shape}"
        ) from exc
    names: list[str] | None = None
    if isinstance(out, dict):
        names = list(out)
        outs = dict(out)
    elif isinstance(out, (list, tuple)) and len(out) != 1:
        names = list(getattr(model, "output_names", None) or [str(i) for i in range(len(out))])
        outs = dict(enumerate(out))
    else:
        outs = {None: out[0] if isinstance(out, (list, tuple)) else out}
    heads = {k: _head_info(calls, v, single=k is None) for k, v in outs.items()}
    # Keep shapes and indices only: eager outputs would pin memory for the model's lifetime.
    info = _ModelInfo(
        calls=[dataclasses.replace(c, output=None) for c in calls],
        output_names=names,
        heads=heads,
    )
    per_model[key] = info
    return info


def _head_info(calls: list[_layers.LayerCall], tensor: Any, *, single: bool) -> _HeadInfo:
    """Finds the leaf layer that produced ``tensor`` and what its values look like."""
    values = np.asarray(keras.ops.convert_to_numpy(tensor), dtype=np.float64)
    leaves = [i for i, c in enumerate(calls) if not isinstance(c.layer, keras.Model)]
    producer = next((i for i in reversed(leaves) if calls[i].output is tensor), None)
    if producer is None and single and leaves:
        # Subclassed models may re-wrap the final tensor: accept the last leaf only when
        # its values are the output's, so an op after it (keras.ops.softmax) is not missed.
        last = calls[leaves[-1]]
        if last.output_shape == values.shape and np.allclose(
            keras.ops.convert_to_numpy(last.output), values, rtol=1e-6, atol=1e-7
        ):
            producer = leaves[-1]
    squash = ""
    if producer is not None:
        layer = calls[producer].layer
        if _layers.head_kind(layer) != "linear":
            squash = (
                "softmax"
                if isinstance(layer, keras.layers.Softmax)
                else _layers.activation_name(layer.activation)
            )
    looks_like = ""
    if values.ndim == 2 and np.all((values >= 0) & (values <= 1)):
        looks_like = "unit"
        if values.shape[1] > 1 and np.allclose(values.sum(1), 1.0, atol=1e-3):
            looks_like = "distribution"
    return _HeadInfo(tuple(values.shape), producer, squash, looks_like)


def _resolve_head(info: _ModelInfo, key: Any, score: str) -> _Head:
    """Decides how a head is explained; refuses an output that is not a classifier."""
    h = info.heads[key]
    where = "the model's output" if key is None else f"output {key!r}"
    if len(h.shape) != 2:
        raise ValueError(
            f"{where} has shape {('N', *h.shape[1:])}, not [batch, classes]: class activation "
            "maps explain classifiers (a softmax or sigmoid head). Received: an output of "
            f"rank {len(h.shape)}"
        )
    c = h.shape[1]
    squash, found = h.squash, bool(h.squash)
    if not found and h.producer is None:
        # No layer squashes it, yet it holds probabilities: an op we cannot see did it.
        squash = {"distribution": "softmax", "unit": "sigmoid"}.get(h.looks_like, "")
    if squash == "softmax":
        kind = "softmax"
    elif squash == "sigmoid":
        kind = "binary" if c == 1 else "multilabel"
    elif c > 1:
        kind = "logits"
    else:
        raise ValueError(
            f"{where} is one unit with no sigmoid, which reads as a regression, not a "
            "classifier. For a binary classifier end the model with Dense(1, "
            'activation="sigmoid") (a logit is still explained). Received: an output of '
            f"shape (N, {c}) and no softmax or sigmoid"
        )
    used = score
    if score == "logit" and squash and not found:
        used = "probability"
        if key not in info.warned:
            info.warned.add(key)
            warnings.warn(
                f"score='logit': {where} is a {squash} applied outside any layer (for example "
                "keras.ops.softmax in call()), so its logit cannot be read; explaining the "
                "probability instead. Use a Dense(..., activation=...) or Activation layer "
                "to explain the logit.",
                UserWarning,
                stacklevel=4,
            )
    hook = ""
    if used == "logit" and found:
        hook = _layers.head_kind(info.calls[h.producer].layer)
    return _Head(key, kind, used, 2 if kind == "binary" else c, h.producer, hook)


def _select_output(info: _ModelInfo, output: int | str | None) -> int | str | None:
    names = info.output_names
    if names is None:
        if output not in (None, 0):
            raise ValueError(
                f"`output` selects a head of a multi-output model, but this model has one "
                f"output. Received: output={output!r}"
            )
        return None
    if output is None:
        raise ValueError(
            f"`output` is required: the model has {len(names)} outputs ({', '.join(names)}). "
            "Pass output=<index or name>. Received: output=None"
        )
    if isinstance(output, bool) or not isinstance(output, (int, str)):
        raise TypeError(f"`output` must be an int or a str. Received: output={output!r}")
    by_name = all(isinstance(k, str) for k in info.heads)
    if isinstance(output, int):
        if not 0 <= output < len(names):
            raise ValueError(
                f"`output` index out of range: the model has {len(names)} outputs "
                f"({', '.join(names)}). Received: output={output}"
            )
        return names[output] if by_name else output
    if output not in names:
        raise ValueError(
            f"`output` {output!r} not found. Outputs: {', '.join(names)}. "
            f"Received: output={output!r}"
        )
    return output if by_name else names.index(output)


def _pick(out: Any, key: int | str | None) -> Any:
    if key is None:
        return out[0] if isinstance(out, (list, tuple)) else out
    return out[key]


def _prepare_targets(target: Any, n: int, n_classes: int) -> np.ndarray:
    if isinstance(target, str):
        if target != "predicted":
            raise ValueError(
                '`target` must be "predicted", a class id or one class id per image. '
                f"Received: target={target!r}"
            )
        return np.full(n, -1, dtype=np.int32)
    if isinstance(target, bool):
        raise TypeError(
            f"`target` must be an int class id, not a bool. Received: target={target!r}"
        )
    arr = np.asarray(target)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(
            f"`target` must be integer class ids. Received: target with dtype {arr.dtype}"
        )
    if arr.ndim == 0:
        arr = np.full(n, int(arr))
    elif arr.shape != (n,):
        raise ValueError(
            f"`target` must hold one class id per image: expected shape ({n},). "
            f"Received: target.shape={arr.shape}"
        )
    bad = arr[(arr < 0) | (arr >= n_classes)]
    if bad.size:
        raise ValueError(
            f"`target` class {int(bad[0])} is outside the model's {n_classes} classes "
            f"(0..{n_classes - 1}). Received: target={target!r}"
        )
    return arr.astype(np.int32)


def _check_spatial(path: str, layer: keras.layers.Layer, calls: list[_layers.LayerCall]) -> None:
    seen = [c for c in calls if c.layer is layer]
    if not seen:
        raise ValueError(
            f"`layer` {path!r} is not called when the model runs, so it cannot be explained. "
            f"Layers with spatial output: {', '.join(_layers.spatial_paths(calls))}. "
            f"Received: layer={path!r}"
        )
    if len(seen) > 1:
        raise ValueError(
            f"`layer` {path!r} runs {len(seen)} times in one forward pass (a shared layer), so "
            "its map is ambiguous; pick a layer that runs once. Layers with spatial output: "
            f"{', '.join(_layers.spatial_paths(calls))}. Received: layer={path!r}"
        )
    if not seen[-1].is_spatial:
        raise ValueError(
            f"`layer` {path!r} has output shape {(None, *seen[-1].output_shape[1:])}, not a "
            "spatial [batch, h, w, channels] map with h, w > 1. Layers with spatial output: "
            f"{', '.join(_layers.spatial_paths(calls))}. Received: layer={path!r}"
        )


def _logit_hooks(info: _ModelInfo, head: _Head, store: dict) -> dict[keras.layers.Layer, Any]:
    """Hooks that capture the head's pre-softmax/sigmoid value into ``store``."""
    if not head.hook:
        return {}
    kind = head.hook
    layer = info.calls[head.producer].layer

    def hook(call: Any, args: tuple, kwargs: dict) -> Any:
        if kind == "input":
            store["logits"] = args[0] if args else next(iter(kwargs.values()))
            return call(*args, **kwargs)
        squash = layer.activation
        object.__setattr__(layer, "activation", keras.activations.linear)
        try:
            logits = call(*args, **kwargs)
        finally:
            object.__setattr__(layer, "activation", squash)
        store["logits"] = logits
        return squash(logits)

    return {layer: hook}


def head_scores(outputs: Any, logits: Any, head: _Head) -> tuple[Any, Any]:
    """The probabilities ``[B, C]`` and the per-class scores ``[B, C]`` of a head.

    Written once in ``keras.ops`` for every backend. A binary head becomes two
    classes: probabilities ``[1 - p, p]`` and scores ``[-z, z]`` (logit) or
    ``[1 - p, p]`` (probability). Multi-label probabilities are not renormalised.
    """
    ops = keras.ops
    probs = ops.cast(outputs, "float32")
    scores = ops.cast(logits, "float32") if head.score == "logit" and logits is not None else probs
    if head.kind == "binary":
        probs = ops.concatenate([1.0 - probs, probs], axis=-1)
        scores = (
            ops.concatenate([-scores, scores], axis=-1)
            if head.score == "logit"
            else ops.concatenate([1.0 - scores, scores], axis=-1)
        )
    return probs, scores


def _forward(
    call: Any,
    model: keras.Model,
    images: Any,
    targets: Any,
    capture: Any,
    *,
    info: _ModelInfo,
    head: _Head,
    target_layer: keras.layers.Layer | None,
    count: bool,
) -> tuple[Any, Any, Any, Any]:
    """One forward pass with hooks: ``(summed score, probabilities, chosen, activation)``.

    Shared by every backend: ``call`` runs the model, ``capture`` sees the explained
    layer's output and returns what flows on (JAX adds a zero to differentiate by).
    """
    if count:
        _count_trace(model)
    store: dict[str, Any] = {}
    hooks = _logit_hooks(info, head, store)
    activations: list[Any] = []
    if target_layer is not None:
        previous = hooks.get(target_layer)

        def record(c: Any, args: tuple, kwargs: dict) -> Any:
            out = capture(previous(c, args, kwargs) if previous else c(*args, **kwargs))
            activations.append(out)
            return out

        hooks[target_layer] = record
    with _layers.intercepted(hooks):
        outputs = _pick(call(model, images), head.key)
    probs, scores = head_scores(outputs, store.get("logits"), head)
    chosen, total = pick_scores(probs, scores, targets)
    return total, probs, chosen, activations[0] if activations else None


def _build_engine(
    model: keras.Model,
    info: _ModelInfo,
    target_layer: keras.layers.Layer | None,
    method: str,
    head: _Head,
    x: np.ndarray,
) -> _Engine:
    backend = backends.get()

    def forward(call: Any, m: keras.Model, images: Any, targets: Any, capture: Any) -> tuple:
        return _forward(
            call,
            m,
            images,
            targets,
            capture,
            info=info,
            head=head,
            target_layer=target_layer,
            count=not backend.EAGER,
        )

    def finish(source: Any, grads: Any, probs: Any, chosen: Any) -> tuple[Any, Any, Any]:
        maps = saliency(source, grads) if target_layer is None else combine(source, grads, method)
        return normalize(maps), probs, keras.ops.cast(chosen, "int32")

    fn = build_cam_function(model, info, target_layer, x, forward, finish)
    return _Engine(fn=fn, errors=backend.ERRORS)


def build_cam_function(
    model: keras.Model,
    info: _ModelInfo,
    target_layer: keras.layers.Layer | None,
    x: np.ndarray,
    forward: Any,
    finish: Any,
) -> Any:
    """The backend's compiled ``fn(images, targets)`` for ``forward`` and ``finish``.

    Differentiates by ``target_layer``'s output, or by the input when it is ``None``.
    Shared by the built-in methods and the registry's raw-gradient methods.
    """
    backend = backends.get()
    if target_layer is None:
        source_shape = tuple(x.shape[1:])
    else:
        out_shape = next(c.output_shape for c in info.calls if c.layer is target_layer)
        source_shape = tuple(out_shape[1:])
    fn = backend.cam_function(
        weakref.ref(model),  # the engine is cached on the model: no cycle through it
        forward,
        finish,
        wrt_input=target_layer is None,
        spec=(tuple(x.shape[1:]), x.dtype.name),
        source_shape=source_shape,
    )
    if backend.EAGER:
        _count_trace(model)  # built once; runs eagerly
    return fn


def pick_scores(probs: Any, scores: Any, targets: Any) -> tuple[Any, Any]:
    """The class explained per image (the argmax where ``targets < 0``) and the summed score.

    Images are independent, so the gradient of one sum serves every image.
    """
    ops = keras.ops
    predicted = ops.cast(ops.argmax(probs, axis=-1), "int32")
    chosen = ops.where(targets < 0, predicted, targets)
    picked = ops.take_along_axis(scores, chosen[:, None], axis=1)
    return chosen, ops.sum(picked)


def saliency(images: Any, grads: Any) -> Any:
    """``max_c |d score / d x|``: ``[B, H, W]``."""
    return keras.ops.max(keras.ops.abs(keras.ops.cast(grads, "float32")), axis=-1)


def combine(activations: Any, grads: Any, method: str) -> Any:
    """Weights ``[B, h, w, K]`` activations by their gradients into ``[B, h, w]`` maps.

    Written once in ``keras.ops``: every backend shares it.

    Args:
        activations: The layer's output ``A``.
        grads: ``G = d score / d A``.
        method: ``"gradcam"``: ``relu(sum_k mean_ij(G_k) A_k)``. ``"gradcam++"``:
            Chattopadhay et al.'s weights ``sum_ij alpha_ij relu(G_ij)`` with
            ``alpha = G^2 / (2 G^2 + sum_ab A_ab G^3)`` where that denominator is
            non-zero and 0 elsewhere (no epsilon: it would swamp the small logit
            gradients of large layers). ``"layercam"``: ``relu(sum_k relu(G_k) A_k)``.
            ``"hirescam"``: ``relu(sum_k G_k A_k)``.

    Example:
        >>> tuple(combine(np.ones((1, 2, 2, 1)), np.ones((1, 2, 2, 1)), "gradcam").shape)
        (1, 2, 2)
    """
    ops = keras.ops
    a = ops.cast(activations, "float32")
    g = ops.cast(grads, "float32")
    if method == "gradcam":
        weights = ops.mean(g, axis=(1, 2), keepdims=True)
        cam = ops.sum(weights * a, axis=-1)
    elif method == "gradcam++":
        g2 = ops.square(g)
        denom = 2.0 * g2 + ops.sum(a, axis=(1, 2), keepdims=True) * g2 * g
        nonzero = ops.not_equal(denom, 0.0)
        alpha = ops.where(nonzero, g2 / ops.where(nonzero, denom, 1.0), 0.0)
        weights = ops.sum(alpha * ops.relu(g), axis=(1, 2), keepdims=True)
        cam = ops.sum(weights * a, axis=-1)
    elif method == "layercam":
        cam = ops.sum(ops.relu(g) * a, axis=-1)
    elif method == "hirescam":
        cam = ops.sum(g * a, axis=-1)
    else:
        raise ValueError(f"`method` must be one of {METHODS[:-1]}. Received: method={method!r}")
    return ops.relu(cam)


def normalize(maps: Any) -> Any:
    """Divides each map by its own max; an all-zero map stays zero."""
    ops = keras.ops
    peak = ops.max(maps, axis=(1, 2), keepdims=True)
    return ops.where(peak > 0, maps / ops.where(peak > 0, peak, 1.0), 0.0)


def deletion_faithfulness(
    model: keras.Model,
    images: Any,
    heatmaps: np.ndarray,
    targets: np.ndarray,
    *,
    output: int | str | None = None,
    share: float = 0.2,
    batch_size: int = 32,
    seed: int = 0,
) -> np.ndarray:
    """The deletion test: is a map telling the truth?

    Blurs the most-attended ``share`` of each image (the map upsampled to the
    image), and, apart, a random ``share`` (the same cells every call, by
    ``seed``). Returns ``drop_top - drop_random`` of the target's probability:
    positive when the map points at what the model uses.

    Example:
        >>> res = compute_cams(model, x)  # doctest: +SKIP
        >>> deletion_faithfulness(model, x, res.heatmaps, res.targets)  # doctest: +SKIP
        array([0.31, 0.02, ...], dtype=float32)
    """
    x = prepare_images(model, images)
    _, head, _, _ = _inspect(model, x, None, "saliency", output, "probability")
    n, h, w = x.shape[:3]
    up = resize_bilinear(np.asarray(heatmaps, np.float32), h, w)
    k = max(1, int(round(share * h * w)))
    flat = up.reshape(n, -1)
    top = np.zeros_like(flat, dtype=bool)
    np.put_along_axis(top, np.argsort(-flat, axis=1, kind="stable")[:, :k], True, axis=1)
    rng = np.random.default_rng(seed)
    rand = np.zeros_like(top)
    for i in range(n):
        rand[i, rng.choice(h * w, size=k, replace=False)] = True
    blurred = deletion_blur(x.astype(np.float32)).astype(x.dtype)
    masks = np.stack([top, rand]).reshape(2, n, h, w, 1)
    variants = np.where(masks, blurred[None], x[None]).reshape(2 * n, *x.shape[1:])
    probs = _probabilities(model, head, np.concatenate([x, variants]), batch_size)
    picked = probs[np.arange(3 * n), np.tile(np.asarray(targets, np.int64), 3)]
    base, after_top, after_rand = picked[:n], picked[n : 2 * n], picked[2 * n :]
    return ((base - after_top) - (base - after_rand)).astype(np.float32)


def _cached_function(model: keras.Model, key: tuple, x: np.ndarray, body: Any) -> Any:
    """``body(call, model, images)`` compiled once per model and key, for any batch size.

    ``call(model, images)`` runs the model in inference on the active backend. The
    model is held weakly: the function is cached on it, so a strong reference
    would keep both alive forever.
    """
    engines = _ENGINES.setdefault(model, {})
    engine = engines.get(key)
    if engine is None:
        backend = backends.get()
        model_ref = weakref.ref(model)

        def counted(call: Any, m: keras.Model, images: Any) -> Any:
            if not backend.EAGER:
                _count_trace(m)
            return body(call, m, images)

        fn = backend.forward_function(model_ref, counted, spec=(tuple(x.shape[1:]), x.dtype.name))
        if backend.EAGER:
            _count_trace(model)
        engine = _Engine(fn=fn, errors=backend.ERRORS)
        engines[key] = engine
    return engine.fn


def _chunks(x: np.ndarray, targets: np.ndarray, *, batch_size: int) -> Any:
    """Yields ``(images, targets, n_real)`` chunks of ``batch_size``.

    Where a backend compiles one program per batch shape (JAX), each chunk's images
    (and targets, with -1) are zero-padded to one size, the smallest power of two
    that holds ``min(batch_size, N)``, so a short last chunk reuses the program.
    """
    size = batch_size
    if backends.get().PAD_BATCH:
        size = 1 << max(0, min(batch_size, len(x)) - 1).bit_length()
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size]
        if len(chunk) < size:
            chunk = np.concatenate([chunk, np.zeros((size - len(chunk), *x.shape[1:]), x.dtype)])
        t = targets[start : start + batch_size]
        n = len(t)
        if n < len(chunk):
            t = np.concatenate([t, np.full(len(chunk) - n, -1, t.dtype)])
        yield chunk, t, n


def _in_chunks(fn: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Calls a compiled one-input function on ``batch_size`` images at a time."""
    dummy = np.zeros(len(x), np.int32)
    return np.concatenate(
        [fn(chunk)[:n] for chunk, _, n in _chunks(x, dummy, batch_size=batch_size)]
    )


def _probabilities(model: keras.Model, head: _Head, x: np.ndarray, batch_size: int) -> np.ndarray:
    """The selected head's probabilities as float32 ``[N, C]`` (``[1 - p, p]`` for binary)."""
    forward = _cached_function(
        model,
        ("forward", head.key, head.kind, x.shape[1:], x.dtype.str),
        x,
        lambda call, m, images: head_scores(_pick(call(m, images), head.key), None, head)[0],
    )
    return _in_chunks(forward, x, batch_size)


def predict_probabilities(
    model: keras.Model, images: Any, *, output: int | str | None = None, batch_size: int = 64
) -> np.ndarray:
    """The model's output for ``images`` through one cached compiled forward, ``[N, C]``.

    Example:
        >>> predict_probabilities(model, x).shape  # doctest: +SKIP
        (100, 10)
    """
    x = prepare_images(model, images)
    _, head, _, _ = _inspect(model, x, None, "saliency", output, "probability")
    return _probabilities(model, head, x, batch_size)


def layer_activations(
    model: keras.Model,
    images: Any,
    layer: str | keras.layers.Layer | None = None,
    *,
    batch_size: int = 32,
) -> np.ndarray:
    """A layer's output for ``images``, found as in :func:`compute_cams` (nested paths too).

    Args:
        model: The model.
        images: ``[N, H, W, C]`` in the model's input space.
        layer: A name, an ``"outer/inner"`` path, a layer, or ``None`` for the last
            layer with a spatial output.
        batch_size: Images per compiled call.

    Returns:
        float32 activations, ``[N, h, w, channels]`` for a spatial layer.

    Example:
        >>> path = "mobilenetv2_1.00_96/block_3_expand"
        >>> acts = layer_activations(model, x[:4], path)  # doctest: +SKIP
        >>> frames.activation_grid(acts[0])  # doctest: +SKIP
    """
    x = prepare_images(model, images)
    info = _model_info(model, x)
    path, target = _layers.resolve_layer(model, layer, info.calls)

    def body(call: Any, m: keras.Model, images: Any) -> Any:
        seen: list[Any] = []

        def record(call: Any, args: tuple, kwargs: dict) -> Any:
            out = call(*args, **kwargs)
            seen.append(out)
            return out

        with _layers.intercepted({target: record}):
            call(m, images)
        return keras.ops.cast(seen[-1], "float32")

    fn = _cached_function(model, ("activations", path, x.shape[1:], x.dtype.str), x, body)
    try:
        return _in_chunks(fn, x, batch_size)
    except backends.get().ERRORS as exc:
        raise CAMError(
            f"reading activations of layer {path!r} failed on input of shape {x.shape}: {exc}"
        ) from exc


def predict_scores(
    model: keras.Model,
    images: Any,
    *,
    score: str = "logit",
    output: int | str | None = None,
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray, str]:
    """``(probabilities, scores, score used)``: the head's ``[N, C]`` outputs, one forward.

    ``scores`` are what :func:`compute_cams` explains for ``score`` (see
    :func:`head_scores`); the third item is the score really used (``"probability"``
    where no logit can be read). The registry's perturbation methods weigh by it.

    Example:
        >>> probs, logits, used = predict_scores(model, x)  # doctest: +SKIP
    """
    if score not in SCORES:
        raise ValueError(f"`score` must be one of {SCORES}. Received: score={score!r}")
    x = prepare_images(model, images)
    info, head, _, _ = _inspect(model, x, None, "saliency", output, score)

    def body(call: Any, m: keras.Model, batch: Any) -> Any:
        store: dict[str, Any] = {}  # the logit hooks of _forward, without a gradient
        with _layers.intercepted(_logit_hooks(info, head, store)):
            out = _pick(call(m, batch), head.key)
        return keras.ops.concatenate(head_scores(out, store.get("logits"), head), axis=-1)

    key = ("scores", head.key, head.kind, head.score, x.shape[1:], x.dtype.str)
    both = _in_chunks(_cached_function(model, key, x, body), x, batch_size)
    return both[:, : both.shape[1] // 2], both[:, both.shape[1] // 2 :], head.score
