"""Placeholder until the tracker lands: computes and saves heatmaps for a tiny CNN."""

import argparse
import os

import keras
import numpy as np

from cam_callback import compute_cams

parser = argparse.ArgumentParser()
parser.add_argument("--out", default="runs/spurious")
args = parser.parse_args()
inp = keras.Input((32, 32, 3))
x = keras.layers.Conv2D(8, 3, activation="relu")(inp)
out = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
model = keras.Model(inp, out)
res = compute_cams(model, np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32))
os.makedirs(args.out, exist_ok=True)
np.save(os.path.join(args.out, "heatmaps.npy"), res.heatmaps)
print("saved", res.heatmaps.shape, "to", args.out)
