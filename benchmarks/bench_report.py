"""The review page of a large run: its time, the page folder's size, and the disk footprint
per probe and epoch of the record, the animations and the page.

Usage: ``python benchmarks/bench_report.py [--probes 1000] [--epochs 31]
[--tracker-gifs]``. Writes a synthetic record with the package's own
:class:`RecordWriter` (32-px probes, 14 x 14 maps, 10 classes: 27 MB at 1000 x 31,
the issue's record), then times :func:`cam_callback.write_report` as
``cam-callback report`` runs it (worker processes) and prints one row per case:

- ``drawn``: no animations from the tracker: the page draws its ``MAX_ANIMATED``;
- ``shared``: the tracker's GIFs are in ``animations/`` (rendered here first for the
  probes the page animates, or for all with ``--tracker-gifs``): hardlinked, not drawn.

``folder MB`` is what a zip of the page folder holds; ``new MB`` the bytes the page
added on disk (hardlinked files are not new). The footprint lines divide the record's
epoch files and the GIFs by probes and epochs.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_logdir import write_record  # noqa: E402

from cam_callback import animate, report  # noqa: E402
from cam_callback.record import load_run  # noqa: E402
from cam_callback.record.tensorboard import SummaryWriter  # noqa: E402

TENSORBOARD_PROBES = 16  # the tracker's default tensorboard_probes


def event_bytes_per_epoch(run, folder: Path) -> int:
    """Bytes of one epoch's TensorBoard event as the tracker writes it: a frame for each of
    its ``TENSORBOARD_PROBES`` probes and the grid of all (scalars are a few hundred bytes)."""
    last = [len(run.epochs) - 1]
    shown = range(min(TENSORBOARD_PROBES, run.n_probes))
    images = {f"cam/probe_{i:03d}": animate.probe_frames(run, i, positions=last)[0] for i in shown}
    images["cam/grid"] = animate.grid_frames(run, list(range(run.n_probes)), positions=last)[0]
    writer = SummaryWriter(folder)
    writer.write(0, images, {})
    writer.close()
    return sum(f.stat().st_size for f in folder.iterdir())


def sizes(folder: Path) -> tuple[int, int]:
    """Bytes of the files under ``folder``, and of those not hardlinked elsewhere."""
    files = [f for f in folder.rglob("*") if f.is_file()]
    total = sum(f.stat().st_size for f in files)
    new = sum(f.stat().st_size for f in files if f.stat().st_nlink == 1)
    return total, new


def cpu_seconds() -> float:
    """CPU time of this process and its finished children: less noisy than wall time on a
    shared machine."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=31)
    parser.add_argument("--tracker-gifs", action="store_true", help="GIFs for every probe")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cam = write_record(Path(tmp) / "run", args.probes, args.epochs)
        epochs_bytes = sum(f.stat().st_size for f in (cam / "epochs").iterdir())
        record_bytes = sum(f.stat().st_size for f in cam.rglob("*") if f.is_file())
        run = load_run(cam)
        start, cpu = time.perf_counter(), cpu_seconds()
        page = report.write_report(run, processes=True)
        wall = time.perf_counter() - start
        rows.append(("drawn", wall, cpu_seconds() - cpu, *sizes(page.parent)))
        chosen = report.animated_probes(report.probe_rows(run, 0.5))
        start = time.perf_counter()
        probes = None if args.tracker_gifs else chosen
        gifs = animate.render_animations(run, probes=probes, grid=False, processes=True)
        tracker_seconds = time.perf_counter() - start
        gif_bytes = sum(g.stat().st_size for g in gifs) / len(gifs)
        start, cpu = time.perf_counter(), cpu_seconds()
        page = report.write_report(run, processes=True)
        wall = time.perf_counter() - start
        rows.append(("shared", wall, cpu_seconds() - cpu, *sizes(page.parent)))
        stills = [f.stat().st_size for f in page.parent.rglob("*_last.png")]
        events = event_bytes_per_epoch(run, Path(tmp) / "events")
    n, e = args.probes, args.epochs
    load = os.getloadavg()[0]
    print(
        f"{n} probes x {e} epochs: record {record_bytes / 1e6:.1f} MB, "
        f"{os.cpu_count()} cores, load average {load:.1f}"
    )
    print(f"{'case':<8}{'seconds':>9}{'CPU s':>8}{'folder MB':>11}{'new MB':>8}")
    for case, seconds, cpu, total, new in rows:
        print(f"{case:<8}{seconds:>9.1f}{cpu:>8.1f}{total / 1e6:>11.1f}{new / 1e6:>8.1f}")
    print(f"tracker GIFs drawn first: {len(gifs)} in {tracker_seconds:.1f} s")
    print("footprint per probe and epoch:")
    print(f"  record epoch files   {epochs_bytes / (n * e) / 1e3:8.2f} KB")
    print(f"  animation GIF        {gif_bytes / e / 1e3:8.2f} KB")
    print(f"  page still (once)    {sum(stills) / len(stills) / 1e3:8.2f} KB per probe")
    print(
        f"TensorBoard events: {events / 1e3:.0f} KB per epoch ({TENSORBOARD_PROBES} probes "
        "and the grid), whatever the number of probes"
    )


if __name__ == "__main__":
    main()
