"""Attention rollouts on a small keras-hub ViT against a forward pass, on each backend.

Run: python benchmarks/bench_vit.py [--repeats 15] [--backends tensorflow,jax,torch]

A randomly initialised ``ViTImageClassifier`` (96 px, patches of 16: 36 patches and
a class token; 4 blocks, 4 heads, width 64), 32 images. Each backend runs in its own
process and prints the median milliseconds of ``predict_on_batch`` and of
``compute_cams`` with ``"rollout"``, ``"gradient_rollout"`` and ``"gradcam"`` (on the
default ViT layer), and each against the forward pass (target for rollout: <= 1.5x).
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

METHODS = ("rollout", "gradient_rollout", "gradcam")


def small_vit(size: int = 96, classes: int = 10):
    import keras_hub

    backbone = keras_hub.models.ViTBackbone(
        image_shape=(size, size, 3), patch_size=16, num_layers=4, num_heads=4, hidden_dim=64,
        mlp_dim=128,
    )  # fmt: skip
    return keras_hub.models.ViTImageClassifier(
        backbone=backbone, num_classes=classes, preprocessor=None
    )


def median_ms(fns: dict, repeats: int) -> dict[str, float]:
    """Median ms of each function, timed round-robin so drift hits all rows alike."""
    for fn in fns.values():  # warm-up: tracing and first-call allocation are not measured
        fn()
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(t) for name, t in times.items()}


def row(repeats: int) -> dict:
    import keras
    import numpy as np

    from cam_callback import compute_cams

    keras.utils.set_random_seed(0)
    model = small_vit()
    x = np.random.default_rng(0).random((32, 96, 96, 3), dtype=np.float32)
    fns = {"predict_on_batch": lambda: model.predict_on_batch(x)}
    for method in METHODS:
        fns[method] = lambda m=method: compute_cams(model, x, method=m, head="logits")
    return {"backend": keras.backend.backend(), **median_ms(fns, repeats)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--row", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row:
        print(json.dumps(row(args.repeats)))
        return
    print(f"keras-hub ViTImageClassifier (random init), 96 px, 32 images; {os.cpu_count()} cores")
    head = f"{'backend':11s} {'forward':>9s}" + "".join(f" {m:>17s}" for m in METHODS)
    print(head + "   (ms, and x the forward pass)")
    for backend in args.backends.split(","):
        env = {**os.environ, "KERAS_BACKEND": backend}
        out = subprocess.run(
            [sys.executable, __file__, "--row", "--repeats", str(args.repeats)],
            capture_output=True, text=True, env=env,
        )  # fmt: skip
        if out.returncode != 0:
            print(f"{backend:11s} failed: {out.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        fwd = r["predict_on_batch"]
        cells = "".join(f" {r[m]:8.1f} ({r[m] / fwd:4.2f}x)" for m in METHODS)
        print(f"{backend:11s} {fwd:9.1f}{cells}")


if __name__ == "__main__":
    main()
