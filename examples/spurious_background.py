"""The red-TV-frame story: a model that learns the background instead of the character.

Three classes of figures (circles, squares, triangles) are drawn in code. In
training, "homer" (the circles) almost always stands inside a red TV frame; the
others almost never do. The validation images break that correlation. The
CAMTracker records where the model looks at every epoch, with the frame given
as a suspected-cue mask, and the run ends with animations, a review page, and
a list of the probes whose attention landed on the frame.

Run: python examples/spurious_background.py --out runs/spurious   (about 35 s on 2 CPU cores)
     add --no-masks to find the shortcut without being told where it is (no probe_masks:
     the evidence transplant and its gallery alone)
     add --model vit for a tiny keras-hub Vision Transformer (pip install cam-callback[vit])
Then: tensorboard --logdir runs/spurious
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import re
import shlex
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# TensorFlow's CUDA stub says "Could not find cuda drivers" once per library that holds a copy
# of it (twice), through absl before TensorFlow's own logging starts: TF_CPP_MIN_LOG_LEVEL,
# read by that logging, cannot hide it (tensorflow/tensorflow#100442). These lines, and
# the oneDNN and CPU-instruction notes, are dropped while Keras imports TensorFlow; anything
# else written to stderr then is passed on.
START_UP_NOISE = re.compile(
    rb"cudart_stub\.cc.*Could not find cuda drivers|before absl::InitializeLog\(\) is called"
    rb"|oneDNN custom operations are on|TF_ENABLE_ONEDNN_OPTS|cpu_feature_guard\.cc"
    rb"|^To enable the following instructions:|cuda_platform\.cc.*failed call to cuInit"
)


@contextlib.contextmanager
def quiet_start_up():
    """Holds back what C++ code writes to stderr (file descriptor 2), then passes on every
    line but TensorFlow's start-up noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held if not START_UP_NOISE.search(line)]
            os.write(2, b"".join(kept))


with quiet_start_up():
    import keras

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


def evidence_story(run, labels: np.ndarray) -> dict:
    """Homer's evidence transplant rate (in %) before training and at the end, its control,
    and the other classes' at the end: no mask needed (cam_callback.metrics.evidence)."""
    rates = cam_callback.metrics.class_rates(run.metrics["evidence_transplant"], run.targets)
    control = cam_callback.metrics.class_rates(run.metrics["evidence_control"], run.targets)
    return {
        "cued_evidence_before": 100 * float(rates[CUED][0]),
        "cued_evidence_last": 100 * float(rates[CUED][-1]),
        "cued_evidence_control_before": 100 * float(control[CUED][0]),
        "cued_evidence_control_last": 100 * float(control[CUED][-1]),
        "others_evidence_last": 100 * float(
            max(np.nan_to_num(v[-1]) for c, v in rates.items() if c != CUED)
        ),
    }


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


def moves(drop: float, down: str = "drops", up: str = "rises") -> str:
    """A change in words, its sign in the verb: a rise never reads as a drop of -0.05.

    Example:
        >>> moves(0.314), moves(-0.05), moves(-0.001)
        ('drops by 0.31', 'rises by 0.05', 'stays within 0.005')
    """
    if abs(drop) < 0.005:
        return "stays within 0.005"
    return f"{down if drop > 0 else up} by {abs(drop):.2f}"


