"""The Grad-CAM family: each one small ``fn(ctx)`` in ``keras.ops``, fused into the compiled call.

Every method reads ``A, G = ctx.gradients()``, the explained layer's activations
``[B, h, w, K]`` and ``G = d score / d A`` (the input and its gradient, for
``"saliency"``), and returns ``[B, h, w]`` maps; being ``keras.ops`` over what the
compiled call computes, each is registered ``fused=True`` and runs inside it.
:func:`cam_callback.methods.core.compute` normalises the maps. Only
Eigen-Grad-CAM runs after the call, as one batched SVD in numpy.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from cam_callback.core.layers import LayerCall
from cam_callback.methods.context import Context
from cam_callback.methods.fused import CompiledContext
from cam_callback.methods.maths import principal_component
from cam_callback.methods.registry import register_builtin


def _pair(ctx: Context) -> tuple[Any, Any]:
    a, g = ctx.gradients()
    return keras.ops.cast(a, "float32"), keras.ops.cast(g, "float32")


def example(a: Any, g: Any | None = None, *, wrt: str = "layer") -> CompiledContext:
    """A context holding ``A`` and ``G`` (``G = A`` when omitted), for the examples and tests.

    Example:
        >>> tuple(gradcam(example(np.ones((1, 2, 2, 1)))).shape)
        (1, 2, 2)
    """
    needs = "input_gradients" if wrt == "input" else "layer_gradients"
    return CompiledContext(needs, {"source": a, "gradients": a if g is None else g})


def gradcam(ctx: Context) -> Any:
    """Grad-CAM (Selvaraju et al. 2017): ``relu(sum_k mean_ij(G_k) A_k)``.

    Example:
        >>> tuple(gradcam(example(np.ones((1, 2, 2, 1)))).shape)
        (1, 2, 2)
    """
    a, g = _pair(ctx)
    weights = keras.ops.mean(g, axis=(1, 2), keepdims=True)
    return keras.ops.relu(keras.ops.sum(weights * a, axis=-1))


def gradcam_plus_plus(ctx: Context) -> Any:
    """Grad-CAM++ (Chattopadhay et al.): weights ``sum_ij alpha_ij relu(G_ij)``.

    ``alpha = G^2 / (2 G^2 + sum_ab A_ab G^3)`` where that denominator is non-zero
    and 0 elsewhere (no epsilon: it would swamp the small logit gradients of large
    layers). Example: ``gradcam_plus_plus(ctx).shape == ctx.activations().shape[:3]``.
    """
    ops = keras.ops
    a, g = _pair(ctx)
    g2 = ops.square(g)
    denom = 2.0 * g2 + ops.sum(a, axis=(1, 2), keepdims=True) * g2 * g
    nonzero = ops.not_equal(denom, 0.0)
    alpha = ops.where(nonzero, g2 / ops.where(nonzero, denom, 1.0), 0.0)
    weights = ops.sum(alpha * ops.relu(g), axis=(1, 2), keepdims=True)
    return ops.relu(ops.sum(weights * a, axis=-1))


def layercam(ctx: Context) -> Any:
    """Layer-CAM (Jiang et al. 2021): ``relu(sum_k relu(G_k) A_k)``.

    Example: ``layercam(ctx).shape == ctx.activations().shape[:3]``.
    """
    a, g = _pair(ctx)
    return keras.ops.relu(keras.ops.sum(keras.ops.relu(g) * a, axis=-1))


def hirescam(ctx: Context) -> Any:
    """HiResCAM (Draelos & Carin 2020): ``relu(sum_k G_k A_k)``.

    Example: ``hirescam(ctx).shape == ctx.activations().shape[:3]``.
    """
    a, g = _pair(ctx)
    return keras.ops.relu(keras.ops.sum(g * a, axis=-1))


def xgradcam(ctx: Context) -> Any:
    """XGrad-CAM (Fu et al. 2020): ``w_k = sum_ij (A_ijk / sum_ab A_abk) G_ijk``.

    A channel whose activations sum to zero weighs 0. Example:
    ``xgradcam(ctx).shape == ctx.activations().shape[:3]``.
    """
    ops = keras.ops
    a, g = _pair(ctx)
    total = ops.sum(a, axis=(1, 2), keepdims=True)
    nonzero = ops.not_equal(total, 0.0)
    share = ops.where(nonzero, a / ops.where(nonzero, total, 1.0), 0.0)
    weights = ops.sum(share * g, axis=(1, 2), keepdims=True)
    return ops.relu(ops.sum(weights * a, axis=-1))


def gradcam_elementwise(ctx: Context) -> Any:
    """``sum_k relu(G_k * A_k)`` (pytorch-grad-cam's GradCAMElementWise).

    Example: ``gradcam_elementwise(ctx).shape == ctx.activations().shape[:3]``.
    """
    a, g = _pair(ctx)
    return keras.ops.sum(keras.ops.relu(g * a), axis=-1)


def cam(ctx: Context) -> Any:
    """CAM (Zhou et al. 2016): ``sum_k W[k, c] A_k`` for a layer -> GAP -> Dense head.

    On that head the logit's gradient is ``W[k, c] / (h w)`` at every position, so
    ``sum_k G_k A_k`` is CAM up to the factor ``h w`` that normalising removes; the
    entry explains the logit whatever ``score`` asks (the bias does not vary in space).
    Example: ``cam(ctx).shape == ctx.activations().shape[:3]``.
    """
    a, g = _pair(ctx)
    return keras.ops.relu(keras.ops.sum(g * a, axis=-1))


def saliency(ctx: Context) -> Any:
    """Saliency (Simonyan et al. 2014): ``max_c |d score / d x|``, ``[B, H, W]``.

    Example:
        >>> tuple(saliency(example(np.ones((1, 4, 4, 3)), wrt="input")).shape)
        (1, 4, 4)
    """
    _, g = ctx.gradients(wrt="input")
    return keras.ops.max(keras.ops.abs(keras.ops.cast(g, "float32")), axis=-1)


def eigengradcam(ctx: Context) -> np.ndarray:
    """First principal component of ``G * A`` (sign: positive with its channel mean).

    One batched SVD over the whole batch. Example: see :func:`principal_component`.
    """
    a, g = ctx.gradients()
    return principal_component(np.asarray(a, np.float64) * g)


def gap_dense_head(calls: list[LayerCall], target_layer: Any, path: str) -> Any:
    """The Dense layer of a layer -> GAP -> Dense head; a ValueError for any other head.

    Example: ``gap_dense_head(info.calls, layer, "conv2")`` returns the Dense layer.
    """
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
    if not ok or idx is None:
        raise ValueError(
            "`method` 'cam' needs the explained layer to feed GlobalAveragePooling2D -> Dense "
            f"(the original CAM head); after {path!r} come {following or 'no layers'}. "
            "Use 'gradcam', which equals CAM on such a head. Received: method='cam'"
        )
    return leaves[idx + 2].layer


for _name, _fn in (
    ("gradcam", gradcam),
    ("gradcam++", gradcam_plus_plus),
    ("layercam", layercam),
    ("hirescam", hirescam),
):
    register_builtin(_name, _fn, needs="layer_gradients", fused=True)
register_builtin("saliency", saliency, needs="input_gradients", fused=True)
register_builtin("xgradcam", xgradcam, needs="layer_gradients", fused=True)
register_builtin("gradcam_elementwise", gradcam_elementwise, needs="layer_gradients", fused=True)
register_builtin("eigengradcam", eigengradcam, needs="layer_gradients")
register_builtin(
    "cam", cam, needs="layer_gradients", fused=True, explains="logit", check=gap_dense_head
)
