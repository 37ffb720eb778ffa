"""compute_cams against the Keras Grad-CAM example, a forward pass and a training step.

Run: python benchmarks/bench_cam.py [--repeats 15]
     python benchmarks/bench_cam.py --per-backend   # one row per Keras backend

Prints the median milliseconds for 32 images on each model, side by side in one
run, and the ratios the project targets (<= 0.3x a training step, <= 1.3x a
forward pass, >= 20x faster than the example's per-image loop). The example is
TensorFlow code, so it is timed on the TensorFlow backend only.

``--per-backend`` runs MobileNetV2 (96 px, 32 images) once under each of
``KERAS_BACKEND=tensorflow``, ``jax`` and ``torch``, each in its own process, and
prints ``compute_cams`` against that backend's ``predict_on_batch`` and one
training step. ``--model vit`` does the same for a small keras-hub ViT (96 px,
patches of 8, 4 blocks of width 64, class-token head), explained at its default
layer (the last block's first LayerNorm) on its 12 x 12 patch grid.

     python benchmarks/bench_cam.py --per-backend --model vit
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from cam_callback import compute_cams  # noqa: E402


def make_gradcam_heatmap(img_array, model, last_conv_layer_name, pred_index=None):
    """The official Keras example's function (keras.io/examples/vision/grad_cam), verbatim."""
    import tensorflow as tf

    grad_model = keras.models.Model(
        model.inputs, [model.get_layer(last_conv_layer_name).output, model.output]
    )
    with tf.GradientTape() as tape:
        last_conv_layer_output, preds = grad_model(img_array)
        if pred_index is None:
            pred_index = tf.argmax(preds[0])
        class_channel = preds[:, pred_index]
    grads = tape.gradient(class_channel, last_conv_layer_output)
    pooled_grads = tf.reduce_mean(grads, axis=(0, 1, 2))
    last_conv_layer_output = last_conv_layer_output[0]
    heatmap = last_conv_layer_output @ pooled_grads[..., tf.newaxis]
    heatmap = tf.squeeze(heatmap)
    heatmap = tf.maximum(heatmap, 0) / tf.math.reduce_max(heatmap)
    return heatmap.numpy()


def keras_example_loop(model, images, layer):
    return [make_gradcam_heatmap(img[None], model, layer) for img in images]


def small_cnn(size=64, n_classes=10):
    inp = keras.Input((size, size, 3))
    x = inp
    for filters in (32, 64, 64):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(128, 3, padding="same", activation="relu", name="last_conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inp, out, name="small_cnn"), "last_conv"


def mobilenet(size=96, n_classes=10):
    model = keras.applications.MobileNetV2(
        input_shape=(size, size, 3), weights=None, classes=n_classes
    )
    return model, "out_relu"


def vit(size=96, n_classes=10):
    import keras_hub

    backbone = keras_hub.models.ViTBackbone(
        image_shape=(size, size, 3), patch_size=8, num_layers=4, num_heads=4,
        hidden_dim=64, mlp_dim=128,
    )  # fmt: skip
    model = keras_hub.models.ViTImageClassifier(
        backbone=backbone, num_classes=n_classes, activation="softmax", preprocessor=None
    )
    return model, None  # None: the default layer, whose patch tokens reach the score


MODELS = {"mobilenet": ("MobileNetV2(weights=None)", mobilenet), "vit": ("keras-hub ViT", vit)}


def median_ms(fns, repeats):
    """Median ms of each function, timed round-robin so drift hits all rows alike."""
    for fn in fns.values():  # warm-up: tracing and first-call allocation are not measured
        fn()
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(t) for name, t in times.items()}


def bench(name, model, layer, repeats, size, example=True):
    rng = np.random.default_rng(0)
    x = rng.random((32, size, size, 3), dtype=np.float32)
    y = rng.integers(0, model.output_shape[-1], 32)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    # The training step is timed on its own: on JAX the call right after a training step
    # pays ~30 ms of its clean-up (measured: predict 70 -> 99 ms), which round-robin would
    # charge to whichever row follows it.
    rows = median_ms(
        {
            "compute_cams": lambda: compute_cams(model, x, layer=layer),
            "predict_on_batch": lambda: model.predict_on_batch(x),
        },
        repeats,
    )
    rows.update(median_ms({"train_on_batch": lambda: model.train_on_batch(x, y)}, repeats))
    if not example:
        return rows
    # The example's loop is ~100x slower: a few rounds give a stable median.
    rows.update(median_ms({"keras example loop": lambda: keras_example_loop(model, x, layer)}, 3))
    cam = rows["compute_cams"]
    print(f"\n{name}: 32 images, {size} px, layer {layer!r}")
    print(f"{'':22s} {'median ms':>10s} {'vs compute_cams':>16s}")
    for label, ms in rows.items():
        print(f"{label:22s} {ms:10.1f} {ms / cam:15.2f}x")
    print(
        f"ratios: cams/train = {cam / rows['train_on_batch']:.2f} (target <= 0.3), "
        f"cams/predict = {cam / rows['predict_on_batch']:.2f} (target <= 1.3), "
        f"example/cams = {rows['keras example loop'] / cam:.1f} (target >= 20)"
    )
    return rows


def per_backend(repeats, model="mobilenet"):
    """One row per backend for ``model``, each measured in its own process."""
    print(f"{MODELS[model][0]}, 96 px, 32 images; {os.cpu_count()} CPU cores")
    print(
        f"{'backend':12s} {'compute_cams':>13s} {'predict_on_batch':>17s} {'train step':>11s} "
        f"{'cams/predict':>13s} {'cams/train':>11s}"
    )
    for backend in ("tensorflow", "jax", "torch"):
        env = {**os.environ, "KERAS_BACKEND": backend}
        out = subprocess.run(
            [sys.executable, __file__, "--row", "--repeats", str(repeats), "--model", model],
            capture_output=True,
            text=True,
            env=env,
        )
        if out.returncode != 0:
            print(f"{backend:12s} failed: {out.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        cam, pred, train = r["compute_cams"], r["predict_on_batch"], r["train_on_batch"]
        print(
            f"{backend:12s} {cam:10.1f} ms {pred:14.1f} ms {train:8.1f} ms "
            f"{cam / pred:12.2f}x {cam / train:10.2f}x"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--per-backend", action="store_true", help="a row per Keras backend")
    parser.add_argument("--model", choices=sorted(MODELS), default="mobilenet",
                        help="the model of --per-backend rows")  # fmt: skip
    parser.add_argument("--row", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.per_backend:
        per_backend(args.repeats, args.model)
        return
    keras.utils.set_random_seed(0)
    if args.row:
        name, build = MODELS[args.model]
        rows = bench(name, *build(), args.repeats, 96, example=False)
        print(json.dumps({"backend": keras.backend.backend(), **rows}))
        return
    import tensorflow as tf

    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPU cores")
    bench("MobileNetV2(weights=None)", *mobilenet(), args.repeats, 96)
    bench("small CNN", *small_cnn(), args.repeats, 64)


if __name__ == "__main__":
    main()
