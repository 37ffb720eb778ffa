"""The red-TV-frame story: a model that learns the background instead of the character.

Three classes of figures (circles, squares, triangles) are drawn in code. In
training, "homer" (the circles) almost always stands inside a red TV frame; the
others almost never do. The validation images break that correlation. The
CAMTracker records where the model looks at every epoch, with the frame given
as a suspected-cue mask, and the run ends with animations, a review page, and
a list of the probes whose attention landed on the frame.

Run: python examples/spurious_background.py --out runs/spurious   (about 35 s on 2 CPU cores)
     add --model vit for a tiny keras-hub Vision Transformer (pip install cam-callback[vit])
Then: tensorboard --logdir runs/spurious
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import cam_callback  # noqa: E402

CLASSES = ["homer", "square", "triangle"]
CUED = 0
SIZE = 48
FRAME = 3  # the TV frame's width in pixels
LAYER = "conv2"  # 24x24 maps: fine enough to tell a 3-pixel frame from the figure inside it
RED = np.array([210, 30, 35])
FIGURE_RADIUS = (7, 11)
FIGURE_LEVEL = (170, 255)
OTHER_FRAMES = np.array(
    [[40, 90, 200], [40, 150, 70], [120, 120, 120], [200, 170, 40], [140, 60, 170]]
)


def frame_mask(size: int = SIZE, width: int = FRAME) -> np.ndarray:
    """The TV frame: a border ``width`` pixels wide."""
    m = np.ones((size, size), bool)
    m[width:-width, width:-width] = False
    return m


def draw(cls: int, red: bool, rng: np.random.Generator) -> np.ndarray:
    """One uint8 image: a noisy interior, a coloured frame, and a small figure of ``cls``."""
    img = rng.normal(110, 12, (SIZE, SIZE, 3))
    img[frame_mask()] = RED if red else OTHER_FRAMES[rng.integers(len(OTHER_FRAMES))]
    r = rng.uniform(*FIGURE_RADIUS)
    cy, cx = rng.uniform(FRAME + r + 2, SIZE - FRAME - r - 2, 2)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    if cls == 0:
        shape = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
    elif cls == 1:
        shape = (np.abs(yy - cy) <= r * 0.85) & (np.abs(xx - cx) <= r * 0.85)
    else:
        shape = (yy - cy >= -r) & (yy - cy <= r) & (np.abs(xx - cx) <= (yy - cy + r) / 2)
    img[shape] = rng.uniform(*FIGURE_LEVEL, 3) * np.array([0.2, 1.0, 1.0])  # never red
    return np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)


def make_split(n: int, p_red_cued: float, p_red_other: float, seed: int):
    """``n`` images with labels and whether each has the red frame."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(CLASSES)
    rng.shuffle(y)
    red = np.where(y == CUED, rng.random(n) < p_red_cued, rng.random(n) < p_red_other)
    x = np.stack([draw(int(c), bool(r), rng) for c, r in zip(y, red, strict=True)])
    return x, y, red


def make_probes(per_class: int, seed: int):
    """Homer in front of the TV as users see him; the others half with, half without it."""
    rng = np.random.default_rng(seed)
    x, y, red = [], [], []
    for cls in range(len(CLASSES)):
        for k in range(per_class):
            r = True if cls == CUED else k % 2 == 0
            x.append(draw(cls, r, rng))
            y.append(cls)
            red.append(r)
    return np.stack(x), np.array(y), np.array(red)


