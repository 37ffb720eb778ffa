"""What CAMTracker costs inside model.fit, and whether its memory stays flat.

Run: python benchmarks/bench_tracker.py [--pairs 3]

1. fit of a small CNN, 4 epochs on 3,000 images of 48 px, with and without the
   tracker (32 probes, default settings: TensorBoard frames and GIFs), in
   alternating runs; prints each run and the ratio of the medians (target <= 1.05).
2. Peak RSS of a child process that records 10 epochs against one that records
   100 (TensorBoard on, animations off, so only the recording path is measured).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def small_cnn(size=48, n_classes=10):
    import keras

    inp = keras.Input((size, size, 3))
    x = inp
    for filters in (32, 64):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(n_classes, activation="softmax")(x))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def dataset(n=3000, size=48, n_classes=10):
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.random((n, size, size, 3), dtype=np.float32), rng.integers(0, n_classes, n)


def timed_fit(tracker: dict | None, x, y, log_root: str, epochs: int = 4) -> float:
    """Seconds of one fit; ``tracker`` holds CAMTracker overrides, ``None`` for no tracker."""
    import keras

    from cam_callback import CAMTracker

    keras.utils.set_random_seed(0)
    model = small_cnn()
    callbacks = []
    if tracker is not None:
        log_dir = tempfile.mkdtemp(dir=log_root)
        callbacks.append(CAMTracker(x[:32], y[:32], log_dir=log_dir, **tracker))
    start = time.perf_counter()
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, callbacks=callbacks)
    return time.perf_counter() - start


def overhead(pairs: int) -> None:
    x, y = dataset()
    arms = {"without": None, "with (defaults)": {}, "with, animate=None": {"animate": None}}
    times: dict[str, list[float]] = {name: [] for name in arms}
    with tempfile.TemporaryDirectory() as root:
        timed_fit({}, x[:256], y[:256], root, epochs=1)  # warm TF and our imports once
        for _ in range(pairs):
            for name, tracker in arms.items():
                times[name].append(timed_fit(tracker, x, y, root))
    print("fit, 4 epochs, 3000 images of 48 px, batch 32, 32 probes (arms alternate)")
    print(f"{'run':>4s} " + " ".join(f"{name:>20s}" for name in arms))
    for i in range(pairs):
        print(f"{i:4d} " + " ".join(f"{times[name][i]:19.2f}s" for name in arms))
    base = statistics.median(times["without"])
    for name in list(arms)[1:]:
        ratio = statistics.median(times[name]) / base
        print(f"median ratio {name} / without: {ratio:.3f} (target <= 1.05)")


def rss_child(epochs: int) -> None:
    """Records `epochs` epochs on a tiny dataset, then prints peak RSS in MiB."""
    import keras

    from cam_callback import CAMTracker

    x, y = dataset(n=64)
    keras.utils.set_random_seed(0)
    model = small_cnn()
    with tempfile.TemporaryDirectory() as log_dir:
        tracker = CAMTracker(x[:32], y[:32], log_dir=log_dir, animate=None)
        model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, callbacks=[tracker])
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def memory() -> None:
    print("\npeak RSS of a fit that records N epochs (32 probes, TensorBoard on)")
    print(f"{'epochs':>7s} {'peak MiB':>9s}")
    for epochs in (10, 100):
        out = subprocess.run(
            [sys.executable, __file__, "--rss-child", str(epochs)],
            capture_output=True,
            text=True,
            check=True,
        )
        print(f"{epochs:7d} {float(out.stdout.strip().splitlines()[-1]):9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return
    overhead(args.pairs)
    memory()


if __name__ == "__main__":
    main()
