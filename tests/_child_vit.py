"""The cross-backend maps of the test Functional ViT, and the child that computes them.

tests/test_vit.py computes :func:`maps_of` on TensorFlow and runs this file once per other
backend, on the same saved weights, so one child (one import, one model build) checks
Grad-CAM on tokens and both rollouts.

usage: python _child_vit.py DIR  (reads DIR/vit.weights.h5 and DIR/x.npy, writes
DIR/maps_<backend>.npz). On JAX with several devices (XLA_FLAGS=
--xla_force_host_platform_device_count=2) it then computes token Grad-CAM and both rollouts
again under keras.distribution.DataParallel, on a model built under it, into DIR/maps_dp.npz,
and prints the device count.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from vit_models import functional_vit  # noqa: E402

from cam_callback import compute_cams  # noqa: E402


def maps_of(model: keras.Model, x: np.ndarray, short: bool = False) -> dict[str, np.ndarray]:
    """Grad-CAM on a token layer, rollout (plain and with ``discard_ratio``), gradient rollout
    (``short``: without the ``discard_ratio`` one)."""
    # For the rollouts `layer` only picks the token grid: naming it skips the default search.
    kw = {"layer": "block2_ln1", "head": "logits"}
    if short:
        return {
            "gradcam_tokens": compute_cams(model, x, layer="block1_out", target=1).heatmaps,
            "rollout": compute_cams(model, x, method="rollout", **kw).heatmaps,
            "gradient_rollout": compute_cams(model, x, method="gradient_rollout", **kw).heatmaps,
        }
    return {
        "gradcam_tokens": compute_cams(model, x, layer="block1_out", target=1).heatmaps,
        "rollout": compute_cams(model, x, method="rollout", **kw).heatmaps,
        "rollout_discard": compute_cams(model, x, method="rollout",
                                        method_options={"discard_ratio": 0.5}, **kw).heatmaps,
        "gradient_rollout": compute_cams(model, x, method="gradient_rollout", **kw).heatmaps,
    }  # fmt: skip


def loaded(folder: str) -> keras.Model:
    # The weights come from the file: no seed (it would import TensorFlow), zero initializers.
    model = functional_vit(seed=None, random_init=False)
    model.load_weights(os.path.join(folder, "vit.weights.h5"))
    return model


if __name__ == "__main__":
    folder = sys.argv[1]
    x = np.load(os.path.join(folder, "x.npy"))
    backend = keras.backend.backend()
    np.savez(os.path.join(folder, f"maps_{backend}.npz"), **maps_of(loaded(folder), x))
    if backend == "jax":
        import jax

        devices = jax.devices()
        if len(devices) > 1:
            keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
            model = loaded(folder)  # built under the distribution: replicated weights
            np.savez(os.path.join(folder, "maps_dp.npz"), **maps_of(model, x, short=True))
        print(len(devices), flush=True)
