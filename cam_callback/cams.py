"""Class activation maps for a batch of images in one compiled call: no I/O.

The method maths is written once here in ``keras.ops``; the gradient itself
comes from one small module per Keras backend (:mod:`cam_callback.backends`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import warnings
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from cam_callback import _validate, backends
from cam_callback import heads as _heads
from cam_callback import layers as _layers
from cam_callback._imageops import deletion_blur, resize_bilinear
from cam_callback.heads import HEADS, check_head, head_scores

__all__ = [
    "CAMError",
    "CAMResult",
    "HEADS",
    "METHODS",
    "ModelCheck",
    "SCORES",
    "available_methods",
    "check_head",
    "compute_cams",
    "deletion_faithfulness",
    "head_scores",
    "inspect_model",
    "layer_activations",
    "predict_probabilities",
    "prepare_images",
    "trace_count",
]

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
        probabilities: float32 ``[N, C]``: the model's output where it is a softmax or
            sigmoid, the softmax (sigmoid) of a linear output (see ``head``);
            ``[1 - p, p]`` for one sigmoid unit.
        targets: int64 ``[N]``, the class explained for each image.
        layer: The explained layer's path, e.g. ``"mobilenetv2_1.00_96/out_relu"``
            (``""`` for ``"saliency"``).
        method: The method used.
        head: How the output was read (:attr:`ModelCheck.head`).
        score: The score the maps really explain: ``"logit"``, ``"probability"``, or
            ``"none"`` for a class-agnostic method (Eigen-CAM).
    """

    heatmaps: np.ndarray
    probabilities: np.ndarray
    targets: np.ndarray
    layer: str
    method: str
    head: str = ""
    score: str = ""


@dataclass
class _ModelInfo:
    calls: list[_layers.LayerCall]  # without their eager outputs
    output_names: list[str] | None  # None: a single output
    heads: dict[Any, _heads.HeadInfo]  # keyed like `_select_output`'s result


@dataclass
class _Engine:
    fn: Any
    errors: tuple[type[BaseException], ...] = ()


# Keyed weakly by model: a deleted model frees its traced functions.
_INFO: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ENGINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_TRACES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # all traces, ever
_WARNED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # what was said, per model
_PACKAGE = os.path.dirname(os.path.abspath(__file__))


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
    head: str = "auto",
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
            sigmoid, also when it is folded into the last layer, and a linear
            output itself; ``"probability"`` explains the probability.
            ``CAMResult.score`` says which was really explained.
        output: The head of a multi-output model, by index or name.
        batch_size: Images per compiled call.
        method_options: Options of a registered method (see :mod:`cam_callback.methods`),
            e.g. ``{"max_channels": 64}`` for ``"scorecam"``.
        head: How the output becomes probabilities: ``"auto"``, ``"softmax"``,
            ``"sigmoid"``, ``"logits"`` or ``"probabilities"`` (see
            :mod:`cam_callback.heads`). ``"auto"`` reads the layers and the
            compiled loss.

    Returns:
        A :class:`CAMResult`.

    Raises:
        TypeError: An argument of the wrong type.
        ValueError: Bad images, layer, method, target, score, output or head.
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
    check_head(head)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"`batch_size` must be a positive int. Received: batch_size={batch_size!r}"
        )
    if method not in METHODS:  # a registered method: cam_callback.methods runs it
        from cam_callback import methods as _methods

        x = prepare_images(model, images)
        res = _methods.compute(
            model,
            x,
            method=method,
            layer=layer,
            target=target,
            score=score,
            output=output,
            batch_size=batch_size,
            method_options=method_options,
            head=head,
        )
        info = _model_info(model, x)
        used = _resolve(model, info, _select_output(info, output), score, head)
        return dataclasses.replace(res, head=used.name, score=explained_score(method, used))
    if method_options:
        raise ValueError(
            f"`method_options` are for registered methods; {method!r} takes none. "
            f"Received: method_options={method_options!r}"
        )

    x = prepare_images(model, images)
    info, used, path, target_layer = _inspect(model, x, layer, method, output, score, head)
    targets = _prepare_targets(target, len(x), used.n_classes)

    key = (path, method, used, x.shape[1:], x.dtype.str)
    engines = _ENGINES.setdefault(model, {})
    engine = engines.get(key)
    if engine is None:
        engine = _build_engine(model, info, target_layer, method, used, x)
        engines[key] = engine

    maps, probs, chosen = [], [], []
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
        chosen.append(t[:n])
    return CAMResult(
        heatmaps=np.concatenate(maps).astype(np.float32, copy=False),
        probabilities=np.concatenate(probs).astype(np.float32, copy=False),
        targets=np.concatenate(chosen).astype(np.int64, copy=False),
        layer=path,
        method=method,
        head=used.name,
        score=used.score,
    )


