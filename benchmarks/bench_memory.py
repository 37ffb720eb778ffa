"""Every method's peak memory on MobileNetV2, each in a fresh process.

Run: python benchmarks/bench_memory.py [--size 224] [--probes 32] [--batch-size 32]
     [--methods scorecam,occlusion] [--max-seconds 0]

MobileNetV2 (``weights=None``, 10 classes, seeded), explained at ``out_relu``
with each method's default options (Score-CAM: all 1280 channels; occlusion:
8 px squares at stride 4; Integrated Gradients: 32 steps; SmoothGrad: 16
samples). Every method runs in its own child process: the model is built, the
method is called once on one probe with its cheapest options (so traces and
compiles are not counted), then it is measured on all the probes:

- ``numpy peak``: ``tracemalloc``'s peak over the call, i.e. the arrays the
  method makes (numpy reports its buffers to tracemalloc);
- ``RSS peak``: the process's resident memory, sampled every 20 ms by
  ``psutil``, minus its value before the call: numpy plus the backend's own
  tensors (a forward pass of ``batch_size`` images).

``--max-seconds S`` stops a method after S seconds of the measured call and
reports the peaks so far, marked ``stopped``: a lower bound, useful on few
cores where occlusion makes 3,025 forward passes per 224 px image. Methods that
build all their perturbed copies up front show their peak within seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ORDER = (
    "gradcam", "gradcam++", "layercam", "hirescam", "saliency", "xgradcam",
    "gradcam_elementwise", "eigengradcam", "cam", "eigencam", "scorecam", "ablationcam",
    "gradient_x_input", "integrated_gradients", "smoothgrad", "guided_gradcam", "occlusion",
)  # fmt: skip
# Cheapest settings for the warm-up call: the same compiled functions, few perturbations.
WARM_UP = {
    "scorecam": {"max_channels": 1},
    "integrated_gradients": {"steps": 1},
    "smoothgrad": {"samples": 1},
    "occlusion": {"patch": 10_000, "stride": 10_000},  # one square: the whole image
}
MIB = 2**20


def child(args: argparse.Namespace) -> None:
    """Builds the model, warms the method up, measures one call; writes JSON to --out."""
    import tracemalloc

    import keras
    import numpy as np
    import psutil

    from cam_callback import compute_cams

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(
        weights=None, input_shape=(args.size, args.size, 3), classes=10
    )
    rng = np.random.default_rng(0)
    x = (rng.random((args.probes, args.size, args.size, 3), dtype=np.float32) * 2 - 1).astype(
        np.float32
    )  # MobileNetV2's input range
    kw = {"layer": "out_relu", "batch_size": args.batch_size}
    compute_cams(model, x[:1], method=args.child, method_options=WARM_UP.get(args.child), **kw)

    proc = psutil.Process()
    state = {"phase": "measure", "seconds": 0.0, "numpy_peak": 0, "rss_peak": 0}
    rss0 = proc.memory_info().rss
    done = threading.Event()

    def write() -> None:
        with open(args.out + ".tmp", "w") as f:
            json.dump(state, f)
        os.replace(args.out + ".tmp", args.out)

    def monitor() -> None:
        last = 0.0
        while not done.is_set():
            state["rss_peak"] = max(state["rss_peak"], proc.memory_info().rss - rss0)
            state["numpy_peak"] = tracemalloc.get_traced_memory()[1]
            state["seconds"] = time.perf_counter() - start
            if time.perf_counter() - last > 0.5:
                write()
                last = time.perf_counter()
            done.wait(0.02)

    tracemalloc.start()
    start = time.perf_counter()
    thread = threading.Thread(target=monitor, daemon=True)
    thread.start()
    compute_cams(model, x, method=args.child, **kw)
    state["seconds"] = time.perf_counter() - start
    state["numpy_peak"] = tracemalloc.get_traced_memory()[1]
    done.set()
    thread.join()
    state["rss_peak"] = max(state["rss_peak"], proc.memory_info().rss - rss0)
    state["phase"] = "done"
    write()


def run_one(args: argparse.Namespace, method: str) -> dict:
    """One method in a fresh process; stopped after --max-seconds of measuring."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "state.json")
        cmd = [
            sys.executable, __file__, "--child", method, "--out", out, "--size", str(args.size),
            "--probes", str(args.probes), "--batch-size", str(args.batch_size),
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        state: dict = {}
        stopped = False
        while proc.poll() is None:
            time.sleep(0.5)
            if os.path.exists(out):
                with open(out) as f:
                    state = json.load(f)
                if args.max_seconds and state.get("seconds", 0) > args.max_seconds:
                    proc.kill()
                    stopped = True
        err = proc.stderr.read() if proc.stderr else ""
        if os.path.exists(out):
            with open(out) as f:
                state = json.load(f)
        if not stopped and (proc.returncode != 0 or state.get("phase") != "done"):
            raise RuntimeError(f"{method} failed (exit {proc.returncode}):\n{err[-3000:]}")
        state["stopped"] = stopped
        return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--probes", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--methods", default=",".join(ORDER))
    parser.add_argument("--max-seconds", type=float, default=0.0, help="0: run to the end")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    import keras

    print(
        f"MobileNetV2 weights=None {args.size}px, {args.probes} probes, batch_size "
        f"{args.batch_size}, keras {keras.__version__} ({keras.backend.backend()}), "
        f"{os.cpu_count()} CPUs" + (f", stopped after {args.max_seconds:g} s" if args.max_seconds
                                    else "")  # fmt: skip
    )
    print(f"{'method':<22}{'numpy peak MiB':>16}{'RSS peak MiB':>14}{'seconds':>10}")
    for method in [m for m in args.methods.split(",") if m]:
        s = run_one(args, method)
        note = "  stopped" if s["stopped"] else ""
        print(
            f"{method:<22}{s['numpy_peak'] / MIB:>16.1f}{s['rss_peak'] / MIB:>14.1f}"
            f"{s['seconds']:>10.1f}{note}",
            flush=True,
        )


if __name__ == "__main__":
    main()
