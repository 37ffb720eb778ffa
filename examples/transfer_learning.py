"""Transfer learning: explain a layer inside a MobileNetV2 backbone nested in a classifier.

This is the model shape that breaks tf-explain, tf-keras-vis and the official Keras
Grad-CAM example on Keras 3: the layer to explain lives inside a nested model.

The whole story runs offline:

1. Pretraining (task 1). A MobileNetV2 backbone (alpha 0.35, 64 px, cut after its
   stride-8 stage to stay quick on a CPU) learns four shapes (disc, bar, square, triangle)
   of any colour on noise. It is saved to ``OUT/pretrained_backbone.keras`` and the
   transfer starts from that file, as it would from downloaded weights.
2. Transfer (task 2): discs vs bars again, but smaller, in cool colours only, and from a
   few hundred labelled images. Keras's two phases: a new head on the frozen backbone,
   then the whole model (BatchNorm statistics kept frozen) at a lower learning rate,
   continued with ``initial_epoch=history.epoch[-1] + 1``.

One ``CAMTracker`` watches both phases of the transfer (not the pretraining): the record,
and each GIF, runs from the pretrained backbone under its untrained head (epoch -1) to the
end of fine-tuning. Each probe's shape is its mask, so the record holds ``mask_focus``, the
share of each map that lands on the shape.

``--pretrain-epochs 0`` skips step 1: the backbone keeps its random weights, and the model
learns nothing (accuracy stays near chance). ``--weights imagenet`` replaces step 1 with
Keras's ImageNet weights, cut at the same layer; it needs to download them, and if that
fails the script says so and exits with status 2 rather than train something else.

Run: python examples/transfer_learning.py --out runs/transfer   (about a minute of CPU)
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import cam_callback  # noqa: E402

SIZE = 64
ALPHA = 0.35
CUT = "block_6_expand_relu"  # the backbone's output: MobileNetV2's stride-8 features
LAYER = "block_5_expand_relu"  # the explained layer, one block inside: 8x8 maps
PRETRAIN_CLASSES = ["disc", "bar", "square", "triangle"]
CLASSES = ["disc", "bar"]
# Task 1: larger shapes of any colour. Task 2: smaller ones, in cool colours only.
PRETRAIN_LOOK = {"radius": (9.0, 14.0), "low": (0, 0, 0), "high": (255, 255, 255)}
TRANSFER_LOOK = {"radius": (6.0, 10.0), "low": (0, 110, 150), "high": (110, 255, 255)}
VALIDATION = 400  # held-out images per task


def shape_mask(kind: str, r: float, rng: np.random.Generator) -> np.ndarray:
    """A bool ``[SIZE, SIZE]`` mask of one shape of radius ``r`` at a random place."""
    margin = min((1.6 * r if kind == "bar" else r) + 2, SIZE / 2 - 1)
    cy, cx = rng.uniform(margin, SIZE - margin, 2)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    dy, dx = yy - cy, xx - cx
    if kind == "disc":
        return dy**2 + dx**2 <= r**2
    if kind == "bar":  # horizontal or vertical
        across, along = (dy, dx) if rng.random() < 0.5 else (dx, dy)
        return (np.abs(across) <= 0.35 * r) & (np.abs(along) <= 1.6 * r)
    if kind == "square":
        return (np.abs(dy) <= 0.85 * r) & (np.abs(dx) <= 0.85 * r)
    if kind == "triangle":
        return (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
    raise ValueError(f"`kind` must be one of {PRETRAIN_CLASSES}. Received: kind={kind!r}")


def make_images(
    n: int, seed: int, classes: list[str] | None = None, look: dict | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` shapes on noise: float32 images in [0, 255], int labels and the shapes' masks.

    Task 2 (``CLASSES`` in ``TRANSFER_LOOK``) unless ``classes`` and ``look`` say otherwise.
    """
    classes = CLASSES if classes is None else classes
    look = TRANSFER_LOOK if look is None else look
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(classes)
    rng.shuffle(y)
    x = rng.normal(100, 25, (n, SIZE, SIZE, 3))
    masks = np.zeros((n, SIZE, SIZE), bool)
    for i, cls in enumerate(y):
        masks[i] = shape_mask(classes[cls], rng.uniform(*look["radius"]), rng)
        x[i][masks[i]] = rng.uniform(look["low"], look["high"])
    x += rng.normal(0, 10, x.shape)  # noise over the shapes too
    return np.clip(x, 0, 255).astype(np.float32), y, masks