@dataclass(frozen=True)
class ModelCheck:
    """What :func:`inspect_model` found.

    Attributes:
        layer: The explained layer's path (``""`` for ``"saliency"``).
        n_classes: Classes as the maps see them (2 for a one-unit sigmoid head).
        map_shape: ``(h, w)`` of the maps.
        score: The score the method really explains: ``"logit"`` or
            ``"probability"`` (a logit that cannot be found falls back to the
            probability, with a warning; some methods explain the probability
            whatever ``score`` asks), or ``"none"`` for a class-agnostic method.
        head: How the output is read: ``"softmax"`` (the model's softmax),
            ``"logits"`` (a linear multi-class output, softmaxed here), ``"binary"``
            (one sigmoid unit), ``"multilabel"`` (several sigmoid units),
            ``"binary_logits"`` or ``"multilabel_logits"`` (linear units, sigmoid
            applied here).
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
    head: str = "auto",
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
    check_head(head)
    x = prepare_images(model, images)
    info, used, path, target_layer = _inspect(
        model, x, layer, _as_builtin(method), output, score, head
    )
    if method not in METHODS:
        from cam_callback import methods as _methods

        _methods.check(method, info.calls, target_layer, path)
    if target_layer is None or _input_maps(method):
        shape = x.shape[1:3]
    else:
        shape = next(c.output_shape for c in info.calls if c.layer is target_layer)[1:3]
    return ModelCheck(
        path,
        used.n_classes,
        (int(shape[0]), int(shape[1])),
        score=explained_score(method, used),
        head=used.name,
        backend=backends.name(),
    )


def explained_score(method: str, head: _heads.Head) -> str:
    """The score ``method`` really explains on ``head``.

    The built-ins explain the head's score; a registered method says what it
    explains (its ``explains``: ``"score"`` honours it, ``"probability"`` or
    ``"none"``, class-agnostic).

    Example:
        >>> explained_score("eigencam", head)  # doctest: +SKIP
        'none'
    """
    if method in METHODS:
        return head.score
    from cam_callback import methods as _methods

    explains = getattr(_methods.get(method), "explains", "score")
    return head.score if explains == "score" else str(explains)


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
    model: keras.Model,
    x: np.ndarray,
    layer: Any,
    method: str,
    output: Any,
    score: str,
    head: str = "auto",
) -> tuple[_ModelInfo, _heads.Head, str, keras.layers.Layer | None]:
    check_head(head)
    info = _model_info(model, x)
    head = _resolve(model, info, _select_output(info, output), score, head)
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
    heads = {k: _heads.head_info(calls, v, single=k is None) for k, v in outs.items()}
    # Keep shapes and indices only: eager outputs would pin memory for the model's lifetime.
    info = _ModelInfo(
        calls=[dataclasses.replace(c, output=None, input=None) for c in calls],
        output_names=names,
        heads=heads,
    )
    per_model[key] = info
    return info


def _resolve(model: keras.Model, info: _ModelInfo, key: Any, score: str, head: str) -> _heads.Head:
    """The head ``key`` read as ``head`` asks, with the compiled loss; warns once per model."""
    loss = getattr(model, "loss", None)
    if loss is None:  # tf.keras-style containers keep the user's losses inside
        compiled = getattr(model, "compiled_loss", None)
        loss = getattr(compiled, "_user_losses", None) or getattr(compiled, "_losses", None)
    said = _WARNED.setdefault(model, set())

    def warn(topic: Any, message: str) -> None:
        if topic not in said:
            said.add(topic)
            warnings.warn(message, UserWarning, stacklevel=_user_stacklevel())

    return _heads.resolve_head(
        info.heads[key],
        key,
        score=score,
        head=head,
        loss=loss,
        names=info.output_names,
        calls=info.calls,
        warn=warn,
    )


def _user_stacklevel() -> int:
    """The ``stacklevel`` of the first caller outside this package (2 = our caller's caller)."""
    frame, level = sys._getframe(2), 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


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


def _forward(
    call: Any,
    model: keras.Model,
    images: Any,
    targets: Any,
    capture: Any,
    *,
    info: _ModelInfo,
    head: _heads.Head,
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
    hooks = _heads.logit_hooks(info.calls, head, store)
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
    head: _heads.Head,
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
    head: str = "auto",
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
    _, used, _, _ = _inspect(model, x, None, "saliency", output, "probability", head)
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
    probs = _probabilities(model, used, np.concatenate([x, variants]), batch_size)
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


def _probabilities(
    model: keras.Model, head: _heads.Head, x: np.ndarray, batch_size: int
) -> np.ndarray:
    """The selected head's probabilities as float32 ``[N, C]`` (``[1 - p, p]`` for binary)."""
    # Probabilities computed from a hooked logit need the hook in this forward too.
    calls = _model_info(model, x).calls if head.squash and head.hook else []

    def body(call: Any, m: keras.Model, images: Any) -> Any:
        store: dict[str, Any] = {}
        with _layers.intercepted(_heads.logit_hooks(calls, head, store) if calls else {}):
            outputs = _pick(call(m, images), head.key)
        return head_scores(outputs, store.get("logits"), head)[0]

    forward = _cached_function(model, ("forward", head, x.shape[1:], x.dtype.str), x, body)
    return _in_chunks(forward, x, batch_size)


def predict_probabilities(
    model: keras.Model,
    images: Any,
    *,
    output: int | str | None = None,
    batch_size: int = 64,
    head: str = "auto",
) -> np.ndarray:
    """The model's probabilities for ``images`` through one cached compiled forward, ``[N, C]``.

    What ``model.predict`` returns for a softmax or sigmoid model; the softmax
    (sigmoid) of a linear output, read as ``head`` says (see :func:`compute_cams`);
    ``[1 - p, p]`` for one sigmoid unit.

    Example:
        >>> predict_probabilities(model, x).shape  # doctest: +SKIP
        (100, 10)
    """
    check_head(head)
    x = prepare_images(model, images)
    _, used, _, _ = _inspect(model, x, None, "saliency", output, "probability", head)
    return _probabilities(model, used, x, batch_size)


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
    head: str = "auto",
) -> tuple[np.ndarray, np.ndarray, str]:
    """``(probabilities, scores, score used)``: the head's ``[N, C]`` outputs, one forward.

    ``scores`` are what :func:`compute_cams` explains for ``score`` (see
    :func:`head_scores`); the third item is the score really used (``"probability"``
    where no logit can be read). Example: ``predict_scores(model, x)[1].shape == (N, C)``.
    """
    if score not in SCORES:
        raise ValueError(f"`score` must be one of {SCORES}. Received: score={score!r}")
    x = prepare_images(model, images)
    info, used, _, _ = _inspect(model, x, None, "saliency", output, score, head)

    def body(call: Any, m: keras.Model, batch: Any) -> Any:
        store: dict[str, Any] = {}  # the logit hooks of _forward, without a gradient
        with _layers.intercepted(_heads.logit_hooks(info.calls, used, store)):
            out = _pick(call(m, batch), used.key)
        return keras.ops.concatenate(head_scores(out, store.get("logits"), used), axis=-1)

    key = ("scores", used, x.shape[1:], x.dtype.str)
    both = _in_chunks(_cached_function(model, key, x, body), x, batch_size)
    return both[:, : both.shape[1] // 2], both[:, both.shape[1] // 2 :], used.score
