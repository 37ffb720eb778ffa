"""Which method should a Vision Transformer's token layer get by default? The evidence.

Run: python benchmarks/bench_vit_defaults.py            (about 4 minutes on 2 CPU cores)
     python benchmarks/bench_vit_defaults.py --models hub --epochs 0,1,3

Three ViTs are trained on the red-frame shapes of ``examples/spurious_background.py``
(the cue class, "homer", stands in a red frame in 95% of its training images):

- ``hub``: keras-hub's ``ViTImageClassifier``, 32 px, patches of 8 (4 x 4), 2 blocks of
  width 32, class-token head, linear output trained with ``from_logits=True``;
- ``dinov2``: keras-hub's ``DINOV2Backbone``, 28 px, patches of 7, 2 blocks of width 32,
  4 register tokens, a class-token head (random init, then trained the same way);
- ``example``: the example's own ViT (``build_vit``: 48 px, patches of 4, softmax head).

At each recorded epoch (0: before training) every method is run on 24 probes (8 per class,
each explained for its true class) at the default layer (``L``) and, for the Grad-CAM family,
at the block before it (``B``: the previous block's output). Printed per model, method and
epoch: ``empty`` (probes whose map is all zero), ``cue`` (the cue class's mean share of its
map on the frame; chance is the frame's share of the image) and ``specific`` (probes whose map
for class 1 differs from the map for class 2: the map explains the class). A default must be
non-empty on >= 90% of the probes at every epoch and class-specific. The last column is the
milliseconds of one ``compute_cams`` call on the 24 probes (after a warm-up).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import spurious_background as sb  # noqa: E402

from cam_callback import compute_cams, inspect_model  # noqa: E402

METHODS = ("gradcam", "hirescam", "layercam", "gradcam++", "xgradcam", "rollout",
           "gradient_rollout")  # fmt: skip
GRADCAM_FAMILY = METHODS[:5]
FRAME_MASK = sb.frame_mask


def data(size: int, n_train: int, seed: int = 0):
    """The example's images redrawn at ``size`` px: train set, probes (8 a class), frame."""
    sb.SIZE = size
    sb.frame_mask = lambda s=size, width=sb.FRAME: FRAME_MASK(s, width)
    scale = size / 48
    sb.FIGURE_RADIUS = (7 * scale, 11 * scale)
    x, y, _ = sb.make_split(n_train, 0.95, 0.03, seed)
    probes, labels, _ = sb.make_probes(8, seed + 2)
    return x.astype(np.float32), y, probes.astype(np.float32), labels, sb.frame_mask(size)


def hub_vit(size: int = 32):
    import keras_hub

    backbone = keras_hub.models.ViTBackbone(
        image_shape=(size, size, 3), patch_size=8, num_layers=2, num_heads=2, hidden_dim=32,
        mlp_dim=64,
    )  # fmt: skip
    inp = keras.Input((size, size, 3))
    clf = keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=3,
                                              preprocessor=None)  # fmt: skip
    model = keras.Model(inp, clf(keras.layers.Rescaling(1 / 255)(inp)), name="hub_vit")
    return model, ("transformer_block_1", None)


def dinov2(size: int = 28):
    import keras_hub

    backbone = keras_hub.models.DINOV2Backbone(
        patch_size=7, num_layers=2, hidden_dim=32, num_heads=2, intermediate_dim=64,
        num_register_tokens=4, image_shape=(size, size, 3),
        position_embedding_shape=(size, size, 3),
    )  # fmt: skip
    inp = keras.Input((size, size, 3))
    tokens = backbone({"images": keras.layers.Rescaling(1 / 255)(inp)})
    out = keras.layers.Dense(3, name="logits")(tokens[:, 0])
    return keras.Model(inp, out, name="dinov2"), ("layers_0", None)


def example_vit(size: int = 48):
    return sb.build_vit(3e-4), ("transformer_block_1", None)


MODELS = {"hub": (hub_vit, 32), "dinov2": (dinov2, 28), "example": (example_vit, 48)}


def measure(model, probes, labels, frame, layers, methods) -> dict:
    """``{(method, layer tag): (empty share, cue share, specific share, ms)}``."""
    rows = {}
    cued = labels == sb.CUED
    for method in methods:
        for tag, layer in layers:
            if tag != "L" and method not in GRADCAM_FAMILY:
                continue
            kw = dict(method=method, layer=layer)
            try:
                compute_cams(model, probes, target=labels, **kw)  # warm-up (tracing)
            except ValueError as exc:
                print(f"  {method} at {tag}: {exc}")
                continue
            t = time.perf_counter()
            maps = compute_cams(model, probes, target=labels, **kw).heatmaps
            ms = (time.perf_counter() - t) * 1000
            a = compute_cams(model, probes, target=1, **kw).heatmaps
            b = compute_cams(model, probes, target=2, **kw).heatmaps
            specific = float(np.mean(np.abs(a - b).reshape(len(a), -1).max(1) > 1e-3))
            empty = maps.reshape(len(maps), -1).max(1) <= 0
            h, w = maps.shape[1:]
            up = maps.repeat(frame.shape[0] // h, 1).repeat(frame.shape[1] // w, 2)
            tot = up.reshape(len(up), -1).sum(1)
            on = (up * frame[None, : up.shape[1], : up.shape[2]]).reshape(len(up), -1).sum(1)
            share = np.where(tot > 0, on / np.where(tot > 0, tot, 1), np.nan)[cued]
            cue = float(np.nanmean(share)) if np.isfinite(share).any() else float("nan")
            rows[(method, tag)] = (float(empty.mean()), cue, specific, ms)
    return rows


def run_model(name: str, epochs: list[int], n_train: int, methods) -> None:
    build, size = MODELS[name]
    keras.utils.set_random_seed(0)
    x, y, probes, labels, frame = data(size, n_train)
    model, (before, _) = build(size)
    if name != "example":
        model.compile(keras.optimizers.Adam(3e-4),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])  # fmt: skip
    default = inspect_model(model, probes).layer
    layers = [("L", None), ("B", before)]
    print(f"\n{name}: {size} px, default layer L = {default!r}, B = {before!r}; "
          f"chance on the frame {frame.mean():.2f}")  # fmt: skip
    results, done = {}, 0
    for e in epochs:
        if e > done:
            model.fit(x, y, epochs=e - done, batch_size=32, verbose=0)
            done = e
        acc = model.evaluate(x[:600], y[:600], verbose=0)[1]
        results[e] = (measure(model, probes, labels, frame, layers, methods), acc)
    print("epoch accuracy: " + ", ".join(f"{e}: {a:.2f}" for e, (_, a) in results.items()))
    head = f"{'method':22s}" + "".join(f" | ep {e:>2d} empty cue spec" for e in epochs)
    print(head + " |   ms")
    keys = list(results[epochs[0]][0])
    for key in keys:
        cells, ms = "", 0.0
        for e in epochs:
            r = results[e][0].get(key)
            if r is None:
                cells += f" | {'':>20s}"
                continue
            cells += f" | {r[0]:8.0%} {r[1]:4.2f} {r[2]:4.0%}"
            ms = r[3]
        print(f"{key[0] + ' @' + key[1]:22s}{cells} | {ms:5.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="hub,dinov2,example")
    parser.add_argument("--epochs", default="0,1,3,6")
    parser.add_argument("--train", type=int, default=1200)
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    epochs = [int(e) for e in args.epochs.split(",")]
    print(f"backend {keras.backend.backend()}, {args.train} training images, 24 probes")
    for name in args.models.split(","):
        run_model(name, epochs, args.train, args.methods.split(","))


if __name__ == "__main__":
    main()
