"""Class activation maps for a batch of images in one compiled call: no I/O.

All backend-specific gradient code lives here, so another Keras backend can
slot in beside the TensorFlow one later.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from cam_callback import _validate
from cam_callback import layers as _layers

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


@dataclass
class _ModelInfo:
    calls: list[_layers.LayerCall]
    output_names: list[str] | None  # None: a single output
    sample_output: Any  # the model's output for one image


@dataclass
class _Engine:
    fn: Any
    traces: int = 0
    disconnected: bool = False


# Keyed weakly by model: a deleted model frees its traced functions.
_INFO: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ENGINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def trace_count(model: keras.Model) -> int:
    """How many times compiled CAM functions were traced for ``model``.

    Example:
        >>> compute_cams(model, x); compute_cams(model, x)  # doctest: +SKIP
        >>> trace_count(model)  # doctest: +SKIP
        1
    """
    return sum(e.traces for e in _ENGINES.get(model, {}).values())


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
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}. Received: method={method!r}")
    if score not in SCORES:
        raise ValueError(f"`score` must be one of {SCORES}. Received: score={score!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"`batch_size` must be a positive int. Received: batch_size={batch_size!r}"
        )

    x = prepare_images(model, images)
    info, head, path, target_layer = _inspect(model, x, layer, method, output)
    targets = _prepare_targets(target, len(x), _n_classes(info, head))

    key = (path, method, score, head, x.shape[1:], x.dtype.str)
    engines = _ENGINES.setdefault(model, {})
    engine = engines.get(key)
    if engine is None:
        engine = _build_engine(model, info, target_layer, method, score, head, x)
        engines[key] = engine

    maps, probs, used = [], [], []
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size]
        try:
            m, p, t = engine.fn(
                tf.constant(chunk), tf.constant(targets[start : start + batch_size])
            )
        except Exception as exc:  # TensorFlow raises many types; name what we ran.
            raise CAMError(
                f"computing {method} maps failed for layer {path or '(input)'!r} on input of "
                f"shape {chunk.shape}: {exc}"
            ) from exc
        if engine.disconnected:
            raise ValueError(
                f"`layer` {path!r} does not feed the explained output, so its gradient is "
                f"undefined. Received: layer={path!r}, output={output!r}"
            )
        maps.append(m.numpy())
        probs.append(p.numpy())
        used.append(t.numpy())
    return CAMResult(
        heatmaps=np.concatenate(maps).astype(np.float32, copy=False),
        probabilities=np.concatenate(probs).astype(np.float32, copy=False),
        targets=np.concatenate(used).astype(np.int64, copy=False),
        layer=path,
        method=method,
    )


@dataclass(frozen=True)
class ModelCheck:
    """What :func:`inspect_model` found: the explained layer and the class count."""

    layer: str
    n_classes: int
    map_shape: tuple[int, int]


def inspect_model(
    model: keras.Model,
    images: Any,
    *,
    layer: str | keras.layers.Layer | None = None,
    method: str = "gradcam",
    output: int | str | None = None,
) -> ModelCheck:
    """Runs every check of :func:`compute_cams` without computing maps.

    Lets a caller (``CAMTracker.on_train_begin``) fail before an epoch is spent.

    Example:
        >>> inspect_model(model, x_probe).layer  # doctest: +SKIP
        'conv2'
    """
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}. Received: method={method!r}")
    x = prepare_images(model, images)
    info, head, path, target_layer = _inspect(model, x, layer, method, output)
    if target_layer is None:
        shape = x.shape[1:3]
    else:
        shape = next(c.output_shape for c in info.calls if c.layer is target_layer)[1:3]
    return ModelCheck(path, _n_classes(info, head), (int(shape[0]), int(shape[1])))


def _inspect(
    model: keras.Model, x: np.ndarray, layer: Any, method: str, output: Any
) -> tuple[_ModelInfo, int | str | None, str, keras.layers.Layer | None]:
    info = _model_info(model, x)
    head = _select_output(info, output)
    if method == "saliency":
        return info, head, "", None
    path, target_layer = _layers.resolve_layer(model, layer, info.calls)
    _check_spatial(path, target_layer, info.calls)
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
    try:
        calls, out = _layers.discover(model, x[:1])
    except Exception as exc:
        raise ValueError(
            f"`images` could not be run through the model: {exc}. Received: images.shape={x.shape}"
        ) from exc
    names: list[str] | None = None
    if isinstance(out, dict):
        names = list(out)
    elif isinstance(out, (list, tuple)):
        if len(out) == 1:
            out = out[0]
        else:
            names = list(getattr(model, "output_names", None) or [str(i) for i in range(len(out))])
    info = _ModelInfo(calls=calls, output_names=names, sample_output=out)
    per_model[key] = info
    return info


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
    if isinstance(output, int):
        if not 0 <= output < len(names):
            raise ValueError(
                f"`output` index out of range: the model has {len(names)} outputs "
                f"({', '.join(names)}). Received: output={output}"
            )
        return output if not isinstance(info.sample_output, dict) else names[output]
    if output not in names:
        raise ValueError(
            f"`output` {output!r} not found. Outputs: {', '.join(names)}. "
            f"Received: output={output!r}"
        )
    return output if isinstance(info.sample_output, dict) else names.index(output)


def _pick(out: Any, head: int | str | None) -> Any:
    if head is None:
        return out[0] if isinstance(out, (list, tuple)) else out
    return out[head]


def _n_classes(info: _ModelInfo, head: int | str | None) -> int:
    sample = _pick(info.sample_output, head)
    return int(sample.shape[-1]) if len(sample.shape) > 1 else 1


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
    if not seen[-1].is_spatial:
        raise ValueError(
            f"`layer` {path!r} has output shape {seen[-1].output_shape}, not a spatial "
            f"[batch, h, w, channels] map with h, w > 1. Layers with spatial output: "
            f"{', '.join(_layers.spatial_paths(calls))}. Received: layer={path!r}"
        )


def _logit_hooks(
    info: _ModelInfo, head: int | str | None, store: dict
) -> dict[keras.layers.Layer, _layers.Hook]:
    """Hooks that capture the head's pre-softmax/sigmoid value into ``store``."""
    wanted = _pick(info.sample_output, head)
    leaves = [c for c in info.calls if not isinstance(c.layer, keras.Model)]
    producer = next((c for c in reversed(leaves) if c.output is wanted), None)
    if (
        producer is None
        and head is None
        and leaves
        and leaves[-1].output_shape == tuple(wanted.shape)
    ):
        producer = leaves[-1]  # subclassed models may re-wrap the final tensor
    if producer is None:
        return {}
    kind = _layers.head_kind(producer.layer)
    if kind == "linear":
        return {}
    layer = producer.layer

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


