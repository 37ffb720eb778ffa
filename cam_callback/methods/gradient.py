"""The Grad-CAM family, fused: each a ``keras.ops`` finish inside the one compiled call.

Every finish takes the explained layer's activations ``A`` ``[B, h, w, K]`` and
``G = d score / d A`` (or the input and its gradient, for ``"saliency"``) and
returns ``[B, h, w]`` maps; :func:`cam_callback.methods.core.compute` normalises
them. Only Eigen-Grad-CAM runs after the call, as one batched SVD in numpy.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from cam_callback.methods.context import MethodContext
from cam_callback.methods.core import register_builtin
from cam_callback.methods.maths import principal_component


def _pair(a: Any, g: Any) -> tuple[Any, Any]:
    return keras.ops.cast(a, "float32"), keras.ops.cast(g, "float32")


def gradcam(activations: Any, grads: Any) -> Any:
    """Grad-CAM (Selvaraju et al. 2017): ``relu(sum_k mean_ij(G_k) A_k)``.

    Example:
        >>> tuple(gradcam(np.ones((1, 2, 2, 1)), np.ones((1, 2, 2, 1))).shape)
        (1, 2, 2)
    """
    a, g = _pair(activations, grads)
    weights = keras.ops.mean(g, axis=(1, 2), keepdims=True)
    return keras.ops.relu(keras.ops.sum(weights * a, axis=-1))


def gradcam_plus_plus(activations: Any, grads: Any) -> Any:
    """Grad-CAM++ (Chattopadhay et al.): weights ``sum_ij alpha_ij relu(G_ij)``.

    ``alpha = G^2 / (2 G^2 + sum_ab A_ab G^3)`` where that denominator is non-zero
    and 0 elsewhere (no epsilon: it would swamp the small logit gradients of large
    layers). Example: ``gradcam_plus_plus(a, g).shape == a.shape[:3]``.
    """
    ops = keras.ops
    a, g = _pair(activations, grads)
    g2 = ops.square(g)
    denom = 2.0 * g2 + ops.sum(a, axis=(1, 2), keepdims=True) * g2 * g
    nonzero = ops.not_equal(denom, 0.0)
    alpha = ops.where(nonzero, g2 / ops.where(nonzero, denom, 1.0), 0.0)
    weights = ops.sum(alpha * ops.relu(g), axis=(1, 2), keepdims=True)
    return ops.relu(ops.sum(weights * a, axis=-1))


def layercam(activations: Any, grads: Any) -> Any:
    """Layer-CAM (Jiang et al. 2021): ``relu(sum_k relu(G_k) A_k)``.

    Example: ``layercam(a, g).shape == a.shape[:3]``.
    """
    a, g = _pair(activations, grads)
    return keras.ops.relu(keras.ops.sum(keras.ops.relu(g) * a, axis=-1))


def hirescam(activations: Any, grads: Any) -> Any:
    """HiResCAM (Draelos & Carin 2020): ``relu(sum_k G_k A_k)``.

    Example: ``hirescam(a, g).shape == a.shape[:3]``.
    """
    a, g = _pair(activations, grads)
    return keras.ops.relu(keras.ops.sum(g * a, axis=-1))


def xgradcam(activations: Any, grads: Any) -> Any:
    """XGrad-CAM (Fu et al. 2020): ``w_k = sum_ij (A_ijk / sum_ab A_abk) G_ijk``.

    A channel whose activations sum to zero weighs 0. Example:
    ``xgradcam(a, g).shape == a.shape[:3]``.
    """
    ops = keras.ops
    a, g = _pair(activations, grads)
    total = ops.sum(a, axis=(1, 2), keepdims=True)
    nonzero = ops.not_equal(total, 0.0)
    share = ops.where(nonzero, a / ops.where(nonzero, total, 1.0), 0.0)
    weights = ops.sum(share * g, axis=(1, 2), keepdims=True)
    return ops.relu(ops.sum(weights * a, axis=-1))


def gradcam_elementwise(activations: Any, grads: Any) -> Any:
    """``sum_k relu(G_k * A_k)`` (pytorch-grad-cam's GradCAMElementWise).

    Example: ``gradcam_elementwise(a, g).shape == a.shape[:3]``.
    """
    a, g = _pair(activations, grads)
    return keras.ops.sum(keras.ops.relu(g * a), axis=-1)


def cam(activations: Any, grads: Any) -> Any:
    """CAM (Zhou et al. 2016): ``sum_k W[k, c] A_k`` for a layer -> GAP -> Dense head.

    On that head the logit's gradient is ``W[k, c] / (h w)`` at every position, so
    ``sum_k G_k A_k`` is CAM up to the factor ``h w`` that normalising removes; the
    entry explains the logit whatever ``score`` asks (the bias does not vary in space).
    Example: ``cam(a, g).shape == a.shape[:3]``.
    """
    a, g = _pair(activations, grads)
    return keras.ops.relu(keras.ops.sum(g * a, axis=-1))


def saliency(images: Any, grads: Any) -> Any:
    """Saliency (Simonyan et al. 2014): ``max_c |d score / d x|``, ``[B, H, W]``.

    Example: ``saliency(x, g).shape == x.shape[:3]``.
    """
    return keras.ops.max(keras.ops.abs(keras.ops.cast(grads, "float32")), axis=-1)


def eigengradcam(ctx: MethodContext) -> np.ndarray:
    """First principal component of ``G * A`` (sign: positive with its channel mean).

    One batched SVD over the whole batch. Example: see :func:`principal_component`.
    """
    a, g = ctx.gradients()
    return principal_component(a.astype(np.float64) * g)


def gap_dense_head(calls: list, target_layer: Any, path: str) -> Any:
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
    if not ok:
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
