"""Child process for test_methods: every registered method on the KERAS_BACKEND it runs under.

argv: weights file, images .npy, output .npz. Writes each method's maps and probabilities,
and the TensorFlow-import check (JAX and PyTorch must not import it).
"""

import sys

import numpy as np
from conftest import small_cnn

from cam_callback import compute_cams, evaluate, methods

OPTIONS = {
    "scorecam": {"max_channels": 6},
    "integrated_gradients": {"steps": 4},
    "smoothgrad": {"samples": 3},
    "occlusion": {"patch": 12, "stride": 10},
}


# Every method that runs on this CNN: the attention rollouts need a ViT (test_vit_rollout).
CNN_METHODS = [
    name for name, spec in methods.REGISTRY.items() if not spec.needs.startswith("attention")
]

# Weighted by the explained score of perturbed inputs: also run for the probability.
BY_SCORE = ("scorecam", "ablationcam", "occlusion")
EVALUATED = ("gradcam", "eigencam", "random")
METRICS = ("deletion_auc", "insertion_auc", "average_drop", "road", "faithfulness")


def main(weights: str, images: str, out: str) -> None:
    model = small_cnn(3, head="layer")
    model.load_weights(weights)
    x = np.load(images)
    result = {}
    for name in CNN_METHODS:
        res = compute_cams(model, x, method=name, method_options=OPTIONS.get(name))
        result[f"{name}/maps"] = res.heatmaps
        result[f"{name}/probs"] = res.probabilities
    for name in BY_SCORE:
        res = compute_cams(model, x, method=name, score="probability",
                           method_options=OPTIONS.get(name))  # fmt: skip
        result[f"{name}/probability_maps"] = res.heatmaps
    table = evaluate(model, x, methods=EVALUATED, metrics=METRICS, steps=4)
    for name in EVALUATED:
        for metric in METRICS:
            result[f"evaluate/{name}/{metric}"] = table.per_image[name][metric]
    result["tensorflow_imported"] = np.array("tensorflow" in sys.modules)
    np.savez(out, **result)


if __name__ == "__main__":
    main(*sys.argv[1:4])
