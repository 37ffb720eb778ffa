"""Input-space maps over a context: gradient x input, Integrated Gradients, SmoothGrad,
occlusion and Guided Grad-CAM.

Input-space maps are reduced over channels as follows. ``gradient_x_input`` and
``integrated_gradients`` by the absolute value of the **sum**, ``|sum_c|`` (as
captum's visualisation): their attributions are additive over input dimensions
(IG's completeness), so a pixel's share is the sum of its channels' shares, and
channels that cancel give the pixel nothing. ``smoothgrad`` (and ``"saliency"``)
by the **max** of ``|gradient|``, as Simonyan et al. and tf-keras-vis do: a
gradient is a sensitivity, not a share, and the most sensitive channel says how
much the pixel matters. ``guided_gradcam`` by the max of ``|guided gradient|``,
then times Grad-CAM.
"""

from __future__ import annotations

import numpy as np

from cam_callback._imageops import resize_bilinear
from cam_callback.methods.context import MethodContext, batches
from cam_callback.methods.core import compute
from cam_callback.methods.registry import register_builtin
from cam_callback.methods.settings import CAMSettings


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
    for part in batches(steps * n, ctx.batch_size):  # (step, image) pairs, step-major
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
    for part in batches(samples * n, ctx.batch_size):  # (sample, image) pairs, sample-major
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
    gradcam = CAMSettings(
        layer=ctx.target_layer,
        method="gradcam",
        score=ctx.score,
        output=ctx.output,
        batch_size=ctx.batch_size,
        head=ctx.head.request,
        # The same patch grid on a token layer, also where grid= or prefix_tokens= chose it.
        grid=None if ctx.tokens is None else (ctx.tokens.height, ctx.tokens.width),
        prefix_tokens=None if ctx.tokens is None else ctx.tokens.prefix,
    )
    grad_cam = compute(ctx.model, ctx.images, gradcam, target=ctx.targets).heatmaps
    h, w = ctx.images.shape[1:3]
    return np.abs(g.astype(np.float64)).max(-1) * resize_bilinear(grad_cam.astype(np.float64), h, w)


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
        for part in batches(len(boxes), ctx.batch_size):
            batch = np.repeat(ctx.images[i][None], len(part), 0)
            for j, b in enumerate(part):
                t, lf = boxes[b]
                batch[j, t : t + patch, lf : lf + patch] = value
            drop = y[i] - ctx.scores(batch)[:, ctx.targets[i]]
            for j, b in enumerate(part):
                t, lf = boxes[b]
                out[i, t : t + patch, lf : lf + patch] += drop[j]
    return out / np.maximum(cover, 1)


register_builtin("gradient_x_input", gradient_x_input, needs="input_gradients")
register_builtin("integrated_gradients", integrated_gradients, needs="input_gradients")
register_builtin("smoothgrad", smoothgrad, needs="input_gradients")
register_builtin("occlusion", occlusion, needs="forwards")
# Guided Grad-CAM explains a layer (its Grad-CAM) but draws at the input's resolution.
register_builtin(
    "guided_gradcam", guided_gradcam, needs="input_gradients", explains_layer=True, input_maps=True
)