def tensorboard_command(log_dir: str) -> str:
    """A TensorBoard command that works as printed, with no virtualenv activated: this
    Python's own ``tensorboard.main``, every image sample kept."""
    return shlex.join(
        [sys.executable, "-m", "tensorboard.main", "--logdir", log_dir]
        + ["--samples_per_plugin", "images=10000"]
    )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/spurious", help="log_dir for everything")
    parser.add_argument("--train", type=int, default=2400, help="training images")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--per-class", type=int, default=4, help="probes per class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument(
        "--model",
        choices=("cnn", "vit"),
        default="cnn",
        help="vit: a tiny keras-hub ViT, explained at its default layer",
    )
    parser.add_argument(
        "--no-masks",
        action="store_true",
        help="no probe_masks: the evidence transplant alone",
    )
    args = parser.parse_args(argv)
    if args.model == "vit" and importlib.util.find_spec("keras_hub") is None:
        parser.error('--model vit needs keras-hub: pip install -e ".[vit]" (or keras-hub)')
    start = time.perf_counter()
    keras.utils.set_random_seed(args.seed)

    x, y, red_train = make_split(args.train, 0.95, 0.03, args.seed)
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
        probe_masks=None if args.no_masks else np.repeat(frame_mask()[None], len(probes), axis=0),
        mask_kind="cue",  # the mask is the suspected cue: flag attention that lands on it
        target="label",  # explain the true class: what makes this homer, for the model?
        # A ViT: the default, gradient rollout (Chefer et al. 2021) through both blocks, laid
        # out on the patch grid; Grad-CAM at a ViT's token layers gives empty maps for many
        # probes (docs/methods.md). The CNN: Grad-CAM at conv2.
        layer=None if args.model == "vit" else LAYER,
        # The 3-pixel frame is 23% of the image: the default region (10% of the area) holds
        # less than half of it, and half a red frame moves a quarter of the recipients.
        evidence={"share": 0.2} if args.no_masks else True,
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
    evidence = evidence_story(run, labels)
    print(
        f"\nwithout any mask: homer's most-attended part pasted onto the other probes makes "
        f"{evidence['cued_evidence_before']:.0f}% of them homer before training, "
        f"{evidence['cued_evidence_last']:.0f}% at the end (the same shape from elsewhere: "
        f"{evidence['cued_evidence_control_last']:.0f}%; other classes' regions: at most "
        f"{evidence['others_evidence_last']:.0f}%). Gallery: {page}"
    )
    if args.no_masks:
        print(f"done in {time.perf_counter() - start:.0f} s")
        return {"labels": labels, "red": red, "log_dir": args.out, **evidence}
    on_cue = np.flatnonzero(run.flags["on_cue"])
    focus, lift = run.metrics["mask_focus"], run.metrics["mask_lift"]
    cued = labels == CUED
    # Interventions on the frame (every epoch, from the cue masks): what the model needs.
    reliance = run.metrics["reliance"]
    # The causal transplant rate: of the recipients not yet predicted as the donor's class,
    # the share the pasted frame makes that class; beside it, the share that already was.
    base = run.metrics["transplant_base"]
    transplant = cam_callback.metrics.transplant_rates(run.metrics["transplant"], labels, base)
    base_rates = cam_callback.metrics.transplant_rates(base, labels)
    _, acc_train = model.evaluate(x[:600].astype(np.float32), y[:600], verbose=0)
    _, acc_val = model.evaluate(x_val.astype(np.float32), y_val, verbose=0)
    # Worst-group accuracy (class x red frame or not) on the training-like images.
    right = model.predict(x[:600].astype(np.float32), verbose=0).argmax(-1) == y[:600]
    groups = cam_callback.metrics.group_accuracies(right, y[:600], red_train[:600])
    worst = min(groups, key=lambda g: groups[g])
    story = {
        "train_accuracy": float(acc_train),
        "val_accuracy": float(acc_val),
        "worst_group": cam_callback.metrics.group_name(worst, CLASSES).replace("cue", "red frame"),
        "worst_group_accuracy": float(groups[worst]),
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
        "cued_base_before": 100 * float(base_rates[CUED][0]),
        "cued_base_last": 100 * float(base_rates[CUED][-1]),
        "others_transplant_last": 100 * float(
            np.nanmax([v[-1] for c, v in transplant.items() if c != CUED])
        ),
    }
    print(
        f"\naccuracy: {acc_train:.2f} on training-like images, {acc_val:.2f} once the red "
        f"frame no longer goes with homer; worst group of the training-like images: "
        f"{story['worst_group']}, {story['worst_group_accuracy']:.2f}"
    )
    print(f"animations:  {run.path / 'animations'}")
    print(f"review page: {page}")
    also = "  (or: make tensorboard)" if args.out == "runs/spurious" else ""
    print(f"TensorBoard: {tensorboard_command(args.out)}{also}")
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
        f"removing the frame: p(homer) {moves(story['cued_reliance_before'])} before "
        f"training, {moves(story['cued_reliance_last'])} at the end; other classes: moves by at "
        f"most {story['plain_reliance_last']:.2f} without the red frame; with it, p(own class) "
        f"{moves(-story['red_others_gain_last'])} on average once removed. Homer's frame "
        f"alone makes {story['cued_transplant_before']:.0f}% -> "
        f"{story['cued_transplant_last']:.0f}% of the other probes not yet called homer homer "
        f"({story['cued_base_before']:.0f}% -> {story['cued_base_last']:.0f}% already were; "
        f"other classes' frames: at most {story['others_transplant_last']:.0f}%)"
    )
    print(f"done in {time.perf_counter() - start:.0f} s")
    return {"on_cue": on_cue, "labels": labels, "red": red, **story, **evidence}


if __name__ == "__main__":
    main()
