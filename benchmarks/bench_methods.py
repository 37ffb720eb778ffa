"""Every method's time on MobileNetV2, beside tf-keras-vis and tf-explain where they have it.

Run: python benchmarks/bench_methods.py [--images 32] [--size 96] [--methods scorecam,occlusion]

MobileNetV2 (``weights=None``, 10 classes), explained at ``out_relu``. Prints,
per method, the milliseconds for the batch (one warm-up call first, then the
median of ``--repeats`` rounds, each round calling every method and peer once),
the cost relative to Grad-CAM, and, where a peer has the method at the same
settings, the peer's time, the speed-up and the agreement ``r`` (Pearson, maps
upsampled to the image and scaled to [0, 1]).

Peers are optional: ``pip install --no-deps tf-keras-vis tf-explain`` (plus
``deprecated`` and ``opencv-python-headless``) into a folder on ``PYTHONPATH``.
Settings shared with the peers: Score-CAM 64 channels (tf-keras-vis ``max_N``),
occlusion 16 px patches at stride 16 (tf-explain moves its patch by its size),
SmoothGrad 16 samples at noise 0.15, Integrated Gradients 32 steps; gradient x input and
Integrated Gradients of the probability, as tf-explain differentiates the model's output.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from cam_callback import compute_cams  # noqa: E402
from cam_callback.evaluation import upsample_maps  # noqa: E402

OPTIONS = {
    "scorecam": {"max_channels": 64},
    "occlusion": {"patch": 16, "stride": 16, "value": 127.5},  # tf-explain's grey patch
    "smoothgrad": {"samples": 16, "noise": 0.15},
    "integrated_gradients": {"steps": 32},
}
# tf-explain differentiates the model's output (the probability): compare like with like
PROBABILITY = {"gradient_x_input": "probability", "integrated_gradients": "probability"}
ORDER = (
    "gradcam", "gradcam++", "layercam", "hirescam", "saliency", "xgradcam",
    "gradcam_elementwise", "eigengradcam", "cam", "eigencam", "scorecam", "ablationcam",
    "gradient_x_input", "integrated_gradients", "smoothgrad", "guided_gradcam", "occlusion",
)  # fmt: skip


def round_robin(fns, repeats):
    """Median ms and last output of each function, timed round-robin.

    Every round calls each function once, so load that drifts during the run (another
    process, thermal throttling) reaches every row alike; timing one method's repeats back
    to back let a busy minute land on one row (ratios to Grad-CAM of 1.6x-4.5x under load,
    0.8x-1.5x round-robin). A function that raises ``ValueError`` in its warm-up call is
    returned as refused, with the message.
    """
    outs, refused = {}, {}
    for name, fn in fns.items():  # warm-up: traces and compiles
        try:
            outs[name] = fn()
        except ValueError as exc:
            refused[name] = str(exc)
    live = {name: fn for name, fn in fns.items() if name not in refused}
    times = {name: [] for name in live}
    for _ in range(repeats):
        for name, fn in live.items():
            start = time.perf_counter()
            outs[name] = fn()
            times[name].append(time.perf_counter() - start)
    done = {name: (statistics.median(t) * 1000, outs[name]) for name, t in times.items()}
    return done, refused


def unit(maps, size):
    maps = np.asarray(maps, np.float64)
    maps = upsample_maps(maps, size, size)
    lo = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - lo
    return np.where(span > 0, (maps - lo) / np.where(span > 0, span, 1), 0)


def pearson(a, b):
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def peers(model, x, targets):
    """The peers' functions per method name, each returning maps [N, h, w]; {} if absent."""
    out = {}
    try:
        from tf_keras_vis.saliency import Saliency
        from tf_keras_vis.scorecam import Scorecam
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
        from tf_keras_vis.utils.scores import CategoricalScore

        score = CategoricalScore(list(targets))
        # tf-keras-vis applies softmax to the model's output itself: give it the logits
        sc = Scorecam(model, model_modifier=ReplaceToLinear(), clone=True)
        sal = Saliency(model, model_modifier=ReplaceToLinear(), clone=True)
        o = OPTIONS
        out["scorecam"] = (
            "tf-keras-vis",
            lambda: sc(score, x, penultimate_layer="out_relu", max_N=o["scorecam"]["max_channels"]),
        )
        out["smoothgrad"] = (
            "tf-keras-vis",
            lambda: sal(
                score,
                x,
                smooth_samples=o["smoothgrad"]["samples"],
                smooth_noise=o["smoothgrad"]["noise"],
            ),
        )
    except Exception as exc:  # a peer that cannot run here is reported, not fatal
        print(f"tf-keras-vis unavailable: {type(exc).__name__}: {exc}")
    try:
        from tf_explain.core.gradients_inputs import GradientsInputs
        from tf_explain.core.integrated_gradients import IntegratedGradients
        from tf_explain.core.occlusion_sensitivity import OcclusionSensitivity

        cls = int(targets[0])  # tf-explain explains one class for the whole batch

        def per_image(make):
            return lambda: np.stack([make(x[i : i + 1]) for i in range(len(x))])

        out["occlusion"] = (
            "tf-explain",
            lambda: np.stack(
                [
                    OcclusionSensitivity().get_sensitivity_map(
                        model, img, cls, OPTIONS["occlusion"]["patch"]
                    )
                    for img in x
                ]
            ),
        )
        ig = IntegratedGradients()
        out["integrated_gradients"] = (
            "tf-explain",
            lambda: (
                x
                * ig.get_integrated_gradients(
                    ig.generate_interpolations(
                        np.asarray(x), OPTIONS["integrated_gradients"]["steps"]
                    ),
                    model,
                    cls,
                    OPTIONS["integrated_gradients"]["steps"],
                ).numpy()
            ),  # tf-explain leaves out the (x - baseline) factor: put it back
        )
        out["gradient_x_input"] = (
            "tf-explain",
            lambda: GradientsInputs.compute_gradients(x, model, cls).numpy() * x,
        )
        del per_image
    except Exception as exc:
        print(f"tf-explain unavailable: {type(exc).__name__}: {exc}")
    return out


