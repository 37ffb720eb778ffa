"""The CAM tab over a big log dir: TensorBoard's memory and the run list's time.

Usage: ``python benchmarks/bench_logdir.py [--runs 500] [--probes 200] [--epochs 20]
[--open 40] [--code PATH]``. Writes one synthetic record with the package's own
:class:`RecordWriter` (32-px probes, 14 x 14 maps, 10 classes: 3.8 MB at 200 x 20, the
issue's record), hardlinks it ``--runs`` times into a temporary log dir, and starts
TensorBoard (with its default plugins and the CAM tab) in a child process. It then
prints, per step, the child's resident memory (from ``/proc``) and the request's time:

- ``baseline``: TensorBoard started, the plugins listed, no CAM request yet;
- ``runs (first)`` and ``runs (again)``: the run list, cold and warm;
- ``probes x N``: the probes route of ``--open`` different runs, as a user opening run
  after run (each reads its run in full into the byte-bounded cache);
- ``frames``: a frame of each of those runs.

``--code PATH`` runs the child on another checkout's ``cam_callback`` (to compare with
an earlier version). Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cam_callback.metrics import epoch_metrics  # noqa: E402
from cam_callback.record import RecordWriter  # noqa: E402

CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from importlib.metadata import entry_points
    from tensorboard import default, program
    from cam_callback.tensorboard_plugin import CAMPlugin
    # Installed, the entry point loads the tab (from the first cam_callback on the path).
    found = any("cam_callback" in e.value for e in entry_points(group="tensorboard_plugins"))
    tb = program.TensorBoard(plugins=default.get_plugins() + ([] if found else [CAMPlugin]))
    tb.configure(argv=[None, "--logdir", sys.argv[2], "--port", sys.argv[3],
                       "--host", "127.0.0.1", "--load_fast", "false", "--reload_interval", "0"])
    tb.launch()
    import cam_callback
    print(cam_callback.__file__, flush=True)
    while True:
        time.sleep(60)
    """
)


def write_record(log_dir: Path, n: int, epochs: int, side: int = 32, hw: int = 14) -> Path:
    """One synthetic record of ``n`` probes and ``epochs`` epochs, with real metrics."""
    rng = np.random.default_rng(0)
    c = 10
    labels = np.arange(n) % c
    w = RecordWriter(log_dir)
    meta = {"fingerprint": "b", "n_probes": n, "n_classes": c, "map_shape": [hw, hw]}
    images = rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    names = [f"class_{k}" for k in range(c)]
    w.open(
        {**meta, "layer": "conv", "method": "gradcam", "class_names": names},
        images=images,
        labels=labels,
    )
    previous = first = None
    for e in range(epochs):
        maps = rng.random((n, hw, hw), dtype=np.float32)
        probs = rng.dirichlet(np.ones(c), n).astype(np.float32)
        values = epoch_metrics(maps, probs, labels=labels, previous=previous, first=first)
        w.write_epoch(
            e, heatmaps=maps, probabilities=probs, targets=probs.argmax(-1), metrics=values
        )
        previous, first = maps, maps if first is None else first
    w.close()
    return log_dir / "cam"


def hardlink_runs(record: Path, logdir: Path, runs: int) -> None:
    """``runs`` copies of ``record`` under ``logdir/run_NNN/cam``, as hardlinks."""
    for k in range(runs):
        for src in record.rglob("*"):
            if src.is_file() and src.parent.name != "animations":
                dst = logdir / f"run_{k:03d}" / "cam" / src.relative_to(record)
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.link(src, dst)


def rss_mb(pid: int) -> tuple[float, float]:
    """Resident memory now and at its peak, in MB, from ``/proc/PID/status``."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def get(url: str) -> tuple[float, int]:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=600) as r:
        size = len(r.read())
    return time.perf_counter() - start, size


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--open", type=int, default=40, help="runs whose probes are opened")
    parser.add_argument("--code", default=str(ROOT), help="checkout whose cam_callback to run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        record = write_record(Path(tmp) / "one", args.probes, args.epochs)
        size = sum(f.stat().st_size for f in record.rglob("*") if f.is_file())
        logdir = Path(tmp) / "logdir"
        hardlink_runs(record, logdir, args.runs)
        port = free_port()
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, args.code, str(logdir), str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            code = Path(child.stdout.readline().strip()).parent.parent
            base = f"http://127.0.0.1:{port}"
            cam = f"{base}/data/plugin/cam"
            get(f"{base}/data/plugins_listing")

            time.sleep(2)  # TensorBoard's first load of the logdir
            rows = [("baseline", None, *rss_mb(child.pid))]
            for step in ("runs (first)", "runs (again)"):
                seconds, _ = get(f"{cam}/runs")
                rows.append((step, seconds, *rss_mb(child.pid)))
            names = [f"run_{k:03d}" for k in range(min(args.open, args.runs))]
            start = time.perf_counter()
            for name in names:
                get(f"{cam}/probes?run={name}")
            rows.append((f"probes x {len(names)}", time.perf_counter() - start, *rss_mb(child.pid)))
            start = time.perf_counter()
            for name in names:
                get(f"{cam}/frame?run={name}&probe=0&epoch={args.epochs - 1}")
            rows.append((f"frames x {len(names)}", time.perf_counter() - start, *rss_mb(child.pid)))
        finally:
            child.terminate()
            child.wait()
    print(
        f"{args.runs} runs of a {size / 1e6:.1f} MB record ({args.probes} probes x "
        f"{args.epochs} epochs), cam_callback from {code}"
    )
    print(f"{'step':<16}{'seconds':>9}{'RSS MB':>9}{'above base':>12}{'peak MB':>9}")
    for step, seconds, rss, peak in rows:
        shown = "" if seconds is None else f"{seconds:.2f}"
        print(f"{step:<16}{shown:>9}{rss:>9.0f}{rss - rows[0][2]:>12.0f}{peak:>9.0f}")


if __name__ == "__main__":
    main()
