"""Child process for test_methods: every registered method on the KERAS_BACKEND it runs under.

argv: weights file, images .npy, output .npz. Writes each method's maps and probabilities,
and the TensorFlow-import check (JAX and PyTorch must not import it).
"""

import sys

import numpy as np
from conftest import small_cnn

from cam_callback import compute_cams, methods

OPTIONS = {
    "scorecam": {"max_channels": 6},
    "integrated_gradients": {"steps": 4},
    "smoothgrad": {"samples": 3},
    "occlusion": {"patch": 12, "stride": 10},
}


def main(weights: str, images: str, out: str) -> None:
    model = small_cnn(3, head="layer")
    model.load_weights(weights)
    x = np.load(images)
    result = {}
    for name in methods.REGISTRY:
        res = compute_cams(model, x, method=name, method_options=OPTIONS.get(name))
        result[f"{name}/maps"] = res.heatmaps
        result[f"{name}/probs"] = res.probabilities
    result["tensorflow_imported"] = np.array("tensorflow" in sys.modules)
    np.savez(out, **result)


if __name__ == "__main__":
    main(*sys.argv[1:4])
