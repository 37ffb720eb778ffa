"""Every gradient CAM against a float64 numpy reference of its paper, where the methods differ.

The models (tests/reference_models.py) have a ``Flatten -> Dense`` head or a 3x3 convolution
after the explained layer, so ``G = d logit / d A`` varies in space and HiResCAM, XGrad-CAM,
GradCAMElementWise and EigenGradCAM are no longer equal to Grad-CAM or LayerCAM. ``A`` comes
from a prefix model and ``G`` from a tape written in reference_models.py, on a tail rebuilt
from the same layers: nothing of the package's own gradient code is used.

Tolerance: the engine and the reference both start from float32 ``A`` and ``G`` (the same
network, traced differently), so they differ by float32 rounding, about 1e-7 relative; the
maps are sums over 8 channels divided by their max, so 1e-4 absolute is a wide margin. The
methods the tests tell apart differ by more than 0.05 (asserted below).
"""

from __future__ import annotations

import numpy as np
import pytest
import reference_models as rm

from cam_callback import api, compute_cams

# Every probe explained for every class: 4 images x 4 classes = 16 maps per method.
TARGETS = np.tile(np.arange(rm.N_CLASSES), 4)
ATOL = 1e-4


# ---------------------------------------------------------------- the papers' equations


def norm(m: np.ndarray) -> np.ndarray:
    """ReLU, then each map over its own max (an all-zero map stays zero), as the engine."""
    m = np.maximum(m, 0.0)
    peak = m.reshape(len(m), -1).max(1)[:, None, None]
    return np.where(peak > 0, m / np.where(peak > 0, peak, 1.0), 0.0)


