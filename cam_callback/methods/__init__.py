"""Every way to explain a class: one registry, one pipeline, written once for every backend.

- :mod:`~cam_callback.methods.registry`: the registry (:class:`Method`,
  :func:`register_method`, :func:`available_methods`); a method is one function
  ``fn(ctx, **options)`` over a context (docs/methods.md, "Adding a method").
- :mod:`~cam_callback.methods.core`: the one dispatch (:func:`compute`) and the one
  normalisation; :mod:`~cam_callback.methods.context` (:class:`MethodContext`, numpy)
  and :mod:`~cam_callback.methods.fused` (:class:`CompiledContext`, ``keras.ops``
  inside the one compiled call per batch) the two contexts.
- :mod:`~cam_callback.methods.gradient`: the Grad-CAM family, fused into the one
  compiled call (``gradcam``, ``gradcam++``, ``layercam``, ``hirescam``,
  ``xgradcam``, ``gradcam_elementwise``, ``cam``, ``saliency``) and ``eigengradcam``.
- :mod:`~cam_callback.methods.activation`: ``eigencam``, ``scorecam``, ``ablationcam``.
- :mod:`~cam_callback.methods.input`: ``gradient_x_input``, ``integrated_gradients``,
  ``smoothgrad``, ``occlusion``, ``guided_gradcam``.
- :mod:`~cam_callback.methods.vit`: ``rollout``, ``gradient_rollout`` (Vision
  Transformers: every ``MultiHeadAttention`` followed through the blocks).

Each entry states what it ``needs`` (:data:`NEEDS`) and what it ``explains``
(:data:`EXPLAINS`): ``"score"`` honours ``compute_cams(score=...)``, ``"logit"``
is always the logit (CAM), ``"none"`` is class-agnostic (Eigen-CAM).

Example:
    >>> def edges(ctx):
    ...     a = ctx.activations()  # [N, h, w, K]
    ...     return np.abs(np.diff(a.mean(-1), axis=1, append=0))
    >>> register_method("edges", edges, needs="activations", explains="none")  # doctest: +SKIP
    >>> compute_cams(model, x, method="edges").heatmaps.shape  # doctest: +SKIP
    (8, 6, 6)
"""

from cam_callback.methods.context import MethodContext
from cam_callback.methods.core import compute, normalize
from cam_callback.methods.fused import CompiledContext
from cam_callback.methods.gradient import (
    cam,
    eigengradcam,
    gap_dense_head,
    gradcam,
    gradcam_elementwise,
    gradcam_plus_plus,
    hirescam,
    layercam,
    saliency,
    xgradcam,
)
from cam_callback.methods.guided import guided_relu, guided_relus
from cam_callback.methods.registry import (
    EXPLAINS,
    NEEDS,
    REGISTRY,
    Method,
    available_methods,
    check_method,
    explained_score,
    get,
    register_method,
    with_options,
)

# isort: off
from cam_callback.methods.activation import ablationcam, eigencam, scorecam  # after gradient
from cam_callback.methods.input import (
    gradient_x_input,
    guided_gradcam,
    integrated_gradients,
    occlusion,
    smoothgrad,
)
from cam_callback.methods.vit import gradient_rollout, rollout

# isort: on
from cam_callback.methods.maths import principal_component

__all__ = [
    "CompiledContext", "EXPLAINS", "Method", "MethodContext", "NEEDS", "REGISTRY", "ablationcam",
    "available_methods", "cam", "check_method", "compute", "eigencam", "eigengradcam",
    "explained_score", "gap_dense_head", "get", "gradcam", "gradcam_elementwise",
    "gradcam_plus_plus", "gradient_rollout", "gradient_x_input", "guided_gradcam", "guided_relu",
    "guided_relus", "hirescam", "integrated_gradients", "layercam", "normalize", "occlusion",
    "principal_component", "register_method", "rollout", "saliency", "scorecam", "smoothgrad",
    "with_options", "xgradcam",
]  # fmt: skip