def build_backbone(weights: str | None = None) -> keras.Model:
    """MobileNetV2's layers up to ``CUT``, as one model (random or ImageNet weights)."""
    full = keras.applications.MobileNetV2(
        input_shape=(SIZE, SIZE, 3), include_top=False, weights=weights, alpha=ALPHA
    )
    # One name either way (Keras names ImageNet weights' models after 224 px, their size).
    name = f"mobilenetv2_{ALPHA:0.2f}_{SIZE}_backbone"
    return keras.Model(full.input, full.get_layer(CUT).output, name=name)


def attach_head(backbone: keras.Model, n_classes: int, name: str) -> keras.Model:
    """``preprocess -> backbone (nested) -> GAP -> softmax``, for images in [0, 255]."""
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.applications.mobilenet_v2.preprocess_input(inp)
    x = backbone(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(n_classes, activation="softmax", name="head")(x)
    return keras.Model(inp, out, name=name)


def build_model(backbone: keras.Model) -> keras.Model:
    """The task-2 classifier: ``backbone`` nested under a new, untrained head."""
    return attach_head(backbone, len(CLASSES), "transfer_classifier")


def pretrain(
    backbone: keras.Model, n: int, epochs: int, seed: int, batch_size: int = 16, lr: float = 5e-3
) -> float:
    """Trains ``backbone`` (its BatchNorm statistics too) on task 1; returns held-out accuracy."""
    # MobileNetV2's BatchNorm averages its statistics over about 1,000 steps (momentum
    # 0.999), more than this whole pretraining: inference would still normalise with the
    # initial statistics and see noise. Average over about 10 steps instead.
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    x, y, _ = make_images(n, seed, PRETRAIN_CLASSES, PRETRAIN_LOOK)
    x_val, y_val, _ = make_images(VALIDATION, seed + 1, PRETRAIN_CLASSES, PRETRAIN_LOOK)
    model = attach_head(backbone, len(PRETRAIN_CLASSES), "pretraining")
    model.compile(
        keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    history = model.fit(
        x, y, validation_data=(x_val, y_val), epochs=epochs, batch_size=batch_size, verbose=2
    )
    return float(history.history["val_accuracy"][-1])


def transfer(
    backbone: keras.Model,
    log_dir: str | os.PathLike,
    *,
    train: int,
    epochs: int,
    fine_tune_epochs: int,
    probes: int,
    seed: int,
) -> dict:
    """Task 2 on ``backbone`` in Keras's two phases, one ``CAMTracker`` watching both."""
    x, y, _ = make_images(train, seed + 2)
    x_val, y_val, _ = make_images(VALIDATION, seed + 3)
    probe_x, probe_y, masks = make_images(probes, seed + 4)
    model = build_model(backbone)
    tracker = cam_callback.CAMTracker(
        probe_x,
        probe_y,
        log_dir=log_dir,
        class_names=CLASSES,
        layer=f"{backbone.name}/{LAYER}",  # "outer/inner": inside the backbone
        display_images=probe_x.astype(np.uint8),
        probe_masks=masks,  # the shapes: mask_focus is the share of each map on its shape
    )
    fit = {"validation_data": (x_val, y_val), "batch_size": 32, "verbose": 2}
    # Phase 1: train the new head on the frozen backbone.
    backbone.trainable = False
    model.compile(
        keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    _, accuracy_untrained = model.evaluate(x_val, y_val, verbose=0)
    history = model.fit(x, y, epochs=epochs, callbacks=[tracker], **fit)
    accuracy_head = history.history["val_accuracy"][-1]
    # Phase 2: unfreeze and fine-tune everything, slowly...
    backbone.trainable = True
    # ...but its BatchNorm layers: a frozen BatchNorm runs in inference mode and keeps the
    # pretrained statistics, instead of taking them from batches of 32 new images. (Keras's
    # guide calls the backbone with training=False for this, but in Keras 3 fit's
    # training=True overrides that: keras-team/keras#20285.)
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    model.compile(
        keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    # initial_epoch continues the epoch numbering, so the tracker appends to the same
    # record instead of starting over.
    history = model.fit(
        x,
        y,
        epochs=epochs + fine_tune_epochs,
        initial_epoch=history.epoch[-1] + 1,
        callbacks=[tracker],
        **fit,
    )
    run = cam_callback.load_run(log_dir)
    focus = run.metrics["mask_focus"]
    return {
        "run": run,
        "accuracy_untrained_head": float(accuracy_untrained),
        "accuracy_head": float(accuracy_head),
        "accuracy_final": float(history.history["val_accuracy"][-1]),
        # What a flat map would put on the shapes: the shapes' share of the image.
        "chance": float(masks.mean()),
        "focus_before": float(focus[0].mean()),  # epoch -1: the untrained head
        "focus_head": float(focus[run.epochs.index(epochs - 1)].mean()),
        "focus_last": float(focus[-1].mean()),
        "lift_last": float(run.metrics["mask_lift"][-1].mean()),
    }


def main(argv: list[str] | None = None) -> dict:
    """Runs the example; returns its numbers, and the record as ``"run"``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/transfer")
    parser.add_argument(
        "--weights",
        choices=["none", "imagenet"],
        default="none",
        help="none: pretrain the backbone here on task 1; imagenet: download Keras's",
    )
    parser.add_argument("--pretrain", type=int, default=1600, help="task-1 images")
    parser.add_argument("--pretrain-epochs", type=int, default=4, help="0: no pretraining")
    parser.add_argument("--train", type=int, default=320, help="task-2 images")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the head alone")
    parser.add_argument("--fine-tune-epochs", type=int, default=2, help="then of everything")
    parser.add_argument("--probes", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    wall, cpu = time.perf_counter(), time.process_time()
    keras.utils.set_random_seed(args.seed)

    pretrain_accuracy = None
    if args.weights == "imagenet":
        try:
            backbone = build_backbone("imagenet")
        except Exception as exc:  # keras.utils.get_file raises a bare Exception offline
            parser.exit(
                2,
                f"Could not load MobileNetV2's ImageNet weights: {exc}\nNothing was trained. "
                "Run without `--weights imagenet` to pretrain the backbone here instead.\n",
            )
    elif args.pretrain_epochs > 0:
        backbone = build_backbone(None)
        pretrain_accuracy = pretrain(backbone, args.pretrain, args.pretrain_epochs, args.seed)
        saved = Path(args.out) / "pretrained_backbone.keras"
        saved.parent.mkdir(parents=True, exist_ok=True)
        backbone.save(saved)
        backbone = keras.saving.load_model(saved)
    else:
        backbone = build_backbone(None)  # random weights: the control that learns nothing

    story = transfer(
        backbone,
        args.out,
        train=args.train,
        epochs=args.epochs,
        fine_tune_epochs=args.fine_tune_epochs,
        probes=args.probes,
        seed=args.seed,
    )
    story["pretrain_accuracy"] = pretrain_accuracy
    run = story["run"]
    start = {"imagenet": "ImageNet weights"}.get(args.weights, "random weights")
    if pretrain_accuracy is not None:
        start = f"pretrained on task 1 (4 shapes), held-out accuracy {pretrain_accuracy:.2f}"
    print(f"\nbackbone: {start}")
    print(
        f"task 2 (disc vs bar), held-out accuracy: {story['accuracy_untrained_head']:.2f} "
        f"with the untrained head, {story['accuracy_head']:.2f} after training the head, "
        f"{story['accuracy_final']:.2f} after fine-tuning (chance: 0.50)"
    )
    print(
        f"maps of {run.layer!r} ({run.heatmaps.shape[2]}x{run.heatmaps.shape[3]}), share "
        f"on the shape: {story['focus_before']:.2f} before the transfer, "
        f"{story['focus_head']:.2f} after the head, {story['focus_last']:.2f} at the end, "
        f"{story['lift_last']:.1f}x a flat map's {story['chance']:.2f}"
    )
    print(f"animations: {run.path / 'animations'}")
    print(f"done in {time.perf_counter() - wall:.0f} s, {time.process_time() - cpu:.0f} s of CPU")
    return story


if __name__ == "__main__":
    main()