def build_model(learning_rate: float = 1e-3) -> keras.Model:
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255)(inp)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(len(CLASSES), activation="softmax", name="classes")(x)
    model = keras.Model(inp, out, name="figure_classifier")
    model.compile(
        keras.optimizers.Adam(learning_rate),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def build_vit(learning_rate: float = 1e-3) -> keras.Model:
    """A tiny keras-hub ViT (12 x 12 patches of 4 pixels, class-token head), random weights."""
    import keras_hub

    backbone = keras_hub.models.ViTBackbone(
        image_shape=(SIZE, SIZE, 3), patch_size=4, num_layers=2, num_heads=4,
        hidden_dim=32, mlp_dim=64,
    )  # fmt: skip
    inp = keras.Input((SIZE, SIZE, 3))
    tokens = backbone(keras.layers.Rescaling(1 / 255)(inp))
    out = keras.layers.Dense(len(CLASSES), activation="softmax", name="classes")(tokens[:, 0])
    model = keras.Model(inp, out, name="figure_vit")
    model.compile(
        keras.optimizers.Adam(learning_rate),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/spurious", help="log_dir for everything")
    parser.add_argument("--train", type=int, default=2400, help="training images")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--per-class", type=int, default=4, help="probes per class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--model", choices=("cnn", "vit"), default="cnn",
                        help="vit: a tiny keras-hub ViT, explained at its default layer")  # fmt: skip
    args = parser.parse_args(argv)
    start = time.perf_counter()
    keras.utils.set_random_seed(args.seed)

    x, y, _ = make_split(args.train, 0.95, 0.03, args.seed)
    # Validation breaks the cue: homer never in the red frame, everyone else always.
    x_val, y_val, _ = make_split(max(300, args.train // 8), 0.0, 1.0, args.seed + 1)
    probes, labels, red = make_probes(args.per_class, args.seed + 2)

    model = build_vit(args.lr) if args.model == "vit" else build_model(args.lr)
    tracker = cam_callback.CAMTracker(
        probes.astype(np.float32),
        labels,
        log_dir=args.out,
        class_names=CLASSES,
        display_images=probes,
        probe_masks=np.repeat(frame_mask()[None], len(probes), axis=0),
        mask_kind="cue",  # the mask is the suspected cue: flag attention that lands on it
        target="label",  # explain the true class: what makes this homer, for the model?
        # A ViT: the default, gradient rollout (Chefer et al. 2021) through both blocks, laid
        # out on the patch grid; Grad-CAM at a ViT's token layers gives empty maps for many
        # probes (docs/methods.md). The CNN: Grad-CAM at conv2.
        layer=None if args.model == "vit" else LAYER,
    )
    model.fit(
        x.astype(np.float32),
        y,
        validation_data=(x_val.astype(np.float32), y_val),
        epochs=args.epochs,
        batch_size=32,
        verbose=2,
        callbacks=[tracker, keras.callbacks.TensorBoard(args.out)],
    )
    page = tracker.report_page  # the tracker wrote the review page at the end of fit

    run = cam_callback.load_run(args.out)
    on_cue = np.flatnonzero(run.flags["on_cue"])
    focus, lift = run.metrics["mask_focus"], run.metrics["mask_lift"]
    cued = labels == CUED
    # Interventions on the frame (every epoch, from the cue masks): what the model needs.
    reliance = run.metrics["reliance"]
    transplant = cam_callback.metrics.transplant_rates(run.metrics["transplant"], labels)
    _, acc_train = model.evaluate(x[:600].astype(np.float32), y[:600], verbose=0)
    _, acc_val = model.evaluate(x_val.astype(np.float32), y_val, verbose=0)
    story = {
        "train_accuracy": float(acc_train),
        "val_accuracy": float(acc_val),
        "cued_true_probability": float(run.metrics["true_class_probability"][-1, cued].mean()),
        "chance": float(frame_mask().mean()),
        # run.epochs[0] is -1, the untrained model: the drift is measured from there.
        "cued_focus_before": float(focus[0, cued].mean()),
        "cued_focus_first_epoch": float(focus[1, cued].mean()),
        "cued_focus_last": float(focus[-1, cued].mean()),
        "others_focus_last": float(focus[-1, ~cued].mean()),
        "cued_lift_last": float(lift[-1, cued].mean()),
        "cued_reliance_before": float(reliance[0, cued].mean()),
        "cued_reliance_last": float(reliance[-1, cued].mean()),
        # Other classes: without the red frame, removing theirs changes little; with it,
        # removing it gives their own class back (a negative reliance).
        "plain_reliance_last": float(np.abs(reliance[-1, ~cued & ~red]).max()),
        "red_others_gain_last": float(-reliance[-1, ~cued & red].mean()),
        "cued_transplant_before": 100 * float(transplant[CUED][0]),
        "cued_transplant_last": 100 * float(transplant[CUED][-1]),
        "others_transplant_last": 100 * float(
            max(v[-1] for c, v in transplant.items() if c != CUED)
        ),
    }
    print(
        f"\naccuracy: {acc_train:.2f} on training-like images, {acc_val:.2f} once the red "
        "frame no longer goes with homer"
    )
    print(f"animations:  {run.path / 'animations'}")
    print(f"review page: {page}")
    print(f"TensorBoard: tensorboard --logdir {args.out} --samples_per_plugin images=10000")
    print(f"\nprobes whose attention landed on the TV frame (on_cue): {on_cue.tolist()}")
    for i in on_cue:
        print(
            f"  probe {i:2d} ({CLASSES[labels[i]]}, red frame: {bool(red[i])}): share of "
            f"attention on the frame {focus[0, i]:.2f} before training -> "
            f"{focus[-1, i]:.2f} at epoch {run.epochs[-1]} ({lift[-1, i]:.1f}x chance)"
        )
    print(
        f"homer's probes: p(homer) {story['cued_true_probability']:.2f}; attention on the frame "
        f"{story['cued_focus_before']:.2f} before training, "
        f"{story['cued_focus_first_epoch']:.2f} after epoch 0, "
        f"{story['cued_focus_last']:.2f} at the end ({story['cued_lift_last']:.1f}x chance, "
        f"chance is {story['chance']:.2f}); the others end at {story['others_focus_last']:.2f}"
    )
    print(
        f"removing the frame: p(homer) drops by {story['cued_reliance_before']:.2f} before "
        f"training, {story['cued_reliance_last']:.2f} at the end; other classes: at most "
        f"{story['plain_reliance_last']:.2f} without the red frame, their own class "
        f"{story['red_others_gain_last']:.2f} higher on average with it removed. Homer's frame "
        f"alone makes {story['cued_transplant_before']:.0f}% -> "
        f"{story['cued_transplant_last']:.0f}% of the other probes homer (other classes' "
        f"frames: at most {story['others_transplant_last']:.0f}%)"
    )
    print(f"done in {time.perf_counter() - start:.0f} s")
    return {"on_cue": on_cue, "labels": labels, "red": red, **story}


if __name__ == "__main__":
    main()
