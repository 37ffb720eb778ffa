"""Transfer learning: explain a layer inside a MobileNetV2 backbone nested in a classifier.

This is the model shape that breaks tf-explain, tf-keras-vis and the official Keras
Grad-CAM example on Keras 3: the layer to explain lives inside a nested model.

It trains in Keras's two phases: first the new head on a frozen backbone, then the whole
model at a lower learning rate, continued with ``initial_epoch=history.epoch[-1] + 1``.
One tracker watches both, and the record (and each GIF) is one continuous run.

Run: python examples/transfer_learning.py --out runs/transfer
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import cam_callback  # noqa: E402

SIZE = 96
CLASSES = ["disc", "bar"]


def make_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bright discs or bars on noise, as floats in [0, 255]."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    yy, xx = np.mgrid[:SIZE, :SIZE]
    x = rng.normal(90, 20, (n, SIZE, SIZE, 3))
    for i, cls in enumerate(y):
        cy, cx = rng.uniform(25, SIZE - 25, 2)
        if cls == 0:
            shape = (yy - cy) ** 2 + (xx - cx) ** 2 <= 15**2
        else:
            shape = (np.abs(yy - cy) <= 6) & (np.abs(xx - cx) <= 22)
        x[i][shape] = rng.uniform(180, 255, 3)
    return np.clip(x, 0, 255).astype(np.float32), y


def build_model() -> keras.Model:
    # weights="imagenet" is what you want where downloads are possible; this example
    # uses weights=None so it runs anywhere.
    backbone = keras.applications.MobileNetV2(
        input_shape=(SIZE, SIZE, 3), include_top=False, weights=None, alpha=0.5
    )
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.applications.mobilenet_v2.preprocess_input(inp)
    x = backbone(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(len(CLASSES), activation="softmax", name="head")(x)
    return keras.Model(inp, out, name="transfer_classifier")


def main(argv=None) -> cam_callback.Run:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/transfer")
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=4, help="epochs of the head alone")
    parser.add_argument("--fine-tune-epochs", type=int, default=2, help="then of everything")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    x, y = make_images(args.train, 0)
    probes, labels = make_images(6, 1)
    model = build_model()
    backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    layer = f"{backbone.name}/block_13_expand_relu"  # "outer/inner": inside the backbone
    tracker = cam_callback.CAMTracker(
        probes,
        labels,
        log_dir=args.out,
        class_names=CLASSES,
        layer=layer,
        display_images=probes.astype(np.uint8),
    )
    # Phase 1: train the new head on the frozen backbone.
    backbone.trainable = False
    model.compile(
        keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    history = model.fit(x, y, epochs=args.epochs, batch_size=32, verbose=2, callbacks=[tracker])
    # Phase 2: unfreeze and fine-tune everything, slowly. initial_epoch continues the epoch
    # numbering, so the tracker appends to the same record instead of starting over.
    backbone.trainable = True
    model.compile(
        keras.optimizers.Adam(1e-5), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(
        x,
        y,
        epochs=args.epochs + args.fine_tune_epochs,
        initial_epoch=history.epoch[-1] + 1,
        batch_size=32,
        verbose=2,
        callbacks=[tracker],
    )
    run = cam_callback.load_run(args.out)
    print(
        f"explained {run.layer!r}: maps of {run.heatmaps.shape[2]}x{run.heatmaps.shape[3]} "
        f"over {len(run.epochs)} epochs"
    )
    print(f"animations: {run.path / 'animations'}")
    return run


if __name__ == "__main__":
    main()
