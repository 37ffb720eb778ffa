"""The default layer of three Keras applications at three input sizes, and the coarse-map rule.

Run: python benchmarks/default_layers.py      (about a minute on 2 CPU cores; weights=None)

For MobileNetV2, EfficientNetB0 and ResNet50 at 64, 96 and 224 px, prints the default
layer (the last with a spatial output), its map size, and where that map is under
``cam_callback.core.layers.MIN_SIDE`` cells a side, the finer layer that the warning and
``inspect_model(...).note`` name (the last spatial layer with at least that many).
"""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from cam_callback import inspect_model  # noqa: E402
from cam_callback.core.layers import MIN_SIDE  # noqa: E402

MODELS = {
    "MobileNetV2": keras.applications.MobileNetV2,
    "EfficientNetB0": keras.applications.EfficientNetB0,
    "ResNet50": keras.applications.ResNet50,
}


def main() -> None:
    print(f"| model | input | default layer | map | warning names (>= {MIN_SIDE} x {MIN_SIDE}) |")
    print("| --- | ---: | --- | ---: | --- |")
    for name, build in MODELS.items():
        for size in (64, 96, 224):
            model = build(weights=None, input_shape=(size, size, 3), classes=10)
            x = np.zeros((1, size, size, 3), np.float32)
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                check = inspect_model(model, x)
            coarse = [str(w.message) for w in seen if "is coarse" in str(w.message)]
            finer = coarse[0].split("a finer layer is ")[1].split(", the last")[0] if coarse else ""
            h, w = check.map_shape
            print(f"| {name} | {size} | `{check.layer}` | {h} x {w} | {finer or '(none)'} |")


if __name__ == "__main__":
    main()
