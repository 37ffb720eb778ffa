"""Class activation maps for a batch of images, no I/O.

Every method runs through the one pipeline of :mod:`cam_callback.methods`; the
Grad-CAM family runs fused into one compiled call per batch, and the gradient
itself comes from one small module per Keras backend (:mod:`cam_callback.backends`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from cam_callback import backends
from cam_callback.core.engine import trace_count
from cam_callback.core.heads import HEADS, check_head, head_scores
from cam_callback.core.inspection import SCORES, prepare_images
from cam_callback.core.predict import layer_activations, predict_probabilities, predict_scores
from cam_callback.core.results import CAMError, CAMResult, ModelCheck
from cam_callback.core.token_layers import default_layer
from cam_callback.methods import available_methods, check_method, compute
from cam_callback.methods import explained_score as _explained
from cam_callback.methods.registry import AUTO
from cam_callback.methods.resolve import default_method, resolve
from cam_callback.methods.settings import CAMSettings

__all__ = [
    "CAMError",
    "CAMResult",
    "HEADS",
    "ModelCheck",
    "SCORES",
    "available_methods",
    "check_head",
    "check_method",
    "compute_cams",
    "compute_with",
    "explained_score",
    "head_scores",
    "inspect_model",
    "inspect_with",
    "layer_activations",
    "predict_probabilities",
    "probabilities_with",
    "predict_scores",
    "prepare_images",
    "trace_count",
]


def _check_model(model: Any) -> None:
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`model` must be a keras.Model. Received: model of type {type(model).__name__}"
        )


def compute_cams(
    model: keras.Model,
    images: Any,
    *,
    layer: str | keras.layers.Layer | None = None,
    method: str = "auto",
    target: str | int | Sequence[int] | np.ndarray = "predicted",
    score: str = "logit",
    output: int | str | None = None,
    batch_size: int = 32,
    method_options: dict[str, Any] | None = None,
    head: str = "auto",
    grid: tuple[int, int] | None = None,
    prefix_tokens: int | None = None,
) -> CAMResult:
    """Computes class activation maps and probabilities for a batch of images.

    One compiled TensorFlow call (forward plus gradient) runs per chunk of
    ``batch_size`` images. The compiled function is built once per model,
    layer, method, score, output and input signature, and reused. The model
    runs with ``training=False`` and is left exactly as it was.

    Args:
        model: A Keras 3 model: Sequential, Functional, nested (transfer
            learning), subclassed (name the layer), multi-output (see ``output``)
            or a Vision Transformer (keras-hub's ViT, DINOv2, Swin; a Functional ViT).
        images: ``[N, H, W, C]`` in the model's input space, what
            ``model.predict`` takes.
        layer: ``None`` for the last layer with a spatial output, searched into
            nested models and subclassed layers (on a ViT: the last layer whose
            patch tokens reach the score, see :func:`inspect_model`); a layer name
            found anywhere; an ``"outer/inner"`` path
            (``"vi_t_backbone/vit_encoder/transformer_block_1"``); or a
            ``keras.layers.Layer``. A ``[batch, tokens, dim]`` layer is explained on
            its patch grid, its prefix tokens (class, distillation, registers) dropped.
        method: A name of :func:`available_methods`: ``"auto"`` (gradient rollout at a
            Vision Transformer's default layer, Grad-CAM elsewhere; ``CAMResult.method``
            names the one run), ``"gradcam"``, ``"gradcam++"``, ``"layercam"``,
            ``"hirescam"``, ``"xgradcam"``, ``"saliency"``, ``"scorecam"``, ...
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
            :mod:`cam_callback.core.heads`). ``"auto"`` reads the layers and the
            compiled loss.
        grid: A token layer's patch grid ``(h, w)``, where the image, the model's
            ``patch_size`` and the token count do not tell it.
        prefix_tokens: Tokens before a token layer's patches (1 for a class token,
            2 with DeiT's distillation token, 1 + registers for DINOv2).

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
    _check_model(model)
    settings = CAMSettings(
        layer=layer,
        method=method,
        score=score,
        output=output,
        head=head,
        grid=grid,
        prefix_tokens=prefix_tokens,
        batch_size=batch_size,
        method_options=method_options,
    )
    return compute_with(model, images, settings, target=target)


