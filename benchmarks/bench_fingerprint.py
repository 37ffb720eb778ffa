"""What the weights fingerprint costs: the old strided sample against the full hash.

Run: python benchmarks/bench_fingerprint.py [--repeats 9]

The tracker fingerprints the weights at each epoch's end (and once at a fit's
first epoch and at its end) and stores it in ``cam/weights.json``
(:func:`cam_callback.core.fingerprint.weights_fingerprint`). It used to hash an evenly
strided sample of at most 4096 values per array; it now hashes every byte
(SHA-256). For each model (random weights: nothing is downloaded) this prints
the first call (cold) and the median of ``--repeats`` calls of each, timed
round-robin in one run (old, new, old, new, ...) so that both see the same
machine load, next to one training step of 32 images and one write of
``weights.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import math
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

from cam_callback.core.fingerprint import weights_fingerprint  # noqa: E402
from cam_callback.record import RecordWriter  # noqa: E402


def sampled_fingerprint(model: keras.Model, sample: int = 4096, device_slice: int = 2**20) -> str:
    """The previous fingerprint, kept here to compare: every ceil(size / 4096)-th value."""
    h = hashlib.sha256()
    for variable in model.weights:
        size = int(np.prod(variable.shape, dtype=np.int64))
        h.update(f"{variable.dtype}{tuple(variable.shape)};".encode())
        if size == 0:
            continue
        stride = math.ceil(size / sample)
        if size <= device_slice:
            flat = np.asarray(variable.numpy()).reshape(-1)[::stride]
        else:
            flat = keras.ops.reshape(keras.ops.stop_gradient(variable.value), (-1,))[::stride]
            flat = keras.ops.convert_to_numpy(flat)
        h.update(np.ascontiguousarray(flat).tobytes())
    return h.hexdigest()[:16]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


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
    parser.add_argument("--repeats", type=int, default=9)
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
            mb = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in model.weights)
            cold = {"old": timed(lambda m=model: sampled_fingerprint(m)),
                    "new": timed(lambda m=model: weights_fingerprint(m))}  # fmt: skip
            warm: dict[str, list[float]] = {"old": [], "new": []}
            for _ in range(args.repeats):  # round-robin: both under the same load
                warm["old"].append(timed(lambda m=model: sampled_fingerprint(m)))
                warm["new"].append(timed(lambda m=model: weights_fingerprint(m)))
            epochs = iter(range(10**6))
            ledger = statistics.median(
                timed(lambda e=epochs: writer.add_fingerprint(next(e), "0123456789abcdef"))
                for _ in range(args.repeats)
            )
            model.train_on_batch(x, y)  # traces and compiles, not timed
            step = statistics.median(
                timed(lambda m=model, x=x, y=y: m.train_on_batch(x, y)) for _ in range(2)
            )
            old, new = (statistics.median(warm[k]) for k in ("old", "new"))
            rows.append((name, model.count_params(), mb / 2**20, cold, old, new, ledger, step))
        writer.close()
    print(f"backend: {keras.backend.backend()}, {os.cpu_count()} CPUs, {args.repeats} repeats")
    head = ("model", "params", "MB", "old sampled ms (cold / median)", "new full ms (cold / "
            "median)", "new / old", "weights.json ms", "1 step (32) ms")  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, params, mb, cold, old, new, ledger, step in rows:
        print(
            f"| {name} | {params / 1e6:.2f} M | {mb:.1f} | {cold['old']:.1f} / {old:.1f} | "
            f"{cold['new']:.1f} / {new:.1f} | {new / old:.1f}x | {ledger:.1f} | {step:.0f} |"
        )


if __name__ == "__main__":
    main()
