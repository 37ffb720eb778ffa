"""Child for tests/test_vit.py: the saved Functional ViT's maps under its own KERAS_BACKEND.

usage: python _child_vit.py DIR  (reads DIR/vit.weights.h5 and DIR/x.npy, writes
DIR/maps_<backend>.npz)
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

folder = sys.argv[1]
model = functional_vit(seed=None)  # the weights come from the file
model.load_weights(os.path.join(folder, "vit.weights.h5"))
x = np.load(os.path.join(folder, "x.npy"))
np.savez(
    os.path.join(folder, f"maps_{keras.backend.backend()}.npz"),
    block1=compute_cams(model, x, layer="block1_out", target=1).heatmaps,
)