def reduce_peer(name, maps):
    maps = np.asarray(maps, np.float64)
    if maps.ndim == 4:  # per-channel attributions: reduce as our method does
        maps = np.abs(maps).max(-1) if name == "smoothgrad" else np.abs(maps).sum(-1)
    return maps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default=",".join(ORDER))
    parser.add_argument("--no-peers", action="store_true")
    args = parser.parse_args()
    keras.config.disable_interactive_logging()  # tf-explain's predict() progress bars
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(
        input_shape=(args.size, args.size, 3), weights=None, classes=10
    )
    # pixels in [0, 255]: tf-explain's occlusion patch is grey 127.5, in range only there
    x = np.random.default_rng(0).uniform(0, 255, (args.images, args.size, args.size, 3))
    x = x.astype(np.float32)
    probs = model.predict(x, verbose=0)
    # one class for all, so tf-explain (one class per batch) explains the same target
    targets = np.full(args.images, int(np.bincount(probs.argmax(1)).argmax()))
    names = [m for m in args.methods.split(",") if m]
    theirs = {} if args.no_peers else peers(model, x, targets)
    print(f"MobileNetV2 weights=None {args.size}px, {args.images} images, keras "
          f"{keras.__version__} ({keras.backend.backend()}), "
          f"median of {args.repeats} round-robin rounds")  # fmt: skip
    head = f"{'method':<22}{'ms':>10}{'x gradcam':>11}   {'peer':<14}{'peer ms':>10}"
    print(head + f"{'speed-up':>10}{'r':>8}")
    def ours(name):
        def call():
            return compute_cams(
                model, x, method=name, target=targets, layer="out_relu"
                if name not in ("saliency", "gradient_x_input", "integrated_gradients",
                                "smoothgrad", "occlusion") else None,
                method_options=OPTIONS.get(name),
                score=PROBABILITY.get(name, "logit"),
            ).heatmaps  # fmt: skip

        return call

    fns = {name: ours(name) for name in names}
    fns.update({f"peer:{name}": theirs[name][1] for name in names if name in theirs})
    timed, refused = round_robin(fns, args.repeats)
    base = timed["gradcam"][0] if "gradcam" in timed else None
    for name in names:
        if name in refused:
            print(f"{name:<22}{'refused':>10}   {refused[name][:70]}")
            continue
        ms, maps = timed[name]
        rel = f"{ms / base:.1f}x" if base else "-"
        line = f"{name:<22}{ms:>10.0f}{rel:>11}   "
        if f"peer:{name}" in timed:
            pms, pmaps = timed[f"peer:{name}"]
            a, b = unit(maps, args.size), unit(reduce_peer(name, pmaps), args.size)
            r = pearson(a, b) if a.std() > 0 and b.std() > 0 else float("nan")  # nan: flat maps
            line += f"{theirs[name][0]:<14}{pms:>10.0f}{pms / ms:>9.1f}x{r:>8.3f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
