"""Layer maps without gradients: Eigen-CAM, Score-CAM and Ablation-CAM, over a context."""

from __future__ import annotations

import warnings

import numpy as np

from cam_callback.methods.context import MethodContext, batches
from cam_callback.methods.maths import principal_component, upsampled_masks, weighted
from cam_callback.methods.registry import register_builtin


def eigencam(ctx: MethodContext) -> np.ndarray:
    """Eigen-CAM (Muhammad & Yeasin 2020): first principal component of ``A``.

    Class-agnostic (explains ``"none"``). The sign makes the map correlate
    positively with the mean activation.
    """
    return principal_component(ctx.activations())


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
        for part in batches(len(chans), ctx.batch_size):
            masks, varies = upsampled_masks(a[i][..., chans[part]], h, w)
            if not varies.any():
                continue
            masked = ctx.images[i][None] * masks[varies][..., None].astype(ctx.images.dtype)
            weights[i, chans[part][varies]] = ctx.scores(masked)[:, ctx.targets[i]]
    return weighted(weights, a)


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
        for part in batches(k, ctx.batch_size):
            ablated = np.repeat(a[i][None], len(part), 0)
            ablated[np.arange(len(part)), :, :, part] = 0.0  # copy j loses channel part[j]
            yk[part] = ctx.scores_from_layer(ablated)[:, ctx.targets[i]]
        weights[i] = (y[i] - yk) / y[i] if y[i] != 0 else 0.0
    return weighted(weights, a)


register_builtin("eigencam", eigencam, needs="activations", explains="none")
register_builtin("scorecam", scorecam, needs="forwards")
register_builtin("ablationcam", ablationcam, needs="forwards")