def weighted(w: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``sum_k w_k A_k`` for weights ``[N, 1, 1, K]``."""
    return (w * a).sum(-1)


def gradcam(a, g):
    """Selvaraju et al. 2017: ``relu(sum_k mean_ij(G_k) A_k)``."""
    return weighted(g.mean(axis=(1, 2), keepdims=True), a)


def hirescam(a, g):
    """Draelos & Carin 2020: ``relu(sum_k G_k * A_k)``, element-wise, no averaging."""
    return (g * a).sum(-1)


def xgradcam(a, g):
    """Fu et al. 2020, eq. 12: ``w_k = sum_ij (A_ijk / sum_ab A_abk) G_ijk``.

    pytorch-grad-cam's xgrad_cam.py adds ``eps = 1e-7`` to the denominator; with ReLU
    activations (``A >= 0``) a zero sum means a zero channel, so it changes nothing here.
    """
    w = (a * g).sum(axis=(1, 2), keepdims=True) / (a.sum(axis=(1, 2), keepdims=True) + 1e-7)
    return weighted(w, a)


def gradcam_elementwise(a, g):
    """pytorch-grad-cam's GradCAMElementWise: ``relu(sum_k relu(G_k * A_k))``."""
    return np.maximum(g * a, 0.0).sum(-1)


def layercam(a, g):
    """Jiang et al. 2021: ``relu(sum_k relu(G_k) A_k)``."""
    return (np.maximum(g, 0.0) * a).sum(-1)


def gradcam_pp(a, g):
    """Chattopadhay et al. 2018, eq. 19 with exp(S) folded (the logit's gradients):

    ``alpha = G^2 / (2 G^2 + sum_ab A_ab G^3)`` (0 where that is 0),
    ``w_k = sum_ij alpha_ijk relu(G_ijk)``.
    """
    g2 = g**2
    denom = 2 * g2 + a.sum(axis=(1, 2), keepdims=True) * g2 * g
    alpha = np.divide(g2, denom, out=np.zeros_like(g2), where=denom != 0)
    w = (alpha * np.maximum(g, 0.0)).sum(axis=(1, 2), keepdims=True)
    return weighted(w, a)


def first_component(m: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's ``get_2d_projection``: rows ``[h*w, K]`` centred over positions,
    projected on the first right singular vector. An SVD's sign is arbitrary; the package
    fixes it so the projection correlates positively with the channel mean, and so does this.
    """
    out = np.zeros(m.shape[:3])
    for i, mi in enumerate(m):
        flat = mi.reshape(-1, mi.shape[-1])
        centred = flat - flat.mean(0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        proj = centred @ vt[0]
        mean = flat.mean(1)
        if np.dot(proj - proj.mean(), mean - mean.mean()) < 0:
            proj = -proj
        out[i] = proj.reshape(mi.shape[:2])
    return out


def eigengradcam(a, g):
    """EigenGradCAM (pytorch-grad-cam): the first principal component of ``G * A``."""
    return first_component(g * a)


REFERENCES = {
    "gradcam": gradcam,
    "hirescam": hirescam,
    "xgradcam": xgradcam,
    "gradcam_elementwise": gradcam_elementwise,
    "layercam": layercam,
    "gradcam++": gradcam_pp,
    "eigengradcam": eigengradcam,
}


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", params=rm.KINDS)
def ref(request):
    """A reference model, its probes, and float64 ``A``, ``G`` and logits from the split."""
    model = rm.build(request.param)
    x = np.repeat(rm.images(4), rm.N_CLASSES, axis=0)
    a, g, z = rm.layer_gradients(rm.split(model), x, TARGETS)
    return request.param, model, x, a.astype(np.float64), g.astype(np.float64), z


def test_the_registry_names_the_methods_checked_here():
    assert set(REFERENCES) <= set(api.available_methods())


def test_the_split_reproduces_the_model_and_the_gradient_varies_in_space(ref):
    kind, model, x, a, g, z = ref
    out = np.asarray(model.predict(x, verbose=0), np.float64)
    if kind == "flatten_softmax":
        e = np.exp(z - z.max(1, keepdims=True))
        np.testing.assert_allclose(out, e / e.sum(1, keepdims=True), atol=1e-6)
    else:
        np.testing.assert_allclose(out, z, atol=1e-5)
    # What makes this model a test: G_ijk is not constant over ij (it is on GAP -> Dense).
    spread = g.max(axis=(1, 2)) - g.min(axis=(1, 2))
    assert (spread > 0.1 * np.abs(g).max()).all()
    assert (a > 0).mean() > 0.2  # not a dead layer
    if kind == "flatten":
        assert (a >= 0).all()  # a ReLU layer: XGrad-CAM's own setting
    else:
        assert (a < 0).mean() > 0.1  # signed: GradCAMElementWise differs from LayerCAM


@pytest.mark.parametrize("method", list(REFERENCES))
def test_method_matches_its_paper_reference(ref, method):
    kind, model, x, a, g, _ = ref
    res = compute_cams(model, x, layer=rm.LAYER, method=method, target=TARGETS, score="logit")
    assert res.targets.tolist() == TARGETS.tolist()
    assert res.heatmaps.shape == a.shape[:3]
    expected = norm(REFERENCES[method](a, g))
    # The comparison is not vacuous: most maps are not all zeros (ReLU'd away).
    assert (expected.reshape(len(x), -1).max(1) == 1.0).mean() >= 0.5
    np.testing.assert_allclose(res.heatmaps, expected, atol=ATOL, rtol=0)


def test_predicted_target_is_the_argmax_of_the_logits(ref):
    kind, model, x, a, g, z = ref
    res = compute_cams(model, x, layer=rm.LAYER, method="hirescam")
    assert res.targets.tolist() == z.argmax(1).tolist()


@pytest.mark.parametrize(
    ("method", "look_alike"),
    [
        ("hirescam", gradcam),
        ("xgradcam", gradcam),
        ("gradcam_elementwise", layercam),
        # EigenGradCAM with each channel's gradient replaced by its spatial mean
        ("eigengradcam", lambda a, g: first_component(g.mean(axis=(1, 2), keepdims=True) * a)),
    ],
)
def test_the_methods_differ_on_these_models(ref, method, look_alike):
    """Each method is far from its look-alike here, so matching the reference tells them apart."""
    kind, model, x, a, g, _ = ref
    gap = np.abs(norm(REFERENCES[method](a, g)) - norm(look_alike(a, g))).max(axis=(1, 2))
    if method == "gradcam_elementwise" and rm.ACTIVATIONS[kind] == "relu":
        # relu(G A) = relu(G) A when A >= 0: the two coincide on every ReLU layer.
        assert gap.max() < 1e-12
    else:
        assert gap.max() > 0.2 and (gap > 0.05).mean() >= 0.5, (kind, method, gap)


def test_references_are_well_conditioned(ref):
    """Float32 rounding (~1e-7 relative) cannot move the reference or the engine near ATOL.

    Grad-CAM++'s ``alpha relu(G) = relu(G) / (2 + S G)`` magnifies rounding by
    ``|S G| / |2 + S G|``; a principal vector moves by rounding times ``s1 / (s1 - s2)``
    (at most 1e-7 x 200 here).
    """
    kind, model, x, a, g, _ = ref
    s = a.sum(axis=(1, 2), keepdims=True)
    # alpha relu(G) = relu(G) / (2 + S G): only where G > 0 does the denominator count.
    factor = np.abs(2 + s * g)[g > 0]
    assert factor.min() > 0.1
    for mi in g * a:  # the first singular value stands apart: its vector is well defined
        flat = mi.reshape(-1, mi.shape[-1])
        sv = np.linalg.svd(flat - flat.mean(0), compute_uv=False)
        assert sv[0] > 1.005 * sv[1]
