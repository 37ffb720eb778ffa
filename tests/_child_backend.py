"""Children for the cross-backend tests: each runs under its own KERAS_BACKEND.

usage: python _child_backend.py MODE OUT
  weights: builds the test models and saves their weights into OUT
  maps:    loads those weights and saves every method's maps and probabilities to
           OUT/maps_<backend>.npz
  fit:     trains with CAMTracker in OUT, renders the review page, prints JSON with
           whether TensorFlow was imported
  dataparallel: under keras.distribution.DataParallel over the host devices (JAX), trains
           with the tracker in OUT, then saves single-device maps of the final weights
  process:N:PORT: one of two JAX processes joined through keras.distribution.initialize
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

mode, out = sys.argv[1], sys.argv[2]

if mode.startswith("process:"):
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    import keras

    _, pid, port = mode.split(":")
    keras.distribution.initialize(
        job_addresses=f"127.0.0.1:{port}", num_processes=2, process_id=int(pid)
    )
else:
    import keras

import numpy as np  # noqa: E402
from conftest import nested_cnn, small_cnn  # noqa: E402

from cam_callback import CAMTracker, compute_cams, load_run, write_report  # noqa: E402

FUSED = ("gradcam", "gradcam++", "layercam", "hirescam", "saliency")

backend = keras.backend.backend()
rng = np.random.default_rng(0)
images = rng.random((6, 32, 32, 3), dtype=np.float32)


def binary_cnn():
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inp)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, keras.layers.Dense(1, activation="sigmoid", name="dense")(x))


MODELS = {"small": lambda: small_cnn(4, bn=True), "nested": nested_cnn, "binary": binary_cnn}

if mode == "weights":
    keras.utils.set_random_seed(1)
    for name, build in MODELS.items():
        model = build()
        if name == "small":  # non-trivial BatchNorm statistics
            model.compile("sgd", "sparse_categorical_crossentropy")
            model.fit(images, np.arange(6) % 4, epochs=1, verbose=0)
        model.save_weights(os.path.join(out, f"{name}.weights.h5"))
elif mode == "maps":
    arrays = {}
    for name, build in MODELS.items():
        model = build()
        model.load_weights(os.path.join(out, f"{name}.weights.h5"))
        for method in FUSED:
            for score in ("logit", "probability"):
                res = compute_cams(model, images, method=method, score=score, batch_size=4)
                arrays[f"{name}/{method}/{score}/maps"] = res.heatmaps
                arrays[f"{name}/{method}/{score}/probs"] = res.probabilities
                arrays[f"{name}/{method}/{score}/targets"] = res.targets
    np.savez(os.path.join(out, f"maps_{backend}.npz"), **arrays)
elif mode == "fit":
    # Not keras.utils.set_random_seed: it seeds (and so imports) TensorFlow when installed.
    keras.config.disable_interactive_logging()
    x = rng.random((32, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 3, 32)
    model = small_cnn(3)
    model.compile("adam", "sparse_categorical_crossentropy")
    tracker = CAMTracker(x[:4], y[:4], log_dir=out, class_names=["a", "b", "c"])
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[tracker])
    page = write_report(load_run(out))
    run = load_run(out)
    again = compute_cams(model, x[:4])
    print(
        json.dumps(
            {
                "backend": backend,
                "tensorflow_imported": "tensorflow" in sys.modules,
                "epochs": run.epochs,
                "config_backend": run.meta.get("backend"),
                "page": str(page),
                "max_diff_to_compute_cams": float(np.abs(run.heatmaps[-1] - again.heatmaps).max()),
            }
        )
    )
elif mode == "dataparallel":
    import jax

    devices = jax.devices()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    keras.utils.set_random_seed(0)
    x = rng.random((32, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 3, 32)
    model = small_cnn(3)
    model.compile("adam", "sparse_categorical_crossentropy")
    tracker = CAMTracker(x[:4], y[:4], log_dir=out, animate=None)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[tracker])
    weights = model.get_weights()
    keras.distribution.set_distribution(None)
    single = small_cnn(3)
    single.set_weights(weights)
    res = compute_cams(single, x[:4])
    np.savez(os.path.join(out, "single.npz"), maps=res.heatmaps, probs=res.probabilities)
    print(json.dumps({"devices": len(devices), "process": jax.process_index()}), flush=True)
elif mode.startswith("process:") or mode == "oneprocess":
    # Each process feeds its own half: the global batch k is both halves' k-th batches.
    x = rng.random((32, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 3, 32)
    kw = dict(epochs=2, verbose=0, shuffle=False)
    if mode == "oneprocess":
        keras.utils.set_random_seed(0)
        model = small_cnn(3)
        model.compile("sgd", "sparse_categorical_crossentropy")
        order = np.concatenate([np.r_[8 * k : 8 * k + 8, 16 + 8 * k : 24 + 8 * k] for k in (0, 1)])
        tracker = CAMTracker(x[:4], y[:4], log_dir=out, animate=None)
        model.fit(x[order], y[order], batch_size=16, callbacks=[tracker], **kw)
        print(json.dumps({"process": 0}), flush=True)
    else:
        import jax

        distribution = keras.distribution.DataParallel(
            devices=jax.devices(), auto_shard_dataset=False
        )
        keras.distribution.set_distribution(distribution)
        keras.utils.set_random_seed(0)
        model = small_cnn(3)  # built under the distribution: replicated weights
        model.compile("sgd", "sparse_categorical_crossentropy")
        pid = jax.process_index()
        mine = slice(16 * pid, 16 * pid + 16)
        tracker = CAMTracker(x[:4], y[:4], log_dir=out, animate=None)
        model.fit(x[mine], y[mine], batch_size=8, callbacks=[tracker], **kw)
        info = {"process": pid, "processes": jax.process_count(), "pid": os.getpid()}
        print(json.dumps(info), flush=True)
