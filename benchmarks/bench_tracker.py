"""What CAMTracker costs inside model.fit: once per fit, and per epoch.

Run: python benchmarks/bench_tracker.py --rounds 3     (about 25 minutes on 2 cores)
     python benchmarks/bench_tracker.py --quick        (a smoke run of a few minutes)
     python benchmarks/bench_tracker.py --probes 512 --parts cost   (one part)
     python benchmarks/bench_tracker.py --probes 32 --parts interventions
     python benchmarks/bench_tracker.py --images 600 --parts vit   (the ViT row)
     python benchmarks/bench_tracker.py --parts startup --baseline ../old-checkout  (A/B)
     python benchmarks/bench_tracker.py --probes 32,512 --parts evidence

Every fit runs in a fresh child process, so each row's peak RSS is its own.

1. Cost. A small CNN on 2,500 images of 48 px (epochs of about 2.2 s on 2 cores),
   fitted for E and 3E epochs (E = 4), without the tracker, and with it for
   32 and 512 probes as: defaults (TensorBoard + GIFs), ``animate=None``, and
   record only (``tensorboard=False, animate=None``). The arms alternate.
   ``spread`` is the range of the 3E fits over the rounds: the noise to read
   the ratios against.
   The per-epoch cost is the slope between E and 3E, minus the slope without
   the tracker; the one-off cost is what is left at E epochs. Also printed:
   the time spent in ``on_train_end``, peak RSS, TensorBoard bytes per epoch
   and the animations' size.
2. ``on_train_end`` and frames per GIF at 12 and 36 epochs (32 probes, short
   epochs): finishing the animations must not grow with epochs.
3. Peak RSS at 12 and 100 epochs (defaults, short epochs): memory stays flat.
4. Start-up, profiled (``--parts startup``): a fit of 4 epochs of about 1 s
   (1,200 images), defaults and 32 probes, with the tracker's hooks and its two
   background stages timed inside the fit, wall and CPU seconds (CPU: the
   thread's own, so it holds on a loaded machine). The one-off cost is
   ``on_train_begin``, the state before training (its maps: the one trace of the
   CAM function), the first epoch's extras over a later epoch's, and the
   background work of the state before training; the per-epoch cost is a later
   epoch's hook and background work. ``on_train_end`` (flags, animations and the
   review page) is shown apart.
5. (``--parts interventions``) As 1, record only, with a frame as every probe's cue
   mask, interventions off and on (reliance, sufficiency, transplant: forward passes
   over 2N + 8N altered probes), and with ``fragility=True`` (the maps of 3N copies);
   first (5b) the same costs timed directly in one process, which epoch noise hides less.
6. (``--parts evidence``) The evidence transplant (on by default): per epoch, in one process,
   the maps alone against the evidence stage (about 2N pasted + 2N control images, forward
   only), on an untrained and on a fitted small CNN; then fits as 1, record only, with
   ``evidence=False`` and with the default.
7. (``--parts vit``) As 1, record only, 32 probes, on a small keras-hub ViT (48 px, patches
   of 4: 144 patches, 2 blocks of width 32, softmax head, as ``examples/spurious_background.py
   --model vit``): the default method (gradient rollout at a ViT's default layer) against
   ``method="gradcam"`` at the same layer.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ARMS = {
    "no tracker": None,
    "defaults": {},
    "animate=None": {"animate": None},
    "record only": {"animate": None, "tensorboard": False},
}
# Interventions and fragility (--parts interventions): record only, a 4-pixel frame as the
# cue mask of every probe; "frame" is replaced by the masks in the child.
INTERVENTION_ARMS = {
    "mask, no int.": {"animate": None, "tensorboard": False, "probe_masks": "frame",
                         "mask_kind": "cue", "interventions": False},
    "mask + interv": {"animate": None, "tensorboard": False, "probe_masks": "frame",
                        "mask_kind": "cue"},
    "fragility": {"animate": None, "tensorboard": False, "fragility": True},
}  # fmt: skip
for _arm in INTERVENTION_ARMS.values():  # what they measured before the evidence transplant
    _arm["evidence"] = False
EVIDENCE_ARMS = {
    "no evidence": {"animate": None, "tensorboard": False, "evidence": False},
    "evidence": {"animate": None, "tensorboard": False},
}


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


def small_vit(size=48, n_classes=10):
    import keras
    import keras_hub

    backbone = keras_hub.models.ViTBackbone(
        image_shape=(size, size, 3), patch_size=4, num_layers=2, num_heads=4, hidden_dim=32,
        mlp_dim=64,
    )  # fmt: skip
    inp = keras.Input((size, size, 3))
    out = keras.layers.Dense(n_classes, activation="softmax")(backbone(inp)[:, 0])
    model = keras.Model(inp, out)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


VIT_ARMS = {
    "record only": ARMS["record only"],
    "gradcam": {**ARMS["record only"], "method": "gradcam"},
}


def dataset(n, size=48, n_classes=10):
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.random((n, size, size, 3), dtype=np.float32), rng.integers(0, n_classes, n)


def child(spec: dict) -> dict:
    """One fit as ``spec`` says; returns its numbers. Runs in its own process."""
    import keras

    from cam_callback import CAMTracker

    x, y = dataset(spec["images"])
    n_probes = spec["probes"]
    px, py = dataset(n_probes)  # probes apart from the training set, as a user would pick
    keras.utils.set_random_seed(0)
    model = small_vit() if spec.get("model") == "vit" else small_cnn()
    ends: list[float] = []
    with tempfile.TemporaryDirectory() as log_dir:
        callbacks = []
        if spec["tracker"] is not None:
            kwargs = dict(spec["tracker"])
            if kwargs.get("probe_masks") == "frame":
                import numpy as np

                frame = np.ones(px.shape[1:3], bool)
                frame[4:-4, 4:-4] = False
                kwargs["probe_masks"] = np.repeat(frame[None], len(px), axis=0)
            tracker = CAMTracker(px, py, log_dir=log_dir, **kwargs)
            real_end = tracker.on_train_end

            def timed_end(logs=None):
                start = time.perf_counter()
                real_end(logs)
                ends.append(time.perf_counter() - start)

            tracker.on_train_end = timed_end
            if spec.get("profile"):
                hooks = profiled(tracker)
            callbacks.append(tracker)
        start = time.perf_counter()
        model.fit(x, y, epochs=spec["epochs"], batch_size=32, verbose=0, callbacks=callbacks)
        fit_s = time.perf_counter() - start
        cam = Path(log_dir) / "cam"
        tb = sum(p.stat().st_size for p in cam.glob("events.out.tfevents.*"))
        animations = cam / "animations"
        gifs = sorted(animations.glob("probe_*.gif")) if animations.is_dir() else []
        frames = 0
        if gifs:
            from PIL import Image

            with Image.open(gifs[0]) as img:
                frames = img.n_frames
        return {
            "fit_s": fit_s,
            "train_end_s": ends[0] if ends else 0.0,
            "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "tb_bytes_per_epoch": tb / spec["epochs"],
            "animation_bytes": sum(p.stat().st_size for p in animations.glob("*.gif"))
            if animations.is_dir()
            else 0,
            "gif_frames": frames,
            "hooks": hooks if spec.get("profile") else None,
        }


def profiled(tracker) -> dict[str, list[tuple[float, float]]]:
    """Times ``tracker``'s hooks and its pipeline's two stages: ``{part: [(wall, cpu)]}``."""
    from cam_callback.tracker.pipeline import drawing, recording

    times: dict[str, list[tuple[float, float]]] = {}

    def timed(owner, name, part):
        real = getattr(owner, name)

        def wrapper(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return real(*args, **kwargs)
            finally:
                spent = (time.perf_counter() - wall, time.thread_time() - cpu)
                times.setdefault(part, []).append(spent)

        setattr(owner, name, wrapper)

    for hook in ("on_train_begin", "on_epoch_begin", "on_epoch_end", "on_train_end"):
        timed(tracker, hook, hook)
    timed(recording.RecordStage, "record", "record thread")  # once per recorded epoch
    timed(drawing.FrameStage, "frame", "frame thread")  # once per drawn epoch
    return times


def run_child(spec: dict, code: str | None = None) -> dict:
    """One fit in a child process; ``code``: a checkout whose ``cam_callback`` it imports."""
    env = None
    if code is not None:
        paths = [code, os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
    )
    if out.returncode != 0:
        raise SystemExit(f"child {spec} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cost(
    images: int, e: int, probe_counts: tuple[int, ...], rounds: int, table: dict = ARMS,
    model: str = "cnn",
) -> None:
    arms = [("no tracker", None, 0)] + [
        (name, tracker, n)
        for n in probe_counts
        for name, tracker in table.items()
        if tracker is not None
    ]
    results: dict[tuple[str, int, int], list[dict]] = {}
    for _ in range(rounds):
        for epochs in (e, 3 * e):
            for name, tracker, n in arms:  # alternate the arms within each length
                spec = {"images": images, "epochs": epochs, "probes": n or 32, "tracker": tracker,
                        "model": model}  # fmt: skip
                results.setdefault((name, n, epochs), []).append(run_child(spec))

    def med(name, n, epochs, key):
        return statistics.median(r[key] for r in results[name, n, epochs])

    def spread(name, n):  # run-to-run range of the long fit, in % of its median
        fits = [r["fit_s"] for r in results[name, n, 3 * e]]
        return 100 * (max(fits) - min(fits)) / statistics.median(fits)

    base_e, base_3e = med("no tracker", 0, e, "fit_s"), med("no tracker", 0, 3 * e, "fit_s")
    base_slope = (base_3e - base_e) / (2 * e)
    print(
        f"1. fit of a small {model.upper()} on {images:,} images of 48 px, batch 32, at {e} and "
        f"{3 * e} epochs "
        f"(median of {rounds}); an epoch without the tracker lasts {base_slope:.2f} s"
    )
    head = (
        f"{'arm':>13s} {'probes':>6s} {'fit ' + str(e):>7s} {'fit ' + str(3 * e):>7s} "
        f"{'ratio ' + str(3 * e):>9s} {'per epoch':>9s} {'one-off':>8s} {'train_end':>9s} "
        f"{'train_end':>9s} {'peak RSS':>8s} {'TB/epoch':>9s} {'GIFs':>8s} {'spread':>7s}"
    )
    print(head)
    print(
        f"{'':>13s} {'':>6s} {'s':>7s} {'s':>7s} {'x':>9s} {'s':>9s} {'s':>8s} "
        f"{'at ' + str(e) + ', s':>9s} {'at ' + str(3 * e) + ', s':>9s} {'MiB':>8s} "
        f"{'MB':>9s} {'MB':>8s} {'at ' + str(3 * e):>7s}"
    )
    for name, _, n in arms:
        f1, f3 = med(name, n, e, "fit_s"), med(name, n, 3 * e, "fit_s")
        per_epoch = (f3 - f1) / (2 * e) - base_slope
        one_off = (f1 - base_e) - e * per_epoch
        print(
            f"{name:>13s} {n or '-':>6} {f1:7.2f} {f3:7.2f} {f3 / base_3e:9.3f} "
            f"{per_epoch:9.3f} {one_off:8.2f} {med(name, n, e, 'train_end_s'):9.3f} "
            f"{med(name, n, 3 * e, 'train_end_s'):9.3f} {med(name, n, 3 * e, 'rss_mib'):8.0f} "
            f"{med(name, n, 3 * e, 'tb_bytes_per_epoch') / 1e6:9.3f} "
            f"{med(name, n, 3 * e, 'animation_bytes') / 1e6:8.2f} {spread(name, n):6.1f}%"
        )


def median_warm(fn, repeats: int) -> float:
    """The median of ``repeats`` timed calls of ``fn``, after one untimed call (it traces)."""
    fn()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def intervention_cost(probe_counts: tuple[int, ...], repeats: int = 5) -> None:
    """In one process, per epoch: the maps alone, then what interventions and fragility add
    (median of ``repeats`` warm calls), and the one-off build of the altered probes."""
    import numpy as np

    from cam_callback import api
    from cam_callback.tracker.pipeline import FragilityOptions, ProbeInterventions

    model = small_cnn()
    print(f"\n4b. per-epoch cost in one process (median of {repeats} warm calls), small CNN 48 px")
    print(f"{'probes':>6s} {'maps s':>8s} {'interv s':>9s} {'images':>7s} {'fragility s':>11s} "
          f"{'build s':>8s} {'build frag s':>12s}")  # fmt: skip
    for n in probe_counts:
        px, py = dataset(n)
        frame = np.ones((48, 48), bool)
        frame[4:-4, 4:-4] = False
        masks = np.repeat(frame[None], n, axis=0)
        start = time.perf_counter()
        interv = ProbeInterventions(px, masks, py, "cue")
        build = time.perf_counter() - start
        start = time.perf_counter()
        frag = ProbeInterventions(px, None, py, "cue", FragilityOptions())
        build_frag = time.perf_counter() - start
        batch = min(32, n)

        def probs(images, batch=batch):
            return api.predict_probabilities(model, images, batch_size=batch)

        def maps(images, targets, batch=batch):
            r = api.compute_cams(model, images, target=targets, batch_size=batch)
            return r.heatmaps, r.probabilities

        res = api.compute_cams(model, px, batch_size=batch)
        args = (res.heatmaps, res.probabilities, res.targets)
        t_maps = median_warm(lambda: api.compute_cams(model, px, batch_size=batch), repeats)  # noqa: B023
        t_interv = median_warm(lambda: interv.measure(probs, maps, *args), repeats)  # noqa: B023
        t_frag = median_warm(lambda: frag.measure(probs, maps, *args), repeats)  # noqa: B023
        print(f"{n:6d} {t_maps:8.3f} {t_interv:9.3f} {interv.passes:7d} {t_frag:11.3f} "
              f"{build:8.2f} {build_frag:12.2f}")  # fmt: skip


def evidence_cost(probe_counts: tuple[int, ...], repeats: int = 5) -> None:
    """In one process, per epoch: the maps alone, then the evidence stage (median of
    ``repeats`` warm calls), on the untrained CNN and after one epoch of fitting."""
    import keras

    from cam_callback import api
    from cam_callback.tracker.pipeline import EvidenceOptions, EvidenceTransplant

    keras.utils.set_random_seed(0)
    model = small_cnn()
    print(f"\n6. evidence transplant per epoch, one process (median of {repeats} warm calls)")
    print(f"{'model':>9s} {'probes':>6s} {'maps s':>8s} {'evidence s':>11s} {'images':>7s} "
          f"{'ratio':>6s}")  # fmt: skip
    for state in ("untrained", "fitted"):
        if state == "fitted":
            x, y = dataset(2500)
            model.fit(x, y, epochs=1, batch_size=32, verbose=0)
        for n in probe_counts:
            px, py = dataset(n)
            batch = min(32, n)
            stage = EvidenceTransplant(px, py, None, EvidenceOptions())

            def probs(images, batch=batch):
                return api.predict_probabilities(model, images, batch_size=batch)

            res = api.compute_cams(model, px, batch_size=batch, target=py)  # as target="label"
            args = (res.heatmaps, res.probabilities, res.targets)
            t_maps = median_warm(
                lambda: api.compute_cams(model, px, batch_size=batch, target=py),  # noqa: B023
                repeats,
            )
            t_ev = median_warm(lambda: stage.measure(probs, *args), repeats)  # noqa: B023
            print(f"{state:>9s} {n:6d} {t_maps:8.3f} {t_ev:11.3f} {stage.passes:7d} "
                  f"{t_ev / t_maps:6.2f}")  # fmt: skip


def long_runs(title: str, key: str, column: str, images: int, lengths: tuple[int, ...]) -> None:
    """Fits with defaults and 32 probes at each length; prints ``key`` and the GIF frames."""
    print(f"\n{title} with defaults, 32 probes, {images} images per epoch")
    print(f"{'epochs':>7s} {column:>12s} {'GIF frames':>11s}")
    for epochs in lengths:
        r = run_child({"images": images, "epochs": epochs, "probes": 32, "tracker": {}})
        print(f"{epochs:7d} {r[key]:12.3f} {r['gif_frames']:11d}")


def train_end(images: int, lengths: tuple[int, ...]) -> None:
    long_runs("2. on_train_end", "train_end_s", "train_end s", images, lengths)


def memory(images: int, lengths: tuple[int, ...]) -> None:
    long_runs("3. peak RSS", "rss_mib", "peak MiB", images, lengths)


def startup(images: int, rounds: int, e: int = 4, baseline: str | None = None) -> None:
    """Part 4: the tracker's one-off and per-epoch cost, profiled inside the fit.

    Rows on the training thread have a wall time; the background threads (the frame
    thread at nice 19 takes only CPU that training leaves idle) have their CPU only.
    With ``baseline`` (a checkout of another version), its fits alternate with this
    version's and both columns are printed: an A/B under the same load.
    """
    spec = {"images": images, "epochs": e, "probes": 32, "tracker": {}, "profile": True}
    versions = {"this": None} if baseline is None else {"baseline": baseline, "this": None}
    runs: dict[str, list[dict]] = {name: [] for name in versions}
    for _ in range(rounds):
        for name, code in versions.items():  # alternate, so both see the same load
            runs[name].append(run_child(spec, code))

    def parts(h: dict) -> dict[str, tuple[float | None, float]]:
        def first(part):
            return h[part][0] if h.get(part) else (0.0, 0.0)

        def later(part):  # a later epoch: the median of epochs 1 to E-1
            rows = h.get(part, [])[1:]
            if not rows:
                return (0.0, 0.0)
            return tuple(statistics.median(r[k] for r in rows) for k in (0, 1))

        epoch_end = later("on_epoch_end")
        extras = tuple(a - b for a, b in zip(first("on_epoch_end"), epoch_end, strict=True))
        out: dict[str, tuple[float | None, float]] = {
            "on_train_begin": first("on_train_begin"),
            "before training: maps (the trace)": first("on_epoch_begin"),
            "first epoch's extras": extras,
            "before training: record thread": (None, first("record thread")[1]),
            "before training: frame thread": (None, first("frame thread")[1]),
        }
        out["one-off"] = (
            sum(w for w, _ in out.values() if w is not None),
            sum(c for _, c in out.values()),
        )
        out["per epoch: on_epoch_end"] = epoch_end
        out["per epoch: record + frame threads"] = (
            None,
            later("record thread")[1] + later("frame thread")[1],
        )
        out["on_train_end (flags, animations, page)"] = first("on_train_end")
        return out

    tables = {name: [parts(r["hooks"]) for r in rs] for name, rs in runs.items()}
    epoch_s = statistics.median(r["fit_s"] for r in runs["this"]) / e
    print(
        f"\n4. start-up, profiled in a fit of {e} epochs on {images:,} images, defaults, "
        f"32 probes (median of {rounds}; an epoch lasted {epoch_s:.2f} s with the tracker)"
    )
    if baseline is not None:
        print(f"   baseline: {baseline}")
    print(f"{'part':>40s}" + "".join(f" {n + ' wall':>14s} {n + ' CPU':>13s}" for n in tables))
    for part, (wall, _) in tables["this"][0].items():
        row = f"{part:>40s}"
        for table in tables.values():
            walls = "-" if wall is None else f"{statistics.median(t[part][0] for t in table):.3f}"
            row += f" {walls:>14s} {statistics.median(t[part][1] for t in table):13.3f}"
        print(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds per arm")
    parser.add_argument("--images", type=int, default=2500, help="training images (part 1)")
    parser.add_argument("--probes", default="32,512", help="probe counts (part 1)")
    parser.add_argument("--parts", default="cost,train_end,memory,startup", help="parts to run")
    parser.add_argument(
        "--baseline", help="start-up (part 4) A/B: a checkout of the version to compare with"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    sys.stdout.reconfigure(line_buffering=True)  # rows show as they are measured
    start = time.perf_counter()
    if args.quick:
        cost(images=1200, e=2, probe_counts=(32,), rounds=args.rounds)
        train_end(images=256, lengths=(4, 12))
        memory(images=64, lengths=(4, 20))
        startup(images=600, rounds=1)
    else:
        parts = set(args.parts.split(","))
        if "cost" in parts:
            probes = tuple(int(n) for n in args.probes.split(","))
            cost(images=args.images, e=4, probe_counts=probes, rounds=args.rounds)
        if "interventions" in parts:
            probes = tuple(int(n) for n in args.probes.split(","))
            intervention_cost(probes)
            cost(args.images, 4, probes, args.rounds, {"record only": ARMS["record only"],
                                                       **INTERVENTION_ARMS})  # fmt: skip
        if "evidence" in parts:
            probes = tuple(int(n) for n in args.probes.split(","))
            evidence_cost(probes)
            cost(args.images, 4, probes, args.rounds, EVIDENCE_ARMS)
        if "vit" in parts:
            cost(args.images, 4, (32,), args.rounds, VIT_ARMS, model="vit")
        if "train_end" in parts:
            train_end(images=1000, lengths=(12, 36))
        if "memory" in parts:
            memory(images=64, lengths=(12, 100))
        if "startup" in parts:
            startup(images=1200, rounds=max(3, args.rounds), baseline=args.baseline)
    print(f"\n(total {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
