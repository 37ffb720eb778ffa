"""A training child process for the tests that need a fresh TensorFlow.

usage: python _child_fit.py MODE LOG_DIR
  slow:     trains many slow epochs with the tracker; in epoch 2 it stops inside the
            record's write, just before the rename, and prints "STOP" (the parent SIGKILLs it)
  slow-gif: many slow epochs with TensorBoard and GIFs on, no stop (the parent SIGKILLs it)
  mirrored: trains under MirroredStrategy over two logical CPU devices, then saves the maps
            of the same weights (first and last epoch) on one device to
            LOG_DIR/single_device.npz
  mixed:    trains under the mixed_float16 policy, then saves float32 maps of the same
            weights to LOG_DIR/float32_maps.npy
  backup:   [tracker, stop, BackupAndRestore]: once epoch 2 is in the record, and before
            BackupAndRestore backs it up, prints "STOP" (the parent SIGKILLs it)
  backup-resume: the same fit again: BackupAndRestore restores epoch 1's weights and starts
            at epoch 2; saves the final maps to LOG_DIR/final_maps.npy and prints the final
            weights' fingerprint as "weights <fp>"
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from conftest import small_cnn  # noqa: E402

from cam_callback import CAMTracker, compute_cams, load_run  # noqa: E402
from cam_callback.core.fingerprint import weights_fingerprint  # noqa: E402

mode, log_dir = sys.argv[1], sys.argv[2]
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.random((64, 32, 32, 3), dtype=np.float32)
y = rng.integers(0, 3, 64)
probes, labels = x[:5], y[:5]


class Slow(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2 and mode == "slow":  # the next record write stops before its rename
            os.replace = stop

    def on_epoch_end(self, epoch, logs=None):
        print(f"epoch {epoch} done", flush=True)
        time.sleep(0.3)


def stop(*args, **kwargs):
    print("STOP", flush=True)
    time.sleep(600)


if mode in ("slow", "slow-gif"):
    model = small_cnn(3)
    model.compile("adam", "sparse_categorical_crossentropy")
    animate = "gif" if mode == "slow-gif" else None
    tracker = CAMTracker(probes, labels, log_dir=log_dir, animate=animate)
    model.fit(x, y, epochs=1000, batch_size=16, verbose=0, callbacks=[tracker, Slow()])
elif mode == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    print("replicas", strategy.num_replicas_in_sync, flush=True)
    with strategy.scope():
        model = small_cnn(3)
        model.compile("adam", "sparse_categorical_crossentropy")
    initial = model.get_weights()
    tracker = CAMTracker(probes, labels, log_dir=log_dir, animate="gif")
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[tracker])
    # The same weights on one device, no strategy: the maps of epoch -1 and of the last epoch.
    run = load_run(log_dir)
    single = small_cnn(3)
    saved = {}
    for name, weights, epoch in (("first", initial, 0), ("last", model.get_weights(), -1)):
        single.set_weights(weights)
        res = compute_cams(single, probes, layer=run.layer, target=run.targets[epoch])
        saved[f"{name}_maps"], saved[f"{name}_probs"] = res.heatmaps, res.probabilities
    np.savez(os.path.join(log_dir, "single_device.npz"), **saved)
    print("ok", flush=True)
elif mode == "mixed":
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = small_cnn(3)
    model.compile("adam", "sparse_categorical_crossentropy")
    print("compute dtype", model.get_layer("conv2").compute_dtype, flush=True)
    tracker = CAMTracker(probes, labels, log_dir=log_dir, animate="gif", method="gradcam++")
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[tracker])
    keras.mixed_precision.set_global_policy("float32")
    full = small_cnn(3)
    full.set_weights(model.get_weights())
    res = compute_cams(full, probes, method="gradcam++", target=load_run(log_dir).targets[-1])
    np.save(os.path.join(log_dir, "float32_maps.npy"), res.heatmaps)
    print("ok", flush=True)
elif mode in ("backup", "backup-resume"):

    class StopAfterTheTracker(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch != 2 or mode != "backup":
                return
            recorded = os.path.join(log_dir, "cam", "epochs", "epoch_000002.npz")
            deadline = time.monotonic() + 120
            while not os.path.exists(recorded) and time.monotonic() < deadline:
                time.sleep(0.05)  # the record thread writes it in the background
            print("STOP", flush=True)
            time.sleep(600)

    model = small_cnn(3)
    model.compile("adam", "sparse_categorical_crossentropy")
    tracker = CAMTracker(probes, labels, log_dir=log_dir, animate="gif")
    backup = keras.callbacks.BackupAndRestore(os.path.join(log_dir, "backup"))
    model.fit(
        x,
        y,
        epochs=4,
        batch_size=16,
        verbose=0,
        callbacks=[tracker, StopAfterTheTracker(), backup],
    )
    np.save(os.path.join(log_dir, "final_maps.npy"), compute_cams(model, probes).heatmaps)
    print("weights", weights_fingerprint(model), flush=True)
    print("ok", flush=True)
