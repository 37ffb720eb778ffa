"""What the hostile-input checks cost: load_run against a plain np.load of the same files.

Usage: ``python benchmarks/bench_read.py [--rounds 3]``. Writes synthetic records (no
TensorFlow) of a few sizes to a temporary folder and prints one row per size: the
record's size on disk, load_run's median time, np.load's median time over the same
.npz files (numpy's own parser, no caps, no checks), and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent.parent))

from cam_callback.record import RecordWriter, load_run  # noqa: E402

SIZES = [  # probes, epochs, image side, map side
    (16, 20, 32, 6),
    (64, 100, 224, 14),
    (256, 50, 224, 28),
]


def write(folder: Path, n: int, epochs: int, side: int, hw: int) -> Path:
    rng = np.random.default_rng(0)
    w = RecordWriter(folder)
    meta = {"fingerprint": "b", "n_probes": n, "n_classes": 10, "map_shape": [hw, hw]}
    images = rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    w.open({**meta, "layer": "conv", "method": "gradcam"}, images=images)
    for e in range(epochs):
        w.write_epoch(
            e,
            heatmaps=rng.random((n, hw, hw), dtype=np.float32),
            probabilities=rng.dirichlet(np.ones(10), n).astype(np.float32),
            targets=rng.integers(0, 10, n),
            metrics={"drift": rng.random(n), "concentration": rng.random(n)},
        )
    return folder / "cam"


def timed(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def plain(cam: Path) -> None:
    for file in [cam / "probes.npz", *sorted((cam / "epochs").iterdir())]:
        with np.load(file) as f:
            for key in f.files:
                f[key]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(
        f"{'probes x epochs, image, map':>30} {'MB':>7} {'load_run s':>11} {'np.load s':>10} "
        f"{'ratio':>6}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for n, epochs, side, hw in SIZES:
            cam = write(Path(tmp) / f"r{n}_{epochs}", n, epochs, side, hw)
            mb = sum(p.stat().st_size for p in cam.rglob("*") if p.is_file()) / 2**20
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a skipped epoch would void the comparison
                ours = timed(lambda c=cam: load_run(c), args.rounds)
            theirs = timed(lambda c=cam: plain(c), args.rounds)
            label = f"{n} x {epochs}, {side} px, {hw}x{hw}"
            print(f"{label:>30} {mb:7.1f} {ours:11.3f} {theirs:10.3f} {ours / theirs:6.2f}")


if __name__ == "__main__":
    main()