def _build_engine(
    model: keras.Model,
    info: _ModelInfo,
    target_layer: keras.layers.Layer | None,
    method: str,
    score: str,
    head: int | str | None,
    x: np.ndarray,
) -> _Engine:
    engine = _Engine(fn=None)
    model_ref = weakref.ref(model)  # the engine is cached on the model: no cycle through it
    spec = (
        tf.TensorSpec((None, *x.shape[1:]), tf.as_dtype(x.dtype)),
        tf.TensorSpec((None,), tf.int32),
    )

    def step(images: tf.Tensor, targets: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        engine.traces += 1
        store: dict[str, Any] = {}
        hooks = _logit_hooks(info, head, store) if score == "logit" else {}
        activations: list[tf.Tensor] = []
        if target_layer is not None:
            previous = hooks.get(target_layer)

            def record(call: Any, args: tuple, kwargs: dict) -> Any:
                out = previous(call, args, kwargs) if previous else call(*args, **kwargs)
                activations.append(out)
                return out

            hooks[target_layer] = record
        with tf.GradientTape() as tape, _layers.intercepted(hooks):
            if target_layer is None:
                tape.watch(images)
            outputs = _pick(model_ref()(images, training=False), head)
            probs = tf.cast(outputs, tf.float32)
            scores = tf.cast(store.get("logits", outputs), tf.float32)
            if len(probs.shape) == 1:
                probs, scores = probs[:, None], scores[:, None]
            predicted = tf.argmax(probs, axis=-1, output_type=tf.int32)
            chosen = tf.where(targets < 0, predicted, targets)
            picked = tf.gather(scores, chosen, axis=1, batch_dims=1)
            total = tf.reduce_sum(picked)  # images are independent, so one sum serves all
        if target_layer is None:
            grads = tape.gradient(total, images)
            maps = tf.reduce_max(tf.abs(tf.cast(grads, tf.float32)), axis=-1)
        else:
            if len(activations) != 1:
                raise ValueError(
                    f"`layer` {target_layer.name!r} runs {len(activations)} times in one forward "
                    "pass (a shared layer); pick a layer that runs once. "
                    f"Received: layer={target_layer.name!r}"
                )
            grads = tape.gradient(total, activations[0])
            if grads is None:
                engine.disconnected = True
                grads = tf.zeros_like(activations[0])
            maps = combine(tf.cast(activations[0], tf.float32), tf.cast(grads, tf.float32), method)
        return normalize(maps), probs, tf.cast(chosen, tf.int64)

    engine.fn = tf.function(step, input_signature=spec, reduce_retracing=True)
    return engine


def combine(activations: tf.Tensor, grads: tf.Tensor, method: str) -> tf.Tensor:
    """Weights ``[B, h, w, K]`` activations by their gradients into ``[B, h, w]`` maps.

    Args:
        activations: The layer's output ``A``.
        grads: ``d score / d A``.
        method: ``"gradcam"``: ``relu(sum_k mean_ij(G_k) A_k)``. ``"gradcam++"``:
            the weights of Chattopadhay et al. (as in pytorch-grad-cam).
            ``"layercam"``: ``relu(sum_k relu(G_k) * A_k)``. ``"hirescam"``:
            ``relu(sum_k G_k * A_k)``.

    Example:
        >>> combine(tf.ones((1, 2, 2, 1)), tf.ones((1, 2, 2, 1)), "gradcam").shape
        TensorShape([1, 2, 2])
    """
    if method == "gradcam":
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.reduce_sum(weights * activations, axis=-1)
    elif method == "gradcam++":
        g2 = tf.square(grads)
        g3 = g2 * grads
        a_sum = tf.reduce_sum(activations, axis=(1, 2), keepdims=True)
        alpha = g2 / (2.0 * g2 + a_sum * g3 + 1e-7)
        alpha = tf.where(grads != 0.0, alpha, tf.zeros_like(alpha))
        weights = tf.reduce_sum(alpha * tf.nn.relu(grads), axis=(1, 2), keepdims=True)
        cam = tf.reduce_sum(weights * activations, axis=-1)
    elif method == "layercam":
        cam = tf.reduce_sum(tf.nn.relu(grads) * activations, axis=-1)
    elif method == "hirescam":
        cam = tf.reduce_sum(grads * activations, axis=-1)
    else:
        raise ValueError(f"`method` must be one of {METHODS[:-1]}. Received: method={method!r}")
    return tf.nn.relu(cam)


def normalize(maps: tf.Tensor) -> tf.Tensor:
    """Divides each map by its own max; an all-zero map stays zero."""
    peak = tf.reduce_max(maps, axis=(1, 2), keepdims=True)
    return tf.math.divide_no_nan(maps, peak)


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
    _, head, _, _ = _inspect(model, x, None, "saliency", output)
    n, h, w = x.shape[:3]
    up = tf.image.resize(np.asarray(heatmaps, np.float32)[..., None], (h, w)).numpy()[..., 0]
    k = max(1, int(round(share * h * w)))
    flat = up.reshape(n, -1)
    top = np.zeros_like(flat, dtype=bool)
    np.put_along_axis(top, np.argsort(-flat, axis=1, kind="stable")[:, :k], True, axis=1)
    rng = np.random.default_rng(seed)
    rand = np.zeros_like(top)
    for i in range(n):
        rand[i, rng.choice(h * w, size=k, replace=False)] = True
    size = max(3, (min(h, w) // 4) | 1)  # a strong blur: an odd box of a quarter of the side
    blurred = (
        tf.nn.avg_pool2d(
            tf.pad(
                x.astype(np.float32),
                [[0, 0], [size // 2] * 2, [size // 2] * 2, [0, 0]],
                "SYMMETRIC",
            ),
            size,
            1,
            "VALID",
        )
        .numpy()
        .astype(x.dtype)
    )
    masks = np.stack([top, rand]).reshape(2, n, h, w, 1)
    variants = np.where(masks, blurred[None], x[None]).reshape(2 * n, *x.shape[1:])
    probs = _probabilities(model, head, np.concatenate([x, variants]), batch_size)
    picked = probs[np.arange(3 * n), np.tile(np.asarray(targets, np.int64), 3)]
    base, after_top, after_rand = picked[:n], picked[n : 2 * n], picked[2 * n :]
    return ((base - after_top) - (base - after_rand)).astype(np.float32)


def _cached_function(model: keras.Model, key: tuple, x: np.ndarray, body: Any) -> Any:
    """``body(model, images)`` compiled once per model and key, for any batch size.

    The model is held weakly: the function is cached on it, so a strong reference
    would keep both alive forever.
    """
    engines = _ENGINES.setdefault(model, {})
    engine = engines.get(key)
    if engine is None:
        model_ref = weakref.ref(model)
        engine = _Engine(fn=None)

        def fn(images: tf.Tensor) -> tf.Tensor:
            engine.traces += 1
            return body(model_ref(), images)

        engine.fn = tf.function(
            fn, input_signature=(tf.TensorSpec((None, *x.shape[1:]), tf.as_dtype(x.dtype)),)
        )
        engines[key] = engine
    return engine.fn


def _in_chunks(fn: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Calls a compiled one-input function on ``batch_size`` images at a time."""
    return np.concatenate(
        [fn(tf.constant(x[i : i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
    )


def _probabilities(
    model: keras.Model, head: int | str | None, x: np.ndarray, batch_size: int
) -> np.ndarray:
    """The selected head's output as float32 ``[N, C]`` (``[N, 1]`` for a 1-D output)."""
    forward = _cached_function(
        model,
        ("forward", head, x.shape[1:], x.dtype.str),
        x,
        lambda m, images: tf.cast(_pick(m(images, training=False), head), tf.float32),
    )
    out = _in_chunks(forward, x, batch_size)
    return out[:, None] if out.ndim == 1 else out


def predict_probabilities(
    model: keras.Model, images: Any, *, output: int | str | None = None, batch_size: int = 64
) -> np.ndarray:
    """The model's output for ``images`` through one cached compiled forward, ``[N, C]``.

    Example:
        >>> predict_probabilities(model, x).shape  # doctest: +SKIP
        (100, 10)
    """
    x = prepare_images(model, images)
    _, head, _, _ = _inspect(model, x, None, "saliency", output)
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

    def body(m: keras.Model, images: tf.Tensor) -> tf.Tensor:
        seen: list[tf.Tensor] = []

        def record(call: Any, args: tuple, kwargs: dict) -> Any:
            out = call(*args, **kwargs)
            seen.append(out)
            return out

        with _layers.intercepted({target: record}):
            m(images, training=False)
        return tf.cast(seen[-1], tf.float32)

    fn = _cached_function(model, ("activations", path, x.shape[1:], x.dtype.str), x, body)
    try:
        return _in_chunks(fn, x, batch_size)
    except Exception as exc:
        raise CAMError(
            f"reading activations of layer {path!r} failed on input of shape {x.shape}: {exc}"
        ) from exc
