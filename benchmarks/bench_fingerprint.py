"""What the weights fingerprint costs the tracker per epoch.

Run: python benchmarks/bench_fingerprint.py [--repeats 15]

The tracker hashes a strided sample of every weight array at each epoch's end
(:func:`cam_callback.lineage.weights_fingerprint`) and stores it durably in
``cam/weights.json`` before the next callback runs. Prints the median
milliseconds of each, next to one training step of 32 images, for models from
tiny to ResNet50 (random weights: nothing is downloaded).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from conftest import small_cnn  # noqa: E402

from cam_callback.lineage import weights_fingerprint  # noqa: E402
from cam_callback.record import RecordWriter  # noqa: E402


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def models():
    yield "small_cnn (32 px)", small_cnn(10), 32
    yield (
        "MobileNetV2 (96 px)",
        keras.applications.MobileNetV2((96, 96, 3), weights=None, classes=10),
        96,
    )
    yield (
        "ResNet50 (128 px)",
        keras.applications.ResNet50(input_shape=(128, 128, 3), weights=None, classes=10),
        128,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        writer = RecordWriter(tmp)
        meta = {"layer": "x", "method": "gradcam", "fingerprint": "f", "n_probes": 1,
                "n_classes": 2, "map_shape": [2, 2]}  # fmt: skip
        writer.open(meta, images=np.zeros((1, 4, 4, 3), np.uint8))
        for name, model, size in models():
            model.compile("adam", "sparse_categorical_crossentropy")
            x = np.random.default_rng(0).random((32, size, size, 3), dtype=np.float32)
            y = np.zeros(32, np.int64)
            params = model.count_params()
            fp = median_ms(lambda m=model: weights_fingerprint(m), args.repeats)
            epochs = iter(range(10**6))
            ledger = median_ms(
                lambda e=epochs: writer.add_fingerprint(next(e), "0123456789abcdef"), args.repeats
            )
            step = median_ms(
                lambda m=model, x=x, y=y: m.train_on_batch(x, y), max(3, args.repeats // 3)
            )
            rows.append((name, params, len(model.weights), fp, ledger, step))
        writer.close()
    print(f"backend: {keras.backend.backend()}, {os.cpu_count()} CPUs")
    head = ("model", "params", "arrays", "fingerprint ms", "weights.json ms", "1 step (32) ms")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, params, arrays, fp, ledger, step in rows:
        print(
            f"| {name} | {params / 1e6:.2f} M | {arrays} | {fp:.1f} | {ledger:.1f} | {step:.0f} |"
        )


if __name__ == "__main__":
    main()