def compute_with(
    model: keras.Model,
    images: Any,
    settings: CAMSettings,
    *,
    target: str | int | Sequence[int] | np.ndarray = "predicted",
) -> CAMResult:
    """:func:`compute_cams` with its settings as one checked value.

    Example:
        >>> s = CAMSettings(method="layercam", batch_size=8)
        >>> compute_with(model, x_probe, s, target=y_probe).method  # doctest: +SKIP
        'layercam'
    """
    _check_model(model)
    if not isinstance(settings, CAMSettings):
        raise TypeError(
            f"`settings` must be a CAMSettings. Received: settings of type "
            f"{type(settings).__name__}"
        )
    return compute(model, images, settings, target=target)


def inspect_model(
    model: keras.Model,
    images: Any,
    *,
    layer: str | keras.layers.Layer | None = None,
    method: str = "auto",
    output: int | str | None = None,
    score: str = "logit",
    head: str = "auto",
    grid: tuple[int, int] | None = None,
    prefix_tokens: int | None = None,
) -> ModelCheck:
    """Runs every check of :func:`compute_cams` without computing maps.

    Lets a caller (``CAMTracker.on_train_begin``) fail before an epoch is spent:
    a head that is not a classifier, a missing or shared layer, bad images, a
    token layer whose patch grid cannot be known. ``ModelCheck.note`` says why the
    default layer was chosen and how a token layer tiles the image.

    Example:
        >>> check = inspect_model(model, x_probe)  # doctest: +SKIP
        >>> check.layer, check.head, check.score  # doctest: +SKIP
        ('conv2', 'softmax', 'logit')
        >>> inspect_model(vit, x_probe).note  # doctest: +SKIP
        'the last token layer whose patch tokens reach the output (4 x 4 patches, ...'
    """
    settings = CAMSettings(
        layer=layer, method=method, score=score, output=output, head=head, grid=grid,
        prefix_tokens=prefix_tokens,
    )  # fmt: skip
    return inspect_with(model, images, settings)


def inspect_with(model: keras.Model, images: Any, settings: CAMSettings) -> ModelCheck:
    """:func:`inspect_model` with its settings as one checked value.

    Example:
        >>> inspect_with(model, x_probe, CAMSettings(layer="conv2")).layer  # doctest: +SKIP
        'conv2'
    """
    s = settings
    spec = check_method(s.method)
    x, info, used, path, target_layer, tokens = resolve(model, images, spec, s)
    note = ""
    if target_layer is None or spec.input_maps:
        shape = x.shape[1:3]
    elif tokens is not None:
        shape = (tokens.height, tokens.width)
        note = (
            f"token layer: {tokens.prefix} prefix tokens dropped, "
            f"{tokens.height} x {tokens.width} patch grid"
        )
    else:
        shape = next(c.output_shape for c in info.calls if c.layer is target_layer)[1:3]
    if s.layer is None and target_layer is not None:
        why = default_layer(model, info.calls, x, used, grid=s.grid,
                            prefix_tokens=s.prefix_tokens)[1]  # fmt: skip
        note = f"default layer: {why}" + (f"; {note}" if note else "")
    method = s.method
    if method == AUTO:
        method, why = default_method(info.calls, tokens, s.layer)
        note = "; ".join(n for n in (note, why) if n)
    return ModelCheck(
        path,
        used.n_classes,
        (int(shape[0]), int(shape[1])),
        score=_explained(method, used.score),
        head=used.name,
        backend=backends.name(),
        note=note,
        head_assumed=used.assumed,
        method=method,
    )


def probabilities_with(model: keras.Model, images: Any, settings: CAMSettings) -> np.ndarray:
    """:func:`predict_probabilities` read as ``settings`` say (output, head, batch size).

    Example:
        >>> probabilities_with(model, x_probe, CAMSettings(head="sigmoid")).shape  # doctest: +SKIP
        (8, 3)
    """
    return predict_probabilities(
        model, images, output=settings.output, batch_size=settings.batch_size, head=settings.head
    )


def explained_score(method: str, head: Any) -> str:
    """The score ``method`` really explains on ``head`` (a resolved head, or its score).

    Example:
        >>> explained_score("eigencam", "logit")
        'none'
    """
    return _explained(method, getattr(head, "score", head))
